//! The decode kernel's two inner loops over an f16 cache written for x86 by hand, for native
//! runs: the scores of four keys against the batch's queries ([`scores`], AVX2, FMA and F16C),
//! and the values added to the contexts in 512-bit registers ([`accumulate`], AVX-512).
//!
//! The portable loops of `tiles` give the same operations in the same order, but the compiler
//! moved their arrays of accumulators from register to register at every step (a dozen moves
//! and a spill for twelve multiply-adds) and, for the values, kept only two of a row's eight
//! vectors in registers per pass. Here every product and sum is the one `tiles` computes, in
//! the same order, so the result is theirs bit for bit (checked by the attention tests).

use core::arch::x86_64::*;

/// Keys of one score tile, as in `tiles`.
const KEYS: usize = 4;
/// f32 values in one AVX register.
const YMM: usize = 8;
/// f32 values in one AVX-512 register.
const ZMM: usize = 16;
/// The contexts' columns [`accumulate`] holds in registers: a row of BLOOM's 64-wide heads.
pub(super) const ACCUMULATED_COLUMNS: usize = 4 * ZMM;

/// `out[i][j] = queries[i] · keys[j]` for `Q` queries and the `out[i].len()` keys (rows of `d`
/// f16 in `keys`, `d` a multiple of 8), as `tiles::scores_tiled` computes them: per key and
/// query, eight lanes of partial sums over the row's chunks in order, then the lanes summed as
/// `(l₀ + l₄ + l₂ + l₆) + (l₁ + l₅ + l₃ + l₇)` in `Lanes::sum4`'s order.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn scores<const Q: usize>(
    queries: [&[f32]; Q],
    keys: &[half::f16],
    d: usize,
    mut out: [&mut &mut [f32]; Q],
) {
    let n = out[0].len();
    assert!(d.is_multiple_of(YMM) && keys.len() >= n * d);
    assert!(out.iter().all(|o| o.len() == n) && queries.iter().all(|q| q.len() >= d));
    let mut j = 0;
    while j < n {
        // Keys j..j + rows; a last, short tile repeats its last key and drops its sums.
        let rows = KEYS.min(n - j);
        let key: [*const half::f16; KEYS] =
            core::array::from_fn(|t| keys[(j + t.min(rows - 1)) * d..].as_ptr());
        let mut acc = [[_mm256_setzero_ps(); KEYS]; Q];
        for c in (0..d).step_by(YMM) {
            // SAFETY: c + 8 ≤ d, within each of the tile's keys and each query.
            let k: [__m256; KEYS] = core::array::from_fn(|t| unsafe {
                _mm256_cvtph_ps(_mm_loadu_si128(key[t].add(c).cast()))
            });
            for (acc, query) in acc.iter_mut().zip(&queries) {
                let x = unsafe { _mm256_loadu_ps(query.as_ptr().add(c)) };
                for (a, &k) in acc.iter_mut().zip(&k) {
                    *a = _mm256_fmadd_ps(x, k, *a);
                }
            }
        }
        for (acc, out) in acc.iter().zip(out.iter_mut()) {
            // Each accumulator's halves added, then the four keys' sums by one transpose:
            // [(h₀ + h₂) + (h₁ + h₃)] for each key.
            let h: [__m128; KEYS] = core::array::from_fn(|t| {
                _mm_add_ps(
                    _mm256_castps256_ps128(acc[t]),
                    _mm256_extractf128_ps::<1>(acc[t]),
                )
            });
            let ab = _mm_add_ps(_mm_unpacklo_ps(h[0], h[1]), _mm_unpackhi_ps(h[0], h[1]));
            let cd = _mm_add_ps(_mm_unpacklo_ps(h[2], h[3]), _mm_unpackhi_ps(h[2], h[3]));
            let sums = _mm_add_ps(_mm_movelh_ps(ab, cd), _mm_movehl_ps(cd, ab));
            let mut lanes = [0f32; KEYS];
            // SAFETY: `lanes` is four f32.
            unsafe { _mm_storeu_ps(lanes.as_mut_ptr(), sums) };
            out[j..j + rows].copy_from_slice(&lanes[..rows]);
        }
        j += KEYS;
    }
}

/// `contexts[i] += Σⱼ weights[i][j] · values[j]` for `Q` contexts of [`ACCUMULATED_COLUMNS`]
/// and the `weights[i].len()` value rows of as many f16 in `values`: every context's 64
/// columns held in four 512-bit registers while the rows stream past (one pass instead of the
/// portable loops' four), each element summing its rows in order, `((c + w₀v₀) + w₁v₁) + …`,
/// fused as `Lanes::mul_add` is.
///
/// # Safety
/// The CPU must have AVX-512F (and what [`scores`] needs).
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
#[inline]
pub(super) unsafe fn accumulate<const Q: usize>(
    weights: [&[f32]; Q],
    values: &[half::f16],
    contexts: [&mut &mut [f32]; Q],
) {
    const D: usize = ACCUMULATED_COLUMNS;
    let n = weights[0].len();
    assert!(weights.iter().all(|w| w.len() == n) && contexts.iter().all(|c| c.len() >= D));
    assert!(values.len() >= n * D);
    // SAFETY (loads and stores): each context holds D f32, and each of the n rows D values.
    let mut acc: [[__m512; 4]; Q] = core::array::from_fn(|i| {
        core::array::from_fn(|g| unsafe { _mm512_loadu_ps(contexts[i].as_ptr().add(g * ZMM)) })
    });
    for (j, row) in values.chunks_exact(D).take(n).enumerate() {
        let v: [__m512; 4] = core::array::from_fn(|g| unsafe {
            _mm512_cvtph_ps(_mm256_loadu_si256(row.as_ptr().add(g * ZMM).cast()))
        });
        for (acc, w) in acc.iter_mut().zip(&weights) {
            let w = _mm512_set1_ps(w[j]);
            for (a, &v) in acc.iter_mut().zip(&v) {
                *a = _mm512_fmadd_ps(w, v, *a);
            }
        }
    }
    for (acc, context) in acc.iter().zip(contexts) {
        for (g, &a) in acc.iter().enumerate() {
            unsafe { _mm512_storeu_ps(context.as_mut_ptr().add(g * ZMM), a) };
        }
    }
}
