//! q4_0 and q8_0 matrix products on wasm32 with simd128, and relaxed-SIMD dot products in the
//! build made with `+relaxed-simd`.
//!
//! ```text
//! y (m × n) = gelu?(x (m × k) · Wᵀ + b)      W: n × k q4_0 or q8_0 weights, x: f32 activations
//! ```
//!
//! Why our own: candle 0.11's wasm path multiplies one activation row by one weight row at a
//! time (three candidates read every weight three times), on one thread, and has no
//! relaxed-SIMD variant; no crate offers quantized GGML-layout products for wasm. The arithmetic
//! is candle's: activations are quantized to q8_0 ([`QuantizedRows`], candle's rounding), each
//! 32-value block's products are summed exactly in integers and scaled by the two scales in
//! f32. The plain simd128 path even sums in candle's lane order, so its results are candle's
//! bit for bit; the relaxed path (`q_wasm_relaxed`: one output column per f32x4 lane)
//! converts each block's whole integer sum, so it differs by f32 rounding.
//!
//! The plain path and relaxed q8_0 read the weights in place from candle's tensor, f16 scales
//! through a 65536-entry table (wasm has no f16 conversion instruction); relaxed q4_0 repacks
//! them at load time into tiles of 16 rows (`q_wasm_relaxed::Q4_0Tiles`, as large). One unit
//! of work is [`ROWS_PER_UNIT`] weight rows against every activation row, up to [`MAX_ROWS`] at
//! a time, so three candidates decoded together read each weight once; with tiles, a unit is
//! `STREAMS` such runs far apart, read at once. Units run on rayon's
//! pool: the threads of the threaded web build, or the current thread when there is none.
//!
//! Relaxed SIMD (`i16x8.relaxed_dot_i8x16_i7x16`) is only deterministic when its second
//! operand's bytes are 7-bit (0..128), so weights go in as unsigned nibbles: q4_0's stored
//! `q ∈ 0..16` (weight `q − 8`, the `−8 · Σa` added once per block) and q8_0's byte split as
//! `w + 128 = 16 · hi + lo` (`Σ a·w = 16 · Σ a·hi + Σ a·lo − 128 · Σa`). A module using it does
//! not validate in a browser without relaxed SIMD, so it is a build of its own, picked by the
//! page's loader; this file compiles the plain path in every build.

use std::arch::wasm32::*;
use std::fmt;
use std::sync::{Arc, OnceLock};

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use half::f16;

use super::awake::share_units;
use super::q8_act::{QuantizedRows, BLOCK};
#[cfg(target_feature = "relaxed-simd")]
use super::q_wasm_relaxed::{columns_q8_0, Q4_0Tiles, STREAMS, TILE_ROWS};
use super::Epilogue;
use crate::error::{Error, Result};

/// Activation rows one pass over a weight row multiplies (register blocking).
pub(super) const MAX_ROWS: usize = 4;
/// Weight rows of one unit of work: their quants (≤ 34 · k / 32 bytes each) stay in cache while
/// every activation row passes.
const ROWS_PER_UNIT: usize = 16;

/// The stored weight type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// f16 scale + 16 bytes: byte j holds value j (low nibble) and j + 16 (high), `q − 8`.
    Q4_0,
    /// f16 scale + 32 signed bytes.
    Q8_0,
}

impl Kind {
    /// Bytes of one stored block: the f16 scale, then the quants.
    fn block_bytes(self) -> usize {
        match self {
            Self::Q4_0 => 2 + BLOCK / 2,
            Self::Q8_0 => 2 + BLOCK,
        }
    }
}

/// f16 bits → f32, for every f16.
pub(super) fn f16_table() -> &'static [f32] {
    static TABLE: OnceLock<Vec<f32>> = OnceLock::new();
    TABLE.get_or_init(|| (0..=u16::MAX).map(|b| f16::from_bits(b).to_f32()).collect())
}

/// `$kernel::<R>(args)` with the const `R` = `$rows` (1 to 3, else [`MAX_ROWS`]): the kernels
/// keep a row's accumulators in registers, so their row count is a constant. A kernel with a
/// second const parameter names it after `R`: `$kernel::<{ value }>(args)`.
macro_rules! for_row_count {
    ($rows:expr, $kernel:ident $(::<$extra:tt>)? ($($arg:expr),*)) => {
        match $rows {
            1 => $kernel::<1 $(, $extra)?>($($arg),*),
            2 => $kernel::<2 $(, $extra)?>($($arg),*),
            3 => $kernel::<3 $(, $extra)?>($($arg),*),
            _ => $kernel::<MAX_ROWS $(, $extra)?>($($arg),*),
        }
    };
}
pub(super) use for_row_count;

/// Which dot product the kernels use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// simd128 only: i8 → i16, `i32x4.dot_i16x8_s`.
    Simd128,
    /// `i16x8.relaxed_dot_i8x16_i7x16`, four columns at a time (built with `+relaxed-simd`).
    #[cfg(target_feature = "relaxed-simd")]
    Relaxed,
}

impl Path {
    /// The fastest path this build has.
    pub fn best() -> Self {
        #[cfg(target_feature = "relaxed-simd")]
        return Self::Relaxed;
        #[cfg(not(target_feature = "relaxed-simd"))]
        Self::Simd128
    }
}

/// A q4_0 or q8_0 weight matrix `W` (n × k) for the simd128 kernels, with an optional bias and
/// GELU fused into the product: `y = gelu(x Wᵀ + b)`.
pub struct SimdMatrix {
    n: usize,
    k: usize,
    kind: Kind,
    path: Path,
    /// The weights, as the kernels of `path` read them.
    weights: Stored,
    /// The bias and GELU fused into the product.
    epilogue: Epilogue,
}

/// Where a [`SimdMatrix`]'s kernels read its weights.
enum Stored {
    /// candle's tensor, `[row][block]` of f16 scale + quants, read in place.
    Rows(Arc<QTensor>),
    /// q4_0 repacked into tiles of 16 rows for the relaxed-SIMD kernel (the tensor dropped).
    #[cfg(target_feature = "relaxed-simd")]
    Tiles(Q4_0Tiles),
}

impl fmt::Debug for SimdMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimdMatrix")
            .field("n", &self.n)
            .field("k", &self.k)
            .field("kind", &self.kind)
            .field("path", &self.path)
            .field("epilogue", &self.epilogue)
            .finish()
    }
}

impl SimdMatrix {
    /// Takes the 2-D q4_0 or q8_0 tensor `q` for the kernels of `path`; `None` for other types.
    pub fn new(q: Arc<QTensor>, path: Path) -> Result<Option<Self>> {
        let kind = match q.dtype() {
            GgmlDType::Q4_0 => Kind::Q4_0,
            GgmlDType::Q8_0 => Kind::Q8_0,
            _ => return Ok(None),
        };
        let (n, k) = q.shape().dims2()?;
        if k % BLOCK != 0 {
            return Err(Error::Invalid(format!(
                "the simd128 kernels need rows of whole blocks, got {:?}",
                q.shape()
            )));
        }
        let weights = match (kind, path) {
            #[cfg(target_feature = "relaxed-simd")]
            (Kind::Q4_0, Path::Relaxed) => Stored::Tiles(Q4_0Tiles::new(&q.data()?, n, k / BLOCK)),
            _ => Stored::Rows(q),
        };
        Ok(Some(Self {
            n,
            k,
            kind,
            path,
            weights,
            epilogue: Epilogue::default(),
        }))
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
    /// of `k`. Units of [`ROWS_PER_UNIT`] output columns run on rayon's threads.
    pub fn matmul(&self, x: &[f32], y: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        let m = x.len() / k;
        assert_eq!((x.len(), y.len()), (m * k, m * n), "matmul operand sizes");
        let act = QuantizedRows::new(x, k);
        let data = match &self.weights {
            Stored::Rows(q) => q.data().expect("a CPU tensor's bytes"),
            #[cfg(target_feature = "relaxed-simd")]
            Stored::Tiles(tiles) => {
                return for_each_column_set(n, y, &self.epilogue, |firsts, row0, sums| {
                    tiles.dot(firsts.map(|first| first / TILE_ROWS), &act, row0, sums)
                });
            }
        };
        let row_bytes = k / BLOCK * self.kind.block_bytes();
        let row = |column: usize| &data[column * row_bytes..(column + 1) * row_bytes];
        match self.path {
            Path::Simd128 => for_each_column_group(n, y, &self.epilogue, |column, row0, sums| {
                let ahead = rows_after(&data, row_bytes, column, 1);
                let sums: &mut [[f32; 1]] = sums;
                self.dot_rows(row(column), ahead, &act, row0, sums.as_flattened_mut());
            }),
            // q8_0: relaxed q4_0 is stored as tiles.
            #[cfg(target_feature = "relaxed-simd")]
            Path::Relaxed => for_each_column_group(n, y, &self.epilogue, |first, row0, sums| {
                let columns = group_columns(first, n);
                let ahead = rows_after(&data, row_bytes, columns[COLUMNS - 1], COLUMNS);
                let (rows, table) = (columns.map(row), f16_table());
                for_row_count!(
                    sums.len(),
                    columns_q8_0(&rows, ahead, table, &act, row0, sums)
                );
            }),
        }
    }

    /// The stored weight row `row` times activation rows `row0..row0 + out.len()` (at most 4),
    /// with simd128 in candle's lane order.
    fn dot_rows(
        &self,
        row: &[u8],
        ahead: &[u8],
        act: &QuantizedRows,
        row0: usize,
        out: &mut [f32],
    ) {
        let table = f16_table();
        macro_rules! with_rows {
            ($kernel:ident) => {
                for_row_count!(out.len(), $kernel(row, ahead, table, act, row0, out))
            };
        }
        match self.kind {
            Kind::Q4_0 => with_rows!(row_q4_0_simd128),
            Kind::Q8_0 => with_rows!(row_q8_0_simd128),
        }
    }
}

/// Applies `epilogue` to columns `columns` of rows `rows` of the output (`n` columns a row),
/// each row's run at once: one call per run, not per value, so that GELU runs on SIMD lanes.
fn finish_rows(
    out: OutPtr,
    n: usize,
    rows: std::ops::Range<usize>,
    columns: std::ops::Range<usize>,
    epilogue: &Epilogue,
) {
    for row in rows {
        // SAFETY: as in `for_each_column_group`: these values are this unit's alone, all written.
        let run = unsafe {
            std::slice::from_raw_parts_mut(out.at(row * n + columns.start), columns.len())
        };
        epilogue.apply(columns.start, run);
    }
}

/// Output columns computed together: the lanes of one f32x4.
pub(super) const COLUMNS: usize = 4;

/// The four columns' i32x4 partial sums → one i32x4 of their totals, `[Σs₀, Σs₁, Σs₂, Σs₃]`.
#[inline(always)]
pub(super) fn transpose_sum(s: [v128; COLUMNS]) -> v128 {
    let s01 = i32x4_add(
        i32x4_shuffle::<0, 4, 1, 5>(s[0], s[1]),
        i32x4_shuffle::<2, 6, 3, 7>(s[0], s[1]),
    );
    let s23 = i32x4_add(
        i32x4_shuffle::<0, 4, 1, 5>(s[2], s[3]),
        i32x4_shuffle::<2, 6, 3, 7>(s[2], s[3]),
    );
    i32x4_add(
        i64x2_shuffle::<0, 2>(s01, s23),
        i64x2_shuffle::<1, 3>(s01, s23),
    )
}

/// The stored bytes of the `count` rows after row `last` (`row_bytes` each; fewer at the end):
/// what a kernel reads ahead into with [`touch`].
pub(super) fn rows_after(data: &[u8], row_bytes: usize, last: usize, count: usize) -> &[u8] {
    let start = ((last + 1) * row_bytes).min(data.len());
    &data[start..(start + count * row_bytes).min(data.len())]
}

/// The f32 values (f16 through `table`) at byte `at` of each of four stored rows, as lanes.
#[inline(always)]
pub(super) fn f16_lanes(table: &[f32], rows: &[&[u8]; COLUMNS], at: usize) -> v128 {
    let value = |row: &[u8]| table[u16::from_le_bytes([row[at], row[at + 1]]) as usize];
    f32x4(
        value(rows[0]),
        value(rows[1]),
        value(rows[2]),
        value(rows[3]),
    )
}

/// The high nibble of every byte of `v`. `u8x16_shr` would say it in one operation, but x86 has
/// no byte shift: V8 turns it into a 16-bit shift, then builds a byte mask and applies it (five
/// instructions, in the kernels' innermost loops); a 16-bit shift and the low-nibble mask, kept
/// in a register, are two.
#[inline(always)]
pub(super) fn high_nibbles(v: v128) -> v128 {
    v128_and(u16x8_shr(v, 4), u8x16_splat(0x0F))
}

/// Writes each row's accumulator lanes (one per column) to `out`.
#[inline(always)]
pub(super) fn store_lanes(acc: &[v128], out: &mut [[f32; COLUMNS]]) {
    for (out, acc) in out.iter_mut().zip(acc) {
        // SAFETY: an f32x4 is four f32s.
        *out = unsafe { std::mem::transmute::<v128, [f32; COLUMNS]>(*acc) };
    }
}

/// Reads the two bytes at `at` and 64 past it in `ahead` (those in it), so that the next rows'
/// memory is on its way while these are computed: wasm has no prefetch instruction, and a
/// single sequence's product is bound by how many cache misses are in flight.
#[inline(always)]
pub(super) fn touch(ahead: &[u8], at: usize) -> u8 {
    ahead.get(at).copied().unwrap_or(0) ^ ahead.get(at + 64).copied().unwrap_or(0)
}

/// Fills `y` (m × n, row-major) in units of [`ROWS_PER_UNIT`] output columns on rayon's threads
/// ([`share_units`]), `W` output columns at a time (a unit's columns in groups of `W`, `W`
/// dividing [`ROWS_PER_UNIT`]): `dot(first, row0, sums)` computes columns `first..first + W`
/// (past `n`: anything, its results dropped) of activation rows `row0..row0 + sums.len()` (at
/// most [`MAX_ROWS`]) into `sums[row][column − first]`; then `epilogue` finishes each row's run
/// of the unit's columns at once (GELU on SIMD lanes). Shared by the wasm32 matrix kernels.
pub(super) fn for_each_column_group<const W: usize>(
    n: usize,
    y: &mut [f32],
    epilogue: &Epilogue,
    dot: impl Fn(usize, usize, &mut [[f32; W]]) + Sync,
) {
    const { assert!(ROWS_PER_UNIT.is_multiple_of(W)) };
    let m = y.len() / n.max(1);
    let out = OutPtr(y.as_mut_ptr());
    share_units(n.div_ceil(ROWS_PER_UNIT), |unit| {
        let end = n.min((unit + 1) * ROWS_PER_UNIT);
        let mut sums = [[0f32; W]; MAX_ROWS];
        for row0 in (0..m).step_by(MAX_ROWS) {
            let rows = (m - row0).min(MAX_ROWS);
            for first in (unit * ROWS_PER_UNIT..end).step_by(W) {
                dot(first, row0, &mut sums[..rows]);
                for (r, row) in sums[..rows].iter().enumerate() {
                    for (i, sum) in row.iter().enumerate().take(end - first) {
                        // SAFETY: `y` holds m × n values and outlives the parallel loop;
                        // every (row, column) is written by exactly one unit.
                        unsafe { *out.at((row0 + r) * n + first + i) = *sum };
                    }
                }
            }
            finish_rows(
                out,
                n,
                row0..row0 + rows,
                unit * ROWS_PER_UNIT..end,
                epilogue,
            );
        }
    });
}

/// Fills `y` (m × n) as [`for_each_column_group`] does, a unit being [`STREAMS`] runs of
/// [`ROWS_PER_UNIT`] columns far apart (the product's runs cut in [`STREAMS`] spans, a unit the
/// same run of each), computed at once: `dot(firsts, row0, sums)` computes columns
/// `firsts[s]..firsts[s] + ROWS_PER_UNIT` (past `n`: anything, its results dropped) of
/// activation rows `row0..row0 + sums.len()` (at most [`MAX_ROWS`]) into
/// `sums[row][s][column − firsts[s]]`.
#[cfg(target_feature = "relaxed-simd")]
pub(super) fn for_each_column_set(
    n: usize,
    y: &mut [f32],
    epilogue: &Epilogue,
    dot: impl Fn([usize; STREAMS], usize, &mut [[[f32; ROWS_PER_UNIT]; STREAMS]]) + Sync,
) {
    let m = y.len() / n.max(1);
    let runs = n.div_ceil(ROWS_PER_UNIT);
    let span = runs.div_ceil(STREAMS);
    let out = OutPtr(y.as_mut_ptr());
    share_units(span, |unit| {
        let firsts = std::array::from_fn(|s| (unit + s * span).min(runs - 1) * ROWS_PER_UNIT);
        let mut sums = [[[0f32; ROWS_PER_UNIT]; STREAMS]; MAX_ROWS];
        for row0 in (0..m).step_by(MAX_ROWS) {
            let rows = (m - row0).min(MAX_ROWS);
            dot(firsts, row0, &mut sums[..rows]);
            for s in 0..STREAMS {
                let run = unit + s * span;
                if run >= runs {
                    break;
                }
                let columns = run * ROWS_PER_UNIT..n.min((run + 1) * ROWS_PER_UNIT);
                for (r, row) in sums[..rows].iter().enumerate() {
                    for (column, sum) in columns.clone().zip(&row[s]) {
                        // SAFETY: `y` holds m × n values and outlives the parallel loop; every
                        // (row, column) is written by exactly one unit.
                        unsafe { *out.at((row0 + r) * n + column) = *sum };
                    }
                }
                finish_rows(out, n, row0..row0 + rows, columns, epilogue);
            }
        }
    });
}

/// The [`COLUMNS`] stored rows a four-column kernel reads for the group starting at `first`:
/// past `n`, the last one again (its results dropped).
pub(super) fn group_columns(first: usize, n: usize) -> [usize; COLUMNS] {
    std::array::from_fn(|i| (first + i).min(n - 1))
}

/// The output pointer, shared by the units (each writes its own elements).
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);

// SAFETY: units write disjoint elements and the caller waits for all of them.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The element at `i`; taking `self` whole keeps closures capturing the `Sync` wrapper.
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

/// `Σ` of the four f32 lanes, in candle's order.
#[inline(always)]
fn lane_sum(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v)
        + f32x4_extract_lane::<1>(v)
        + f32x4_extract_lane::<2>(v)
        + f32x4_extract_lane::<3>(v)
}

/// Adds one block's integer lane sums, scaled by `d`, to `acc` (candle's `mul` then `add`).
#[inline(always)]
fn scaled_add(acc: v128, sum: v128, d: f32) -> v128 {
    f32x4_add(acc, f32x4_mul(f32x4_convert_i32x4(sum), f32x4_splat(d)))
}

/// The simd128 block sum in candle's lane order: four i16x8 weight vectors (values 0..32)
/// times the 32 activation quants at `a`, widened as loaded.
///
/// # Safety
/// `a` must point to 32 readable bytes.
#[inline(always)]
unsafe fn dot_i16(w: &[v128; 4], a: *const i8) -> v128 {
    let mut sum = i32x4_dot_i16x8(w[0], i16x8_load_extend_i8x8(a));
    for (q, w) in w.iter().enumerate().skip(1) {
        sum = i32x4_add(
            sum,
            i32x4_dot_i16x8(*w, i16x8_load_extend_i8x8(a.add(8 * q))),
        );
    }
    sum
}

/// Shared shape of the row kernels over one stored row (`$bytes` per block: f16 scale, quants):
/// `$block(w, a, j)` returns the i32x4 lane sums of the block's products with activation block
/// `j`, after `$prepare(quants_ptr)` unpacked the weights once.
macro_rules! row_kernel {
    ($name:ident, $bytes:expr, |$w:ident| $prepare:expr, |$pw:ident, $a:ident, $j:ident, $act:ident| $block:expr) => {
        fn $name<const R: usize>(
            row: &[u8],
            ahead: &[u8],
            f16_table: &[f32],
            $act: &QuantizedRows,
            row0: usize,
            out: &mut [f32],
        ) {
            let mut acc = [f32x4_splat(0.0); R];
            let mut touched = 0;
            for (b, block) in row.chunks_exact($bytes).enumerate() {
                // The next row, a line every other block (a block is at most 34 bytes).
                if b % 2 == 0 {
                    touched ^= touch(ahead, b * $bytes);
                }
                let w_scale = f16_table[u16::from_le_bytes([block[0], block[1]]) as usize];
                // SAFETY: `block` holds one stored block; its quants follow the scale.
                let $pw = unsafe {
                    let $w = block.as_ptr().add(2);
                    $prepare
                };
                for (i, acc) in acc.iter_mut().enumerate() {
                    let $j = (row0 + i) * $act.blocks + b;
                    // SAFETY: activation block `j` holds 32 quants.
                    let sum = unsafe {
                        let $a = $act.quants.as_ptr().add($j * BLOCK);
                        $block
                    };
                    *acc = scaled_add(*acc, sum, w_scale * $act.scales[$j]);
                }
            }
            std::hint::black_box(touched);
            for (out, acc) in out.iter_mut().zip(acc) {
                *out = lane_sum(acc);
            }
        }
    };
}

// simd128, q4_0: candle's `vec_dot_q4_0_q8_0`, lane for lane.
row_kernel!(
    row_q4_0_simd128,
    2 + BLOCK / 2,
    |w| {
        let packed = v128_load(w.cast());
        let low = i8x16_sub(v128_and(packed, u8x16_splat(0x0F)), i8x16_splat(8));
        let high = i8x16_sub(high_nibbles(packed), i8x16_splat(8));
        [
            i16x8_extend_low_i8x16(low),
            i16x8_extend_high_i8x16(low),
            i16x8_extend_low_i8x16(high),
            i16x8_extend_high_i8x16(high),
        ]
    },
    |w, a, _j, act| dot_i16(&w, a)
);

// simd128, q8_0: candle's `vec_dot_q8_0_q8_0`, lane for lane.
row_kernel!(
    row_q8_0_simd128,
    2 + BLOCK,
    |w| {
        let w = w.cast::<i8>();
        [
            i16x8_load_extend_i8x8(w),
            i16x8_load_extend_i8x8(w.add(8)),
            i16x8_load_extend_i8x8(w.add(16)),
            i16x8_load_extend_i8x8(w.add(24)),
        ]
    },
    |w, a, _j, act| dot_i16(&w, a)
);

/// As a candle op: `(…, k)` f32 activations → `(…, n)`.
impl CustomOp1 for SimdMatrix {
    fn name(&self) -> &'static str {
        "simd128-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        super::matmul_op(
            "simd128 matmul",
            (self.n, self.k),
            storage,
            layout,
            |x, y| self.matmul(x, y),
        )
    }
}
