//! q4_k weights times q8_k activations with relaxed SIMD: the output projection (250880 × 1024
//! for bloom-560m, stored as q4_k in a q4_0 file) in the builds with `+relaxed-simd`.
//!
//! ```text
//! y[r][c..c+16] = x[r] · W[c..c+16]ᵀ      W: q4_k, repacked into tiles of 16 rows
//! ```
//!
//! The q4_0 tiles' recipe (`q_wasm_relaxed`): the weights are repacked once, at load time, into
//! tiles of 16 rows × one 256-value super-block, and lane pair `i` of an i16x8 is weight row `i`
//! of four, so `i16x8.relaxed_dot_i8x16_i7x16_s` multiplies four nibbles of four rows by four
//! activation quants broadcast to every lane: no horizontal sums in the inner loop, and one
//! stream of weight bytes per tile where the row kernel (`q4k_wasm`) read four rows side by side.
//! A sub-block's products are summed in i16 lanes (`pmaddubsw` then an add: each add waits one
//! cycle for the last, where the i32 form's `vpdpbusd` waits five), and `i32x4.dot_i16x8_s` with
//! the rows' scales widens each lane pair. A product reads [`STREAMS`] tile columns far apart
//! at once, as the q4_0 tiles do.
//!
//! Each lane keeps the row kernel's arithmetic: per super-block the exact integers
//! `Σₛ scaleₛ · Σ q·a` and `Σₛ minₛ · Σ a`, then `acc += total · (d · d_a) − minimum ·
//! (dmin · d_a)` in f32, super-block by super-block. So a column's result is the row kernel's,
//! bit for bit, whatever the columns and rows passed with it.

use std::arch::wasm32::*;

use super::f16::widen4;
use super::q8_act::{Q8kRows, QK_K};
use super::q_wasm::{for_row_count, transpose_sum, MAX_ROWS};
use super::q_wasm_relaxed::{lanes_to_values, repack_in_tiles, STREAMS, TILE_ROWS};

/// Groups of four rows (one i32x4 lane each) in a tile.
const GROUPS: usize = TILE_ROWS / 4;
/// Bytes of a stored q4_k super-block: f16 `d`, f16 `dmin`, 12 bytes of 6-bit scales and mins,
/// 128 bytes of nibbles.
const BLOCK_BYTES: usize = 144;
/// Sub-blocks of 32 values in a super-block, each with its own scale and min.
const SUB_BLOCKS: usize = 8;
/// Where a tile's scales start: after the 16 rows' `d` and `dmin`.
const SCALES_AT: usize = 4 * TILE_ROWS;
/// Where a tile's mins start.
const MINS_AT: usize = SCALES_AT + SUB_BLOCKS * TILE_ROWS;
/// Where a tile's nibbles start.
const QUANTS_AT: usize = MINS_AT + SUB_BLOCKS * TILE_ROWS;
/// Bytes of nibbles of one group's super-blocks.
const GROUP_QUANTS: usize = 4 * QK_K / 2;
/// Bytes of one tile's super-block.
const TILE_BYTES: usize = QUANTS_AT + GROUPS * GROUP_QUANTS;

/// A q4_k matrix (n × k) repacked into tiles of [`TILE_ROWS`] rows × one super-block, 2.8%
/// larger than the stored matrix (the scales and mins unpacked to bytes; rows past `n` padded
/// with zeros).
///
/// A tile's super-block, for rows `r = 4g + l` (group `g`, lane `l`):
/// - `d` then `dmin` of the 16 rows, f16;
/// - scales `[g][sub-block s (8)][l]` and mins `[g][l][s]`, one byte each;
/// - nibbles `[g][word w (32)][l][4 bytes]`: bytes `4w..4w + 4` of row `r`'s stored nibbles,
///   whose low nibbles are values `64j + 4i..+4` and high nibbles values `64j + 32 + 4i..+4`
///   (`w = 8j + i`): sub-blocks `2j` and `2j + 1`. So one 16-byte load holds four values of
///   each of four rows, twice.
pub struct Q4kTiles {
    /// Super-blocks per row (k / 256).
    blocks: usize,
    /// `[tile column (⌈n / 16⌉)][super-block][TILE_BYTES]`.
    bytes: Vec<u8>,
}

impl Q4kTiles {
    /// Repacks the stored q4_k rows `data` (n rows of `blocks` super-blocks).
    pub fn new(data: &[u8], n: usize, blocks: usize) -> Self {
        let sizes = (n, blocks, BLOCK_BYTES);
        let bytes = repack_in_tiles(data, sizes, TILE_BYTES, |tile, r, block| {
            let (group, lane) = (r / 4, r % 4);
            tile[2 * r..2 * r + 2].copy_from_slice(&block[..2]);
            tile[2 * TILE_ROWS + 2 * r..][..2].copy_from_slice(&block[2..4]);
            for s in 0..SUB_BLOCKS {
                let (scale, min) = scale_and_min(&block[4..16], s);
                tile[SCALES_AT + (group * SUB_BLOCKS + s) * 4 + lane] = scale;
                tile[MINS_AT + (group * 4 + lane) * SUB_BLOCKS + s] = min;
            }
            for (word, quad) in block[16..].chunks_exact(4).enumerate() {
                let at = QUANTS_AT + group * GROUP_QUANTS + (word * 4 + lane) * 4;
                tile[at..at + 4].copy_from_slice(quad);
            }
        });
        Self { blocks, bytes }
    }

    /// Tile columns `columns` times activation rows `row0..row0 + out.len()` (at most
    /// [`MAX_ROWS`]), the columns' nibbles read in turn (why:
    /// [`Q4_0Tiles::dot`](super::q_wasm_relaxed::Q4_0Tiles::dot)): `out[r][s][i]`
    /// is row `row0 + r`, output column `16 · columns[s] + i`.
    pub fn dot(
        &self,
        columns: [usize; STREAMS],
        act: &Q8kRows,
        row0: usize,
        out: &mut [[[f32; TILE_ROWS]; STREAMS]],
    ) {
        for_row_count!(out.len(), tile_dot(self, columns, act, row0, out));
    }
}

/// Sub-block `s`'s 6-bit scale and min from a super-block's 12 packed bytes (llama.cpp's
/// `get_scale_min_k4`).
fn scale_and_min(packed: &[u8], s: usize) -> (u8, u8) {
    if s < 4 {
        (packed[s] & 63, packed[s + 4] & 63)
    } else {
        (
            (packed[s + 4] & 0x0F) | ((packed[s - 4] >> 6) << 4),
            (packed[s + 4] >> 4) | ((packed[s] >> 6) << 4),
        )
    }
}

/// The four bytes `4t..4t + 4` of `bytes` (one sub-block's scales of four rows), each in both
/// i16 lanes of its row's lane pair.
#[inline(always)]
fn scale_pairs(bytes: v128, t: usize) -> v128 {
    let zero = u8x16_splat(0);
    match t {
        0 => u8x16_shuffle::<0, 16, 0, 16, 1, 16, 1, 16, 2, 16, 2, 16, 3, 16, 3, 16>(bytes, zero),
        1 => u8x16_shuffle::<4, 16, 4, 16, 5, 16, 5, 16, 6, 16, 6, 16, 7, 16, 7, 16>(bytes, zero),
        2 => {
            u8x16_shuffle::<8, 16, 8, 16, 9, 16, 9, 16, 10, 16, 10, 16, 11, 16, 11, 16>(bytes, zero)
        }
        _ => u8x16_shuffle::<12, 16, 12, 16, 13, 16, 13, 16, 14, 16, 14, 16, 15, 16, 15, 16>(
            bytes, zero,
        ),
    }
}

/// [`Q4kTiles::dot`] for `R` activation rows.
/// The sums stay a function of their own, returned by value: folded into this one (both tile
/// kernels at once), writing `out` itself, the page's decode of one sequence measured 2–11%
/// slower in three paired runs (V8 made other machine code of the same loops).
fn tile_dot<const R: usize>(
    tiles: &Q4kTiles,
    columns: [usize; STREAMS],
    act: &Q8kRows,
    row0: usize,
    out: &mut [[[f32; TILE_ROWS]; STREAMS]],
) {
    assert!(out.len() >= R);
    let sums = tile_sums::<R>(tiles, columns, act, row0);
    for (out, sums) in out.iter_mut().zip(sums) {
        *out = sums.map(lanes_to_values);
    }
}

/// The sums of tile columns `columns` times activation rows `row0..row0 + R`, `[row][column]
/// [lane group]` (output columns `4 · group + lane`), the columns' nibbles read in turn.
fn tile_sums<const R: usize>(
    tiles: &Q4kTiles,
    columns: [usize; STREAMS],
    act: &Q8kRows,
    row0: usize,
) -> [[[v128; GROUPS]; STREAMS]; R] {
    let blocks = tiles.blocks;
    assert_eq!(act.blocks, blocks, "activation rows of k values");
    assert!((row0 + R) * blocks <= act.scales.len() && R <= MAX_ROWS);
    let column_starts = columns
        .map(|column| tiles.bytes[column * blocks * TILE_BYTES..][..blocks * TILE_BYTES].as_ptr());
    // [lane group][row][column]: output columns 4 · group + lane of each row.
    let mut acc = [[[f32x4_splat(0.0); STREAMS]; R]; GROUPS];
    for b in 0..blocks {
        // SAFETY: each column holds `blocks` tiles of TILE_BYTES (sliced above).
        let tiles = column_starts.map(|start| unsafe { start.add(b * TILE_BYTES) });
        // Activation super-block `b` of each row: its index, and its sub-blocks' sums Σa.
        let index: [usize; R] = std::array::from_fn(|r| (row0 + r) * blocks + b);
        // SAFETY: super-block `index[r]` (in range, asserted) has SUB_BLOCKS sums.
        let sums: [v128; R] = std::array::from_fn(|r| unsafe {
            v128_load(act.sub_sums.as_ptr().add(index[r] * SUB_BLOCKS).cast())
        });
        for (group, acc) in acc.iter_mut().enumerate() {
            // SAFETY: each tile holds TILE_BYTES bytes laid out as `Q4kTiles` says; each
            // activation super-block `index[r]` holds QK_K quants.
            unsafe {
                let quants = tiles.map(|tile| tile.add(QUANTS_AT + group * GROUP_QUANTS));
                let mut totals = [[i32x4_splat(0); STREAMS]; R];
                for j in 0..QK_K / 64 {
                    // Sub-blocks 2j (low nibbles) and 2j + 1 (high): each lane pair of an i16x8
                    // sums one row's products (at most 8 · 2 · 128 · 15 = 30,720).
                    let mut low = [[i16x8_splat(0); STREAMS]; R];
                    let mut high = [[i16x8_splat(0); STREAMS]; R];
                    for i in 0..8 {
                        let words: [(v128, v128); R] = std::array::from_fn(|r| {
                            let a = act.quants.as_ptr().add(index[r] * QK_K + 64 * j + 4 * i);
                            (
                                v128_load32_splat(a.cast()),
                                v128_load32_splat(a.add(32).cast()),
                            )
                        });
                        for (s, quants) in quants.iter().enumerate() {
                            let packed = v128_load(quants.add((8 * j + i) * 16).cast());
                            let low_nibbles = v128_and(packed, u8x16_splat(0x0F));
                            let high_nibbles = v128_and(u16x8_shr(packed, 4), u8x16_splat(0x0F));
                            for (r, (low_word, high_word)) in words.iter().enumerate() {
                                low[r][s] = i16x8_add(
                                    low[r][s],
                                    i16x8_relaxed_dot_i8x16_i7x16(*low_word, low_nibbles),
                                );
                                high[r][s] = i16x8_add(
                                    high[r][s],
                                    i16x8_relaxed_dot_i8x16_i7x16(*high_word, high_nibbles),
                                );
                            }
                        }
                    }
                    // Each lane pair's sum times its row's scale, widened to i32.
                    for (s, tile) in tiles.iter().enumerate() {
                        let scales = v128_load(
                            tile.add(SCALES_AT + group * SUB_BLOCKS * 4 + 16 * (j / 2))
                                .cast(),
                        );
                        let scale_low = scale_pairs(scales, (2 * j) % 4);
                        let scale_high = scale_pairs(scales, (2 * j + 1) % 4);
                        for r in 0..R {
                            totals[r][s] = i32x4_add(
                                totals[r][s],
                                i32x4_add(
                                    i32x4_dot_i16x8(low[r][s], scale_low),
                                    i32x4_dot_i16x8(high[r][s], scale_high),
                                ),
                            );
                        }
                    }
                }
                for (s, tile) in tiles.iter().enumerate() {
                    let d = widen4(u32x4_extend_low_u16x8(v128_load64_zero(
                        tile.add(8 * group).cast(),
                    )));
                    let dmin = widen4(u32x4_extend_low_u16x8(v128_load64_zero(
                        tile.add(2 * TILE_ROWS + 8 * group).cast(),
                    )));
                    let mins = tile.add(MINS_AT + group * SUB_BLOCKS * 4);
                    let mins = [v128_load(mins.cast()), v128_load(mins.add(16).cast())];
                    // Each lane's eight mins as i16, for `i32x4.dot_i16x8_s` with the sums.
                    let mins = [
                        u16x8_extend_low_u8x16(mins[0]),
                        u16x8_extend_high_u8x16(mins[0]),
                        u16x8_extend_low_u8x16(mins[1]),
                        u16x8_extend_high_u8x16(mins[1]),
                    ];
                    for r in 0..R {
                        let minimum = transpose_sum(mins.map(|m| i32x4_dot_i16x8(m, sums[r])));
                        let scale = f32x4_splat(act.scales[index[r]]);
                        let products =
                            f32x4_mul(f32x4_convert_i32x4(totals[r][s]), f32x4_mul(d, scale));
                        let offsets =
                            f32x4_mul(f32x4_convert_i32x4(minimum), f32x4_mul(dmin, scale));
                        acc[r][s] = f32x4_add(acc[r][s], f32x4_sub(products, offsets));
                    }
                }
            }
        }
    }
    std::array::from_fn(|r| std::array::from_fn(|s| acc.map(|group| group[r][s])))
}
