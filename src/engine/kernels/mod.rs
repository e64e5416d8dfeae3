//! The crate's own matrix kernels for the shapes that dominate a forward pass, where candle's
//! generic ones are slow: q4_0 weights times q8_0 activations on x86-64 (AVX2 / VNNI), and q4_0
//! and q8_0 weights times q8_0 activations on wasm32 (simd128, relaxed SIMD), and on wasm32
//! candle's kernels for other types spread over rayon's threads (`split`).

#[cfg(target_arch = "x86_64")]
pub mod q4_0_x86;
pub mod q8_act;
#[cfg(target_arch = "wasm32")]
pub mod q_wasm;
#[cfg(target_arch = "wasm32")]
pub mod split;

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
