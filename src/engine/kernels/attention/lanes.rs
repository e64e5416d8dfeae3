//! One vector of f32 lanes as the decode kernel's loops use it: four in a `v128` on wasm32
//! (explicit simd128; in the `+relaxed-simd` build relaxed SIMD's multiply-add, which the
//! engine may fuse, so that its results may differ from the plain build's in rounding), eight
//! natively (plain arrays, each operation written so that the compiler turns it into one AVX
//! instruction inside the AVX2 function of `attention::for_each_head`).

#[cfg(not(target_arch = "wasm32"))]
use crate::engine::kernels::cephes::{EXP_HIGH, EXP_LOW, LN2, POLY};

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
    pub(crate) unsafe fn store(self, dst: *mut f32) {
        core::arch::wasm32::v128_store(dst.cast(), self.0)
    }

    /// `self + a · b` (fused, or not, as the engine's relaxed multiply-add chooses, in the
    /// `+relaxed-simd` build).
    #[inline(always)]
    pub(crate) fn mul_add(self, a: Self, b: Self) -> Self {
        use core::arch::wasm32::*;
        #[cfg(target_feature = "relaxed-simd")]
        return Self(f32x4_relaxed_madd(a.0, b.0, self.0));
        #[cfg(not(target_feature = "relaxed-simd"))]
        Self(f32x4_add(self.0, f32x4_mul(a.0, b.0)))
    }

    /// The lanes `0, 1, 2, 3`.
    #[inline(always)]
    pub(crate) fn positions() -> Self {
        Self(core::arch::wasm32::f32x4(0.0, 1.0, 2.0, 3.0))
    }

    /// `self + x`, lane by lane.
    #[inline(always)]
    pub(crate) fn add(self, x: Self) -> Self {
        Self(core::arch::wasm32::f32x4_add(self.0, x.0))
    }

    /// `self − x`, lane by lane.
    #[inline(always)]
    pub(crate) fn sub(self, x: Self) -> Self {
        Self(core::arch::wasm32::f32x4_sub(self.0, x.0))
    }

    /// `self · x`, lane by lane.
    #[inline(always)]
    pub(crate) fn mul(self, x: Self) -> Self {
        Self(core::arch::wasm32::f32x4_mul(self.0, x.0))
    }

    /// `self / x`, lane by lane.
    #[inline(always)]
    pub(crate) fn div(self, x: Self) -> Self {
        Self(core::arch::wasm32::f32x4_div(self.0, x.0))
    }

    /// The larger of `self` and `x`, lane by lane.
    #[inline(always)]
    pub(crate) fn max(self, x: Self) -> Self {
        Self(core::arch::wasm32::f32x4_pmax(self.0, x.0))
    }

    /// `e^x` of every lane ([`crate::engine::kernels::simd_math::exp`]).
    #[inline(always)]
    pub(crate) fn exp(self) -> Self {
        Self(crate::engine::kernels::simd_math::exp(self.0))
    }

    /// `self`'s lanes where `x` is at least `limit`, 0 elsewhere.
    #[inline(always)]
    pub(crate) fn zero_where_below(self, x: Self, limit: f32) -> Self {
        use core::arch::wasm32::*;
        Self(v128_and(self.0, f32x4_ge(x.0, f32x4_splat(limit))))
    }

    /// The lanes as an array.
    #[inline(always)]
    pub(crate) fn to_array(self) -> [f32; LANES] {
        // SAFETY: a v128 is four f32.
        unsafe { core::mem::transmute::<core::arch::wasm32::v128, [f32; 4]>(self.0) }
    }

    /// The sums of four vectors' lanes, each `(x₀ + x₂) + (x₁ + x₃)`: one 4 × 4 transpose
    /// interleaved with the adds.
    #[inline(always)]
    pub(crate) fn sum4([a, b, c, d]: [Self; 4]) -> [f32; 4] {
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
    pub(crate) unsafe fn store(self, dst: *mut f32) {
        dst.cast::<[f32; 8]>().write_unaligned(self.0)
    }

    /// `self + a · b`, lane by lane, fused (one rounding): one FMA instruction inside the AVX2
    /// function (half the time of a multiply and an add there: the kernel is bound by its
    /// arithmetic), libm's `fmaf` on a CPU without FMA.
    #[inline(always)]
    pub(crate) fn mul_add(self, a: Self, b: Self) -> Self {
        Self(core::array::from_fn(|i| a.0[i].mul_add(b.0[i], self.0[i])))
    }

    /// The lanes `0, 1, …, 7`.
    #[inline(always)]
    pub(crate) fn positions() -> Self {
        Self(core::array::from_fn(|i| i as f32))
    }

    /// `f(self, x)` lane by lane.
    #[inline(always)]
    fn zip(self, x: Self, f: impl Fn(f32, f32) -> f32) -> Self {
        Self(core::array::from_fn(|i| f(self.0[i], x.0[i])))
    }

    /// `self + x`, lane by lane.
    #[inline(always)]
    pub(crate) fn add(self, x: Self) -> Self {
        self.zip(x, |a, b| a + b)
    }

    /// `self − x`, lane by lane.
    #[inline(always)]
    pub(crate) fn sub(self, x: Self) -> Self {
        self.zip(x, |a, b| a - b)
    }

    /// `self · x`, lane by lane.
    #[inline(always)]
    pub(crate) fn mul(self, x: Self) -> Self {
        self.zip(x, |a, b| a * b)
    }

    /// `self / x`, lane by lane.
    #[inline(always)]
    pub(crate) fn div(self, x: Self) -> Self {
        self.zip(x, |a, b| a / b)
    }

    /// The larger of `self` and `x`, lane by lane (`x` when `self` is NaN, as wasm's `pmax`).
    #[inline(always)]
    pub(crate) fn max(self, x: Self) -> Self {
        self.zip(x, |a, b| if a < b { b } else { a })
    }

    /// `e^x` of every lane: the wasm build's Cephes `expf` (`simd_math::exp`), operation for
    /// operation, each a whole-vector operation that the compiler turns into one instruction.
    #[inline(always)]
    pub(crate) fn exp(self) -> Self {
        let splat = Self::splat;
        let clamped = self
            .max(splat(EXP_LOW))
            .zip(splat(EXP_HIGH), |a, b| if a > b { b } else { a });
        let n = clamped.mul(splat(std::f32::consts::LOG2_E)).add(splat(0.5));
        let n = Self(core::array::from_fn(|i| n.0[i].floor()));
        let r = clamped.sub(n.mul(splat(LN2[0])));
        let r = r.sub(n.mul(splat(LN2[1])));
        let mut p = splat(POLY[0]);
        for c in &POLY[1..] {
            p = p.mul(r).add(splat(*c));
        }
        let y = p.mul(r).mul(r).add(r).add(splat(1.0));
        // 2^n for n in [−126, 127]: n + 127 in the exponent bits.
        let two_n = Self(core::array::from_fn(|i| {
            // SAFETY: n is a whole number in [−126, 127] (x was clamped to [−87.3, 88]).
            f32::from_bits(((unsafe { n.0[i].to_int_unchecked::<i32>() } + 127) << 23) as u32)
        }));
        y.mul(two_n)
            .zip(self, |e, x| if x >= EXP_LOW { e } else { 0.0 })
    }

    /// `self`'s lanes where `x` is at least `limit`, 0 elsewhere.
    #[inline(always)]
    pub(crate) fn zero_where_below(self, x: Self, limit: f32) -> Self {
        self.zip(x, |y, x| if x >= limit { y } else { 0.0 })
    }

    /// The lanes as an array.
    #[inline(always)]
    pub(crate) fn to_array(self) -> [f32; LANES] {
        self.0
    }

    /// The sums of four vectors' lanes, each `((x₀ + x₄) + (x₂ + x₆)) + ((x₁ + x₅) + (x₃ +
    /// x₇))`.
    #[inline(always)]
    pub(crate) fn sum4(vectors: [Self; 4]) -> [f32; 4] {
        vectors.map(|Self(x)| {
            let half: [f32; 4] = core::array::from_fn(|i| x[i] + x[i + 4]);
            (half[0] + half[2]) + (half[1] + half[3])
        })
    }
}
