//! q4_k weights times q8_k activations on wasm32 with simd128: the output projection of a q4_0
//! file (250880 × 1024 for bloom-560m, stored as q4_k as llama.cpp does), the largest single
//! product of a decode step.
//!
//! ```text
//! y (m × n) = x (m × k) · Wᵀ      W: n × k q4_k weights, x: f32 activations (quantized to q8_k)
//! ```
//!
//! Why our own: candle 0.11's wasm `vec_dot_q4k_q8k` multiplies one activation row by one weight
//! row at a time (three candidates unpack and read every weight three times) and widens every
//! product to i32 before multiplying it by its sub-block's scale. Here a weight super-block is
//! unpacked once for every activation row, and each 32-value sub-block's products are summed
//! with `i32x4.dot_i16x8_s` (or, in the `+relaxed-simd` build, the 7-bit-exact
//! `i32x4.relaxed_dot_i8x16_i7x16_add` on the bytes) before its scale multiplies the sum. The
//! integer sums are candle's
//! (activations quantized by candle's own `BlockQ8K::from_float`); the f32 accumulation runs in
//! another order (one sum per row instead of four lanes), so results agree to f32 rounding.
//!
//! Layout of a stored q4_k super-block of 256 values (144 bytes): f16 `d`, f16 `dmin`, 12 bytes
//! of 6-bit scales and mins for its eight 32-value sub-blocks, then 128 bytes of nibbles: byte
//! `32·j + i` holds value `64·j + i` (low nibble) and `64·j + 32 + i` (high). Value `v` of
//! sub-block `s` is `d · scale_s · q − dmin · min_s`.

use std::arch::wasm32::*;
use std::fmt;
use std::sync::Arc;

use super::q_wasm::{f16_table, for_each_unit, MAX_ROWS};
use crate::error::{Error, Result};
use candle_core::quantized::k_quants::{BlockQ8K, GgmlType};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape};

/// Values of a super-block.
const QK_K: usize = 256;
/// Bytes of a stored q4_k super-block.
const BLOCK_BYTES: usize = 144;
/// Bytes of candle's `BlockQ8K` (`#[repr(C)]`: f32 `d`, 256 i8 quants, 16 i16 sums of 16).
const Q8K_BYTES: usize = 4 + QK_K + 2 * QK_K / 16;

/// A q4_k weight matrix `W` (n × k) for the simd128 kernel.
pub struct Q4kMatrix {
    n: usize,
    k: usize,
    /// The stored matrix: `[row][super-block]`.
    weights: Arc<QTensor>,
}

impl fmt::Debug for Q4kMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Q4kMatrix")
            .field("n", &self.n)
            .field("k", &self.k)
            .finish()
    }
}

/// Activation rows quantized to q8_k: per super-block `d`, 256 quants and 16 sums of 16.
struct Q8kRows {
    /// Super-blocks per row.
    blocks: usize,
    scales: Vec<f32>,
    quants: Vec<i8>,
    sums: Vec<i16>,
}

impl Q8kRows {
    /// Quantizes the rows of `x` (`k` values each) as candle does for its q4_k products.
    fn new(x: &[f32], k: usize) -> Self {
        let blocks = k / QK_K;
        let total = x.len() / QK_K;
        let mut q8 = vec![BlockQ8K::zeros(); total];
        BlockQ8K::from_float(x, &mut q8);
        // SAFETY: `BlockQ8K` is `#[repr(C)]` and `Q8K_BYTES` long (candle asserts its size); the
        // bytes are read, never written.
        let bytes =
            unsafe { std::slice::from_raw_parts(q8.as_ptr().cast::<u8>(), total * Q8K_BYTES) };
        let mut rows = Self {
            blocks,
            scales: Vec::with_capacity(total),
            quants: Vec::with_capacity(total * QK_K),
            sums: Vec::with_capacity(total * QK_K / 16),
        };
        for block in bytes.chunks_exact(Q8K_BYTES) {
            rows.scales
                .push(f32::from_le_bytes([block[0], block[1], block[2], block[3]]));
            rows.quants
                .extend(block[4..4 + QK_K].iter().map(|&b| b as i8));
            rows.sums.extend(
                block[4 + QK_K..]
                    .chunks_exact(2)
                    .map(|s| i16::from_le_bytes([s[0], s[1]])),
            );
        }
        rows
    }
}

impl Q4kMatrix {
    /// Takes the 2-D q4_k tensor `q`; `None` for other types.
    pub fn new(q: Arc<QTensor>) -> Result<Option<Self>> {
        if q.dtype() != GgmlDType::Q4K {
            return Ok(None);
        }
        let (n, k) = q.shape().dims2()?;
        if k % QK_K != 0 {
            return Err(Error::Invalid(format!(
                "the q4_k kernel needs rows of whole super-blocks, got {:?}",
                q.shape()
            )));
        }
        Ok(Some(Self { n, k, weights: q }))
    }

    /// `y (m × n) = x (m × k) · Wᵀ`, both row-major; `x.len()` must be a multiple of `k`.
    /// Units of output columns run on rayon's threads.
    pub fn matmul(&self, x: &[f32], y: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        let m = x.len() / k;
        assert_eq!((x.len(), y.len()), (m * k, m * n), "matmul operand sizes");
        let act = Q8kRows::new(x, k);
        let data = self.weights.data().expect("a CPU tensor's bytes");
        let row_bytes = k / QK_K * BLOCK_BYTES;
        for_each_unit(n, y, |column, row0, sums| {
            let row = &data[column * row_bytes..(column + 1) * row_bytes];
            match sums.len() {
                1 => row_dot::<1>(row, &act, row0, sums),
                2 => row_dot::<2>(row, &act, row0, sums),
                3 => row_dot::<3>(row, &act, row0, sums),
                _ => row_dot::<MAX_ROWS>(row, &act, row0, sums),
            }
        });
    }
}

/// The eight 6-bit scales and mins packed in a super-block's 12 bytes (llama.cpp's
/// `get_scale_min_k4`).
fn scales_and_mins(packed: &[u8]) -> ([i32; 8], [i32; 8]) {
    let (mut scales, mut mins) = ([0i32; 8], [0i32; 8]);
    for j in 0..8 {
        let (scale, min) = if j < 4 {
            (packed[j] & 63, packed[j + 4] & 63)
        } else {
            (
                (packed[j + 4] & 0x0F) | ((packed[j - 4] >> 6) << 4),
                (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4),
            )
        };
        scales[j] = scale as i32;
        mins[j] = min as i32;
    }
    (scales, mins)
}

/// The 256 nibbles (0..16) of a super-block, in value order: the plain path widens them to
/// i16x8 (4 vectors a sub-block), the relaxed one keeps bytes (2 vectors a sub-block).
#[cfg(not(target_feature = "relaxed-simd"))]
type Unpacked = [v128; QK_K / 8];
#[cfg(target_feature = "relaxed-simd")]
type Unpacked = [v128; QK_K / 16];

/// Unpacks the 128 nibble bytes at `q` (byte `32·j + i`: value `64·j + i` low, `64·j + 32 + i`
/// high).
///
/// # Safety
/// `q` must point to 128 readable bytes.
#[inline(always)]
unsafe fn unpack(q: *const u8) -> Unpacked {
    let low4 = u8x16_splat(0x0F);
    let mut bytes = [u8x16_splat(0); QK_K / 16];
    for j in 0..QK_K / 64 {
        let (first, second) = (
            v128_load(q.add(32 * j).cast()),
            v128_load(q.add(32 * j + 16).cast()),
        );
        bytes[4 * j] = v128_and(first, low4);
        bytes[4 * j + 1] = v128_and(second, low4);
        bytes[4 * j + 2] = u8x16_shr(first, 4);
        bytes[4 * j + 3] = u8x16_shr(second, 4);
    }
    #[cfg(target_feature = "relaxed-simd")]
    return bytes;
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        let mut w = [i16x8_splat(0); QK_K / 8];
        for (v, half) in bytes.iter().enumerate() {
            w[2 * v] = u16x8_extend_low_u8x16(*half);
            w[2 * v + 1] = u16x8_extend_high_u8x16(*half);
        }
        w
    }
}

/// The i32x4 lane sums of sub-block `s`'s 32 products with the activation quants at `a`: with
/// `i32x4.dot_i16x8_s` on the widened values, or, in the `+relaxed-simd` build, with
/// `i32x4.relaxed_dot_i8x16_i7x16_add` on the bytes (deterministic: the nibbles are 7-bit).
/// The same integers either way.
///
/// # Safety
/// `a` must point to 32 readable bytes.
#[inline(always)]
unsafe fn sub_block_sum(w: &Unpacked, s: usize, a: *const i8) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    {
        let low = i32x4_relaxed_dot_i8x16_i7x16_add(v128_load(a.cast()), w[2 * s], i32x4_splat(0));
        i32x4_relaxed_dot_i8x16_i7x16_add(v128_load(a.add(16).cast()), w[2 * s + 1], low)
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        let mut sum = i32x4_dot_i16x8(w[4 * s], i16x8_load_extend_i8x8(a));
        for v in 1..4 {
            sum = i32x4_add(
                sum,
                i32x4_dot_i16x8(w[4 * s + v], i16x8_load_extend_i8x8(a.add(8 * v))),
            );
        }
        sum
    }
}

/// The stored weight row `row` times activation rows `row0..row0 + R`, into `out`.
fn row_dot<const R: usize>(row: &[u8], act: &Q8kRows, row0: usize, out: &mut [f32]) {
    let table = f16_table();
    let mut acc = [0f32; R];
    for (b, block) in row.chunks_exact(BLOCK_BYTES).enumerate() {
        let d = table[u16::from_le_bytes([block[0], block[1]]) as usize];
        let dmin = table[u16::from_le_bytes([block[2], block[3]]) as usize];
        let (scales, mins) = scales_and_mins(&block[4..16]);
        // SAFETY: the 128 nibble bytes follow the 16 header bytes.
        let w = unsafe { unpack(block.as_ptr().add(16)) };
        for (r, acc) in acc.iter_mut().enumerate() {
            let i = (row0 + r) * act.blocks + b;
            let sums = &act.sums[i * QK_K / 16..][..QK_K / 16];
            let minimum: i32 = (0..8)
                .map(|s| mins[s] * (sums[2 * s] as i32 + sums[2 * s + 1] as i32))
                .sum();
            let quants = act.quants[i * QK_K..][..QK_K].as_ptr();
            let mut total = i32x4_splat(0);
            for (s, &scale) in scales.iter().enumerate() {
                // SAFETY: each sub-block's 32 activation quants lie within the super-block's 256.
                let sub = unsafe { sub_block_sum(&w, s, quants.add(32 * s)) };
                total = i32x4_add(total, i32x4_mul(sub, i32x4_splat(scale)));
            }
            let total = i32x4_extract_lane::<0>(total)
                + i32x4_extract_lane::<1>(total)
                + i32x4_extract_lane::<2>(total)
                + i32x4_extract_lane::<3>(total);
            let scale = act.scales[i];
            *acc += total as f32 * (d * scale) - minimum as f32 * (dmin * scale);
        }
    }
    out.copy_from_slice(&acc);
}

/// As a candle op: `(…, k)` f32 activations → `(…, n)`.
impl CustomOp1 for Q4kMatrix {
    fn name(&self) -> &'static str {
        "q4k-simd128-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        super::matmul_op("q4_k matmul", (self.n, self.k), storage, layout, |x, y| {
            self.matmul(x, y)
        })
    }
}
