//! The crate's own matrix kernels for the shapes that dominate a forward pass, where candle's
//! generic ones are slow: q4_0 weights times q8_0 activations on x86-64 (AVX2 / VNNI), and q4_0
//! and q8_0 weights times q8_0 activations on wasm32 (simd128; relaxed SIMD four output columns
//! at a time, `q_wasm_relaxed`), q4_k weights times q8_k activations on wasm32 (`q4k_wasm`, the
//! output projection of q4_0 files; in tiles of 16 rows with relaxed SIMD, `q4k_wasm_relaxed`),
//! and on wasm32
//! candle's kernels for other types spread over rayon's threads (`split`), kept awake for a
//! forward pass (`awake`); and a decode
//! step's attention read in place from the KV cache's blocks (`attention`), GELU's `tanh` on
//! wasm SIMD lanes (`simd_math`), and the f16 cache's widening to f32 (`f16`).

pub mod attention;
pub mod awake;
pub mod cephes;
pub mod f16;
#[cfg(target_arch = "x86_64")]
pub mod q4_0_x86;
#[cfg(target_arch = "wasm32")]
pub mod q4k_wasm;
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
mod q4k_wasm_relaxed;
pub mod q8_act;
#[cfg(target_arch = "wasm32")]
pub mod q_wasm;
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
mod q_wasm_relaxed;
#[cfg(target_arch = "wasm32")]
pub mod simd_math;
#[cfg(target_arch = "wasm32")]
pub mod split;

/// What a kernel applies to its products in the same pass: an optional bias, then optionally
/// [`gelu`] — the f32 operations of candle's `broadcast_add` then `gelu`, in that order.
#[cfg(any(target_arch = "x86_64", target_arch = "wasm32"))]
#[derive(Clone, Default)]
pub struct Epilogue {
    bias: Option<Vec<f32>>,
    gelu: bool,
}

#[cfg(any(target_arch = "x86_64", target_arch = "wasm32"))]
impl std::fmt::Debug for Epilogue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epilogue")
            .field("bias", &self.bias.is_some())
            .field("gelu", &self.gelu)
            .finish()
    }
}

#[cfg(any(target_arch = "x86_64", target_arch = "wasm32"))]
impl Epilogue {
    /// Adds `bias` to every product row of a matrix with `n` outputs (checked).
    pub fn with_bias(self, bias: Vec<f32>, n: usize) -> crate::error::Result<Self> {
        if bias.len() != n {
            return Err(crate::error::Error::Invalid(format!(
                "a bias of {} values for a matrix of {n} rows",
                bias.len()
            )));
        }
        Ok(Self {
            bias: Some(bias),
            ..self
        })
    }

    /// Applies [`gelu`] after the bias.
    pub fn with_gelu(self) -> Self {
        Self { gelu: true, ..self }
    }

    /// Finishes outputs `first..first + y.len()` of a product row.
    pub fn apply(&self, first: usize, y: &mut [f32]) {
        if let Some(bias) = &self.bias {
            for (y, b) in y.iter_mut().zip(&bias[first..]) {
                *y += b;
            }
        }
        if self.gelu {
            #[cfg(target_arch = "wasm32")]
            simd_math::gelu_in_place(y);
            #[cfg(not(target_arch = "wasm32"))]
            y.iter_mut().for_each(|y| *y = gelu(*y));
        }
    }
}

/// The body of a kernel matrix's `CustomOp1::cpu_fwd`: contiguous f32 activations `(…, k)`
/// through `matmul` (`x`, `y` row-major) into `(…, n)`; `name` goes into the errors.
#[cfg(any(target_arch = "x86_64", target_arch = "wasm32"))]
fn matmul_op(
    name: &str,
    (n, k): (usize, usize),
    storage: &candle_core::CpuStorage,
    layout: &candle_core::Layout,
    matmul: impl Fn(&[f32], &mut [f32]),
) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
    let candle_core::CpuStorage::F32(data) = storage else {
        candle_core::bail!("{name} needs f32 activations")
    };
    let (Some((start, end)), Some(&last)) =
        (layout.contiguous_offsets(), layout.shape().dims().last())
    else {
        candle_core::bail!("{name} needs contiguous activations, got {layout:?}")
    };
    if last != k {
        candle_core::bail!("{name} of {:?} by a {n}×{k} matrix", layout.shape())
    }
    let x = &data[start..end];
    let mut y = vec![0f32; x.len() / k * n];
    matmul(x, &mut y);
    let mut dims = layout.shape().dims().to_vec();
    *dims.last_mut().expect("checked above") = n;
    Ok((
        candle_core::CpuStorage::F32(y),
        candle_core::Shape::from(dims),
    ))
}

/// candle's f32 `gelu` (BLOOM's tanh approximation), operation for operation:
/// `0.5 · x · (1 + tanh(√(2/π) · x · (1 + 0.044715 · x²)))`.
pub fn gelu(x: f32) -> f32 {
    const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + f32::tanh(SQRT_TWO_OVER_PI * x * (1.0 + 0.044715 * x * x)))
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    #[test]
    fn gelu_is_candles_bit_for_bit() {
        let values: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.0025).collect();
        let x = Tensor::new(values.as_slice(), &Device::Cpu).unwrap();
        let candle: Vec<f32> = x.gelu().unwrap().to_vec1().unwrap();
        for (v, want) in values.iter().zip(candle) {
            assert_eq!(super::gelu(*v).to_bits(), want.to_bits(), "gelu({v})");
        }
    }
}
