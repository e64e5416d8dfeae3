//! The constants of Cephes' single-precision `expf`, shared by its two SIMD versions
//! (`simd_math::exp` on wasm32, `Lanes::exp` of the native attention kernel), which run the same
//! operations on them: `x = n·ln 2 + r`, a polynomial for `e^r`, then `2^n` through the exponent
//! bits.

/// Inputs below this give 0.
pub const EXP_LOW: f32 = -87.3;
/// Inputs above this are taken as it.
pub const EXP_HIGH: f32 = 88.0;
/// ln 2 in two parts, so that `n·ln 2` loses nothing: `r = (x − n·LN2[0]) − n·LN2[1]`.
pub const LN2: [f32; 2] = [0.693_359_4, -2.121_944_4e-4];
/// The polynomial `p` (`e^r ≈ p·r² + r + 1`), highest degree first, by Horner's rule.
pub const POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    0.166_666_65,
    0.5,
];
