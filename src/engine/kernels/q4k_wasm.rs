//! q4_k weights times q8_k activations on wasm32: the output projection of a q4_0 file (250880 ×
//! 1024 for bloom-560m, stored as q4_k as llama.cpp does), the largest single product of a
//! decode step.
//!
//! ```text
//! y (m × n) = x (m × k) · Wᵀ      W: n × k q4_k weights, x: f32 activations (quantized to q8_k)
//! ```
//!
//! Why our own: candle 0.11's wasm `vec_dot_q4k_q8k` multiplies one activation row by one weight
//! row at a time (three candidates unpack and read every weight three times) and widens every
//! product to i32 before multiplying it by its sub-block's scale. The builds with relaxed SIMD
//! repack the weights into tiles of 16 rows at load time (`q4k_wasm_relaxed`); the simd128 build
//! reads the stored rows (`rows` below): four weight rows (output columns) pass together, each
//! an f32x4 lane: their scales are unpacked with 32-bit word operations, an activation
//! sub-block is loaded once for the four, a sub-block's products are summed with
//! `i32x4.dot_i16x8_s` and scaled by its scale, and the four columns' lane sums are transposed
//! into one vector, so the f32 work of a super-block is one operation for four columns. Both
//! sum candle's integers (activations quantized by candle's own `BlockQ8K::from_float`) and
//! finish each super-block with the same f32 operations; the f32 accumulation runs in another
//! order than candle's (one sum per column instead of four lanes), so results agree to f32
//! rounding, and a column's result does not depend on the other columns or rows passed with it.
//!
//! Layout of a stored q4_k super-block of 256 values (144 bytes): f16 `d`, f16 `dmin`, 12 bytes
//! of 6-bit scales and mins for its eight 32-value sub-blocks, then 128 bytes of nibbles: byte
//! `32·j + i` holds value `64·j + i` (low nibble) and `64·j + 32 + i` (high). Value `v` of
//! sub-block `s` is `d · scale_s · q − dmin · min_s`.

use std::fmt;
use std::sync::Arc;

use super::q8_act::{Q8kRows, QK_K};
#[cfg(not(target_feature = "relaxed-simd"))]
use super::q_wasm::for_each_column_group;
#[cfg(target_feature = "relaxed-simd")]
use super::q_wasm::for_each_column_set;
use super::Epilogue;
#[cfg(target_feature = "relaxed-simd")]
use super::{q4k_wasm_relaxed::Q4kTiles, q_wasm_relaxed::TILE_ROWS};
use crate::error::{Error, Result};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape};

/// A q4_k weight matrix `W` (n × k) for the wasm32 kernels.
pub struct Q4kMatrix {
    n: usize,
    k: usize,
    /// The stored matrix, `[row][super-block]`, read in place.
    #[cfg(not(target_feature = "relaxed-simd"))]
    weights: Arc<QTensor>,
    /// The matrix repacked into tiles of 16 rows (the tensor dropped).
    #[cfg(target_feature = "relaxed-simd")]
    tiles: Q4kTiles,
}

impl fmt::Debug for Q4kMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Q4kMatrix")
            .field("n", &self.n)
            .field("k", &self.k)
            .finish()
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
        Ok(Some(Self {
            n,
            k,
            #[cfg(not(target_feature = "relaxed-simd"))]
            weights: q,
            #[cfg(target_feature = "relaxed-simd")]
            tiles: Q4kTiles::new(&q.data()?, n, k / QK_K),
        }))
    }

    /// `y (m × n) = x (m × k) · Wᵀ`, both row-major; `x.len()` must be a multiple of `k`.
    /// Units of output columns run on rayon's threads.
    pub fn matmul(&self, x: &[f32], y: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        let m = x.len() / k;
        assert_eq!((x.len(), y.len()), (m * k, m * n), "matmul operand sizes");
        let act = Q8kRows::new(x, k);
        #[cfg(target_feature = "relaxed-simd")]
        for_each_column_set(n, y, &Epilogue::default(), |firsts, row0, sums| {
            self.tiles
                .dot(firsts.map(|first| first / TILE_ROWS), &act, row0, sums)
        });
        #[cfg(not(target_feature = "relaxed-simd"))]
        {
            let data = self.weights.data().expect("a CPU tensor's bytes");
            let row_bytes = k / QK_K * rows::BLOCK_BYTES;
            for_each_column_group(n, y, &Epilogue::default(), |first, row0, sums| {
                rows::columns_dot(&data, row_bytes, (first, n), &act, row0, sums)
            });
        }
    }
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

/// The simd128 build's kernel over the stored rows, four columns at a time.
#[cfg(not(target_feature = "relaxed-simd"))]
mod rows {
    use std::arch::wasm32::*;

    use super::super::q_wasm::{
        f16_lanes, f16_table, for_row_count, group_columns, high_nibbles, rows_after, store_lanes,
        touch, transpose_sum, COLUMNS, MAX_ROWS,
    };
    use super::{Q8kRows, QK_K};

    /// Bytes of a stored q4_k super-block.
    pub(super) const BLOCK_BYTES: usize = 144;

    /// Columns `first..first + 4` (`(first, n)`: past `n`, the last one again, its results
    /// dropped) of the stored rows in `data` (`row_bytes` each) times activation rows
    /// `row0..row0 + sums.len()` into `sums[row][column − first]`.
    pub(super) fn columns_dot(
        data: &[u8],
        row_bytes: usize,
        (first, n): (usize, usize),
        act: &Q8kRows,
        row0: usize,
        sums: &mut [[f32; COLUMNS]],
    ) {
        let columns = group_columns(first, n);
        let rows = columns.map(|c| &data[c * row_bytes..(c + 1) * row_bytes]);
        let ahead = rows_after(data, row_bytes, columns[COLUMNS - 1], COLUMNS);
        for_row_count!(sums.len(), rows_dot(&rows, ahead, act, row0, sums));
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

    /// A sub-block's 32 activation quants as the dot products take them: four i16x8 (widened once
    /// for the four columns).
    type SubBlockQuants = [v128; 4];

    /// Loads the 32 activation quants at `a`.
    ///
    /// # Safety
    /// `a` must point to 32 readable bytes.
    #[inline(always)]
    unsafe fn load_quants(a: *const i8) -> SubBlockQuants {
        let bytes = [v128_load(a.cast()), v128_load(a.add(16).cast())];
        [
            i16x8_extend_low_i8x16(bytes[0]),
            i16x8_extend_high_i8x16(bytes[0]),
            i16x8_extend_low_i8x16(bytes[1]),
            i16x8_extend_high_i8x16(bytes[1]),
        ]
    }

    /// Sub-block sum of 32 products times the sub-block's scale, as i32x4 lane sums: the
    /// activation quants `a` (widened to i16) by the weight nibbles `w` (two u8x16, widened here)
    /// by `scale` (the scale in every i16 lane).
    #[inline(always)]
    fn scaled_sub_block(a: &SubBlockQuants, w: [v128; 2], scale: v128) -> v128 {
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
            let high = packed.map(high_nibbles);
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
    fn rows_dot<const R: usize>(
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
                // SAFETY: super-block `i` (in range, asserted) has eight sub-block sums.
                let pairs = unsafe { v128_load(act.sub_sums.as_ptr().add(i * 8).cast()) };
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
}
