//! The wasm simd128 kernels (`engine::kernels::q_wasm`) against candle's `QMatMul`, for every
//! dot-product path this build has (plain simd128 always; relaxed SIMD in the `+relaxed-simd`
//! build), at small and model-sized shapes; `vector_math`, the SIMD code that is not a product.
//! The relaxed-SIMD build runs this module (`kernels`) again.

mod vector_math;

use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{Device, Module, Tensor};
use storywriter::engine::kernels::q4k_wasm::Q4kMatrix;
use storywriter::engine::kernels::q8_act::{Q8kRows, QuantizedRows, QK_K};
use storywriter::engine::kernels::q_wasm::{Path, SimdMatrix};
use storywriter::engine::kernels::split::RowSplit;
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
