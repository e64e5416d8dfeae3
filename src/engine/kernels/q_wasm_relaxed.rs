//! q4_0 and q8_0 weights times q8_0 activations with relaxed SIMD, four output columns at a
//! time: the kernels of the threaded web worker's build (`+relaxed-simd`). A decode step of
//! one sequence is bound by the instructions per weight and by the cache misses in flight: the
//! kernels cut the first and read ahead into the next rows for the second.
//!
//! ```text
//! y (m × n) = gelu?(x (m × k) · Wᵀ + b)      computed as y[r][c..c+4], one f32x4 per row
//! ```
//!
//! Why not the one-column kernels of `q_wasm`: there every 32-value block ends in an i32x4 of
//! partial sums that is converted, scaled and added on its own (three vector operations and a
//! scalar scale per block), and a column's four lanes are only added at the end. Here four
//! weight rows pass together: each block's products are summed in i16 lanes by
//! `i16x8.relaxed_dot_i8x16_i7x16` (x86's `pmaddubsw`, without the widening of the i32 form),
//! widened pairwise, and the four columns' sums are transposed into one i32x4, so converting,
//! scaling and accumulating is one operation for four blocks, and an activation block is
//! loaded once for the four columns.
//!
//! Every column's arithmetic is its own lane: `acc += f32(Σ block) · (d_w · d_a)`, block by
//! block, with the block's integer sum exact. So a column's result does not depend on the
//! columns beside it or on how many activation rows pass together (a candidate decoded alone
//! gets the same logits as with two others), and it differs from candle's lane order only by
//! f32 rounding. The relaxed dot product is deterministic here: its second operand holds
//! unsigned nibbles (7-bit), and a pair of products (|a| ≤ 127, w ≤ 15) never nears i16's range.

use std::arch::wasm32::*;

use super::q8_act::{QuantizedRows, BLOCK};
use super::q_wasm::{f16_lanes, store_lanes, touch, transpose_sum, COLUMNS};

/// Shape of the four-column kernels: for each block `b`, `$unpack(quants_ptr)` unpacks one
/// stored row's block once, then `$sum(w, a0, a1)` gives a column's i32x4 partial sums with
/// the activation block's two halves; `$offset · Σa` is taken off each total.
macro_rules! columns_kernel {
    ($name:ident, $bytes:expr, $offset:expr, |$q:ident| $unpack:expr, |$w:ident, $a0:ident, $a1:ident| $sum:expr) => {
        /// Four stored weight rows times activation rows `row0..row0 + R`: `out[r]` holds the
        /// four columns of row `row0 + r`.
        pub(super) fn $name<const R: usize>(
            rows: &[&[u8]; COLUMNS],
            ahead: &[u8],
            table: &[f32],
            act: &QuantizedRows,
            row0: usize,
            out: &mut [[f32; COLUMNS]],
        ) {
            assert!(rows.iter().all(|row| row.len() == act.blocks * $bytes));
            assert!((row0 + R) * act.blocks <= act.scales.len() && out.len() >= R);
            let mut acc = [f32x4_splat(0.0); R];
            let mut touched = 0;
            for b in 0..act.blocks {
                touched ^= touch(ahead, b * COLUMNS * $bytes);
                let weight_scales = f16_lanes(table, rows, b * $bytes);
                // SAFETY: each row holds `act.blocks` blocks of `$bytes` (asserted), the
                // quants after the 2-byte scale.
                let w = rows.map(|row| unsafe {
                    let $q = row.as_ptr().add(b * $bytes + 2);
                    $unpack
                });
                for (r, acc) in acc.iter_mut().enumerate() {
                    let j = (row0 + r) * act.blocks + b;
                    // SAFETY: activation block `j` (in range, asserted) holds 32 quants.
                    let ($a0, $a1) = unsafe {
                        let a = act.quants.as_ptr().add(j * BLOCK);
                        (v128_load(a.cast()), v128_load(a.add(16).cast()))
                    };
                    let sums = w.map(|$w| $sum);
                    let total = i32x4_sub(transpose_sum(sums), i32x4_splat($offset * act.sums[j]));
                    let scale = f32x4_mul(weight_scales, f32x4_splat(act.scales[j]));
                    *acc = f32x4_add(*acc, f32x4_mul(f32x4_convert_i32x4(total), scale));
                }
            }
            std::hint::black_box(touched);
            store_lanes(&acc, out);
        }
    };
}

// q4_0: the stored nibbles q (weight q − 8) are the 7-bit operand; 8 · Σa is taken off.
columns_kernel!(
    columns_q4_0,
    2 + BLOCK / 2,
    8,
    |q| {
        let packed = v128_load(q.cast());
        [v128_and(packed, u8x16_splat(0x0F)), u8x16_shr(packed, 4)]
    },
    |w, a0, a1| {
        let pairs = i16x8_add(
            i16x8_relaxed_dot_i8x16_i7x16(a0, w[0]),
            i16x8_relaxed_dot_i8x16_i7x16(a1, w[1]),
        );
        i32x4_extadd_pairwise_i16x8(pairs)
    }
);

// q8_0: `w + 128 = 16 · hi + lo`, both nibbles 7-bit; 128 · Σa is taken off.
columns_kernel!(
    columns_q8_0,
    2 + BLOCK,
    128,
    |q| {
        let flip = u8x16_splat(0x80);
        let first = v128_xor(v128_load(q.cast()), flip);
        let second = v128_xor(v128_load(q.add(16).cast()), flip);
        let low4 = u8x16_splat(0x0F);
        [
            v128_and(first, low4),
            v128_and(second, low4),
            u8x16_shr(first, 4),
            u8x16_shr(second, 4),
        ]
    },
    |w, a0, a1| {
        let low = i16x8_add(
            i16x8_relaxed_dot_i8x16_i7x16(a0, w[0]),
            i16x8_relaxed_dot_i8x16_i7x16(a1, w[1]),
        );
        let high = i16x8_add(
            i16x8_relaxed_dot_i8x16_i7x16(a0, w[2]),
            i16x8_relaxed_dot_i8x16_i7x16(a1, w[3]),
        );
        i32x4_add(
            i32x4_dot_i16x8(high, i16x8_splat(16)),
            i32x4_extadd_pairwise_i16x8(low),
        )
    }
);
