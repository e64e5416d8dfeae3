//! `e^x` and `tanh` on four f32 lanes of wasm SIMD, for the two places where a decode step
//! takes hundreds of thousands of them: attention's softmax and the MLP's GELU. Rust's `f32::exp`
//! and `f32::tanh` are scalar library calls on wasm32 (half of a decode step's attention time
//! at 750 keys went to `exp`); these are the Cephes single-precision polynomials (about 1 ulp),
//! branch-free. Natively the callers keep the library functions.

use core::arch::wasm32::*;

/// Cephes `expf` on four lanes: `x = n·ln 2 + r`, a degree-6 polynomial for `e^r`, then `2^n`
/// through the exponent bits. Inputs below −87.3 give 0 (`-inf` included); inputs above 88 are
/// taken as 88 (the callers' never exceed 18).
#[inline(always)]
pub fn exp(x: v128) -> v128 {
    let splat = f32x4_splat;
    let clamped = f32x4_min(f32x4_max(x, splat(-87.3)), splat(88.0));
    let n = f32x4_floor(f32x4_add(
        f32x4_mul(clamped, splat(std::f32::consts::LOG2_E)),
        splat(0.5),
    ));
    // r = x − n·ln 2, ln 2 in two parts so that n·ln 2 loses nothing.
    let r = f32x4_sub(clamped, f32x4_mul(n, splat(0.693_359_4)));
    let r = f32x4_sub(r, f32x4_mul(n, splat(-2.121_944_4e-4)));
    let mut p = splat(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ] {
        p = f32x4_add(f32x4_mul(p, r), splat(c));
    }
    let y = f32x4_add(f32x4_add(f32x4_mul(f32x4_mul(p, r), r), r), splat(1.0));
    // 2^n for n in [−126, 127]: n + 127 in the exponent bits.
    let two_n = i32x4_shl(i32x4_add(i32x4_trunc_sat_f32x4(n), i32x4_splat(127)), 23);
    v128_and(f32x4_mul(y, two_n), f32x4_ge(x, splat(-87.3)))
}

/// `tanh` on four lanes as `1 − 2 / (e^(2x) + 1)` (its absolute error, which is what GELU
/// sees, stays within a few 1e-8), odd-symmetric by construction of the sign.
#[inline(always)]
pub fn tanh(x: v128) -> v128 {
    let splat = f32x4_splat;
    let ax = f32x4_abs(x);
    let e = exp(f32x4_mul(f32x4_min(ax, splat(9.0)), splat(2.0)));
    let t = f32x4_sub(splat(1.0), f32x4_div(splat(2.0), f32x4_add(e, splat(1.0))));
    // The sign of x on |tanh x|.
    v128_or(t, v128_and(x, splat(-0.0)))
}

/// `xs[i] ← e^(xs[i] − shift)` in place; returns their sum.
pub fn exp_shifted_in_place(xs: &mut [f32], shift: f32) -> f32 {
    let shift = f32x4_splat(shift);
    let mut sum = f32x4_splat(0.0);
    let mut chunks = xs.chunks_exact_mut(4);
    for chunk in &mut chunks {
        // SAFETY: `chunk` is four f32, 16 bytes; unaligned loads and stores are allowed.
        unsafe {
            let e = exp(f32x4_sub(v128_load(chunk.as_ptr().cast()), shift));
            v128_store(chunk.as_mut_ptr().cast(), e);
            sum = f32x4_add(sum, e);
        }
    }
    let rest = chunks.into_remainder();
    let mut four = [f32::NEG_INFINITY; 4];
    four[..rest.len()].copy_from_slice(rest);
    // SAFETY: `four` is four f32.
    let e = exp(f32x4_sub(unsafe { v128_load(four.as_ptr().cast()) }, shift));
    // SAFETY: as above.
    unsafe { v128_store(four.as_mut_ptr().cast(), e) };
    rest.copy_from_slice(&four[..rest.len()]);
    sum = f32x4_add(sum, e);
    (f32x4_extract_lane::<0>(sum) + f32x4_extract_lane::<1>(sum))
        + (f32x4_extract_lane::<2>(sum) + f32x4_extract_lane::<3>(sum))
}

/// candle's GELU (`0.5 · x · (1 + tanh(√(2/π) · x · (1 + 0.044715 · x²)))`) in place, with the
/// four-lane [`tanh`].
pub fn gelu_in_place(xs: &mut [f32]) {
    let splat = f32x4_splat;
    let gelu = |x: v128| {
        let inner = f32x4_mul(
            f32x4_mul(splat(0.797_884_6), x),
            f32x4_add(splat(1.0), f32x4_mul(f32x4_mul(splat(0.044715), x), x)),
        );
        f32x4_mul(f32x4_mul(splat(0.5), x), f32x4_add(splat(1.0), tanh(inner)))
    };
    let mut chunks = xs.chunks_exact_mut(4);
    for chunk in &mut chunks {
        // SAFETY: `chunk` is four f32.
        unsafe {
            v128_store(
                chunk.as_mut_ptr().cast(),
                gelu(v128_load(chunk.as_ptr().cast())),
            )
        };
    }
    for x in chunks.into_remainder() {
        *x = super::gelu(*x);
    }
}
