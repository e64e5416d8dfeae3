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
    /// One value as f32.
    fn to_f32(self) -> f32;
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

#[cfg(target_arch = "x86_64")]
impl Stored for F16c {
    const NAME: &'static str = "f16";

    fn data(storage: &CpuStorage) -> Option<&[Self]> {
        let data = half::f16::data(storage)?;
        // SAFETY: F16c is a transparent wrapper of f16.
        Some(unsafe { &*(data as *const [half::f16] as *const [Self]) })
    }

    #[inline(always)]
    unsafe fn load(src: *const Self) -> Lanes {
        use std::arch::x86_64::{_mm256_cvtph_ps, _mm_loadu_si128};
        // SAFETY: the caller gives eight readable values; the CPU has F16C (see the type).
        let wide = unsafe { _mm256_cvtph_ps(_mm_loadu_si128(src.cast())) };
        // SAFETY: an __m256 is eight f32.
        Lanes(unsafe { core::mem::transmute::<std::arch::x86_64::__m256, [f32; 8]>(wide) })
    }

    #[inline(always)]
    fn to_f32(self) -> f32 {
        self.0.to_f32()
    }
}
