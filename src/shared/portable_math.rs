//! `exp` and `ln` from IEEE basic operations only, so that sampling and the parameter policies
//! draw the same numbers on every platform (wasm32 included); platform `libm`s may differ in the
//! last bit.

// ---------------------------------------------------------------------------------------------
// Platform-independent `exp` and `ln`: ports of musl's FreeBSD-derived `exp.c` and `log.c`
// (< 1 ulp error; constants given by their bits, as in musl), built from IEEE basic operations
// only, so results are bit-identical on x86, ARM and wasm32. Rust never fuses `a * b + c` into an
// FMA on its own.

const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
const INV_LN2: f64 = f64::from_bits(0x3ff7_1547_652b_82fe);
const P1: f64 = f64::from_bits(0x3fc5_5555_5555_553e);
const P2: f64 = f64::from_bits(0xbf66_c16c_16be_bd93);
const P3: f64 = f64::from_bits(0x3f11_566a_af25_de2c);
const P4: f64 = f64::from_bits(0xbebb_bd41_c5d2_6bf1);
const P5: f64 = f64::from_bits(0x3e66_3769_72be_a4d0);

/// `e^x`, deterministic across platforms.
pub fn exp(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x > 709.782_712_893_384 {
        return f64::INFINITY;
    }
    if x < -745.133_219_101_941_1 {
        return 0.0;
    }
    let ax = x.abs();
    if ax < 3.725_290_298_461_914e-9 {
        return 1.0 + x; // |x| < 2^-28
    }
    // x = k ln2 + r with |r| <= ln2 / 2.
    let (hi, lo, k) = if ax > 0.5 * std::f64::consts::LN_2 {
        // C's `(int)` truncation; `as` truncates too (and is not a libm call like `trunc`).
        let k = (INV_LN2 * x + 0.5f64.copysign(x)) as i32;
        let kf = k as f64;
        (x - kf * LN2_HI, kf * LN2_LO, k)
    } else {
        (x, 0.0, 0)
    };
    let r = hi - lo;
    let rr = r * r;
    let c = r - rr * (P1 + rr * (P2 + rr * (P3 + rr * (P4 + rr * P5))));
    let y = 1.0 + (r * c / (2.0 - c) - lo + hi);
    scalbn(y, k)
}

/// `y × 2^n` without double rounding in the subnormal range (musl's `scalbn`).
fn scalbn(mut y: f64, mut n: i32) -> f64 {
    let two_pow_1023 = f64::from_bits(0x7fe0_0000_0000_0000);
    let two_pow_minus_969 = f64::from_bits(((0x3ff - 969) as u64) << 52);
    if n > 1023 {
        y *= two_pow_1023;
        n -= 1023;
        if n > 1023 {
            y *= two_pow_1023;
            n = (n - 1023).min(1023);
        }
    } else if n < -1022 {
        y *= two_pow_minus_969;
        n += 1022 - 53;
        if n < -1022 {
            y *= two_pow_minus_969;
            n = (n + 1022 - 53).max(-1022);
        }
    }
    y * f64::from_bits(((0x3ff + n) as u64) << 52)
}

/// Natural logarithm, deterministic across platforms.
pub fn ln(x: f64) -> f64 {
    const LG1: f64 = f64::from_bits(0x3fe5_5555_5555_5593);
    const LG2: f64 = f64::from_bits(0x3fd9_9999_9997_fa04);
    const LG3: f64 = f64::from_bits(0x3fd2_4924_9422_9359);
    const LG4: f64 = f64::from_bits(0x3fcc_71c5_1d8e_78af);
    const LG5: f64 = f64::from_bits(0x3fc7_4664_96cb_03de);
    const LG6: f64 = f64::from_bits(0x3fc3_9a09_d078_c69f);
    const LG7: f64 = f64::from_bits(0x3fc2_f112_df3e_5244);
    let mut bits = x.to_bits();
    let mut hx = (bits >> 32) as u32;
    let mut k: i32 = 0;
    if hx < 0x0010_0000 || hx >> 31 != 0 {
        if bits << 1 == 0 {
            return f64::NEG_INFINITY; // ln(±0)
        }
        if hx >> 31 != 0 {
            return f64::NAN; // ln(negative)
        }
        // Subnormal: scale up by 2^54.
        k -= 54;
        bits = (x * f64::from_bits(((0x3ff + 54) as u64) << 52)).to_bits();
        hx = (bits >> 32) as u32;
    } else if hx >= 0x7ff0_0000 {
        return x; // +inf or NaN
    } else if hx == 0x3ff0_0000 && bits << 32 == 0 {
        return 0.0;
    }
    // Reduce x into [sqrt(2)/2, sqrt(2)].
    hx = hx.wrapping_add(0x3ff0_0000 - 0x3fe6_a09e);
    k += (hx >> 20) as i32 - 0x3ff;
    hx = (hx & 0x000f_ffff) + 0x3fe6_a09e;
    let x = f64::from_bits((hx as u64) << 32 | (bits & 0xffff_ffff));
    let f = x - 1.0;
    let hfsq = 0.5 * f * f;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * (LG2 + w * (LG4 + w * LG6));
    let t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)));
    let r = t2 + t1;
    let dk = k as f64;
    s * (hfsq + r) + dk * LN2_LO - hfsq + f + dk * LN2_HI
}

// ---------------------------------------------------------------------------------------------
// The sum of a softmax's exponentials over a whole vocabulary (250,880 of them per token and
// candidate): the same `exp`, branch-free, so that it runs two lanes at a time in wasm SIMD.

/// Below this, `e^x` is counted as 0. `e^-708` ≈ 3.3e-308; a sum that also holds `e^0 = 1` (the
/// maximum's own term) cannot tell, and down to here [`exp_nonpositive`] equals [`exp`] bit for
/// bit (the reduction's `k` stays ≥ −1022, so no subnormal scaling).
const EXP_FLOOR: f64 = -708.0;

/// `e^x` for `x ≤ 0` (`-inf` included), bit for bit [`exp`]'s for `x ≥ EXP_FLOOR`, else 0:
/// [`exp`]'s branches as selections, so that a SIMD lane can take them all at once.
pub fn exp_nonpositive(x: f64) -> f64 {
    let ax = x.abs();
    // Truncated through an integer (exact here): `f64::trunc` is a libm call on x86-64.
    let kf = if ax > 0.5 * std::f64::consts::LN_2 {
        (INV_LN2 * x - 0.5) as i64 as f64
    } else {
        0.0
    };
    let hi = x - kf * LN2_HI;
    let lo = kf * LN2_LO;
    let r = hi - lo;
    let rr = r * r;
    let c = r - rr * (P1 + rr * (P2 + rr * (P3 + rr * (P4 + rr * P5))));
    let y = 1.0 + (r * c / (2.0 - c) - lo + hi);
    // 2^k for k in [-1022, 0]; garbage (then discarded) below the floor.
    let scale = f64::from_bits(((kf.max(-1022.0) as i64 + 1023) as u64) << 52);
    if x.is_nan() || x < EXP_FLOOR {
        0.0
    } else if ax < 3.725_290_298_461_914e-9 {
        1.0 + x
    } else {
        y * scale
    }
}

/// Terms of one piece of [`sum_exp`] (a multiple of 4: every piece's partial sums start on
/// lane 0); a vocabulary of 250,880 is 16 pieces, summed on rayon's threads.
const SUM_PIECE: usize = 16_384;

/// `Σ e^(x_i − max)` over `xs` in `f64`, `max` their largest value (so that every term is at
/// most 1 and one of them is exactly 1). `xs` is cut into pieces of [`SUM_PIECE`] terms; each
/// piece is summed in four interleaved partial sums (`i mod 4`), then `(s0 + s2) + (s1 + s3)`,
/// and the pieces' sums are added in order. The same number on every platform and for any
/// number of threads: the pieces run on rayon's threads, two lanes at a time in wasm SIMD
/// (four with AVX2). Terms are [`exp_nonpositive`]'s.
pub fn sum_exp(xs: &[f32], max: f32) -> f64 {
    use rayon::prelude::*;
    let pieces: Vec<f64> = xs
        .par_chunks(SUM_PIECE)
        .map(|piece| piece_sum_exp(piece, max))
        .collect();
    pieces.into_iter().fold(0.0, |sum, piece| sum + piece)
}

/// One piece of [`sum_exp`], on this platform's SIMD lanes.
fn piece_sum_exp(xs: &[f32], max: f32) -> f64 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return simd::sum_exp(xs, max as f64);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked).
        return unsafe { avx2::sum_exp(xs, max as f64) };
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    piece_sum_exp_scalar(xs, max)
}

/// [`sum_exp`] one term at a time, on the calling thread (the reference the SIMD version is
/// tested against).
pub fn sum_exp_scalar(xs: &[f32], max: f32) -> f64 {
    xs.chunks(SUM_PIECE)
        .map(|piece| piece_sum_exp_scalar(piece, max))
        .fold(0.0, |sum, piece| sum + piece)
}

/// One piece of [`sum_exp_scalar`].
fn piece_sum_exp_scalar(xs: &[f32], max: f32) -> f64 {
    let mut partial = [0.0f64; 4];
    for (i, &x) in xs.iter().enumerate() {
        partial[i % 4] += exp_nonpositive(x as f64 - max as f64);
    }
    (partial[0] + partial[2]) + (partial[1] + partial[3])
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    //! [`super::exp_nonpositive`] on two `f64` lanes, operation for operation.
    use core::arch::wasm32::*;

    use super::{EXP_FLOOR, INV_LN2, LN2_HI, LN2_LO, P1, P2, P3, P4, P5};

    /// `e^x` of both lanes, as [`super::exp_nonpositive`].
    #[inline(always)]
    fn exp_nonpositive(x: v128) -> v128 {
        let splat = f64x2_splat;
        let ax = f64x2_abs(x);
        let reduce = f64x2_gt(ax, splat(0.5 * std::f64::consts::LN_2));
        let kf = v128_and(
            f64x2_trunc(f64x2_sub(f64x2_mul(splat(INV_LN2), x), splat(0.5))),
            reduce,
        ); // +0.0 where not reduced
        let hi = f64x2_sub(x, f64x2_mul(kf, splat(LN2_HI)));
        let lo = f64x2_mul(kf, splat(LN2_LO));
        let r = f64x2_sub(hi, lo);
        let rr = f64x2_mul(r, r);
        let poly = f64x2_add(splat(P4), f64x2_mul(rr, splat(P5)));
        let poly = f64x2_add(splat(P3), f64x2_mul(rr, poly));
        let poly = f64x2_add(splat(P2), f64x2_mul(rr, poly));
        let poly = f64x2_add(splat(P1), f64x2_mul(rr, poly));
        let c = f64x2_sub(r, f64x2_mul(rr, poly));
        let q = f64x2_div(f64x2_mul(r, c), f64x2_sub(splat(2.0), c));
        let y = f64x2_add(splat(1.0), f64x2_add(f64x2_sub(q, lo), hi));
        // 2^k: k + 1023 in the low mantissa bits of k + (2^52 + 1023), shifted into the exponent.
        let biased = f64x2_add(
            f64x2_max(kf, splat(-1022.0)),
            splat(4_503_599_627_371_519.0),
        );
        let scale = i64x2_shl(biased, 52);
        let scaled = f64x2_mul(y, scale);
        let tiny = f64x2_lt(ax, splat(3.725_290_298_461_914e-9));
        let result = v128_bitselect(f64x2_add(splat(1.0), x), scaled, tiny);
        v128_and(result, f64x2_ge(x, splat(EXP_FLOOR))) // 0 below the floor (and for NaN)
    }

    /// Both lanes of four promoted `f32`s, shifted by `-max`.
    #[inline(always)]
    fn shifted(four: v128, max: v128) -> (v128, v128) {
        let low = f64x2_promote_low_f32x4(four);
        let high = f64x2_promote_low_f32x4(i32x4_shuffle::<2, 3, 0, 1>(four, four));
        (f64x2_sub(low, max), f64x2_sub(high, max))
    }

    /// A piece of [`super::sum_exp`]: lanes of `even` hold the partial sums of `i mod 4` = 0 and 1, lanes
    /// of `odd` those of 2 and 3.
    pub fn sum_exp(xs: &[f32], max: f64) -> f64 {
        let max = f64x2_splat(max);
        let (mut even, mut odd) = (f64x2_splat(0.0), f64x2_splat(0.0));
        let mut chunks = xs.chunks_exact(4);
        for chunk in &mut chunks {
            // SAFETY: `chunk` holds four f32, 16 readable bytes; v128_load allows any alignment.
            let four = unsafe { v128_load(chunk.as_ptr().cast()) };
            let (low, high) = shifted(four, max);
            even = f64x2_add(even, exp_nonpositive(low));
            odd = f64x2_add(odd, exp_nonpositive(high));
        }
        let mut rest = [f32::NEG_INFINITY; 4];
        rest[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        // SAFETY: `rest` is four f32.
        let (low, high) = shifted(unsafe { v128_load(rest.as_ptr().cast()) }, max);
        even = f64x2_add(even, exp_nonpositive(low));
        odd = f64x2_add(odd, exp_nonpositive(high));
        let sum = f64x2_add(even, odd);
        f64x2_extract_lane::<0>(sum) + f64x2_extract_lane::<1>(sum)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! [`super::exp_nonpositive`] on four `f64` lanes with AVX2, operation for operation (the
    //! wasm SIMD version's steps; no FMA), so that native sampling sums the vocabulary as fast
    //! as the browser does and to the same bits.
    use std::arch::x86_64::*;

    use super::{EXP_FLOOR, INV_LN2, LN2_HI, LN2_LO, P1, P2, P3, P4, P5};

    /// `e^x` of the four lanes, as [`super::exp_nonpositive`].
    #[inline]
    #[target_feature(enable = "avx2")]
    fn exp_nonpositive(x: __m256d) -> __m256d {
        let splat = _mm256_set1_pd;
        let ax = _mm256_andnot_pd(splat(-0.0), x);
        let reduce = _mm256_cmp_pd::<_CMP_GT_OQ>(ax, splat(0.5 * std::f64::consts::LN_2));
        let scaled_x = _mm256_sub_pd(_mm256_mul_pd(splat(INV_LN2), x), splat(0.5));
        let truncated = _mm256_round_pd::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(scaled_x);
        let kf = _mm256_and_pd(truncated, reduce); // +0.0 where not reduced
        let hi = _mm256_sub_pd(x, _mm256_mul_pd(kf, splat(LN2_HI)));
        let lo = _mm256_mul_pd(kf, splat(LN2_LO));
        let r = _mm256_sub_pd(hi, lo);
        let rr = _mm256_mul_pd(r, r);
        let poly = _mm256_add_pd(splat(P4), _mm256_mul_pd(rr, splat(P5)));
        let poly = _mm256_add_pd(splat(P3), _mm256_mul_pd(rr, poly));
        let poly = _mm256_add_pd(splat(P2), _mm256_mul_pd(rr, poly));
        let poly = _mm256_add_pd(splat(P1), _mm256_mul_pd(rr, poly));
        let c = _mm256_sub_pd(r, _mm256_mul_pd(rr, poly));
        let q = _mm256_div_pd(_mm256_mul_pd(r, c), _mm256_sub_pd(splat(2.0), c));
        let y = _mm256_add_pd(splat(1.0), _mm256_add_pd(_mm256_sub_pd(q, lo), hi));
        // 2^k: k + 1023 in the low mantissa bits of k + (2^52 + 1023), shifted into the exponent.
        let biased = _mm256_add_pd(
            _mm256_max_pd(kf, splat(-1022.0)),
            splat(4_503_599_627_371_519.0),
        );
        let scale = _mm256_castsi256_pd(_mm256_slli_epi64::<52>(_mm256_castpd_si256(biased)));
        let scaled = _mm256_mul_pd(y, scale);
        let tiny = _mm256_cmp_pd::<_CMP_LT_OQ>(ax, splat(3.725_290_298_461_914e-9));
        let result = _mm256_blendv_pd(scaled, _mm256_add_pd(splat(1.0), x), tiny);
        // 0 below the floor (and for NaN: an ordered comparison is false).
        _mm256_and_pd(result, _mm256_cmp_pd::<_CMP_GE_OQ>(x, splat(EXP_FLOOR)))
    }

    /// A piece of [`super::sum_exp`]: lane `j` holds the partial sum of the terms `i mod 4 = j`.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn sum_exp(xs: &[f32], max: f64) -> f64 {
        let max = _mm256_set1_pd(max);
        let mut sums = _mm256_setzero_pd();
        let mut chunks = xs.chunks_exact(4);
        for chunk in &mut chunks {
            // SAFETY: `chunk` holds four f32, 16 readable bytes (unaligned load).
            let four = unsafe { _mm_loadu_ps(chunk.as_ptr()) };
            let shifted = _mm256_sub_pd(_mm256_cvtps_pd(four), max);
            sums = _mm256_add_pd(sums, exp_nonpositive(shifted));
        }
        let mut rest = [f32::NEG_INFINITY; 4];
        rest[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        // SAFETY: `rest` is four f32.
        let four = unsafe { _mm_loadu_ps(rest.as_ptr()) };
        sums = _mm256_add_pd(
            sums,
            exp_nonpositive(_mm256_sub_pd(_mm256_cvtps_pd(four), max)),
        );
        let mut lanes = [0.0f64; 4];
        // SAFETY: `lanes` is four f64, 32 writable bytes (unaligned store).
        unsafe { _mm256_storeu_pd(lanes.as_mut_ptr(), sums) };
        (lanes[0] + lanes[2]) + (lanes[1] + lanes[3])
    }
}
