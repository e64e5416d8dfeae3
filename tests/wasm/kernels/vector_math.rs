//! The wasm SIMD code that is not a matrix product, each against its scalar or candle
//! reference: keys and values narrowed to f16 and widened back, the softmax sum over a
//! vocabulary, exp, tanh and GELU on lanes, and attention's decode step.

use candle_core::{Device, Tensor};
use storywriter::engine::kernels::{f16, gelu, simd_math};
use storywriter::shared::portable_math::{sum_exp, sum_exp_scalar};
use wasm_bindgen_test::wasm_bindgen_test;

use crate::common::values;

/// Keys and values rounded to f16 for the cache on SIMD lanes give candle's `clamp` then
/// `to_dtype` bit for bit: every 4,099th f32 bit pattern (both signs, every exponent), each
/// half's neighbours and the ties between halves (normal and subnormal), and the clamp's
/// edges; a length that leaves a remainder past the lanes.
#[wasm_bindgen_test]
fn keys_narrow_to_f16_like_candle() {
    let mut x: Vec<f32> = (0..=u32::MAX)
        .step_by(4_099)
        .map(f32::from_bits)
        .filter(|v| !v.is_nan())
        .collect();
    for h in (0..0x7c00u16).step_by(7) {
        let v = half::f16::from_bits(h).to_f32();
        let next = half::f16::from_bits(h + 1).to_f32();
        let tie = (v as f64 + next as f64) / 2.0;
        for y in [v, tie as f32, f32::from_bits((tie as f32).to_bits() + 1)] {
            x.extend([y, -y]);
        }
    }
    x.extend([
        65_504.0,
        65_519.0,
        65_520.0,
        1e9,
        f32::INFINITY,
        -f32::INFINITY,
        6e-8,
        3e-8,
    ]);
    x.push(0.1);
    let device = Device::Cpu;
    let t = Tensor::from_vec(x.clone(), x.len(), &device).unwrap();
    let ours: Vec<half::f16> = f16::narrow_finite(&t).unwrap().to_vec1().unwrap();
    let candle: Vec<half::f16> = t
        .clamp(-65_504f32, 65_504f32)
        .unwrap()
        .to_dtype(candle_core::DType::F16)
        .unwrap()
        .to_vec1()
        .unwrap();
    for ((v, a), b) in x.iter().zip(&ours).zip(&candle) {
        assert_eq!(a.to_bits(), b.to_bits(), "{v:e} ({:#010x})", v.to_bits());
    }
}

/// The softmax sum over a vocabulary (`portable_math::sum_exp`) on two SIMD lanes gives the
/// scalar reference's number bit for bit (so log-probabilities recorded in the browser equal
/// native ones), for lengths around the 4-wide step, `-inf` and terms below the floor.
#[wasm_bindgen_test]
fn softmax_sum_matches_the_scalar_reference_bit_for_bit() {
    for (n, seed, scale) in [
        (1, 1, 1.0),
        (3, 2, 5.0),
        (4, 3, 30.0),
        (7, 4, 1e-8),
        (1_001, 5, 800.0),
        (250_880, 6, 12.0),
    ] {
        let mut xs = values(n, seed, scale);
        if n > 10 {
            xs[7] = f32::NEG_INFINITY;
        }
        let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(
            sum_exp(&xs, max).to_bits(),
            sum_exp_scalar(&xs, max).to_bits(),
            "{n} values of scale {scale}"
        );
    }
}

/// `simd_math`'s four-lane `exp`, `tanh` and GELU against the scalar library functions: `exp`
/// within 2 ulp-sized relative errors, `tanh` and GELU within 2e-7 absolute (scaled by |x| for
/// GELU), over the ranges attention and the MLP feed them; `exp` of `-inf` and of very negative
/// inputs is 0, and so is GELU of inputs below −6 (tanh −1 exactly, as the library's).
#[wasm_bindgen_test]
fn simd_exp_tanh_and_gelu_match_the_library_functions() {
    use core::arch::wasm32::{f32x4_extract_lane, f32x4_splat};
    let lane = |v| f32x4_extract_lane::<0>(v);
    let mut x = -87.0f32;
    while x <= 0.0 {
        let (got, want) = (lane(simd_math::exp(f32x4_splat(x))), x.exp());
        assert!(
            (got - want).abs() <= 2.5e-7 * want,
            "exp({x}): {got} vs {want}"
        );
        x += 0.000_37;
    }
    for x in [f32::NEG_INFINITY, -1e30, -88.0] {
        assert_eq!(lane(simd_math::exp(f32x4_splat(x))), 0.0, "exp({x})");
    }
    let mut x = -12.0f32;
    while x <= 12.0 {
        let (got, want) = (lane(simd_math::tanh(f32x4_splat(x))), x.tanh());
        assert!((got - want).abs() <= 2e-7, "tanh({x}): {got} vs {want}");
        x += 0.000_29;
    }
    let inputs: Vec<f32> = (-200_000..=200_000).map(|i| i as f32 * 0.000_25).collect();
    let want: Vec<f32> = inputs.iter().map(|&x| gelu(x)).collect();
    let mut xs = inputs.clone();
    simd_math::gelu_in_place(&mut xs);
    for ((x, got), want) in inputs.iter().zip(&xs).zip(&want) {
        assert!(
            (got - want).abs() <= 2e-7 * x.abs().max(1.0),
            "gelu({x}): {got} vs {want}"
        );
        if *x < -6.0 {
            assert_eq!(got.to_bits(), want.to_bits(), "gelu({x}): {got} vs {want}");
        }
    }
}

/// The f16 cache's widening on simd128 lanes gives, for each of the 65,536 halves, what `half`'s
/// scalar conversion gives (any NaN for a NaN), at every length (the lanes and the tail).
#[wasm_bindgen_test]
fn f16_widening_is_exact_for_every_half() {
    use half::f16;
    let all: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
    for len in [all.len(), 13, 8, 7, 0] {
        let src = &all[all.len() - len..];
        let mut out = vec![0f32; len];
        storywriter::engine::kernels::f16::widen(src, &mut out);
        for (h, x) in src.iter().zip(&out) {
            let want = h.to_f32();
            assert!(
                x.to_bits() == want.to_bits() || (x.is_nan() && want.is_nan()),
                "{:#06x}: {x} vs {want}",
                h.to_bits()
            );
        }
    }
}

/// The decode kernel widens f16 in registers, four halves at a time: exactly, for every finite
/// half (subnormals included); and its result over an f16 cache is bit for bit its result over
/// the same values widened to f32 (shared and own blocks, a short last tile of keys, head
/// sizes with and without values past the last whole chunk, keys and values with subnormal
/// halves and negative zeros). That holds both where the kernel reads the halves times 2⁻¹¹²
/// and scales the queries by 2¹¹² (queries below 2¹⁶) and where it does not (larger ones).
#[wasm_bindgen_test]
fn f16_decode_equals_the_widened_f32_decode() {
    use candle_core::DType;
    use half::f16;
    use storywriter::engine::kernels::attention::{decode, DecodePart};
    use storywriter::engine::kernels::f16::{to_f32, widen4_finite};
    let finite: Vec<f16> = (0..=u16::MAX)
        .map(f16::from_bits)
        .filter(|h| h.is_finite())
        .collect();
    for four in finite.chunks_exact(4) {
        // SAFETY: `four` is four halves.
        let wide: [f32; 4] = unsafe { std::mem::transmute(widen4_finite(four.as_ptr())) };
        for (h, x) in four.iter().zip(wide) {
            assert_eq!(x.to_bits(), h.to_f32().to_bits(), "{:#06x}", h.to_bits());
        }
    }
    let device = Device::Cpu;
    for (d, q_scale) in [(64, 2.0), (66, 2.0), (64, 70_000.0)] {
        let (b, h, capacity) = (3, 2, 11);
        let tensor = |dims: (usize, usize, usize, usize), seed, scale| {
            let n = dims.0 * dims.1 * dims.2 * dims.3;
            Tensor::from_vec(values(n, seed, scale), dims, &device).unwrap()
        };
        // Keys and values with a subnormal half every 7th value and −0 every 11th.
        let half = |t: Tensor| {
            let mut data: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            for (i, x) in data.iter_mut().enumerate() {
                if i % 7 == 3 {
                    *x = if i % 2 == 0 { 3e-6 } else { -4.5e-7 };
                } else if i % 11 == 5 {
                    *x = -0.0;
                }
            }
            Tensor::from_vec(data, t.dims(), &device)
                .unwrap()
                .to_dtype(DType::F16)
                .unwrap()
        };
        let tensor = |dims, seed| tensor(dims, seed, 2.0);
        let q = Tensor::from_vec(values(b * h * d, 7, q_scale), (b, h, 1, d), &device).unwrap();
        let shared = (
            half(tensor((1, h, capacity, d), 8)),
            half(tensor((1, h, capacity, d), 9)),
        );
        let own = (
            half(tensor((b, h, capacity, d), 10)),
            half(tensor((b, h, capacity, d), 11)),
        );
        let wide = |(k, v): &(Tensor, Tensor)| (to_f32(k).unwrap(), to_f32(v).unwrap());
        let (shared_f32, own_f32) = (wide(&shared), wide(&own));
        let run = |shared: &(Tensor, Tensor), own: &(Tensor, Tensor)| -> Vec<u32> {
            let parts = [
                DecodePart {
                    k: &shared.0,
                    v: &shared.1,
                    start: 0,
                    n: 10,
                    bounds: None,
                },
                DecodePart {
                    k: &own.0,
                    v: &own.1,
                    start: 10,
                    n: 3,
                    bounds: None,
                },
            ];
            let out = decode(&q, &parts, &[0.5, 0.25]).unwrap();
            let out: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
            out.iter().map(|x| x.to_bits()).collect()
        };
        assert_eq!(
            run(&shared, &own),
            run(&shared_f32, &own_f32),
            "head size {d}, queries up to {q_scale}"
        );
    }
}

/// Keys so far in the past that ALiBi gives them weight 0 are not read when the parts carry
/// their bounds: a decode step and a piece give the contexts computed without bounds bit for
/// bit, also once those keys are made to outweigh every other and their values NaN under the
/// bounds already computed. The head of a gentle slope reads every key.
#[wasm_bindgen_test]
fn decode_skips_keys_beyond_alibi_s_reach() {
    use storywriter::engine::kernels::attention::{decode, piece, DecodePart, KeyBounds};
    let device = Device::Cpu;
    let (h, d, n, capacity, chunk) = (2, 64, 300, 320, 64);
    let slopes = [1.0f32, 1e-3];
    for (b, causal) in [(3, false), (4, true)] {
        let q = values(b * h * d, 21, 0.3);
        let (k, v) = (
            values(h * capacity * d, 22, 0.3),
            values(h * capacity * d, 23, 0.3),
        );
        let shared = |data: &[f32]| Tensor::from_slice(data, (1, h, capacity, d), &device).unwrap();
        // Head 0's first two chunks, 174 and more positions before the queries (slope 1).
        let mut k_far = k.clone();
        for (i, x) in k_far[..2 * chunk * d].iter_mut().enumerate() {
            *x = 100.0 * q[i % d];
        }
        let mut v_nan = v.clone();
        v_nan[..2 * chunk * d].fill(f32::NAN);
        let (k, v, k_far, v_nan) = (shared(&k), shared(&v), shared(&k_far), shared(&v_nan));
        let own = Tensor::from_vec(values(b * h * 4 * d, 24, 0.3), (b, h, 4, d), &device).unwrap();
        let (shared_bounds, own_bounds) = (KeyBounds::new(h), KeyBounds::new(b * h));
        let run = |k: &Tensor, v: &Tensor, with_bounds: bool| -> Vec<u32> {
            let mut parts = vec![DecodePart {
                k,
                v,
                start: 0,
                n,
                bounds: with_bounds.then_some(&shared_bounds),
            }];
            let out = if causal {
                // The b queries as consecutive positions of one sequence: (1, h, b, d).
                let q = Tensor::from_slice(&q, (b, h, 1, d), &device).unwrap();
                let q = q.transpose(0, 2).unwrap().contiguous().unwrap();
                piece(&q, &parts, &slopes).unwrap()
            } else {
                parts.push(DecodePart {
                    k: &own,
                    v: &own,
                    start: n,
                    n: 2,
                    bounds: with_bounds.then_some(&own_bounds),
                });
                let q = Tensor::from_slice(&q, (b, h, 1, d), &device).unwrap();
                decode(&q, &parts, &slopes).unwrap()
            };
            let out: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
            out.iter().map(|x| x.to_bits()).collect()
        };
        let unbounded = run(&k, &v, false);
        assert_eq!(run(&k, &v, true), unbounded, "causal {causal}");
        assert_eq!(run(&k_far, &v_nan, true), unbounded, "causal {causal}");
        let read = run(&k_far, &v_nan, false);
        assert!(
            read.iter().any(|x| f32::from_bits(*x).is_nan()),
            "causal {causal}"
        );
    }
}
