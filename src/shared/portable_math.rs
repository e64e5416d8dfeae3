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

/// `e^x`, deterministic across platforms.
pub fn exp(x: f64) -> f64 {
    const INV_LN2: f64 = f64::from_bits(0x3ff7_1547_652b_82fe);
    const P1: f64 = f64::from_bits(0x3fc5_5555_5555_553e);
    const P2: f64 = f64::from_bits(0xbf66_c16c_16be_bd93);
    const P3: f64 = f64::from_bits(0x3f11_566a_af25_de2c);
    const P4: f64 = f64::from_bits(0xbebb_bd41_c5d2_6bf1);
    const P5: f64 = f64::from_bits(0x3e66_3769_72be_a4d0);
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
