//! The decode kernel's inner loops as register tiles: the scores of four keys against the
//! batch's queries at once; the softmax of a row of scores a vector at a time (Cephes' `expf`
//! on lanes, [`Lanes::exp`]); and the contexts' columns held in registers while every value row
//! is added to them. Natively, an f16 cache's scores and values go through the same loops
//! written for x86 by hand (`x86`), with the same results.
//!
//! One head's keys and values are rows of `d` values (f32 or f16, see [`Stored`]), cut into
//! chunks of [`LANES`] (see `lanes`). A row's values past the last whole chunk (`d` not a
//! multiple of [`LANES`]) are summed one by one after the chunks.
//!
//! Both stored types run the same operations in the same order on the widened values, so an
//! f16 cache gives bit for bit what its values widened to f32 give.

use super::lanes::{Lanes, LANES};
use super::stored::Stored;
#[cfg(target_arch = "x86_64")]
use super::{stored::X86Loops, x86};

/// Keys of one score tile: four accumulators, reduced by one transpose-and-add.
const KEYS: usize = 4;
/// Queries of one score tile (and contexts of one pass over the values) at most: a tile of
/// 4 keys × 3 queries holds 12 accumulators, the three query chunks and a key's chunk, about
/// the 16 vector registers of x86-64.
const QUERIES: usize = 3;
/// Chunks of a row's columns one pass over the values holds in registers for every context: on
/// wasm32 four (three contexts' 12, a row's four and the weight: about the 16 vector registers
/// of x86-64, where wasm engines map `v128` values), natively two of eight lanes (with four,
/// the compiler kept the accumulators on the stack).
#[cfg(target_arch = "wasm32")]
const CHUNKS: usize = 4;
#[cfg(not(target_arch = "wasm32"))]
const CHUNKS: usize = 2;

/// `LANES` values at `src` as f32 lanes: [`Stored::load`], or with `DOWN` [`Stored::load_down`].
///
/// # Safety
/// As [`Stored::load`].
#[inline(always)]
unsafe fn load<T: Stored, const DOWN: bool>(src: *const T) -> Lanes {
    if DOWN {
        T::load_down(src)
    } else {
        T::load(src)
    }
}

/// `out[i][j] = queries[i] · keys[j]` for every query and the `out[i].len()` keys, rows of `d`
/// (at least `d` values each) in `keys`; the queries in groups of up to three per tile. With
/// `DOWN`, the keys are read by [`Stored::load_down`] (the queries scaled by [`Stored::DOWN`],
/// and `d` a multiple of `LANES`).
#[inline(always)]
pub(super) fn scores<T: Stored, const DOWN: bool>(
    queries: &[&[f32]],
    keys: &[T],
    d: usize,
    out: &mut [&mut [f32]],
) {
    #[cfg(target_arch = "x86_64")]
    if T::X86 != X86Loops::None && d.is_multiple_of(LANES) {
        let keys = T::as_f16(keys);
        for (queries, out) in queries.chunks(QUERIES).zip(out.chunks_mut(QUERIES)) {
            // SAFETY: `T::X86` says the CPU has AVX2, FMA and F16C.
            unsafe {
                match (queries, out) {
                    ([a], [x]) => x86::scores::<1>([a], keys, d, [x]),
                    ([a, b], [x, y]) => x86::scores::<2>([a, b], keys, d, [x, y]),
                    ([a, b, c], [x, y, z]) => x86::scores::<3>([a, b, c], keys, d, [x, y, z]),
                    _ => unreachable!("as many queries as rows of scores"),
                }
            }
        }
        return;
    }
    for (queries, out) in queries.chunks(QUERIES).zip(out.chunks_mut(QUERIES)) {
        match (queries, out) {
            ([a], [x]) => scores_tiled::<T, 1, DOWN>([a], keys, d, [x]),
            ([a, b], [x, y]) => scores_tiled::<T, 2, DOWN>([a, b], keys, d, [x, y]),
            ([a, b, c], [x, y, z]) => scores_tiled::<T, 3, DOWN>([a, b, c], keys, d, [x, y, z]),
            _ => unreachable!("as many queries as rows of scores"),
        }
    }
}

/// [`scores`] of `Q` queries, in tiles of [`KEYS`] keys × `Q` queries: one accumulator of
/// [`LANES`] partial sums per key and query, each chunk of a key loaded (and widened) once
/// for all `Q` queries, each chunk of a query once for the four keys.
#[inline(always)]
fn scores_tiled<T: Stored, const Q: usize, const DOWN: bool>(
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
                load::<T, DOWN>(keys.as_ptr().add((j + t.min(rows - 1)) * d + c))
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
/// three per pass. With `DOWN`, as [`scores`] (the weights scaled).
#[inline(always)]
pub(super) fn accumulate<T: Stored, const DOWN: bool>(
    weights: &[&[f32]],
    values: &[T],
    d: usize,
    contexts: &mut [&mut [f32]],
) {
    #[cfg(target_arch = "x86_64")]
    if T::X86 == X86Loops::Avx512 && d == x86::ACCUMULATED_COLUMNS {
        let values = T::as_f16(values);
        for (weights, contexts) in weights.chunks(QUERIES).zip(contexts.chunks_mut(QUERIES)) {
            // SAFETY: `T::X86` says the CPU has AVX-512F.
            unsafe {
                match (weights, contexts) {
                    ([a], [x]) => x86::accumulate::<1>([a], values, [x]),
                    ([a, b], [x, y]) => x86::accumulate::<2>([a, b], values, [x, y]),
                    ([a, b, c], [x, y, z]) => x86::accumulate::<3>([a, b, c], values, [x, y, z]),
                    _ => unreachable!("as many weight rows as contexts"),
                }
            }
        }
        return;
    }
    for (weights, contexts) in weights.chunks(QUERIES).zip(contexts.chunks_mut(QUERIES)) {
        match (weights, contexts) {
            ([a], [x]) => accumulate_tiled::<T, 1, DOWN>([a], values, d, [x]),
            ([a, b], [x, y]) => accumulate_tiled::<T, 2, DOWN>([a, b], values, d, [x, y]),
            ([a, b, c], [x, y, z]) => {
                accumulate_tiled::<T, 3, DOWN>([a, b, c], values, d, [x, y, z])
            }
            _ => unreachable!("as many weight rows as contexts"),
        }
    }
}

/// [`accumulate`] into `Q` contexts: [`CHUNKS`] chunks of columns at a time held in registers
/// over every value row (then single chunks, then the columns past the last whole chunk one by
/// one). Each context's element sums its rows in order, `((c + w₀v₀) + w₁v₁) + …`.
#[inline(always)]
fn accumulate_tiled<T: Stored, const Q: usize, const DOWN: bool>(
    weights: [&[f32]; Q],
    values: &[T],
    d: usize,
    mut contexts: [&mut &mut [f32]; Q],
) {
    let n = weights[0].len();
    assert!(weights.iter().all(|w| w.len() == n) && contexts.iter().all(|c| c.len() >= d));
    assert!(values.len() >= n * d);
    let body = d - d % LANES;
    let mut c = 0;
    while c + CHUNKS * LANES <= body {
        accumulate_columns::<T, Q, CHUNKS, DOWN>(&weights, values, d, &mut contexts, c);
        c += CHUNKS * LANES;
    }
    while c < body {
        accumulate_columns::<T, Q, 1, DOWN>(&weights, values, d, &mut contexts, c);
        c += LANES;
    }
    if body < d {
        for (j, value) in values.chunks_exact(d).take(n).enumerate() {
            for (w, context) in weights.iter().zip(contexts.iter_mut()) {
                for (c, x) in context[body..d].iter_mut().zip(&value[body..]) {
                    *c += w[j] * x.to_f32();
                }
            }
        }
    }
}

/// Adds every value row's columns `c..c + G · LANES` to the `Q` contexts': the contexts' `Q · G`
/// chunks stay in registers while the rows stream past, each row's `G` chunks loaded (and
/// widened) once for all `Q` contexts. The caller checked the lengths: `n` weights per
/// context, `values` of `n` rows of `d`, contexts of at least `d`, `c + G · LANES ≤ d`.
#[inline(always)]
fn accumulate_columns<T: Stored, const Q: usize, const G: usize, const DOWN: bool>(
    weights: &[&[f32]; Q],
    values: &[T],
    d: usize,
    contexts: &mut [&mut &mut [f32]; Q],
    c: usize,
) {
    let n = weights[0].len();
    // SAFETY (loads and stores): c + G · LANES ≤ d, within each context and each of the n rows.
    let mut acc: [[Lanes; G]; Q] = core::array::from_fn(|i| {
        core::array::from_fn(|g| unsafe { Lanes::load(contexts[i].as_ptr().add(c + g * LANES)) })
    });
    for (j, row) in values.chunks_exact(d).take(n).enumerate() {
        let v: [Lanes; G] =
            core::array::from_fn(|g| unsafe { load::<T, DOWN>(row.as_ptr().add(c + g * LANES)) });
        for (acc, w) in acc.iter_mut().zip(weights) {
            let w = Lanes::splat(w[j]);
            for (a, &v) in acc.iter_mut().zip(&v) {
                *a = a.mul_add(w, v);
            }
        }
    }
    for (acc, context) in acc.iter().zip(contexts.iter_mut()) {
        for (g, a) in acc.iter().enumerate() {
            unsafe { a.store(context.as_mut_ptr().add(c + g * LANES)) };
        }
    }
}

/// Scores this far below their row's largest get weight 0 rather than `e^x` (below 2⁻³⁶): the
/// weights dropped sum to less than 2⁻²⁵ of their row's largest (rows of BLOOM's context are at
/// most 2¹¹ long), under half an f32 ulp of the weights' sum, and each product dropped is below
/// the rounding of the context it would have joined. Nothing subnormal is ever multiplied (that
/// costs a multiply-add a hundredfold on x86, natively and in the browser alike), and the keys
/// that ALiBi's bias puts this far down are not even read (`bounds`): at slope 1/16, those over
/// ~400 positions back.
pub(super) const WEIGHT_FLOOR: f32 = -25.0;

/// The unnormalized softmax weights `e^x` of scores `x` shifted by their row's largest, 0 below
/// [`WEIGHT_FLOOR`].
#[inline(always)]
fn weight(shifted: Lanes) -> Lanes {
    shifted.exp().zero_where_below(shifted, WEIGHT_FLOOR)
}

/// `row[j] ← row[j] + slope · (first + j)`: ALiBi's biases on the scores of keys `first..`,
/// [`LANES`] at a time; returns the largest biased score.
#[inline(always)]
pub(super) fn add_biases(row: &mut [f32], first: usize, slope: f32) -> f32 {
    let body = row.len() - row.len() % LANES;
    let (whole, rest) = row.split_at_mut(body);
    let (slopes, step) = (Lanes::splat(slope), Lanes::splat(LANES as f32));
    let mut positions = Lanes::positions().add(Lanes::splat(first as f32));
    let mut max = Lanes::splat(f32::NEG_INFINITY);
    for chunk in whole.chunks_exact_mut(LANES) {
        // SAFETY: a chunk is LANES f32.
        let x = unsafe { Lanes::load(chunk.as_ptr()) }.add(slopes.mul(positions));
        unsafe { x.store(chunk.as_mut_ptr()) };
        max = max.max(x);
        positions = positions.add(step);
    }
    let mut max = max.to_array().into_iter().fold(f32::NEG_INFINITY, f32::max);
    for (j, x) in rest.iter_mut().enumerate() {
        *x += slope * (first + body + j) as f32;
        max = max.max(*x);
    }
    max
}

/// `row[j] ← softmax(row)[j] · scale` in place for biased scores ([`add_biases`]) whose largest
/// is `max`, in f32 as BLOOM does, [`LANES`] at a time: the weights ([`weight`]) and their sum,
/// then the division by `sum / scale`. `scale` is 1 or [`Stored::DOWN`], a power of two: the
/// probabilities' own f32 times it, exactly (they lie between 2⁻⁵⁰ and 1). The row may be the
/// end of a row that starts at a multiple of [`LANES`] and whose scores before it are −∞: the
/// lanes sum the same values in the same order as over the whole row.
#[inline(always)]
pub(super) fn softmax(row: &mut [f32], max: f32, scale: f32) {
    let body = row.len() - row.len() % LANES;
    let (whole, rest) = row.split_at_mut(body);
    // SAFETY (every load and store below): a chunk, and `last`, are LANES f32.
    let shift = Lanes::splat(max);
    let mut sum = Lanes::splat(0.0);
    for chunk in whole.chunks_exact_mut(LANES) {
        let e = weight(unsafe { Lanes::load(chunk.as_ptr()) }.sub(shift));
        unsafe { e.store(chunk.as_mut_ptr()) };
        sum = sum.add(e);
    }
    // The last values in one more vector, padded with −∞ (whose weights are 0).
    let mut last = [f32::NEG_INFINITY; LANES];
    last[..rest.len()].copy_from_slice(rest);
    let e = weight(unsafe { Lanes::load(last.as_ptr()) }.sub(shift));
    unsafe { e.store(last.as_mut_ptr()) };
    rest.copy_from_slice(&last[..rest.len()]);
    let sum = sum.add(e).to_array().into_iter().sum::<f32>() / scale;
    let sums = Lanes::splat(sum);
    for chunk in whole.chunks_exact_mut(LANES) {
        let p = unsafe { Lanes::load(chunk.as_ptr()) }.div(sums);
        unsafe { p.store(chunk.as_mut_ptr()) };
    }
    for x in rest {
        *x /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values spread over `[-scale, scale)`.
    fn spread(n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32 * 0.618_034).fract() * 2.0 - 1.0) * scale)
            .collect()
    }

    #[test]
    fn exp_is_within_an_ulp_or_two_and_never_subnormal() {
        // −100 … 88 in steps of 1/20, off the whole numbers.
        let xs: Vec<f32> = (-2000..1760).map(|i| i as f32 * 0.05 + 0.0123).collect();
        for chunk in xs.chunks_exact(LANES) {
            // SAFETY: `chunk` is LANES f32.
            let got = unsafe { Lanes::load(chunk.as_ptr()) }.exp().to_array();
            for (&x, &e) in chunk.iter().zip(&got) {
                assert!(e == 0.0 || e.is_normal(), "e^{x} = {e:e}");
                if x < -87.3 {
                    assert_eq!(e, 0.0, "e^{x}");
                } else {
                    let want = (x as f64).exp();
                    assert!(
                        ((e as f64 - want) / want).abs() < 2.5e-7,
                        "e^{x}: {e:e} vs {want:e}"
                    );
                }
            }
        }
        let minus_infinity = Lanes::splat(f32::NEG_INFINITY).exp().to_array();
        assert_eq!(minus_infinity, [0.0; LANES]);
    }

    #[test]
    fn softmax_is_the_formula_at_every_length_around_the_lanes() {
        for n in 1..=3 * LANES + 1 {
            let slope = 0.3;
            let scores = spread(n, 6.0);
            let mut row = scores.clone();
            let max = add_biases(&mut row, 0, slope);
            softmax(&mut row, max, 1.0);
            let biased: Vec<f64> = (0..n)
                .map(|j| scores[j] as f64 + slope as f64 * j as f64)
                .collect();
            let max = biased.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = biased.iter().map(|x| (x - max).exp()).sum();
            for (j, (&got, x)) in row.iter().zip(&biased).enumerate() {
                let want = (x - max).exp() / sum;
                assert!(
                    (got as f64 - want).abs() < 1e-6,
                    "n {n}, j {j}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn softmax_gives_scores_below_the_floor_zero_weight() {
        // Scores 20–45 below the largest.
        let mut row: Vec<f32> = (0..51).map(|j| -20.0 - j as f32 / 2.0).collect();
        row.push(0.0);
        let max = add_biases(&mut row, 0, 0.0);
        softmax(&mut row, max, 1.0);
        for (j, &p) in row[..51].iter().enumerate() {
            let x = -20.0 - j as f32 / 2.0;
            if x < WEIGHT_FLOOR {
                assert_eq!(p, 0.0, "weight of {x}");
            } else {
                assert!(p.is_normal() && p >= 2f32.powi(-37), "weight of {x}: {p:e}");
            }
        }
        assert_eq!(row[51], 1.0);
    }
}
