//! `e^x` and `tanh` on four f32 lanes of wasm SIMD, for the two places where a decode step
//! takes hundreds of thousands of them: attention's softmax and the MLP's GELU. Rust's `f32::exp`
//! and `f32::tanh` are scalar library calls on wasm32 (half of a decode step's attention time
//! at 750 keys went to `exp`); these are the Cephes single-precision polynomials (about 1 ulp),
//! branch-free. Natively GELU keeps the library's `tanh` (candle's, bit for bit), and attention
//! the same `exp` on eight lanes (`attention::lanes`).

use core::arch::wasm32::*;

use super::cephes::{EXP_HIGH, EXP_LOW, LN2, POLY};

/// Cephes `expf` on four lanes: `x = n·ln 2 + r`, a degree-6 polynomial for `e^r`, then `2^n`
/// through the exponent bits. Inputs below −87.3 give 0 (`-inf` included); inputs above 88 are
/// taken as 88 (the callers' never exceed 18).
#[inline(always)]
pub fn exp(x: v128) -> v128 {
    let splat = f32x4_splat;
    let clamped = f32x4_min(f32x4_max(x, splat(EXP_LOW)), splat(EXP_HIGH));
    let n = f32x4_floor(f32x4_add(
        f32x4_mul(clamped, splat(std::f32::consts::LOG2_E)),
        splat(0.5),
    ));
    // r = x − n·ln 2, ln 2 in two parts so that n·ln 2 loses nothing.
    let r = f32x4_sub(clamped, f32x4_mul(n, splat(LN2[0])));
    let r = f32x4_sub(r, f32x4_mul(n, splat(LN2[1])));
    let mut p = splat(POLY[0]);
    for &c in &POLY[1..] {
        p = f32x4_add(f32x4_mul(p, r), splat(c));
    }
    let y = f32x4_add(f32x4_add(f32x4_mul(f32x4_mul(p, r), r), r), splat(1.0));
    // 2^n for n in [−126, 127]: n + 127 in the exponent bits.
    let two_n = i32x4_shl(i32x4_add(i32x4_trunc_sat_f32x4(n), i32x4_splat(127)), 23);
    v128_and(f32x4_mul(y, two_n), f32x4_ge(x, splat(EXP_LOW)))
}

/// `tanh` on four lanes as `1 − 2 / (e^(2x) + 1)` (its absolute error, which is what GELU
/// sees, stays within a few 1e-8), odd-symmetric by construction of the sign. From |x| = 10 on
/// it is ±1 exactly, as the library's is from 9.01 on: GELU then gives 0 for very negative
/// inputs, not `0.5 · x` times tanh's last ulp.
#[inline(always)]
pub fn tanh(x: v128) -> v128 {
    let splat = f32x4_splat;
    let ax = f32x4_abs(x);
    let e = exp(f32x4_mul(f32x4_min(ax, splat(10.0)), splat(2.0)));
    let t = f32x4_sub(splat(1.0), f32x4_div(splat(2.0), f32x4_add(e, splat(1.0))));
    // The sign of x on |tanh x|.
    v128_or(t, v128_and(x, splat(-0.0)))
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
