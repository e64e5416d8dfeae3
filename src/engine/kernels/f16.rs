//! f16 ⇄ f32 for the KV cache kept in half precision: its keys and values are stored as f16
//! (half the memory and half the bytes a decode step reads) and widened to f32 as attention
//! reads them, so every product and sum stays in f32.
//!
//! Natively `half`'s slice conversions use the CPU's F16C instructions when it has them. On
//! wasm32 `half` converts one value at a time with branches; here eight values are widened per
//! step on simd128 lanes: [`widen`] exactly for every half (normal, subnormal, zero, infinity,
//! NaN), and the decode kernel's loads in registers (four halves at a time on wasm32, eight
//! natively), exactly for every finite half (the cache stores no infinities: [`narrow_finite`]
//! clamps to f16's range).

use candle_core::{DType, Storage, Tensor};
use half::f16;
#[cfg(not(target_arch = "wasm32"))]
use half::slice::HalfFloatSliceExt;

/// 2¹¹²: the product that turns a half's bits, shifted into an f32's place, into its value.
pub(crate) const TWO_POW_112: f32 = f32::from_bits(0x7780_0000);

/// The bits of a half as an i16, sign-extended and shifted left by 13, keep its sign and its
/// exponent and mantissa under this mask (the sign extension's other bits cleared).
const SHIFTED_HALF_BITS: u32 = 0x8fff_e000;

/// `dst[i] ← src[i]` as f32, exactly; `dst` is at least as long as `src`.
#[inline]
pub fn widen(src: &[f16], dst: &mut [f32]) {
    let dst = &mut dst[..src.len()];
    #[cfg(target_arch = "wasm32")]
    widen_simd128(src, dst);
    #[cfg(not(target_arch = "wasm32"))]
    src.convert_to_f32_slice(dst);
}

/// [`widen`] on wasm32: the bits of |h| shifted into an f32's place make `h · 2⁻¹¹²` (for
/// subnormal halves as well), so one product by 2¹¹² gives |h|; halves with every exponent bit
/// set (infinity, NaN) get every f32 exponent bit; then the sign.
#[cfg(target_arch = "wasm32")]
fn widen_simd128(src: &[f16], dst: &mut [f32]) {
    use core::arch::wasm32::*;
    let mut src_chunks = src.chunks_exact(8);
    let mut dst_chunks = dst.chunks_exact_mut(8);
    for (s, d) in (&mut src_chunks).zip(&mut dst_chunks) {
        // SAFETY: `s` is eight f16 (16 bytes) and `d` eight f32 (32 bytes); unaligned loads and
        // stores are allowed.
        unsafe {
            let h = v128_load(s.as_ptr().cast());
            v128_store(d.as_mut_ptr().cast(), widen4(u32x4_extend_low_u16x8(h)));
            v128_store(
                d.as_mut_ptr().add(4).cast(),
                widen4(u32x4_extend_high_u16x8(h)),
            );
        }
    }
    for (s, d) in src_chunks
        .remainder()
        .iter()
        .zip(dst_chunks.into_remainder())
    {
        *d = s.to_f32();
    }
}

/// Four halves, their bits in the low 16 bits of each u32 lane, widened to f32 lanes exactly
/// for every half (see [`widen`]'s wasm32 path; the q4_0 tiles' scales too).
#[cfg(target_arch = "wasm32")]
#[inline(always)]
pub fn widen4(h: core::arch::wasm32::v128) -> core::arch::wasm32::v128 {
    use core::arch::wasm32::*;
    let magnitude = i32x4_shl(v128_and(h, i32x4_splat(0x7fff)), 13);
    let value = f32x4_mul(magnitude, f32x4_splat(TWO_POW_112));
    let special = i32x4_ge(magnitude, i32x4_splat(0x7c00 << 13));
    let value = v128_bitselect(v128_or(magnitude, i32x4_splat(0x7f80_0000)), value, special);
    v128_or(value, i32x4_shl(v128_and(h, i32x4_splat(0x8000)), 16))
}

/// Four halves at `src` widened to f32 lanes, exact for every finite half (the decode kernel's
/// loads): [`widen4_finite_down`], then its product by 2¹¹².
///
/// # Safety
/// `src` must point to four readable halves.
#[cfg(target_arch = "wasm32")]
#[inline(always)]
pub unsafe fn widen4_finite(src: *const f16) -> core::arch::wasm32::v128 {
    use core::arch::wasm32::*;
    f32x4_mul(widen4_finite_down(src), f32x4_splat(TWO_POW_112))
}

/// Four halves at `src` as f32 lanes times 2⁻¹¹², exact for every finite half (subnormal ones
/// too): the bits of h as an i16, sign-extended and shifted into an f32's place with the
/// exponent's top bits cleared. A kernel that multiplies the lanes by some `s` anyway multiplies
/// by `s · 2¹¹²` ([`TWO_POW_112`]) instead: the same exact product, so the same rounding.
///
/// # Safety
/// `src` must point to four readable halves.
#[cfg(target_arch = "wasm32")]
#[inline(always)]
pub(crate) unsafe fn widen4_finite_down(src: *const f16) -> core::arch::wasm32::v128 {
    use core::arch::wasm32::*;
    let h = i32x4_load_extend_i16x4(src.cast());
    v128_and(i32x4_shl(h, 13), i32x4_splat(SHIFTED_HALF_BITS as i32))
}

/// Eight halves widened to f32 as `widen4_finite` does on wasm32, in plain integer and float
/// operations, which the compiler vectorizes (a call into `half` per eight values cost more
/// than the arithmetic).
#[cfg(not(target_arch = "wasm32"))]
#[inline(always)]
pub(crate) fn widen8_finite(src: &[f16; 8]) -> [f32; 8] {
    src.map(|h| {
        let scaled = ((h.to_bits() as i16 as i32) << 13) as u32 & SHIFTED_HALF_BITS;
        f32::from_bits(scaled) * TWO_POW_112
    })
}

/// `t` rounded to f16 for the cache, clamped to f16's finite range first (±65,504), so that
/// the cache holds no infinities.
#[cfg(not(target_arch = "wasm32"))]
pub fn narrow_finite(t: &Tensor) -> candle_core::Result<Tensor> {
    t.clamp(-65_504f32, 65_504f32)?.to_dtype(DType::F16)
}

/// `t` (f32) rounded to f16 for the cache, clamped to f16's finite range first (±65,504), so
/// that the cache holds no infinities: candle's `clamp` then `to_dtype`, bit for bit, four
/// values at a time on simd128 lanes (those took two passes and `half`'s one-value-at-a-time
/// conversion: ~15 µs for a layer's 1,024 keys, 0.7 ms a decode step). NaN becomes ±65,504.
#[cfg(target_arch = "wasm32")]
pub fn narrow_finite(t: &Tensor) -> candle_core::Result<Tensor> {
    convert_contiguous(t, "f16 narrowing", narrow_finite_simd128)
}

/// [`narrow_finite`]'s values: `dst[i] ← src[i]` clamped and rounded to f16; `dst` as long as
/// `src`.
#[cfg(target_arch = "wasm32")]
fn narrow_finite_simd128(src: &[f32], dst: &mut [f16]) {
    use core::arch::wasm32::*;
    let mut src_chunks = src.chunks_exact(4);
    let mut dst_chunks = dst.chunks_exact_mut(4);
    for (s, d) in (&mut src_chunks).zip(&mut dst_chunks) {
        // SAFETY: `s` is four f32 (16 bytes), `d` four f16 (8 bytes); unaligned access is allowed.
        unsafe {
            let halves = narrow4_finite(v128_load(s.as_ptr().cast()));
            v128_store64_lane::<0>(u16x8_narrow_i32x4(halves, halves), d.as_mut_ptr().cast());
        }
    }
    for (s, d) in src_chunks
        .remainder()
        .iter()
        .zip(dst_chunks.into_remainder())
    {
        *d = f16::from_f32(s.clamp(-65_504.0, 65_504.0));
    }
}

/// Four f32 lanes clamped to ±65,504 and rounded to the nearest half (ties to even), the halves'
/// bits in the low 16 bits of each u32 lane: the magnitude's bits, clamped, either rebiased
/// with the rounding added before the shift (normal halves), or, below f16's smallest normal
/// (2⁻¹⁴), rounded by the float addition of ½ (subnormal halves and zero: the sum's low bits
/// are the half's). The scheme of `half`'s and Giesen's `float_to_half_fast3_rtne`.
#[cfg(target_arch = "wasm32")]
#[inline(always)]
fn narrow4_finite(x: core::arch::wasm32::v128) -> core::arch::wasm32::v128 {
    use core::arch::wasm32::*;
    /// The bits of 65,504, f16's largest finite value, as f32.
    const F16_MAX_BITS: u32 = 0x477f_e000;
    /// The bits of 2⁻¹⁴, f16's smallest normal value, as f32.
    const F16_MIN_NORMAL_BITS: u32 = 0x3880_0000;
    /// ½: added to a magnitude below 2⁻¹⁴, the sum's low bits are the subnormal half, rounded.
    const HALF_BITS: u32 = 0x3f00_0000;
    let sign = v128_and(x, u32x4_splat(0x8000_0000));
    // Magnitudes compare as their bits; NaN's bits are above 65,504's.
    let magnitude = u32x4_min(v128_xor(x, sign), u32x4_splat(F16_MAX_BITS));
    let subnormal = u32x4_sub(
        f32x4_add(magnitude, u32x4_splat(HALF_BITS)),
        u32x4_splat(HALF_BITS),
    );
    let odd = v128_and(u32x4_shr(magnitude, 13), u32x4_splat(1));
    let rebiased = u32x4_add(magnitude, u32x4_splat((((15 - 127) << 23) + 0xfff) as u32));
    let normal = u32x4_shr(u32x4_add(rebiased, odd), 13);
    let small = u32x4_lt(magnitude, u32x4_splat(F16_MIN_NORMAL_BITS));
    v128_or(
        v128_bitselect(subnormal, normal, small),
        u32x4_shr(sign, 16),
    )
}

/// An f16 tensor as a contiguous f32 tensor of the same shape (see [`widen`]); an f32 tensor as
/// it is.
pub fn to_f32(t: &Tensor) -> candle_core::Result<Tensor> {
    if t.dtype() == DType::F32 {
        return Ok(t.clone());
    }
    convert_contiguous(t, "f16 widening", widen)
}

/// A tensor of `t`'s shape holding `convert`'s output for `t`'s values, `t` (made contiguous)
/// a CPU tensor of `S` (else an error naming `what`).
fn convert_contiguous<S, D>(
    t: &Tensor,
    what: &str,
    convert: impl Fn(&[S], &mut [D]),
) -> candle_core::Result<Tensor>
where
    S: candle_core::WithDType,
    D: candle_core::WithDType,
{
    let t = t.contiguous()?;
    let (guard, layout) = t.storage_and_layout();
    let data = match (&*guard, layout.contiguous_offsets()) {
        (Storage::Cpu(storage), Some((start, end))) => S::cpu_storage_as_slice(storage)
            .ok()
            .map(|data| &data[start..end]),
        _ => None,
    };
    let Some(data) = data else {
        candle_core::bail!("{what} needs a contiguous {} CPU tensor", S::DTYPE.as_str())
    };
    let mut out = vec![D::zero(); data.len()];
    convert(data, &mut out);
    Tensor::from_vec(out, t.shape(), t.device())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decode kernel's widening in registers is exact for every finite half.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn register_widening_is_exact_for_every_finite_half() {
        let finite: Vec<f16> = (0..=u16::MAX)
            .map(f16::from_bits)
            .filter(|h| h.is_finite())
            .collect();
        for eight in finite.chunks_exact(8) {
            for (h, x) in eight.iter().zip(widen8_finite(eight.try_into().unwrap())) {
                assert_eq!(x.to_bits(), h.to_f32().to_bits(), "{:#06x}", h.to_bits());
            }
        }
    }

    /// Every one of the 65,536 halves widens to what `half`'s scalar conversion gives (NaNs to
    /// NaN), on both paths.
    #[test]
    fn widen_is_exact_for_every_half() {
        let all: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
        let mut out = vec![0f32; all.len()];
        widen(&all, &mut out);
        for (h, x) in all.iter().zip(&out) {
            let expected = h.to_f32();
            assert!(
                x.to_bits() == expected.to_bits() || (x.is_nan() && expected.is_nan()),
                "{:#06x}: {x} vs {expected}",
                h.to_bits()
            );
        }
    }
}
