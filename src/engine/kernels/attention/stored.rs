//! What the KV cache stores keys and values as, and how the decode kernel reads them: f32 as it
//! is, f16 widened to f32 in registers (in integer and float operations, or with x86's F16C).

use candle_core::CpuStorage;

use super::lanes::Lanes;

/// What the cache stores keys and values as: f32, or f16 widened to f32 in registers as they are
/// read (every product and sum is f32, in the same order for both, so an f16 cache gives bit
/// for bit what its values widened to f32 give).
pub(crate) trait Stored: Copy + Send + Sync + 'static {
    /// The type's name in messages.
    const NAME: &'static str;
    /// The storage's data, when it holds this type.
    fn data(storage: &CpuStorage) -> Option<&[Self]>;
    /// [`super::lanes::LANES`] values at `src` as f32 lanes.
    ///
    /// # Safety
    /// `src` must point to [`super::lanes::LANES`] readable values.
    unsafe fn load(src: *const Self) -> Lanes;
    /// The factor [`Self::load_down`] leaves out of the values it widens: 1, or for f16 on
    /// wasm32 2¹¹².
    const DOWN: f32 = 1.0;
    /// [`Self::load`]'s lanes divided by [`Self::DOWN`], exactly (a power of two): for f16 on
    /// wasm32 the widening without its last multiplication. A kernel that multiplies the lanes
    /// by some `s` multiplies by `s · DOWN` instead: the same exact product, so the same f32.
    ///
    /// # Safety
    /// As [`Self::load`].
    #[inline(always)]
    unsafe fn load_down(src: *const Self) -> Lanes {
        Self::load(src)
    }
    /// One value as f32.
    fn to_f32(self) -> f32;
    /// Which of the hand-written x86 loops (`super::x86`) read this type: none, or those the
    /// CPU has the instructions for.
    #[cfg(target_arch = "x86_64")]
    const X86: X86Loops = X86Loops::None;
    /// The values as f16, for the x86 loops (only called when [`Self::X86`] is not `None`).
    #[cfg(target_arch = "x86_64")]
    fn as_f16(values: &[Self]) -> &[half::f16] {
        let _ = values;
        unreachable!("{} is read by the portable loops only", Self::NAME)
    }
}

/// The hand-written x86 loops a [`Stored`] type is read by (`super::x86`).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum X86Loops {
    /// The portable loops of `tiles`.
    None,
    /// The scores' loop (AVX2, FMA and F16C).
    Avx2,
    /// The scores' loop, and the values' in 512-bit registers (AVX-512F).
    Avx512,
}

impl Stored for f32 {
    const NAME: &'static str = "f32";

    fn data(storage: &CpuStorage) -> Option<&[Self]> {
        match storage {
            CpuStorage::F32(data) => Some(data),
            _ => None,
        }
    }

    #[inline(always)]
    unsafe fn load(src: *const f32) -> Lanes {
        Lanes::load(src)
    }

    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}

impl Stored for half::f16 {
    const NAME: &'static str = "f16";

    fn data(storage: &CpuStorage) -> Option<&[Self]> {
        match storage {
            CpuStorage::F16(data) => Some(data),
            _ => None,
        }
    }

    #[cfg(target_arch = "wasm32")]
    const DOWN: f32 = crate::engine::kernels::f16::TWO_POW_112;

    #[cfg(target_arch = "wasm32")]
    #[inline(always)]
    unsafe fn load_down(src: *const half::f16) -> Lanes {
        Lanes(crate::engine::kernels::f16::widen4_finite_down(src))
    }

    #[inline(always)]
    unsafe fn load(src: *const half::f16) -> Lanes {
        #[cfg(target_arch = "wasm32")]
        return Lanes(crate::engine::kernels::f16::widen4_finite(src));
        #[cfg(not(target_arch = "wasm32"))]
        Lanes(crate::engine::kernels::f16::widen8_finite(
            &*src.cast::<[half::f16; 8]>(),
        ))
    }

    #[inline(always)]
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
}

/// An f16 of the cache read with x86's F16C conversion, one instruction for eight values (the
/// plain [`half::f16`] path widens them in integer and float operations). Only ever used when
/// the CPU has AVX2, FMA and F16C ([`has_f16c`]).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(super) struct F16c(half::f16);

/// Whether the CPU has what [`F16c`] and the AVX2 kernels need.
#[cfg(target_arch = "x86_64")]
pub(super) fn has_f16c() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// An f16 of the cache as [`F16c`] reads it, on a CPU that also has AVX-512F ([`has_avx512`]):
/// the values' loop then holds a whole 64-wide row in 512-bit registers.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(super) struct F16cAvx512(half::f16);

/// Whether the CPU has what [`F16cAvx512`] and the AVX-512 kernels need.
#[cfg(target_arch = "x86_64")]
pub(super) fn has_avx512() -> bool {
    has_f16c() && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl")
}

/// [`Stored`] for a transparent wrapper of f16 read with F16C, `$loops` its x86 loops.
#[cfg(target_arch = "x86_64")]
macro_rules! stored_with_f16c {
    ($type:ty, $loops:expr) => {
        impl Stored for $type {
            const NAME: &'static str = "f16";
            const X86: X86Loops = $loops;

            fn data(storage: &CpuStorage) -> Option<&[Self]> {
                let data = half::f16::data(storage)?;
                // SAFETY: the type is a transparent wrapper of f16.
                Some(unsafe { &*(data as *const [half::f16] as *const [Self]) })
            }

            #[inline(always)]
            unsafe fn load(src: *const Self) -> Lanes {
                use std::arch::x86_64::{_mm256_cvtph_ps, _mm_loadu_si128};
                // SAFETY: the caller gives eight readable values; the CPU has F16C (see the
                // type).
                let wide = unsafe { _mm256_cvtph_ps(_mm_loadu_si128(src.cast())) };
                // SAFETY: an __m256 is eight f32.
                Lanes(unsafe { core::mem::transmute::<std::arch::x86_64::__m256, [f32; 8]>(wide) })
            }

            #[inline(always)]
            fn to_f32(self) -> f32 {
                self.0.to_f32()
            }

            #[inline(always)]
            fn as_f16(values: &[Self]) -> &[half::f16] {
                // SAFETY: the type is a transparent wrapper of f16.
                unsafe { &*(values as *const [Self] as *const [half::f16]) }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
stored_with_f16c!(F16c, X86Loops::Avx2);
#[cfg(target_arch = "x86_64")]
stored_with_f16c!(F16cAvx512, X86Loops::Avx512);
