//! Times candle's quantized matmul at the shapes of a bloom-560m decode step, for BENCHMARKS.md:
//! `CANDLE_NUM_THREADS=1 RAYON_NUM_THREADS=1 cargo run --release --example matmul_shapes`.
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};

fn main() -> candle_core::Result<()> {
    let device = Device::Cpu;
    let shapes = [
        (GgmlDType::Q6K, 250_880, 1024),
        (GgmlDType::Q8_0, 250_880, 1024),
        (GgmlDType::Q4K, 250_880, 1024),
        (GgmlDType::Q4_0, 4096, 1024),
        (GgmlDType::Q8_0, 4096, 1024),
        (GgmlDType::Q8_0, 3072, 1024),
        (GgmlDType::Q8_0, 1024, 1024),
        (GgmlDType::Q8_0, 1024, 4096),
    ];
    for (dtype, n, k) in shapes {
        let weights = Tensor::randn(0f32, 0.02, (n, k), &device)?;
        let matmul = QMatMul::from_qtensor(QTensor::quantize(&weights, dtype)?)?;
        for m in [1usize, 3] {
            let x = Tensor::randn(0f32, 1., (1, m, k), &device)?;
            matmul.forward(&x)?;
            let iterations = 20;
            let start = std::time::Instant::now();
            for _ in 0..iterations {
                matmul.forward(&x)?;
            }
            let ms = start.elapsed().as_secs_f64() * 1e3 / iterations as f64;
            println!("{dtype:?} {n}x{k} m={m}: {ms:.3} ms");
        }
    }
    Ok(())
}
