//! q4_0 and q8_0 weights times q8_0 activations with relaxed SIMD: the kernels of the threaded
//! web worker's build (`+relaxed-simd`). A decode step of one sequence is bound by how far
//! ahead of its loads the CPU can run: the fewer instructions per weight byte, the more cache
//! misses are in flight. So q4_0 weights are repacked once, at load time, into [`Q4_0Tiles`] of
//! 16 rows (the layout of the x86 kernels, `q4_0_x86`), and q8_0 rows are read in place four
//! output columns at a time.
//!
//! ```text
//! y (m × n) = gelu?(x (m × k) · Wᵀ + b)      computed as y[r][c..c+16] (q4_0) or y[r][c..c+4]
//! ```
//!
//! q4_0 tiles: lane `i` of an i32x4 is weight row `i` of four, so
//! `i32x4.relaxed_dot_i8x16_i7x16_add_s` multiplies four values of four rows by four
//! activation quants broadcast to every lane and adds them to the row's integer sum: no
//! horizontal sums, no transposes, and one broadcast activation word serves four rows. In the
//! page a single sequence's q4_0 products streamed 1.6–2.1× as many bytes per second this way as
//! with four stored rows read side by side (a probe over 150 MB of weights, one thread). A
//! product reads [`STREAMS`] tile columns far apart at once, block by block
//! ([`Q4_0Tiles::dot`]): the CPU's prefetchers run ahead of each stream.
//!
//! q8_0 rows: each block's products are summed in i16 lanes by
//! `i16x8.relaxed_dot_i8x16_i7x16` (x86's `pmaddubsw`, without the widening of the i32 form),
//! widened pairwise, and the four columns' sums are transposed into one i32x4, so converting,
//! scaling and accumulating is one operation for four blocks.
//!
//! Every column's arithmetic is its own lane: `acc += f32(Σ block) · (d_w · d_a)`, block by
//! block, with the block's integer sum exact. So a column's result does not depend on the
//! columns beside it or on how many activation rows pass together (a candidate decoded alone
//! gets the same logits as with two others), and it differs from candle's lane order only by
//! f32 rounding. The relaxed dot products are deterministic here: their second operand holds
//! unsigned nibbles (7-bit), and a pair of products (|a| ≤ 127, w ≤ 15) never nears i16's range.

use std::arch::wasm32::*;

use super::f16::{widen4, widen4_finite_down, TWO_POW_112};
use super::q8_act::{QuantizedRows, BLOCK};
use super::q_wasm::{
    f16_lanes, for_row_count, high_nibbles, store_lanes, touch, transpose_sum, COLUMNS, MAX_ROWS,
};

/// Bytes of a stored q8_0 block: the f16 scale, then 32 signed quants.
const Q8_0_BYTES: usize = 2 + BLOCK;

/// Four stored q8_0 weight rows times activation rows `row0..row0 + R`: `out[r]` holds the four
/// columns of row `row0 + r`. Each weight byte is split as `w + 128 = 16 · hi + lo`, both
/// nibbles 7-bit, so `Σ a·w = 16 · Σ a·hi + Σ a·lo − 128 · Σa`.
pub(super) fn columns_q8_0<const R: usize>(
    rows: &[&[u8]; COLUMNS],
    ahead: &[u8],
    table: &[f32],
    act: &QuantizedRows,
    row0: usize,
    out: &mut [[f32; COLUMNS]],
) {
    assert!(rows.iter().all(|row| row.len() == act.blocks * Q8_0_BYTES));
    assert!((row0 + R) * act.blocks <= act.scales.len() && out.len() >= R);
    let mut acc = [f32x4_splat(0.0); R];
    let mut touched = 0;
    for b in 0..act.blocks {
        touched ^= touch(ahead, b * COLUMNS * Q8_0_BYTES);
        let weight_scales = f16_lanes(table, rows, b * Q8_0_BYTES);
        // SAFETY: each row holds `act.blocks` blocks of `Q8_0_BYTES` (asserted), the quants
        // after the 2-byte scale.
        let w = rows.map(|row| unsafe {
            let q = row.as_ptr().add(b * Q8_0_BYTES + 2);
            let flip = u8x16_splat(0x80);
            let first = v128_xor(v128_load(q.cast()), flip);
            let second = v128_xor(v128_load(q.add(16).cast()), flip);
            let low4 = u8x16_splat(0x0F);
            [
                v128_and(first, low4),
                v128_and(second, low4),
                high_nibbles(first),
                high_nibbles(second),
            ]
        });
        for (r, acc) in acc.iter_mut().enumerate() {
            let j = (row0 + r) * act.blocks + b;
            // SAFETY: activation block `j` (in range, asserted) holds 32 quants.
            let (a0, a1) = unsafe {
                let a = act.quants.as_ptr().add(j * BLOCK);
                (v128_load(a.cast()), v128_load(a.add(16).cast()))
            };
            let sums = w.map(|w| {
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
            });
            let total = i32x4_sub(transpose_sum(sums), i32x4_splat(128 * act.sums[j]));
            let scale = f32x4_mul(weight_scales, f32x4_splat(act.scales[j]));
            *acc = f32x4_add(*acc, f32x4_mul(f32x4_convert_i32x4(total), scale));
        }
    }
    std::hint::black_box(touched);
    store_lanes(&acc, out);
}

/// Weight rows of a tile: four i32x4 lanes' worth.
pub(super) const TILE_ROWS: usize = 16;
/// Bytes of a stored q4_0 block: the f16 scale, then 16 bytes of nibble pairs.
const Q4_0_BYTES: usize = 2 + BLOCK / 2;
/// Bytes of one tile's block: 16 f16 scales, then 16 rows' quants.
const TILE_BYTES: usize = TILE_ROWS * Q4_0_BYTES;

/// A q4_0 matrix (n × k) repacked into tiles of [`TILE_ROWS`] rows × one 32-value block, as
/// large as the stored matrix (rows past `n` padded with zero scales and quants).
///
/// A tile's block: the 16 rows' f16 scales, then `[group g (4)][row r (16)][byte j (4)]`,
/// byte `4g + j` of row `r`'s stored quants: its low nibble is value `4g + j` and its high
/// nibble value `16 + 4g + j` (stored `q ∈ 0..16`, weight `q − 8`, the `−8 · Σa` the integer
/// sum's first value). So one 16-byte load holds four values of each of four rows.
pub struct Q4_0Tiles {
    /// Blocks per row (k / 32).
    blocks: usize,
    /// No scale is infinite or NaN, so the kernel may widen them with [`widen4_finite_down`].
    finite_scales: bool,
    /// `[tile column (⌈n / 16⌉)][block][TILE_BYTES]`.
    bytes: Vec<u8>,
}

impl Q4_0Tiles {
    /// Repacks the stored q4_0 rows `data` (n rows of `blocks` blocks).
    pub fn new(data: &[u8], n: usize, blocks: usize) -> Self {
        let bytes = repack_in_tiles(
            data,
            (n, blocks, Q4_0_BYTES),
            TILE_BYTES,
            |tile, r, block| {
                tile[2 * r..2 * r + 2].copy_from_slice(&block[..2]);
                for (g, word) in block[2..].chunks_exact(4).enumerate() {
                    let at = 2 * TILE_ROWS + (g * TILE_ROWS + r) * 4;
                    tile[at..at + 4].copy_from_slice(word);
                }
            },
        );
        let finite_scales = data
            .chunks_exact(Q4_0_BYTES)
            .all(|block| half::f16::from_le_bytes([block[0], block[1]]).is_finite());
        Self {
            blocks,
            finite_scales,
            bytes,
        }
    }

    /// Tile columns `columns` (weight rows `16 · columns[s]..`) times activation rows
    /// `row0..row0 + out.len()` (at most [`MAX_ROWS`]), the columns' blocks read in turn:
    /// `out[r][s][i]` is row `row0 + r`, output column `16 · columns[s] + i`. Each column's
    /// arithmetic is its own, so its results do not depend on the columns or rows beside it.
    /// Why several columns: a product is bound by the cache misses in flight, and the CPU's
    /// prefetchers run ahead of each stream of addresses on their own, so [`STREAMS`]
    /// far-apart streams keep more memory on its way than one (in the page, one thread
    /// streaming 236 MB from memory for one activation row: 4.8–6.5 GB/s for one stream,
    /// 7.0–10.3 GB/s for four).
    pub fn dot(
        &self,
        columns: [usize; STREAMS],
        act: &QuantizedRows,
        row0: usize,
        out: &mut [[[f32; TILE_ROWS]; STREAMS]],
    ) {
        if self.finite_scales {
            for_row_count!(out.len(), tile_dot::<true>(self, columns, act, row0, out));
        } else {
            for_row_count!(out.len(), tile_dot::<false>(self, columns, act, row0, out));
        }
    }
}

/// Tile columns a product reads at once ([`Q4_0Tiles::dot`]).
pub(super) const STREAMS: usize = 4;

/// Four f32x4 accumulators (output columns `4 · group + lane`) as 16 values.
pub(super) fn lanes_to_values(acc: [v128; TILE_ROWS / 4]) -> [f32; TILE_ROWS] {
    // SAFETY: four f32x4s are 16 f32s.
    unsafe { std::mem::transmute::<[v128; TILE_ROWS / 4], [f32; TILE_ROWS]>(acc) }
}

/// Stored rows `data` (n rows of `blocks` blocks of `block_bytes`) repacked into tiles of
/// [`TILE_ROWS`] rows × one block, `tile_bytes` each, `[tile column][block]` (rows past `n`
/// zero): `place(tile, r, block)` writes the stored block `block` of the tile's row `r` into
/// its tile.
pub(super) fn repack_in_tiles(
    data: &[u8],
    (n, blocks, block_bytes): (usize, usize, usize),
    tile_bytes: usize,
    place: impl Fn(&mut [u8], usize, &[u8]),
) -> Vec<u8> {
    assert_eq!(
        data.len(),
        n * blocks * block_bytes,
        "quantized matrix bytes"
    );
    let mut bytes = vec![0u8; n.div_ceil(TILE_ROWS) * blocks * tile_bytes];
    for (row, stored) in data.chunks_exact(blocks * block_bytes).enumerate() {
        let (column, r) = (row / TILE_ROWS, row % TILE_ROWS);
        for (b, block) in stored.chunks_exact(block_bytes).enumerate() {
            place(
                &mut bytes[(column * blocks + b) * tile_bytes..][..tile_bytes],
                r,
                block,
            );
        }
    }
    bytes
}

/// [`Q4_0Tiles::dot`] for `R` activation rows.
/// The sums stay a function of their own, returned by value: folded into this one (both tile
/// kernels at once), writing `out` itself, the page's decode of one sequence measured 2–11%
/// slower in three paired runs (V8 made other machine code of the same loops).
fn tile_dot<const R: usize, const FINITE: bool>(
    tiles: &Q4_0Tiles,
    columns: [usize; STREAMS],
    act: &QuantizedRows,
    row0: usize,
    out: &mut [[[f32; TILE_ROWS]; STREAMS]],
) {
    assert!(out.len() >= R);
    let sums = tile_sums::<R, FINITE>(tiles, columns, act, row0);
    for (out, sums) in out.iter_mut().zip(sums) {
        *out = sums.map(lanes_to_values);
    }
}

/// The sums of tile columns `columns` times activation rows `row0..row0 + R`, `[row][column]
/// [lane group]` (output columns `4 · group + lane`), the columns' blocks read in turn. With
/// `FINITE` (no weight scale infinite or NaN) the weight scales are widened as `d_w · 2⁻¹¹²`
/// and the activation scale taken as `d_a · 2¹¹²`: the same exact product `d_w · d_a`, so the
/// same f32, in three operations instead of nine (`d_a` is an f16's value, so `d_a · 2¹¹²` is
/// finite or `d_a` was infinite).
fn tile_sums<const R: usize, const FINITE: bool>(
    tiles: &Q4_0Tiles,
    columns: [usize; STREAMS],
    act: &QuantizedRows,
    row0: usize,
) -> [[[v128; TILE_ROWS / 4]; STREAMS]; R] {
    let blocks = tiles.blocks;
    assert_eq!(act.blocks, blocks, "activation rows of k values");
    assert!((row0 + R) * blocks <= act.scales.len() && R <= MAX_ROWS);
    let column_starts = columns
        .map(|column| tiles.bytes[column * blocks * TILE_BYTES..][..blocks * TILE_BYTES].as_ptr());
    let scale_factor = if FINITE { TWO_POW_112 } else { 1.0 };
    // [row][column][lane group]: output columns 4 · group + lane.
    let mut acc = [[[f32x4_splat(0.0); TILE_ROWS / 4]; STREAMS]; R];
    for b in 0..blocks {
        // Each row's block: its eight words of four quants, each broadcast to every lane (word
        // `g` pairs with the low nibbles of group `g`, word `4 + g` with the high ones), its
        // integer sum's start (the `−8 · Σa`) and its scale.
        let rows: [([v128; 8], v128, v128); R] = std::array::from_fn(|r| {
            let j = (row0 + r) * blocks + b;
            // SAFETY: activation block `j` (in range, asserted) holds 32 quants.
            let words = std::array::from_fn(|w| unsafe {
                v128_load32_splat(act.quants.as_ptr().add(j * BLOCK + 4 * w).cast())
            });
            let start = i32x4_splat(-8 * act.sums[j]);
            (words, start, f32x4_splat(act.scales[j] * scale_factor))
        });
        for (s, start) in column_starts.iter().enumerate() {
            // SAFETY: each column holds `blocks` tiles of TILE_BYTES (sliced above).
            let tile = unsafe { start.add(b * TILE_BYTES) };
            for group in 0..TILE_ROWS / 4 {
                // SAFETY: `tile` holds TILE_BYTES bytes: 32 of scales, then 4 × 16 rows × 4 quants.
                let (scales, weights) = unsafe {
                    let at = tile.add(8 * group);
                    let scales = if FINITE {
                        widen4_finite_down(at.cast())
                    } else {
                        widen4(u32x4_extend_low_u16x8(v128_load64_zero(at.cast())))
                    };
                    let weights: [v128; 4] = std::array::from_fn(|g| {
                        v128_load(
                            tile.add(2 * TILE_ROWS + (g * TILE_ROWS + 4 * group) * 4)
                                .cast(),
                        )
                    });
                    (scales, weights)
                };
                let low = weights.map(|w| v128_and(w, u8x16_splat(0x0F)));
                let high = weights.map(high_nibbles);
                for ((words, start, act_scale), acc) in rows.iter().zip(&mut acc) {
                    let mut total = *start;
                    for g in 0..4 {
                        total = i32x4_relaxed_dot_i8x16_i7x16_add(words[g], low[g], total);
                        total = i32x4_relaxed_dot_i8x16_i7x16_add(words[4 + g], high[g], total);
                    }
                    let scale = f32x4_mul(scales, *act_scale);
                    acc[s][group] =
                        f32x4_add(acc[s][group], f32x4_mul(f32x4_convert_i32x4(total), scale));
                }
            }
        }
    }
    acc
}
