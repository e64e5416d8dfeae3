//! The decode and piece kernels against candle's ops, and their stored types against each other.

use candle_core::{Device, Tensor, D};

use super::*;

/// `got` and `expected` of the same shape, their values within 1e-5 of each other.
fn assert_close(got: &Tensor, expected: &Tensor) {
    assert_eq!(got.dims(), expected.dims());
    let diff = (got - expected)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(D::Minus1)
        .unwrap();
    assert!(diff.to_scalar::<f32>().unwrap() < 1e-5, "{diff}");
}

/// One decode step over a shared block (batch 1, a short last tile of keys) and the
/// sequences' own block, against candle's ops on the same keys and values laid out whole:
/// head sizes of whole chunks of lanes, and with values past the last one.
#[test]
fn decode_matches_candle_ops() {
    for d in [64, 68] {
        matches_candle_ops(d);
    }
}

/// [`decode_matches_candle_ops`] for head size `d`.
fn matches_candle_ops(d: usize) {
    let device = Device::Cpu;
    let (b, h) = (3, 4);
    let (shared_len, own_len, capacity) = (13, 2, 20);
    let slopes: Vec<f32> = (0..h).map(|i| 0.5f32.powi(i as i32 + 1)).collect();
    let randn =
        |dims: (usize, usize, usize, usize)| Tensor::randn(0f32, 1.0, dims, &device).unwrap();
    let q = randn((b, h, 1, d));
    let (k_shared, v_shared) = (randn((1, h, capacity, d)), randn((1, h, capacity, d)));
    let (k_own, v_own) = (randn((b, h, capacity, d)), randn((b, h, capacity, d)));
    let parts = [
        DecodePart {
            k: &k_shared,
            v: &v_shared,
            start: 0,
            n: shared_len,
            bounds: None,
        },
        DecodePart {
            k: &k_own,
            v: &v_own,
            start: shared_len,
            n: own_len,
            bounds: None,
        },
    ];
    let got = decode(&q, &parts, &slopes).unwrap();

    let whole = |shared: &Tensor, own: &Tensor| {
        let shared = shared
            .narrow(2, 0, shared_len)
            .unwrap()
            .broadcast_as((b, h, shared_len, d))
            .unwrap();
        Tensor::cat(
            &[
                &shared.contiguous().unwrap(),
                &own.narrow(2, 0, own_len).unwrap(),
            ],
            2,
        )
        .unwrap()
    };
    let (k, v) = (whole(&k_shared, &k_own), whole(&v_shared, &v_own));
    let total = shared_len + own_len;
    let positions: Vec<f32> = (0..total).map(|j| j as f32).collect();
    let bias = Tensor::new(slopes.as_slice(), &device)
        .unwrap()
        .reshape((1, h, 1, 1))
        .unwrap()
        .broadcast_mul(
            &Tensor::new(positions.as_slice(), &device)
                .unwrap()
                .reshape((1, 1, 1, total))
                .unwrap(),
        )
        .unwrap();
    let scores = q
        .matmul(&k.t().unwrap())
        .unwrap()
        .broadcast_add(&bias)
        .unwrap();
    let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
    let expected = probs.matmul(&v).unwrap();
    assert_close(&got, &expected);
}

/// Over f16 buffers, the result of the same buffers widened to f32 bit for bit: the widening
/// is exact and every product is f32.
#[test]
fn decode_over_an_f16_cache_reads_the_widened_values() {
    use candle_core::DType;
    let device = Device::Cpu;
    let (b, h, d, capacity) = (3, 2, 64, 9);
    let randn = |dims| Tensor::randn(0f32, 1.0, dims, &device).unwrap();
    let half = |t: &Tensor| t.to_dtype(DType::F16).unwrap();
    let q = randn((b, h, 1, d));
    let (k_shared, v_shared) = (
        half(&randn((1, h, capacity, d))),
        half(&randn((1, h, capacity, d))),
    );
    let (k_own, v_own) = (
        half(&randn((b, h, capacity, d))),
        half(&randn((b, h, capacity, d))),
    );
    let widened = |t: &Tensor| crate::engine::kernels::f16::to_f32(t).unwrap();
    let (k_shared_f32, v_shared_f32) = (widened(&k_shared), widened(&v_shared));
    let (k_own_f32, v_own_f32) = (widened(&k_own), widened(&v_own));
    let parts = |ks: &'static str| -> Vec<DecodePart<'_>> {
        let (shared, own) = if ks == "f16" {
            ((&k_shared, &v_shared), (&k_own, &v_own))
        } else {
            ((&k_shared_f32, &v_shared_f32), (&k_own_f32, &v_own_f32))
        };
        vec![
            DecodePart {
                k: shared.0,
                v: shared.1,
                start: 0,
                n: 7,
                bounds: None,
            },
            DecodePart {
                k: own.0,
                v: own.1,
                start: 7,
                n: 2,
                bounds: None,
            },
        ]
    };
    let slopes = [0.5, 0.25];
    let from_f16 = decode(&q, &parts("f16"), &slopes).unwrap();
    let from_f32 = decode(&q, &parts("f32"), &slopes).unwrap();
    let bits = |t: &Tensor| -> Vec<u32> {
        let values: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        values.iter().map(|x| x.to_bits()).collect()
    };
    assert_eq!(bits(&from_f16), bits(&from_f32));
}

/// With F16C (and with AVX-512 where the CPU has it), the f16 cache read by the CPU's
/// conversion and the hand-written x86 loops (`x86`) gives the portable loops' plain widening
/// result bit for bit: batches of 1 to 3 (tiles of 1, 2 and 3 queries), lengths around the
/// four-key tiles, heads of 64 (both x86 loops) and of 40 and 72 (the scores' loop only).
#[cfg(target_arch = "x86_64")]
#[test]
fn decode_with_f16c_matches_the_plain_widening() {
    if !has_f16c() {
        eprintln!("skipped: the CPU has no F16C");
        return;
    }
    let device = Device::Cpu;
    let h = 2;
    let half = |dims| {
        Tensor::randn(0f32, 1.0, dims, &device)
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap()
    };
    let bits = |x: &[f32]| x.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let mut compared = 0;
    for d in [64, 40, 72] {
        for b in 1..=3 {
            for shared in [1, 4, 37, 130] {
                let q: Vec<f32> = Tensor::randn(0f32, 1.0, b * h * d, &device)
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let (k, v) = (half((1, h, shared + 3, d)), half((1, h, shared + 3, d)));
                let (k_own, v_own) = (half((b, h, 4, d)), half((b, h, 4, d)));
                let parts = [
                    DecodePart {
                        k: &k,
                        v: &v,
                        start: 0,
                        n: shared,
                        bounds: None,
                    },
                    DecodePart {
                        k: &k_own,
                        v: &v_own,
                        start: shared,
                        n: 3,
                        bounds: None,
                    },
                ];
                let slopes = [0.5, 0.0625];
                let shape = ([b, h, d], &parts[..], &slopes[..]);
                let case = format!("d {d}, batch {b}, {shared} shared keys");
                let plain = attend_stored::<half::f16>(&q, shape, false).unwrap();
                let f16c = attend_stored::<F16c>(&q, shape, false).unwrap();
                assert_eq!(bits(&plain), bits(&f16c), "F16C, {case}");
                if has_avx512() {
                    let wide = attend_stored::<F16cAvx512>(&q, shape, false).unwrap();
                    assert_eq!(bits(&plain), bits(&wide), "AVX-512, {case}");
                    compared += 1;
                }
            }
        }
    }
    if compared == 0 {
        eprintln!("the AVX-512 loops not compared: the CPU has no AVX-512F and VL");
    }
}

/// A piece of five queries over a story's keys (two blocks) and its own, against candle's
/// ops with the causal mask: query i sees the story and the piece's keys up to its own.
#[test]
fn piece_matches_candle_ops_with_the_causal_mask() {
    let device = Device::Cpu;
    let (h, d, s) = (4, 64, 5);
    let (first, second) = (11, 9 + s);
    let slopes: Vec<f32> = (0..h).map(|i| 0.5f32.powi(i as i32 + 1)).collect();
    let randn =
        |dims: (usize, usize, usize, usize)| Tensor::randn(0f32, 1.0, dims, &device).unwrap();
    let q = randn((1, h, s, d));
    let (k1, v1) = (randn((1, h, 16, d)), randn((1, h, 16, d)));
    let (k2, v2) = (randn((1, h, 16, d)), randn((1, h, 16, d)));
    let parts = [
        DecodePart {
            k: &k1,
            v: &v1,
            start: 0,
            n: first,
            bounds: None,
        },
        DecodePart {
            k: &k2,
            v: &v2,
            start: first,
            n: second,
            bounds: None,
        },
    ];
    let got = piece(&q, &parts, &slopes).unwrap();

    let total = first + second;
    let whole = |a: &Tensor, b: &Tensor| {
        Tensor::cat(
            &[
                &a.narrow(2, 0, first).unwrap(),
                &b.narrow(2, 0, second).unwrap(),
            ],
            2,
        )
        .unwrap()
    };
    let (k, v) = (whole(&k1, &k2), whole(&v1, &v2));
    let mut bias = Vec::with_capacity(h * s * total);
    for slope in &slopes {
        for i in 0..s {
            // Query i sits at key position total − s + i and sees the keys up to it.
            bias.extend((0..total).map(|j| {
                if j > total - s + i {
                    f32::NEG_INFINITY
                } else {
                    slope * j as f32
                }
            }));
        }
    }
    let bias = Tensor::from_vec(bias, (1, h, s, total), &device).unwrap();
    let scores = (q.matmul(&k.t().unwrap()).unwrap() + bias).unwrap();
    let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
    let expected = probs.matmul(&v).unwrap();
    assert_close(&got, &expected);
    // A block of a batch is not a single sequence's.
    let batch = randn((2, h, 16, d));
    let error = piece(
        &q,
        &[DecodePart {
            k: &batch,
            v: &batch,
            start: 0,
            n: 16,
            bounds: None,
        }],
        &slopes,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("batches [Some(2)]"), "{error}");
}

#[test]
fn decode_names_bad_input() {
    let device = Device::Cpu;
    let q = Tensor::zeros((1, 2, 1, 8), candle_core::DType::F32, &device).unwrap();
    let k = Tensor::zeros((1, 2, 4, 8), candle_core::DType::F32, &device).unwrap();
    let part = |n| DecodePart {
        k: &k,
        v: &k,
        start: 0,
        n,
        bounds: None,
    };
    let error = decode(&q, &[part(4)], &[1.0]).unwrap_err().to_string();
    assert!(error.contains("1 slopes"), "{error}");
    let error = decode(&q, &[part(5)], &[1.0, 0.5]).unwrap_err().to_string();
    assert!(error.contains("5 positions"), "{error}");
}

/// Keys so far in the past that ALiBi gives them weight 0 are left out when the parts carry
/// their bounds: a decode step (a shared block and the sequences' own) and a piece give the
/// contexts computed without bounds bit for bit, and still do once those keys and values are
/// NaN under the bounds already computed (so they were not read). The head of a gentle slope
/// reads every key.
#[test]
fn keys_beyond_alibi_s_reach_are_not_read() {
    for d in [64, 68] {
        for causal in [false, true] {
            skips_far_keys(d, causal);
        }
    }
}

/// [`keys_beyond_alibi_s_reach_are_not_read`] for head size `d`, a decode step or a piece.
fn skips_far_keys(d: usize, causal: bool) {
    let device = Device::Cpu;
    let (h, n, capacity) = (2, 300, 320);
    let b = if causal { 4 } else { 3 };
    let slopes = [1.0f32, 1e-3];
    let randn = |dims: (usize, usize, usize, usize)| -> Vec<f32> {
        let t = (Tensor::randn(0f32, 1.0, dims, &device).unwrap() * 0.3).unwrap();
        t.flatten_all().unwrap().to_vec1().unwrap()
    };
    let q = randn((b, h, 1, d));
    let tensor = |data: &[f32], dims| Tensor::from_slice(data, dims, &device).unwrap();
    let (k, v) = (randn((1, h, capacity, d)), randn((1, h, capacity, d)));
    // Head 0's first two chunks, 174 and more positions before the queries (slope 1): keys
    // that would outweigh every other for the first query, values NaN.
    let poison = |data: &[f32], with: &dyn Fn(usize) -> f32| {
        let mut data = data.to_vec();
        for (i, x) in data[..2 * bounds::CHUNK * d].iter_mut().enumerate() {
            *x = with(i % d);
        }
        data
    };
    let shared_dims = (1, h, capacity, d);
    let (k, v, k_far, v_nan) = (
        tensor(&k, shared_dims),
        tensor(&v, shared_dims),
        tensor(&poison(&k, &|i| 100.0 * q[i]), shared_dims),
        tensor(&poison(&v, &|_| f32::NAN), shared_dims),
    );
    let own_dims = (b, h, 4, d);
    let (k_own, v_own) = (
        tensor(&randn(own_dims), own_dims),
        tensor(&randn(own_dims), own_dims),
    );
    let (shared_bounds, own_bounds) = (KeyBounds::new(h), KeyBounds::new(b * h));
    let parts = |k, v, with_bounds: bool| {
        let mut parts = vec![DecodePart {
            k,
            v,
            start: 0,
            n,
            bounds: with_bounds.then_some(&shared_bounds),
        }];
        if !causal {
            parts.push(DecodePart {
                k: &k_own,
                v: &v_own,
                start: n,
                n: 2,
                bounds: with_bounds.then_some(&own_bounds),
            });
        }
        parts
    };
    let run = |parts: &[DecodePart<'_>]| -> Vec<u32> {
        let out = attend_stored::<f32>(&q, ([b, h, d], parts, &slopes), causal).unwrap();
        out.iter().map(|x| x.to_bits()).collect()
    };
    let unbounded = run(&parts(&k, &v, false));
    assert_eq!(
        run(&parts(&k, &v, true)),
        unbounded,
        "d {d}, causal {causal}"
    );
    assert_eq!(
        run(&parts(&k_far, &v_nan, true)),
        unbounded,
        "d {d}, causal {causal}"
    );
    // Read, those keys and values would have shown.
    let read = run(&parts(&k_far, &v_nan, false));
    assert!(read.iter().any(|x| f32::from_bits(*x).is_nan()));
}
