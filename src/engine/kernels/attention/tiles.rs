//! The decode kernel's inner loops as register tiles: the scores of four keys against the
//! batch's queries at once, and the contexts' chunks held in registers while four values are
//! added.
//!
//! One head's keys and values are rows of `d` values (f32 or f16, see [`Stored`]), cut into
//! chunks of [`LANES`]: four f32 on wasm32 (explicit simd128; in the `+relaxed-simd` build
//! relaxed SIMD's multiply-add, which the engine may fuse, so that its results may differ from
//! the plain build's in rounding), eight natively (plain arrays the compiler
//! vectorizes inside the AVX2 function of `for_each_head`). A row's values past the last whole
//! chunk (`d` not a multiple of [`LANES`]) are summed one by one after the chunks.
//!
//! Both stored types run the same operations in the same order on the widened values, so an
//! f16 cache gives bit for bit what its values widened to f32 give.

use super::Stored;

/// f32 lanes of one vector: four in a `v128`.
#[cfg(target_arch = "wasm32")]
#[derive(Clone, Copy)]
pub(crate) struct Lanes(pub(crate) core::arch::wasm32::v128);
/// f32 lanes of one vector: eight (one AVX register).
#[cfg(not(target_arch = "wasm32"))]
#[derive(Clone, Copy)]
pub(crate) struct Lanes(pub(crate) [f32; 8]);

/// Values of one [`Lanes`].
#[cfg(target_arch = "wasm32")]
pub(crate) const LANES: usize = 4;
/// Values of one [`Lanes`].
#[cfg(not(target_arch = "wasm32"))]
pub(crate) const LANES: usize = 8;

/// Keys of one score tile: four accumulators, reduced by one transpose-and-add.
const KEYS: usize = 4;
/// Queries of one score tile (and contexts of one pass over the values) at most: a tile of
/// 4 keys × 3 queries holds 12 accumulators, the three query chunks and a key's chunk, about
/// the 16 vector registers of x86-64.
const QUERIES: usize = 3;
/// Value rows of one pass over the contexts' chunks: consecutive rows (1 KiB of 64 f32 each),
/// read as one stream, added to the contexts' chunks in registers.
const VALUE_ROWS: usize = 4;

#[cfg(target_arch = "wasm32")]
impl Lanes {
    /// Every lane `x`.
    #[inline(always)]
    pub(crate) fn splat(x: f32) -> Self {
        Self(core::arch::wasm32::f32x4_splat(x))
    }

    /// [`LANES`] f32 at `src`.
    ///
    /// # Safety
    /// `src` must point to [`LANES`] readable f32.
    #[inline(always)]
    pub(crate) unsafe fn load(src: *const f32) -> Self {
        Self(core::arch::wasm32::v128_load(src.cast()))
    }

    /// Stores the lanes at `dst`.
    ///
    /// # Safety
    /// `dst` must point to [`LANES`] writable f32.
    #[inline(always)]
    unsafe fn store(self, dst: *mut f32) {
        core::arch::wasm32::v128_store(dst.cast(), self.0)
    }

    /// `self + a · b` (fused, or not, as the engine's relaxed multiply-add chooses, in the
    /// `+relaxed-simd` build).
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        use core::arch::wasm32::*;
        #[cfg(target_feature = "relaxed-simd")]
        return Self(f32x4_relaxed_madd(a.0, b.0, self.0));
        #[cfg(not(target_feature = "relaxed-simd"))]
        Self(f32x4_add(self.0, f32x4_mul(a.0, b.0)))
    }

    /// The sums of four vectors' lanes, each `(x₀ + x₂) + (x₁ + x₃)`: one 4 × 4 transpose
    /// interleaved with the adds.
    #[inline(always)]
    fn sum4([a, b, c, d]: [Self; 4]) -> [f32; 4] {
        use core::arch::wasm32::*;
        // [a₀ + a₂, b₀ + b₂, a₁ + a₃, b₁ + b₃], and the same of c and d.
        let ab = f32x4_add(
            i32x4_shuffle::<0, 4, 1, 5>(a.0, b.0),
            i32x4_shuffle::<2, 6, 3, 7>(a.0, b.0),
        );
        let cd = f32x4_add(
            i32x4_shuffle::<0, 4, 1, 5>(c.0, d.0),
            i32x4_shuffle::<2, 6, 3, 7>(c.0, d.0),
        );
        let sums = f32x4_add(
            i32x4_shuffle::<0, 1, 4, 5>(ab, cd),
            i32x4_shuffle::<2, 3, 6, 7>(ab, cd),
        );
        // SAFETY: a v128 is four f32.
        unsafe { core::mem::transmute::<v128, [f32; 4]>(sums) }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Lanes {
    /// Every lane `x`.
    #[inline(always)]
    pub(crate) fn splat(x: f32) -> Self {
        Self([x; 8])
    }

    /// [`LANES`] f32 at `src`.
    ///
    /// # Safety
    /// `src` must point to [`LANES`] readable f32.
    #[inline(always)]
    pub(crate) unsafe fn load(src: *const f32) -> Self {
        Self(src.cast::<[f32; 8]>().read_unaligned())
    }

    /// Stores the lanes at `dst`.
    ///
    /// # Safety
    /// `dst` must point to [`LANES`] writable f32.
    #[inline(always)]
    unsafe fn store(self, dst: *mut f32) {
        dst.cast::<[f32; 8]>().write_unaligned(self.0)
    }

    /// `self + a · b`, lane by lane.
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        Self(core::array::from_fn(|i| self.0[i] + a.0[i] * b.0[i]))
    }

    /// The sums of four vectors' lanes, each `((x₀ + x₄) + (x₂ + x₆)) + ((x₁ + x₅) + (x₃ +
    /// x₇))`.
    #[inline(always)]
    fn sum4(vectors: [Self; 4]) -> [f32; 4] {
        vectors.map(|Self(x)| {
            let half: [f32; 4] = core::array::from_fn(|i| x[i] + x[i + 4]);
            (half[0] + half[2]) + (half[1] + half[3])
        })
    }
}

/// `out[i][j] = queries[i] · keys[j]` for every query and the `out[i].len()` keys, rows of `d`
/// (at least `d` values each) in `keys`; the queries in groups of up to three per tile.
#[inline(always)]
pub(super) fn scores<T: Stored>(queries: &[&[f32]], keys: &[T], d: usize, out: &mut [&mut [f32]]) {
    for (queries, out) in queries.chunks(QUERIES).zip(out.chunks_mut(QUERIES)) {
        match (queries, out) {
            ([a], [x]) => scores_tiled::<T, 1>([a], keys, d, [x]),
            ([a, b], [x, y]) => scores_tiled::<T, 2>([a, b], keys, d, [x, y]),
            ([a, b, c], [x, y, z]) => scores_tiled::<T, 3>([a, b, c], keys, d, [x, y, z]),
            _ => unreachable!("as many queries as rows of scores"),
        }
    }
}

/// [`scores`] of `Q` queries, in tiles of [`KEYS`] keys × `Q` queries: one accumulator of
/// [`LANES`] partial sums per key and query, each chunk of a key loaded (and widened) once
/// for all `Q` queries, each chunk of a query once for the four keys.
#[inline(always)]
fn scores_tiled<T: Stored, const Q: usize>(
    queries: [&[f32]; Q],
    keys: &[T],
    d: usize,
    mut out: [&mut &mut [f32]; Q],
) {
    let n = out[0].len();
    assert!(out.iter().all(|o| o.len() == n) && queries.iter().all(|q| q.len() >= d));
    assert!(keys.len() >= n * d);
    let body = d - d % LANES;
    let mut j = 0;
    while j < n {
        // Keys j..j + rows; a last, short tile repeats its last key in the missing rows and
        // drops their sums.
        let rows = KEYS.min(n - j);
        let mut acc = [[Lanes::splat(0.0); KEYS]; Q];
        for c in (0..body).step_by(LANES) {
            // SAFETY: rows j..j + rows are below n, and c + LANES ≤ d: within `keys` (≥ n · d)
            // and each query (≥ d).
            let k: [Lanes; KEYS] = core::array::from_fn(|t| unsafe {
                T::load(keys.as_ptr().add((j + t.min(rows - 1)) * d + c))
            });
            for (acc, query) in acc.iter_mut().zip(&queries) {
                let x = unsafe { Lanes::load(query.as_ptr().add(c)) };
                for (a, k) in acc.iter_mut().zip(k) {
                    *a = a.mul_add(x, k);
                }
            }
        }
        for ((acc, query), out) in acc.into_iter().zip(queries).zip(out.iter_mut()) {
            let sums = Lanes::sum4(acc);
            for (t, &sum) in sums.iter().enumerate().take(rows) {
                let key = &keys[(j + t) * d..][body..d];
                let tail: f32 = query[body..d]
                    .iter()
                    .zip(key)
                    .map(|(x, y)| x * y.to_f32())
                    .sum();
                out[j + t] = if body < d { sum + tail } else { sum };
            }
        }
        j += KEYS;
    }
}

/// `contexts[i] += Σⱼ weights[i][j] · values[j]` for every context and the `weights[i].len()`
/// value rows of `d` (at least `d` values each) in `values`; the contexts in groups of up to
/// three per pass.
#[inline(always)]
pub(super) fn accumulate<T: Stored>(
    weights: &[&[f32]],
    values: &[T],
    d: usize,
    contexts: &mut [&mut [f32]],
) {
    for (weights, contexts) in weights.chunks(QUERIES).zip(contexts.chunks_mut(QUERIES)) {
        match (weights, contexts) {
            ([a], [x]) => accumulate_tiled::<T, 1>([a], values, d, [x]),
            ([a, b], [x, y]) => accumulate_tiled::<T, 2>([a, b], values, d, [x, y]),
            ([a, b, c], [x, y, z]) => accumulate_tiled::<T, 3>([a, b, c], values, d, [x, y, z]),
            _ => unreachable!("as many weight rows as contexts"),
        }
    }
}

/// [`accumulate`] into `Q` contexts, [`VALUE_ROWS`] rows at a time (the last rows one by one).
#[inline(always)]
fn accumulate_tiled<T: Stored, const Q: usize>(
    weights: [&[f32]; Q],
    values: &[T],
    d: usize,
    mut contexts: [&mut &mut [f32]; Q],
) {
    let n = weights[0].len();
    assert!(weights.iter().all(|w| w.len() == n) && contexts.iter().all(|c| c.len() >= d));
    assert!(values.len() >= n * d);
    let whole = n - n % VALUE_ROWS;
    for j in (0..whole).step_by(VALUE_ROWS) {
        accumulate_rows::<T, Q, VALUE_ROWS>(&weights, values, d, &mut contexts, j);
    }
    for j in whole..n {
        accumulate_rows::<T, Q, 1>(&weights, values, d, &mut contexts, j);
    }
}

/// Adds rows `j..j + R` of `values` (`R` · `Q` multiply-adds per chunk): for every chunk of
/// [`LANES`] dimensions, the `Q` contexts' chunks are loaded into registers, the `R` rows'
/// chunks loaded (and widened) once for all `Q` contexts and added in order, and the contexts'
/// chunks stored. The caller checked the lengths: rows below `weights[i].len()`, `values` of
/// that many rows of `d`, contexts of at least `d`.
#[inline(always)]
fn accumulate_rows<T: Stored, const Q: usize, const R: usize>(
    weights: &[&[f32]; Q],
    values: &[T],
    d: usize,
    contexts: &mut [&mut &mut [f32]; Q],
    j: usize,
) {
    let w: [[f32; R]; Q] = core::array::from_fn(|i| weights[i][j..j + R].try_into().unwrap());
    let body = d - d % LANES;
    for c in (0..body).step_by(LANES) {
        // SAFETY: c + LANES ≤ d: within each context (≥ d), and rows j..j + R are rows of
        // `values` (checked by the caller).
        let v: [Lanes; R] =
            core::array::from_fn(|t| unsafe { T::load(values.as_ptr().add((j + t) * d + c)) });
        for (context, w) in contexts.iter_mut().zip(&w) {
            let at = unsafe { context.as_mut_ptr().add(c) };
            let mut acc = unsafe { Lanes::load(at) };
            for (&w, &v) in w.iter().zip(&v) {
                acc = acc.mul_add(Lanes::splat(w), v);
            }
            unsafe { acc.store(at) };
        }
    }
    if body < d {
        for t in 0..R {
            let value = &values[(j + t) * d..][body..d];
            for (w, context) in w.iter().zip(contexts.iter_mut()) {
                for (c, x) in context[body..d].iter_mut().zip(value) {
                    *c += w[t] * x.to_f32();
                }
            }
        }
    }
}
