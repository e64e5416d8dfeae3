//! The x86 q4_0 kernels against candle's reference result, and their bad-input errors.

use super::*;
use candle_core::quantized::QMatMul;
use candle_core::{Device, Module, Tensor};

/// Every kernel set this CPU can run.
fn supported_isas() -> Vec<Isa> {
    match Isa::detect() {
        None => vec![],
        Some(Isa::Avx2) => vec![Isa::Avx2],
        Some(Isa::AvxVnni) => vec![Isa::AvxVnni, Isa::Avx2],
        Some(Isa::Avx512Vnni) => {
            let mut isas = vec![Isa::Avx512Vnni, Isa::Avx2];
            if is_x86_feature_detected!("avxvnni") {
                isas.push(Isa::AvxVnni);
            }
            isas
        }
    }
}

#[test]
fn activations_quantize_like_the_portable_q8_0() {
    // The portable quantizer is checked against candle's q8_0 in `q8_act`.
    let mut values: Vec<f32> = vec![127.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 126.5, -126.5];
    values.resize(BLOCK, 0.25);
    let random = Tensor::randn(0f32, 3.0, 31 * BLOCK, &Device::Cpu).unwrap();
    values.extend(random.to_vec1::<f32>().unwrap());
    values.extend([0.0; BLOCK]);
    let ours = unsafe { QuantizedRows::new(&values, values.len()) };
    let portable = super::super::q8_act::QuantizedRows::new(&values, values.len());
    assert_eq!(ours.quants, portable.quants);
    assert_eq!(ours.scales, portable.scales);
    let offsets: Vec<i32> = portable.sums.iter().map(|s| -8 * s).collect();
    assert_eq!(ours.offsets, offsets);
}

/// Compares every kernel set with candle's q4_0 `QMatMul` for an n × k matrix and m rows.
fn check_against_candle(m: usize, k: usize, n: usize) {
    let device = Device::Cpu;
    let w = Tensor::randn(0f32, 1.0, (n, k), &device).unwrap();
    let x = Tensor::randn(0f32, 1.0, (m, k), &device).unwrap();
    let q = std::sync::Arc::new(QTensor::quantize(&w, GgmlDType::Q4_0).unwrap());
    let expected: Vec<f32> = QMatMul::from_arc(q.clone())
        .unwrap()
        .forward(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    // Relative to each value, but at least to the typical magnitude: an output that
    // cancels to near zero has no relative precision in either order of summation.
    let typical = expected.iter().map(|v| v.abs()).sum::<f32>() / expected.len() as f32;
    let x = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for isa in supported_isas() {
        let matrix = Q4_0Matrix::with_isa(&q, isa).unwrap();
        let mut y = vec![f32::NAN; m * n];
        matrix.matmul(&x, &mut y);
        for (i, (got, want)) in y.iter().zip(&expected).enumerate() {
            let tolerance = 1e-4 * want.abs().max(typical);
            assert!(
                (got - want).abs() <= tolerance,
                "{isa:?} m={m} k={k} n={n}: y[{}][{}] = {got}, candle {want}",
                i / n,
                i % n
            );
        }
    }
}

#[test]
fn equals_candle_q4_0_for_small_shapes() {
    for m in [1, 2, 3, 5, 17] {
        for n in [1, 7, 16, 33] {
            for k in [32, 1024] {
                check_against_candle(m, k, n);
            }
        }
    }
}

#[test]
fn equals_candle_q4_0_for_model_shapes() {
    for m in [1, 3, 17] {
        check_against_candle(m, 4096, 4099);
        check_against_candle(m, 1024, 4099);
    }
}

#[test]
fn as_a_candle_op_keeps_leading_dims() {
    let device = Device::Cpu;
    let w = Tensor::randn(0f32, 1.0, (20, 64), &device).unwrap();
    let q = QTensor::quantize(&w, GgmlDType::Q4_0).unwrap();
    let Some(matrix) = Q4_0Matrix::new(&q).unwrap() else {
        return; // no AVX2: nothing to run
    };
    let x = Tensor::randn(0f32, 1.0, (2, 3, 64), &device).unwrap();
    let y = x.apply_op1_no_bwd(&matrix).unwrap();
    assert_eq!(y.dims(), [2, 3, 20]);
    let flat = x
        .reshape((6, 64))
        .unwrap()
        .apply_op1_no_bwd(&matrix)
        .unwrap();
    let diff = (y.reshape((6, 20)).unwrap() - flat)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(diff, 0.0);
}

#[test]
fn bias_and_gelu_are_candles_after_the_product() {
    let device = Device::Cpu;
    let (m, k, n) = (3, 64, 37);
    let w = Tensor::randn(0f32, 1.0, (n, k), &device).unwrap();
    let x = Tensor::randn(0f32, 0.2, (m, k), &device).unwrap();
    let bias = Tensor::randn(0f32, 1.0, n, &device).unwrap();
    let q = QTensor::quantize(&w, GgmlDType::Q4_0).unwrap();
    for isa in supported_isas() {
        let plain = Q4_0Matrix::with_isa(&q, isa).unwrap();
        let fused = Q4_0Matrix::with_isa(&q, isa)
            .unwrap()
            .with_bias(bias.to_vec1().unwrap())
            .unwrap()
            .with_gelu();
        let product = x.apply_op1_no_bwd(&plain).unwrap();
        let expected = product.broadcast_add(&bias).unwrap().gelu().unwrap();
        let got = x.apply_op1_no_bwd(&fused).unwrap();
        let (got, expected) = (
            got.to_vec2::<f32>().unwrap(),
            expected.to_vec2::<f32>().unwrap(),
        );
        assert_eq!(got, expected, "{isa:?}");
    }
    let short = Q4_0Matrix::with_isa(&q, Isa::Avx2)
        .unwrap()
        .with_bias(vec![0.0; 3]);
    assert!(short.unwrap_err().to_string().contains("bias of 3"));
}

#[test]
fn rejects_other_types() {
    let w = Tensor::zeros((16, 64), candle_core::DType::F32, &Device::Cpu).unwrap();
    let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
    let error = Q4_0Matrix::with_isa(&q, Isa::Avx2).unwrap_err();
    assert!(error.to_string().contains("q4_0"), "{error}");
}
