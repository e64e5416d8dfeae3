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
    #[cfg(target_arch = "x86_64")]
    q4_0_kernels()?;
    Ok(())
}

/// The crate's own q4_0 kernels (what the model runs q4_0 layers on, on x86-64), next to
/// candle's q8_0 (what q4_0 layers were widened to before) at decode and prefill row counts.
#[cfg(target_arch = "x86_64")]
fn q4_0_kernels() -> candle_core::Result<()> {
    use storywriter::engine::kernels::q4_0_x86::Q4_0Matrix;
    let device = Device::Cpu;
    // The fastest of 20 runs: robust to other work on a shared machine.
    let time = |run: &mut dyn FnMut() -> candle_core::Result<()>| -> candle_core::Result<f64> {
        run()?;
        let mut best = f64::INFINITY;
        for _ in 0..20 {
            let start = std::time::Instant::now();
            run()?;
            best = best.min(start.elapsed().as_secs_f64() * 1e3);
        }
        Ok(best)
    };
    for (n, k) in [(3072, 1024), (1024, 1024), (4096, 1024), (1024, 4096)] {
        let weights = Tensor::randn(0f32, 0.02, (n, k), &device)?;
        let q8_0 = QMatMul::from_qtensor(QTensor::quantize(&weights, GgmlDType::Q8_0)?)?;
        let q4_0 = QTensor::quantize(&weights, GgmlDType::Q4_0)?;
        let Some(matrix) = Q4_0Matrix::new(&q4_0).map_err(candle_core::Error::wrap)? else {
            println!("no AVX2: the crate's q4_0 kernels do not run here");
            return Ok(());
        };
        for m in [1usize, 3, 128] {
            let x = Tensor::randn(0f32, 1., (1, m, k), &device)?;
            let candle_ms = time(&mut || q8_0.forward(&x).map(drop))?;
            let x = x.flatten_all()?.to_vec1::<f32>()?;
            let mut y = vec![0f32; m * n];
            let ours_ms = time(&mut || {
                matrix.matmul(&x, &mut y);
                Ok(())
            })?;
            println!(
                "{n}x{k} m={m}: storywriter q4_0 {ours_ms:.3} ms, candle Q8_0 {candle_ms:.3} ms"
            );
        }
    }
    Ok(())
}
