//! The wasm simd128 kernels (`engine::kernels::q_wasm`) against candle's `QMatMul`, for every
//! dot-product path this build has (plain simd128 always; relaxed SIMD in the `+relaxed-simd`
//! build), at small and model-sized shapes.

use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{Device, Module, Tensor};
use storywriter::engine::kernels::q4k_wasm::Q4kMatrix;
use storywriter::engine::kernels::q8_act::{Q8kRows, QuantizedRows, QK_K};
use storywriter::engine::kernels::q_wasm::{Path, SimdMatrix};
use storywriter::engine::kernels::split::RowSplit;
use storywriter::engine::kernels::{f16, gelu, simd_math};
use storywriter::shared::portable_math::{sum_exp, sum_exp_scalar};
use wasm_bindgen_test::{console_log, wasm_bindgen_test};

use crate::common::values;

/// Every path this build can run.
fn paths() -> Vec<Path> {
    let mut paths = vec![Path::Simd128];
    if Path::best() != Path::Simd128 {
        paths.push(Path::best());
    }
    paths
}

/// candle's `QMatMul` product `x · qᵀ`, flattened.
fn candle_product(q: std::sync::Arc<QTensor>, x: &Tensor) -> Vec<f32> {
    let y = QMatMul::from_arc(q).unwrap().forward(x).unwrap();
    y.flatten_all().unwrap().to_vec1().unwrap()
}

/// The stored q4_0 bytes `bytes` (n rows of k values) as a tensor, as a file would give them.
fn q4_0_tensor(bytes: &[u8], n: usize, k: usize) -> std::sync::Arc<QTensor> {
    let storage = QStorage::from_data(
        std::borrow::Cow::Borrowed(bytes),
        &Device::Cpu,
        GgmlDType::Q4_0,
    )
    .unwrap();
    std::sync::Arc::new(QTensor::new(storage, (n, k)).unwrap())
}

/// Asserts that every value of `y` (rows of `n`) has the bits of `reference(row, column)`.
fn assert_bits_equal(y: &[f32], n: usize, case: &str, reference: impl Fn(usize, usize) -> f32) {
    for (at, got) in y.iter().enumerate() {
        let (r, c) = (at / n, at % n);
        let want = reference(r, c);
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "{case}: y[{r}][{c}] = {got}, reference {want}"
        );
    }
}

/// Compares every path with candle's `QMatMul` (then bias and GELU as candle ops) for an
/// n × k matrix of `dtype` and m activation rows. The plain path sums in candle's lane order and
/// must match it bit for bit (before a fused GELU, whose tanh is `simd_math`'s); relaxed SIMD
/// sums other lanes, so only to f32 rounding.
fn check(dtype: GgmlDType, m: usize, k: usize, n: usize, fused: bool) {
    let device = Device::Cpu;
    let w = Tensor::from_vec(values(n * k, 1, 1.0), (n, k), &device).unwrap();
    let x = Tensor::from_vec(values(m * k, 2, 1.0), (m, k), &device).unwrap();
    let bias = values(n, 3, 0.5);
    let q = std::sync::Arc::new(QTensor::quantize(&w, dtype).unwrap());
    let mut expected = QMatMul::from_arc(q.clone()).unwrap().forward(&x).unwrap();
    if fused {
        let b = Tensor::new(bias.as_slice(), &device).unwrap();
        expected = expected.broadcast_add(&b).unwrap().gelu().unwrap();
    }
    let expected: Vec<f32> = expected.flatten_all().unwrap().to_vec1().unwrap();
    let typical = expected.iter().map(|v| v.abs()).sum::<f32>() / expected.len() as f32;
    let x: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
    for path in paths() {
        let mut matrix = SimdMatrix::new(q.clone(), path)
            .unwrap()
            .expect("q4_0 / q8_0");
        if fused {
            matrix = matrix.with_bias(bias.clone()).unwrap().with_gelu();
        }
        let mut y = vec![f32::NAN; m * n];
        matrix.matmul(&x, &mut y);
        for (i, (got, want)) in y.iter().zip(&expected).enumerate() {
            let ok = if path == Path::Simd128 && !fused {
                got.to_bits() == want.to_bits()
            } else if path == Path::Simd128 {
                // The same products; GELU's tanh on SIMD lanes (`simd_math`) is within 1e-7.
                (got - want).abs() <= 1e-6 * want.abs().max(1.0)
            } else {
                (got - want).abs() <= 1e-4 * want.abs().max(typical)
            };
            assert!(
                ok,
                "{dtype:?} {path:?} m={m} k={k} n={n}: y[{}][{}] = {got}, candle {want}",
                i / n,
                i % n
            );
        }
    }
}

#[wasm_bindgen_test]
fn small_shapes_equal_candle() {
    for dtype in [GgmlDType::Q4_0, GgmlDType::Q8_0] {
        for m in [1, 2, 3, 4, 5, 9] {
            for n in [1, 7, 16, 33] {
                for k in [32, 96] {
                    check(dtype, m, k, n, false);
                }
            }
        }
        check(dtype, 3, 64, 37, true);
    }
    console_log!("kernel paths: {:?}", paths());
}

#[wasm_bindgen_test]
fn model_shapes_equal_candle() {
    for dtype in [GgmlDType::Q4_0, GgmlDType::Q8_0] {
        for m in [1, 3] {
            // ffn up (GELU fused) and ffn down of bloom-560m.
            check(dtype, m, 1024, 4096, true);
            check(dtype, m, 4096, 1024, false);
        }
        check(dtype, 17, 1024, 48, true);
    }
}

/// A kernel's product `y = x · Wᵀ`, named.
type Matmul = Box<dyn Fn(&[f32], &mut [f32])>;

/// A row's products do not depend on the rows multiplied with it: three candidates decoded
/// together get, bit for bit, what each gets alone (so a record replays to the same tokens),
/// for every path and type, including column counts that leave a partial group.
#[wasm_bindgen_test]
fn a_row_alone_equals_the_row_among_others() {
    let device = Device::Cpu;
    let (k, n, m) = (256, 149, 6);
    let w = Tensor::from_vec(values(n * k, 11, 1.0), (n, k), &device).unwrap();
    let x = values(m * k, 12, 1.0);
    for dtype in [GgmlDType::Q4_0, GgmlDType::Q8_0, GgmlDType::Q4K] {
        let q = std::sync::Arc::new(QTensor::quantize(&w, dtype).unwrap());
        let mut matmuls: Vec<(String, Matmul)> = Vec::new();
        if dtype == GgmlDType::Q4K {
            let matrix = Q4kMatrix::new(q.clone()).unwrap().unwrap();
            matmuls.push(("q4_k".into(), Box::new(move |x, y| matrix.matmul(x, y))));
        } else {
            for path in paths() {
                let matrix = SimdMatrix::new(q.clone(), path).unwrap().unwrap();
                let name = format!("{dtype:?} {path:?}");
                matmuls.push((name, Box::new(move |x, y| matrix.matmul(x, y))));
            }
        }
        for (name, matmul) in &matmuls {
            let mut together = vec![f32::NAN; m * n];
            matmul(&x, &mut together);
            for r in 0..m {
                let mut alone = vec![f32::NAN; n];
                matmul(&x[r * k..(r + 1) * k], &mut alone);
                let same = alone
                    .iter()
                    .zip(&together[r * n..(r + 1) * n])
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{name}: row {r} of {m} differs from the row alone");
            }
        }
    }
}

#[wasm_bindgen_test]
fn as_a_candle_op_keeps_leading_dims() {
    let device = Device::Cpu;
    let w = Tensor::from_vec(values(20 * 64, 4, 1.0), (20, 64), &device).unwrap();
    let q0 = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
    let d = q0.data().unwrap().to_vec();
    console_log!("row0 {:?}", &d[..70]);
    let w = q0.dequantize(&device).unwrap();
    let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
    let matrix = SimdMatrix::new(q.into(), Path::best()).unwrap().unwrap();
    let x = Tensor::from_vec(values(6 * 64, 5, 1.0), (2, 3, 64), &device).unwrap();
    let y = x.apply_op1_no_bwd(&matrix).unwrap();
    assert_eq!(y.dims(), [2, 3, 20]);
    let flat = x
        .reshape((6, 64))
        .unwrap()
        .apply_op1_no_bwd(&matrix)
        .unwrap();
    let same =
        y.reshape((6, 20)).unwrap().to_vec2::<f32>().unwrap() == flat.to_vec2::<f32>().unwrap();
    assert!(same, "leading dims change the product");
}

/// q4_0 scales of every kind of f16 (the relaxed build widens them on SIMD lanes, the plain
/// one through a table): subnormal, the largest, negative and −0 give candle's products; ∞
/// gives non-finite ones and NaN gives NaN, as in candle. 20 rows: a tile and a padded one.
/// Twice: with the finite kinds only (the relaxed tiles' fast widening) and with all.
#[wasm_bindgen_test]
fn every_kind_of_f16_scale_converts_exactly() {
    let device = Device::Cpu;
    let (m, k, n) = (3, 64, 20);
    let w = Tensor::from_vec(values(n * k, 21, 1.0), (n, k), &device).unwrap();
    // Row r's second block's scale: finite kinds, then ∞, −∞, NaN.
    let all_kinds: [u16; 8] = [
        0x0001, 0x03FF, 0x7BFF, 0x8400, 0x8000, 0x7C00, 0xFC00, 0x7E00,
    ];
    for scales in [&all_kinds[..5], &all_kinds[..]] {
        let mut bytes = QTensor::quantize(&w, GgmlDType::Q4_0)
            .unwrap()
            .data()
            .unwrap()
            .to_vec();
        let row_bytes = k / 32 * 18;
        for (r, scale) in scales.iter().enumerate() {
            bytes[r * row_bytes + 18..][..2].copy_from_slice(&scale.to_le_bytes());
        }
        let stored = || q4_0_tensor(&bytes, n, k);
        let x = Tensor::from_vec(values(m * k, 22, 1.0), (m, k), &device).unwrap();
        let want = candle_product(stored(), &x);
        let x: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        for path in paths() {
            let matrix = SimdMatrix::new(stored(), path).unwrap().unwrap();
            let mut got = vec![0.0; m * n];
            matrix.matmul(&x, &mut got);
            for (i, (got, want)) in got.iter().zip(&want).enumerate() {
                let column = i % n;
                let ok = match scales.get(column) {
                    Some(0x7C00 | 0xFC00) => !got.is_finite() && !want.is_finite(),
                    Some(0x7E00) => got.is_nan() && want.is_nan(),
                    _ => (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                };
                assert!(ok, "{path:?} y[{}][{column}] = {got}, candle {want}", i / n);
            }
        }
    }
}

#[wasm_bindgen_test]
fn rejects_other_types_and_bad_biases() {
    let w = Tensor::zeros((16, 256), candle_core::DType::F32, &Device::Cpu).unwrap();
    let q4k = QTensor::quantize(&w, GgmlDType::Q4K).unwrap();
    assert!(SimdMatrix::new(q4k.into(), Path::best()).unwrap().is_none());
    let q = QTensor::quantize(&w, GgmlDType::Q4_0).unwrap();
    let short = SimdMatrix::new(q.into(), Path::best()).unwrap().unwrap();
    let error = short.with_bias(vec![0.0; 3]).unwrap_err();
    assert!(error.to_string().contains("bias of 3"), "{error}");
}

#[wasm_bindgen_test]
fn row_split_equals_candle_bit_for_bit() {
    let device = Device::Cpu;
    let (n, k) = (1000, 512);
    let w = Tensor::from_vec(values(n * k, 6, 1.0), (n, k), &device).unwrap();
    for dtype in [GgmlDType::Q4K, GgmlDType::Q6K] {
        let q = QTensor::quantize(&w, dtype).unwrap();
        for m in [1, 3] {
            let x = Tensor::from_vec(values(m * k, 7, 1.0), (1, m, k), &device).unwrap();
            let expected = QMatMul::from_qtensor(QTensor::quantize(&w, dtype).unwrap())
                .unwrap()
                .forward(&x)
                .unwrap();
            for parts in [1, 7, 16] {
                let got = RowSplit::new(&q, parts).unwrap().forward(&x).unwrap();
                assert_eq!(got.dims(), [1, m, n]);
                let same = got.flatten_all().unwrap().to_vec1::<f32>().unwrap()
                    == expected.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert!(same, "{dtype:?} m={m} in {parts} parts");
            }
        }
    }
}

/// The q4_k kernel against candle's `QMatMul` (whose wasm path sums the same integers in other
/// lanes): equal to f32 rounding, for 1 to 5 activation rows and a model-shaped row length.
#[wasm_bindgen_test]
fn q4k_equals_candle_to_rounding() {
    let device = Device::Cpu;
    for (k, n) in [(256, 40), (1024, 300)] {
        let w = Tensor::from_vec(values(n * k, 8, 1.0), (n, k), &device).unwrap();
        let q = std::sync::Arc::new(QTensor::quantize(&w, GgmlDType::Q4K).unwrap());
        let matrix = Q4kMatrix::new(q.clone()).unwrap().expect("q4_k");
        for m in 1..=5 {
            let x = Tensor::from_vec(values(m * k, 9 + m as u32, 2.0), (m, k), &device).unwrap();
            let expected = candle_product(q.clone(), &x);
            let typical = expected.iter().map(|v| v.abs()).sum::<f32>() / expected.len() as f32;
            let x: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
            let mut y = vec![f32::NAN; m * n];
            matrix.matmul(&x, &mut y);
            for (i, (got, want)) in y.iter().zip(&expected).enumerate() {
                assert!(
                    (got - want).abs() <= 1e-5 * want.abs().max(typical),
                    "q4_k m={m} k={k} n={n}: y[{}][{}] = {got}, candle {want}",
                    i / n,
                    i % n
                );
            }
        }
    }
    let q8 = QTensor::quantize(
        &Tensor::zeros((4, 256), candle_core::DType::F32, &device).unwrap(),
        GgmlDType::Q8_0,
    )
    .unwrap();
    assert!(Q4kMatrix::new(q8.into()).unwrap().is_none());
}

/// One column of a q4_k product as the kernels define it, one value at a time: per super-block
/// the exact integers `Σₛ scaleₛ · Σ q·a` and `Σₛ minₛ · Σ a`, then `acc += total · (d · d_a) −
/// minimum · (dmin · d_a)` in f32. `row` is the column's stored q4_k bytes.
fn q4k_column_reference(row: &[u8], act: &Q8kRows, act_row: usize) -> f32 {
    let half = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f32();
    let mut acc = 0f32;
    for (b, block) in row.chunks_exact(144).enumerate() {
        let i = act_row * act.blocks + b;
        let (d, dmin, packed, nibbles) =
            (half(block), half(&block[2..]), &block[4..16], &block[16..]);
        let (mut total, mut minimum) = (0i32, 0i32);
        for s in 0..8 {
            // llama.cpp's `get_scale_min_k4`.
            let (scale, min) = if s < 4 {
                (packed[s] & 63, packed[s + 4] & 63)
            } else {
                (
                    (packed[s + 4] & 0x0F) | ((packed[s - 4] >> 6) << 4),
                    (packed[s + 4] >> 4) | ((packed[s] >> 6) << 4),
                )
            };
            let dot: i32 = (0..32)
                .map(|v| {
                    let byte = nibbles[32 * (s / 2) + v];
                    let q = if s % 2 == 0 { byte & 0x0F } else { byte >> 4 };
                    q as i32 * act.quants[i * QK_K + 32 * s + v] as i32
                })
                .sum();
            total += scale as i32 * dot;
            minimum += min as i32 * act.sub_sums[i * 8 + s] as i32;
        }
        let scale = act.scales[i];
        acc += total as f32 * (d * scale) - minimum as f32 * (dmin * scale);
    }
    acc
}

/// The q4_k kernel of this build (stored rows with simd128, tiles of 16 rows with relaxed SIMD)
/// gives the one-value-at-a-time reference bit for bit, for 1 to 5 activation rows and column
/// counts that leave a tile part empty; so both builds' kernels agree bit for bit. 149 columns
/// are 10 tiles: a single row's product reads them four at a time, the last set short of two.
#[wasm_bindgen_test]
fn q4k_equals_its_reference_bit_for_bit() {
    let device = Device::Cpu;
    let k = 512;
    for n in [37, 149] {
        let w = Tensor::from_vec(values(n * k, 21, 1.0), (n, k), &device).unwrap();
        let q = std::sync::Arc::new(QTensor::quantize(&w, GgmlDType::Q4K).unwrap());
        let data = q.data().unwrap().to_vec();
        let matrix = Q4kMatrix::new(q).unwrap().expect("q4_k");
        for m in 1..=5 {
            let x = values(m * k, 30 + m as u32, 3.0);
            let act = Q8kRows::new(&x, k);
            let mut y = vec![f32::NAN; m * n];
            matrix.matmul(&x, &mut y);
            assert_bits_equal(&y, n, &format!("n={n}, m={m}"), |r, c| {
                q4k_column_reference(&data[c * 288..(c + 1) * 288], &act, r)
            });
        }
    }
}

/// One column of a relaxed-SIMD q4_0 product as that kernel defines it, one value at a time:
/// per block the exact integer `Σ (q − 8) · a`, then `acc += total · (d_w · d_a)` in f32.
/// `row` is the column's stored q4_0 bytes.
fn q4_0_column_reference(row: &[u8], act: &QuantizedRows, act_row: usize) -> f32 {
    let mut acc = 0f32;
    for (b, block) in row.chunks_exact(18).enumerate() {
        let i = act_row * act.blocks + b;
        let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
        let total: i32 = (0..32)
            .map(|v| {
                let byte = block[2 + v % 16];
                let q = if v < 16 { byte & 0x0F } else { byte >> 4 };
                (q as i32 - 8) * act.quants[i * 32 + v] as i32
            })
            .sum();
        acc += total as f32 * (d * act.scales[i]);
    }
    acc
}

/// The relaxed-SIMD q4_0 tiles give the one-value-at-a-time reference bit for bit, for 1 to 5
/// activation rows, scales from subnormal to the largest half (the scales' fast widening is
/// exact) and column counts that leave a tile part empty (149: 10 tiles, which a single row's
/// product reads four at a time, the last set short of two). The plain build has no tiles.
#[wasm_bindgen_test]
fn q4_0_tiles_equal_their_reference_bit_for_bit() {
    if Path::best() == Path::Simd128 {
        return;
    }
    for n in [37, 149] {
        q4_0_tiles_equal_their_reference(n);
    }
}

/// [`q4_0_tiles_equal_their_reference_bit_for_bit`] for `n` columns.
fn q4_0_tiles_equal_their_reference(n: usize) {
    let device = Device::Cpu;
    let k = 256;
    let w = Tensor::from_vec(values(n * k, 23, 1.0), (n, k), &device).unwrap();
    let mut data = QTensor::quantize(&w, GgmlDType::Q4_0)
        .unwrap()
        .data()
        .unwrap()
        .to_vec();
    for (c, scale) in [0x0001u16, 0x03FF, 0x0400, 0x7BFF, 0x8001, 0x8000]
        .iter()
        .enumerate()
    {
        data[c * 144 + 18 * c..][..2].copy_from_slice(&scale.to_le_bytes());
    }
    let matrix = SimdMatrix::new(q4_0_tensor(&data, n, k), Path::best())
        .unwrap()
        .unwrap();
    for m in 1..=5 {
        // Activations up to 3 and up to 3 · 10⁴: activation scales of both signs of exponent.
        for spread in [3.0, 3.0e4] {
            let x = values(m * k, 40 + m as u32, spread);
            let act = QuantizedRows::new(&x, k);
            let mut y = vec![f32::NAN; m * n];
            matrix.matmul(&x, &mut y);
            assert_bits_equal(&y, n, &format!("n={n}, m={m}, spread {spread}"), |r, c| {
                q4_0_column_reference(&data[c * 144..(c + 1) * 144], &act, r)
            });
        }
    }
}

/// Activations quantized to q8_0 on SIMD lanes give candle's own quantization bit for bit
/// (see the check).
#[wasm_bindgen_test]
fn activations_quantize_like_candle_q8_0() {
    crate::common::check_activations_quantize_like_candle();
}

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
