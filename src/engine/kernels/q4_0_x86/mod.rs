//! q4_0 matrix products on x86-64 with AVX2, AVX-VNNI or AVX512-VNNI, whichever the CPU has.
//!
//! ```text
//! y (m × n) = x (m × k) · Wᵀ      W: n × k q4_0 weights, x: f32 activations
//! ```
//!
//! The arithmetic is that of llama.cpp's and candle's q4_0 × q8_0 dot product: every row of `x`
//! is quantized to q8_0 blocks (32 values, scale `amax / 127` rounded to f16, quants rounded half
//! away from zero), the 32 products of a block are summed exactly in integers and scaled by the
//! two f16 scales in f32. Only the order of the f32 sums differs from candle's, so results equal
//! candle's `QMatMul` up to f32 rounding.
//!
//! Weights are repacked once, at load time, into [`Tile`]s of 16 rows × one 32-value block. Their
//! nibbles are laid out so that 32-bit lane `r` of a vector register holds row `r`: one
//! dot-product instruction (`vpdpbusd`, or `vpmaddubsw` + `vpmaddwd` on plain AVX2) multiplies
//! 4 values of 16 (or 8) rows at once and no lane ever needs a horizontal sum. The repacked
//! matrix is exactly as large as the q4_0 one (18 bytes per 32 values of a row).
//!
//! Quants are stored unsigned (`q ∈ 0..16`, weight `(q − 8) · scale`), the operand type
//! `vpdpbusd` wants; the `− 8` is applied once per block as `−8 · Σ activation quants`, the
//! initial value of the block's integer sum.
//!
//! One unit of work is one tile column (16 output columns) against up to [`MAX_ROWS`]
//! activation rows, so several candidates decoded together read each weight once. Units are
//! spread over candle's CPU thread pool, sized by `CANDLE_NUM_THREADS` / `RAYON_NUM_THREADS`
//! (what `storywriter bench --threads` sets): the same threads candle's own matmuls spin on,
//! so the two never compete for cores.

use std::arch::x86_64::*;
use std::fmt;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use half::f16;
use rayon::prelude::*;

use super::Epilogue;
use crate::error::{Error, Result};

/// Values per q4_0 / q8_0 block.
const BLOCK: usize = 32;
/// Weight rows per tile: the 32-bit lanes of a 512-bit register.
const TILE_ROWS: usize = 16;
/// Bytes of one q4_0 block in a GGUF file: f16 scale, then 16 bytes of nibble pairs.
const Q4_0_BLOCK_BYTES: usize = 18;
/// Activation rows one unit of work multiplies with a tile column (register blocking).
const MAX_ROWS: usize = 4;

/// The widest instruction set the kernels can use on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    /// 512-bit registers, `vpdpbusd` (AVX512-VNNI).
    Avx512Vnni,
    /// 256-bit registers, `vpdpbusd` (AVX-VNNI).
    AvxVnni,
    /// 256-bit registers, `vpmaddubsw` + `vpmaddwd`.
    Avx2,
}

impl Isa {
    /// The best kernel set this CPU runs; `None` without AVX2, FMA and F16C.
    fn detect() -> Option<Self> {
        if !(is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c"))
        {
            return None;
        }
        Some(
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
            {
                Self::Avx512Vnni
            } else if is_x86_feature_detected!("avxvnni") {
                Self::AvxVnni
            } else {
                Self::Avx2
            },
        )
    }
}

/// One 32-value block of 16 consecutive weight rows.
#[repr(C, align(32))]
#[derive(Clone, Copy)]
struct Tile {
    /// Row `r`'s block scale.
    scales: [f16; TILE_ROWS],
    /// `[group g (4)][row r (16)][byte j (4)]`: byte j holds the row's value `8g + j` in its low
    /// nibble and value `8g + j + 4` in its high nibble.
    quants: [u8; TILE_ROWS * BLOCK / 2],
}

impl Tile {
    const ZERO: Self = Self {
        scales: [f16::ZERO; TILE_ROWS],
        quants: [0; TILE_ROWS * BLOCK / 2],
    };

    /// Copies q4_0 block `block` (18 bytes: f16 scale, byte j = value j | value j + 16 << 4)
    /// into row `r`.
    fn set_row(&mut self, r: usize, block: &[u8]) {
        self.scales[r] = f16::from_le_bytes([block[0], block[1]]);
        let nibbles = &block[2..Q4_0_BLOCK_BYTES];
        let value = |v: usize| {
            if v < 16 {
                nibbles[v] & 0x0F
            } else {
                nibbles[v - 16] >> 4
            }
        };
        for g in 0..4 {
            for j in 0..4 {
                self.quants[(g * TILE_ROWS + r) * 4 + j] =
                    value(8 * g + j) | (value(8 * g + j + 4) << 4);
            }
        }
    }
}

/// A q4_0 weight matrix `W` (n × k), repacked for [`Q4_0Matrix::matmul`], with an optional
/// bias `b` and GELU fused into the product: `y = gelu(x Wᵀ + b)`.
pub struct Q4_0Matrix {
    n: usize,
    k: usize,
    isa: Isa,
    /// `[tile column (⌈n / 16⌉)][block (k / 32)]`; rows past `n` have zero scales.
    tiles: Vec<Tile>,
    /// The bias and GELU fused into the product.
    epilogue: Epilogue,
}

impl fmt::Debug for Q4_0Matrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Q4_0Matrix")
            .field("n", &self.n)
            .field("k", &self.k)
            .field("isa", &self.isa)
            .field("epilogue", &self.epilogue)
            .finish()
    }
}

impl Q4_0Matrix {
    /// Repacks the 2-D q4_0 tensor `q`; `None` when the CPU lacks AVX2, FMA or F16C.
    pub fn new(q: &QTensor) -> Result<Option<Self>> {
        Isa::detect().map(|isa| Self::with_isa(q, isa)).transpose()
    }

    fn with_isa(q: &QTensor, isa: Isa) -> Result<Self> {
        let (n, k) = q.shape().dims2()?;
        if q.dtype() != GgmlDType::Q4_0 || k % BLOCK != 0 {
            return Err(Error::Invalid(format!(
                "the q4_0 kernels need a q4_0 matrix with rows of whole blocks, got {:?} {:?}",
                q.dtype(),
                q.shape()
            )));
        }
        let data = q.data()?;
        let blocks = k / BLOCK;
        let mut tiles = vec![Tile::ZERO; n.div_ceil(TILE_ROWS) * blocks];
        tiles
            .par_chunks_mut(blocks)
            .enumerate()
            .for_each(|(column, column_tiles)| {
                for row in column * TILE_ROWS..n.min((column + 1) * TILE_ROWS) {
                    let row_data = &data[row * blocks * Q4_0_BLOCK_BYTES..];
                    for (b, tile) in column_tiles.iter_mut().enumerate() {
                        let block = &row_data[b * Q4_0_BLOCK_BYTES..(b + 1) * Q4_0_BLOCK_BYTES];
                        tile.set_row(row % TILE_ROWS, block);
                    }
                }
            });
        Ok(Self {
            n,
            k,
            isa,
            tiles,
            epilogue: Epilogue::default(),
        })
    }

    /// Adds `bias` (n values) to every product row.
    pub fn with_bias(self, bias: Vec<f32>) -> Result<Self> {
        Ok(Self {
            epilogue: self.epilogue.with_bias(bias, self.n)?,
            ..self
        })
    }

    /// Applies GELU to every output, after the bias.
    pub fn with_gelu(self) -> Self {
        Self {
            epilogue: self.epilogue.with_gelu(),
            ..self
        }
    }

    /// `y (m × n) = gelu?(x (m × k) · Wᵀ + b)`, both row-major; `x.len()` must be a multiple
    /// of `k`. The bias and GELU run in the worker threads, on each unit's outputs.
    pub fn matmul(&self, x: &[f32], y: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        let m = x.len() / k;
        assert_eq!((x.len(), y.len()), (m * k, m * n), "matmul operand sizes");
        // SAFETY: `self.isa` was detected on this CPU, and it implies AVX2 and F16C.
        let act = unsafe { QuantizedRows::new(x, k) };
        let blocks = k / BLOCK;
        let units_per_column = m.div_ceil(MAX_ROWS);
        let units = self.tiles.len() / blocks * units_per_column;
        let y_addr = y.as_mut_ptr() as usize;
        candle_core::utils::barrier_pool().execute_chunked(units, |range| {
            let mut out = [[0f32; TILE_ROWS]; MAX_ROWS];
            for unit in range {
                // Consecutive units share a tile column, which stays in cache.
                let column = unit / units_per_column;
                let row0 = (unit % units_per_column) * MAX_ROWS;
                let rows = (m - row0).min(MAX_ROWS);
                let tiles = &self.tiles[column * blocks..(column + 1) * blocks];
                // SAFETY: the ISA was detected on this CPU; `row0 + rows <= m`.
                unsafe { run_unit(self.isa, tiles, &act, row0, rows, &mut out) };
                let width = (n - column * TILE_ROWS).min(TILE_ROWS);
                for out_row in &mut out[..rows] {
                    self.epilogue
                        .apply(column * TILE_ROWS, &mut out_row[..width]);
                }
                for (i, out_row) in out[..rows].iter().enumerate() {
                    let start = (row0 + i) * n + column * TILE_ROWS;
                    // SAFETY: `y` has m × n elements and outlives this call (the pool
                    // returns when every unit is done); units write disjoint (row, column)
                    // ranges, so no two threads touch the same element.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            out_row.as_ptr(),
                            (y_addr as *mut f32).add(start),
                            width,
                        );
                    }
                }
            }
        });
    }
}

/// As a candle op: `(…, k)` f32 activations → `(…, n)`.
impl CustomOp1 for Q4_0Matrix {
    fn name(&self) -> &'static str {
        "q4_0-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        super::matmul_op("q4_0 matmul", (self.n, self.k), storage, layout, |x, y| {
            self.matmul(x, y)
        })
    }
}

/// Rows of activations quantized to q8_0 blocks, plus each block's `−8 · Σ quants`.
struct QuantizedRows {
    /// Blocks per row (k / 32).
    blocks: usize,
    /// `[row][block][32]`.
    quants: Vec<i8>,
    /// `[row][block]`: the f16 scale, as f32.
    scales: Vec<f32>,
    /// `[row][block]`: `−8 · Σ quants`, which turns the unsigned weight quants' sum into q4_0's.
    offsets: Vec<i32>,
}

impl QuantizedRows {
    /// Quantizes `x` (rows of `k` values) exactly as candle's and llama.cpp's q8_0 does.
    ///
    /// # Safety
    /// The CPU must support AVX2 and F16C.
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn new(x: &[f32], k: usize) -> Self {
        let count = x.len() / BLOCK;
        let mut rows = Self {
            blocks: k / BLOCK,
            quants: vec![0; x.len()],
            scales: vec![0.0; count],
            offsets: vec![0; count],
        };
        for (i, values) in x.chunks_exact(BLOCK).enumerate() {
            let quants = &mut rows.quants[i * BLOCK..(i + 1) * BLOCK];
            let (scale, sum) = quantize_block(values, quants);
            rows.scales[i] = scale;
            rows.offsets[i] = -8 * sum;
        }
        rows
    }
}

/// Quantizes 32 values to q8_0: scale `d = amax / 127` (returned rounded to f16, as stored) and
/// `q = round(x · (1 / d))` half away from zero, like `f32::round`; also returns `Σ q`.
#[target_feature(enable = "avx2,f16c")]
fn quantize_block(x: &[f32], q: &mut [i8]) -> (f32, i32) {
    assert!(x.len() == BLOCK && q.len() == BLOCK);
    let sign = _mm256_set1_ps(-0.0);
    // SAFETY: both slices hold 32 elements (asserted above), read and written unaligned.
    unsafe {
        let v: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(x.as_ptr().add(8 * i)));
        let abs = |v: __m256| _mm256_andnot_ps(sign, v);
        let max8 = _mm256_max_ps(
            _mm256_max_ps(abs(v[0]), abs(v[1])),
            _mm256_max_ps(abs(v[2]), abs(v[3])),
        );
        let max4 = _mm_max_ps(_mm256_castps256_ps128(max8), _mm256_extractf128_ps(max8, 1));
        let max2 = _mm_max_ps(max4, _mm_movehl_ps(max4, max4));
        let amax = _mm_cvtss_f32(_mm_max_ss(max2, _mm_movehdup_ps(max2)));
        let d = amax / 127.0;
        let inverse = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
        let half = _mm256_set1_ps(0.5);
        let one = _mm256_set1_ps(1.0);
        let rounded: [__m256i; 4] = std::array::from_fn(|i| {
            let p = _mm256_mul_ps(v[i], inverse);
            let truncated = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(p);
            // Exact: t = 0, or p and t share sign with |t| ≤ |p| < 2|t| (Sterbenz).
            let fraction = _mm256_sub_ps(p, truncated);
            let away = _mm256_and_ps(
                _mm256_cmp_ps::<_CMP_GE_OQ>(abs(fraction), half),
                _mm256_or_ps(_mm256_and_ps(p, sign), one),
            );
            _mm256_cvttps_epi32(_mm256_add_ps(truncated, away))
        });
        // i32 → i8: the two packs interleave 128-bit lanes, the permute restores order.
        let packed = _mm256_packs_epi16(
            _mm256_packs_epi32(rounded[0], rounded[1]),
            _mm256_packs_epi32(rounded[2], rounded[3]),
        );
        let ordered =
            _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(q.as_mut_ptr().cast(), ordered);
        let sum8 = _mm256_add_epi32(
            _mm256_add_epi32(rounded[0], rounded[1]),
            _mm256_add_epi32(rounded[2], rounded[3]),
        );
        let sum4 = _mm_add_epi32(
            _mm256_castsi256_si128(sum8),
            _mm256_extracti128_si256(sum8, 1),
        );
        let sum2 = _mm_add_epi32(sum4, _mm_shuffle_epi32(sum4, 0b01_00_11_10));
        let sum = _mm_cvtsi128_si32(_mm_add_epi32(sum2, _mm_shuffle_epi32(sum2, 0b10_11_00_01)));
        (f16::from_f32(d).to_f32(), sum)
    }
}

/// Runs the kernel for `isa` with `rows` (1..=4) activation rows from `row0` against one tile
/// column (`tiles`: its k / 32 blocks), writing `out[i][r]` = output column r of row `row0 + i`.
///
/// # Safety
/// The CPU must support `isa`; `row0 + rows` must not exceed the rows of `act`.
unsafe fn run_unit(
    isa: Isa,
    tiles: &[Tile],
    act: &QuantizedRows,
    row0: usize,
    rows: usize,
    out: &mut [[f32; TILE_ROWS]; MAX_ROWS],
) {
    macro_rules! with_rows {
        ($kernel:ident) => {
            match rows {
                1 => $kernel::<1>(tiles, act, row0, out),
                2 => $kernel::<2>(tiles, act, row0, out),
                3 => $kernel::<3>(tiles, act, row0, out),
                _ => $kernel::<MAX_ROWS>(tiles, act, row0, out),
            }
        };
    }
    match isa {
        Isa::Avx512Vnni => with_rows!(unit_avx512_vnni),
        Isa::AvxVnni => with_rows!(unit_avx_vnni),
        Isa::Avx2 => with_rows!(unit_avx2),
    }
}

/// Loads the 4 activation quants at `a` as one i32 broadcast to every lane.
///
/// # Safety
/// `a` must point to 4 readable bytes.
#[inline(always)]
unsafe fn quad(a: *const i8) -> i32 {
    std::ptr::read_unaligned(a.cast::<i32>())
}

/// One tile column × `R` activation rows with 512-bit `vpdpbusd`: lane r = weight row r.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn unit_avx512_vnni<const R: usize>(
    tiles: &[Tile],
    act: &QuantizedRows,
    row0: usize,
    out: &mut [[f32; TILE_ROWS]; MAX_ROWS],
) {
    let low4 = _mm512_set1_epi8(0x0F);
    let mut acc = [_mm512_setzero_ps(); R];
    for (b, tile) in tiles.iter().enumerate() {
        // The 16 rows' scales, f16 → f32.
        let w_scale = _mm512_cvtph_ps(_mm256_loadu_si256(tile.scales.as_ptr().cast()));
        // w[2g]: values 8g..8g+4 of every row, w[2g + 1]: values 8g+4..8g+8 (u8, 0..16).
        let mut w = [_mm512_setzero_si512(); 8];
        for g in 0..4 {
            let packed = _mm512_loadu_si512(tile.quants.as_ptr().add(g * 64).cast());
            w[2 * g] = _mm512_and_si512(packed, low4);
            w[2 * g + 1] = _mm512_and_si512(_mm512_srli_epi16::<4>(packed), low4);
        }
        for (i, acc) in acc.iter_mut().enumerate() {
            let j = (row0 + i) * act.blocks + b;
            let a = act.quants.as_ptr().add(j * BLOCK);
            // Exact integer dot product of the block, −8·Σa + Σ q·a, as two independent
            // chains (low and high nibbles) to halve the vpdpbusd latency on the critical path.
            let mut low = _mm512_set1_epi32(act.offsets[j]);
            let mut high = _mm512_setzero_si512();
            for g in 0..4 {
                let a_low = _mm512_set1_epi32(quad(a.add(8 * g)));
                let a_high = _mm512_set1_epi32(quad(a.add(8 * g + 4)));
                low = _mm512_dpbusd_epi32(low, w[2 * g], a_low);
                high = _mm512_dpbusd_epi32(high, w[2 * g + 1], a_high);
            }
            let dot = _mm512_add_epi32(low, high);
            let scale = _mm512_mul_ps(w_scale, _mm512_set1_ps(act.scales[j]));
            *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, *acc);
        }
    }
    for (out, acc) in out.iter_mut().zip(acc) {
        _mm512_storeu_ps(out.as_mut_ptr(), acc);
    }
}

/// `acc + Σ` of four u8 × i8 products per 32-bit lane with `vpdpbusd` (AVX-VNNI).
#[target_feature(enable = "avx2,avxvnni")]
#[inline]
fn dot_avx_vnni(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(acc, w, a)
}

/// `acc + Σ` of four u8 × i8 products per 32-bit lane on plain AVX2: the pair sums of
/// `vpmaddubsw` (at most 2 · 15 · 128, no saturation) widened by `vpmaddwd`.
#[target_feature(enable = "avx2")]
#[inline]
fn dot_avx2(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
    let pairs = _mm256_maddubs_epi16(w, a);
    _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

/// One tile column × `R` activation rows with 256-bit registers, each tile as two halves of
/// 8 rows (lane r = weight row 8·half + r); `$dot` is the 4-product dot instruction.
macro_rules! unit_256 {
    ($name:ident, $features:literal, $dot:ident) => {
        #[target_feature(enable = $features)]
        unsafe fn $name<const R: usize>(
            tiles: &[Tile],
            act: &QuantizedRows,
            row0: usize,
            out: &mut [[f32; TILE_ROWS]; MAX_ROWS],
        ) {
            let low4 = _mm256_set1_epi8(0x0F);
            let mut acc = [[_mm256_setzero_ps(); 2]; R];
            for (b, tile) in tiles.iter().enumerate() {
                for half in 0..2 {
                    let w_scale =
                        _mm256_cvtph_ps(_mm_loadu_si128(tile.scales.as_ptr().add(8 * half).cast()));
                    let mut w = [_mm256_setzero_si256(); 8];
                    for g in 0..4 {
                        let packed =
                            _mm256_loadu_si256(tile.quants.as_ptr().add(g * 64 + half * 32).cast());
                        w[2 * g] = _mm256_and_si256(packed, low4);
                        w[2 * g + 1] = _mm256_and_si256(_mm256_srli_epi16::<4>(packed), low4);
                    }
                    for (i, acc) in acc.iter_mut().enumerate() {
                        let j = (row0 + i) * act.blocks + b;
                        let a = act.quants.as_ptr().add(j * BLOCK);
                        let mut low = _mm256_set1_epi32(act.offsets[j]);
                        let mut high = _mm256_setzero_si256();
                        for g in 0..4 {
                            let a_low = _mm256_set1_epi32(quad(a.add(8 * g)));
                            let a_high = _mm256_set1_epi32(quad(a.add(8 * g + 4)));
                            low = $dot(low, w[2 * g], a_low);
                            high = $dot(high, w[2 * g + 1], a_high);
                        }
                        let dot = _mm256_add_epi32(low, high);
                        let scale = _mm256_mul_ps(w_scale, _mm256_set1_ps(act.scales[j]));
                        acc[half] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[half]);
                    }
                }
            }
            for (out, acc) in out.iter_mut().zip(acc) {
                _mm256_storeu_ps(out.as_mut_ptr(), acc[0]);
                _mm256_storeu_ps(out.as_mut_ptr().add(8), acc[1]);
            }
        }
    };
}

unit_256!(unit_avx_vnni, "avx2,avxvnni,fma,f16c", dot_avx_vnni);
unit_256!(unit_avx2, "avx2,fma,f16c", dot_avx2);

#[cfg(test)]
mod tests;
