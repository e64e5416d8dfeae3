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
//! product to i32 before multiplying it by its sub-block's scale. Here four weight rows (output
//! columns) pass together, each an f32x4 lane: their scales are unpacked with 32-bit word
//! operations, an activation sub-block is loaded once for the four, a sub-block's products are
//! summed in i16 pairs (`i16x8.relaxed_dot_i8x16_i7x16` in the `+relaxed-simd` build; the plain
//! build widens to `i32x4.dot_i16x8_s`) and scaled by `i32x4.dot_i16x8_s` with the scale, and
//! the four columns' lane sums are transposed into one vector, so the f32 work of a super-block
//! is one operation for four columns. The integer sums are candle's (activations quantized by
//! candle's own `BlockQ8K::from_float`); the f32 accumulation runs in another order (one sum per
//! column instead of four lanes), so results agree to f32 rounding, and a column's result does
//! not depend on the other columns or rows passed with it.
//!
//! Layout of a stored q4_k super-block of 256 values (144 bytes): f16 `d`, f16 `dmin`, 12 bytes
//! of 6-bit scales and mins for its eight 32-value sub-blocks, then 128 bytes of nibbles: byte
//! `32·j + i` holds value `64·j + i` (low nibble) and `64·j + 32 + i` (high). Value `v` of
//! sub-block `s` is `d · scale_s · q − dmin · min_s`.

use std::arch::wasm32::*;
use std::fmt;
use std::sync::Arc;

use super::q_wasm::{
    f16_lanes, f16_table, for_each_column_group, for_row_count, group_columns, rows_after,
    store_lanes, touch, transpose_sum, COLUMNS, MAX_ROWS,
};
use super::Epilogue;
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
    /// Units of output columns run on rayon's threads, four columns at a time.
    pub fn matmul(&self, x: &[f32], y: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        let m = x.len() / k;
        assert_eq!((x.len(), y.len()), (m * k, m * n), "matmul operand sizes");
        let act = Q8kRows::new(x, k);
        let data = self.weights.data().expect("a CPU tensor's bytes");
        let row_bytes = k / QK_K * BLOCK_BYTES;
        for_each_column_group(n, y, &Epilogue::default(), |first, row0, sums| {
            let columns = group_columns(first, n);
            let rows = columns.map(|c| &data[c * row_bytes..(c + 1) * row_bytes]);
            let ahead = rows_after(&data, row_bytes, columns[COLUMNS - 1], COLUMNS);
            for_row_count!(sums.len(), columns_dot(&rows, ahead, &act, row0, sums));
        });
    }
}

/// A super-block's eight 6-bit scales (bytes 0..8) and mins (bytes 8..16) from its 12 packed
/// bytes at `packed` (llama.cpp's `get_scale_min_k4`, on 32-bit words as its x86 kernels do).
///
/// # Safety
/// `packed` must point to 12 readable bytes.
#[inline(always)]
unsafe fn scales_and_mins(packed: *const u8) -> v128 {
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let word = |i: usize| u32::from_le(packed.add(4 * i).cast::<u32>().read_unaligned());
    let (w0, w1, w2) = (word(0), word(1), word(2));
    u32x4(
        w0 & LOW6,
        (w2 & LOW4) | (((w0 >> 6) & LOW2) << 4),
        w1 & LOW6,
        ((w2 >> 4) & LOW4) | (((w1 >> 6) & LOW2) << 4),
    )
}

/// Sub-block `S`'s scale in every i16 lane of `scales` (its eight scales as i16).
#[inline(always)]
fn splat_scale<const S: usize>(scales: v128) -> v128 {
    i16x8_shuffle::<S, S, S, S, S, S, S, S>(scales, scales)
}

/// A sub-block's 32 activation quants as the dot products take them: two i8x16 with relaxed
/// SIMD, four i16x8 (widened once for the four columns) on the plain path.
#[cfg(target_feature = "relaxed-simd")]
type SubBlockQuants = [v128; 2];
#[cfg(not(target_feature = "relaxed-simd"))]
type SubBlockQuants = [v128; 4];

/// Loads the 32 activation quants at `a`.
///
/// # Safety
/// `a` must point to 32 readable bytes.
#[inline(always)]
unsafe fn load_quants(a: *const i8) -> SubBlockQuants {
    let bytes = [v128_load(a.cast()), v128_load(a.add(16).cast())];
    #[cfg(target_feature = "relaxed-simd")]
    return bytes;
    #[cfg(not(target_feature = "relaxed-simd"))]
    [
        i16x8_extend_low_i8x16(bytes[0]),
        i16x8_extend_high_i8x16(bytes[0]),
        i16x8_extend_low_i8x16(bytes[1]),
        i16x8_extend_high_i8x16(bytes[1]),
    ]
}

/// Sub-block sum of 32 products times the sub-block's scale, as i32x4 lane sums: the
/// activation quants `a` by the weight nibbles `w` (two u8x16) by `scale` (the scale in every
/// i16 lane). With relaxed SIMD, `i16x8.relaxed_dot_i8x16_i7x16` sums product pairs in i16
/// (|a| ≤ 128, w ≤ 15: at most 7,680 after the two are added) and `i32x4.dot_i16x8_s` scales
/// and widens them; the plain path widens first. The same integers.
#[inline(always)]
fn scaled_sub_block(a: &SubBlockQuants, w: [v128; 2], scale: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    {
        let pairs = i16x8_add(
            i16x8_relaxed_dot_i8x16_i7x16(a[0], w[0]),
            i16x8_relaxed_dot_i8x16_i7x16(a[1], w[1]),
        );
        i32x4_dot_i16x8(pairs, scale)
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        let widened = [
            u16x8_extend_low_u8x16(w[0]),
            u16x8_extend_high_u8x16(w[0]),
            u16x8_extend_low_u8x16(w[1]),
            u16x8_extend_high_u8x16(w[1]),
        ];
        let mut sum = i32x4_dot_i16x8(a[0], widened[0]);
        for v in 1..4 {
            sum = i32x4_add(sum, i32x4_dot_i16x8(a[v], widened[v]));
        }
        i32x4_mul(sum, i32x4_extend_low_i16x8(scale))
    }
}

/// Adds sub-blocks `2·J` (low nibbles) and `2·J + 1` (high) of the four columns' super-blocks
/// at `blocks`, times the activation quants at `a`, to `totals`.
///
/// # Safety
/// Each of `blocks` must point to a stored super-block, `a` to its row's 256 activation quants.
#[inline(always)]
unsafe fn add_sub_block_pair<const J: usize, const LOW: usize, const HIGH: usize>(
    blocks: &[*const u8; COLUMNS],
    scales: &[v128; COLUMNS],
    a: *const i8,
    totals: &mut [v128; COLUMNS],
) {
    let a = a.add(64 * J);
    let (low_a, high_a) = (load_quants(a), load_quants(a.add(32)));
    let low4 = u8x16_splat(0x0F);
    for c in 0..COLUMNS {
        let q = blocks[c].add(16 + 32 * J);
        let packed = [v128_load(q.cast()), v128_load(q.add(16).cast())];
        let low = packed.map(|p| v128_and(p, low4));
        let high = packed.map(|p| u8x16_shr(p, 4));
        let sum = i32x4_add(
            scaled_sub_block(&low_a, low, splat_scale::<LOW>(scales[c])),
            scaled_sub_block(&high_a, high, splat_scale::<HIGH>(scales[c])),
        );
        totals[c] = i32x4_add(totals[c], sum);
    }
}

/// Four stored weight rows times activation rows `row0..row0 + R`: `out[r]` holds the four
/// columns of row `row0 + r`. Per column, super-block by super-block, the f32 arithmetic of a
/// one-column kernel: `acc += Σ scale·q·a · (d · d_a) − Σ min·a · (dmin · d_a)`, each integer
/// sum exact, so a column does not depend on its neighbours or on the other rows.
fn columns_dot<const R: usize>(
    rows: &[&[u8]; COLUMNS],
    ahead: &[u8],
    act: &Q8kRows,
    row0: usize,
    out: &mut [[f32; COLUMNS]],
) {
    assert!(rows.iter().all(|row| row.len() == act.blocks * BLOCK_BYTES));
    assert!((row0 + R) * act.blocks <= act.scales.len() && out.len() >= R);
    let table = f16_table();
    let mut acc = [f32x4_splat(0.0); R];
    let mut touched = 0;
    for b in 0..act.blocks {
        // The next four rows' super-blocks `b` (as many bytes as these), on their way.
        for line in (0..COLUMNS * BLOCK_BYTES).step_by(128) {
            touched ^= touch(ahead, b * COLUMNS * BLOCK_BYTES + line);
        }
        let blocks = rows.map(|row| &row[b * BLOCK_BYTES..(b + 1) * BLOCK_BYTES]);
        let (d, dmin) = (f16_lanes(table, &blocks, 0), f16_lanes(table, &blocks, 2));
        // SAFETY: a stored super-block's scales and mins are its bytes 4..16.
        let packed = blocks.map(|block| unsafe { scales_and_mins(block.as_ptr().add(4)) });
        let scales = packed.map(|p| u16x8_extend_low_u8x16(p));
        let mins = packed.map(|p| u16x8_extend_high_u8x16(p));
        let pointers = blocks.map(<[u8]>::as_ptr);
        for (r, acc) in acc.iter_mut().enumerate() {
            let i = (row0 + r) * act.blocks + b;
            // The sums of 16 quants, added in pairs: each sub-block's Σa (at most 4,096).
            // SAFETY: super-block `i` (in range, asserted) has 16 sums.
            let pairs = unsafe {
                let sums = act.sums.as_ptr().add(i * QK_K / 16);
                i16x8_narrow_i32x4(
                    i32x4_extadd_pairwise_i16x8(v128_load(sums.cast())),
                    i32x4_extadd_pairwise_i16x8(v128_load(sums.add(8).cast())),
                )
            };
            let minimum = transpose_sum(mins.map(|m| i32x4_dot_i16x8(m, pairs)));
            let mut totals = [i32x4_splat(0); COLUMNS];
            // SAFETY: super-block `i` has 256 quants; `pointers` are whole stored super-blocks.
            unsafe {
                let a = act.quants.as_ptr().add(i * QK_K);
                add_sub_block_pair::<0, 0, 1>(&pointers, &scales, a, &mut totals);
                add_sub_block_pair::<1, 2, 3>(&pointers, &scales, a, &mut totals);
                add_sub_block_pair::<2, 4, 5>(&pointers, &scales, a, &mut totals);
                add_sub_block_pair::<3, 6, 7>(&pointers, &scales, a, &mut totals);
            }
            let total = transpose_sum(totals);
            let scale = f32x4_splat(act.scales[i]);
            let products = f32x4_mul(f32x4_convert_i32x4(total), f32x4_mul(d, scale));
            let offsets = f32x4_mul(f32x4_convert_i32x4(minimum), f32x4_mul(dmin, scale));
            *acc = f32x4_add(*acc, f32x4_sub(products, offsets));
        }
    }
    std::hint::black_box(touched);
    store_lanes(&acc, out);
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
