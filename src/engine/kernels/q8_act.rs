//! Activations quantized to q8_0 blocks exactly as candle's (and llama.cpp's) reference does,
//! for the wasm kernels; plain Rust, so the arithmetic is also checked natively. And on wasm32,
//! activations quantized to q8_k super-blocks by candle itself, for the q4_k kernels.

/// Values per q4_0 / q8_0 block.
pub const BLOCK: usize = 32;

/// Rows of activations as q8_0 blocks: quants, scales and each block's sum of quants.
pub struct QuantizedRows {
    /// Blocks per row (k / 32).
    pub blocks: usize,
    /// `[row][block][32]`.
    pub quants: Vec<i8>,
    /// `[row][block]`: the block's f16 scale, as f32.
    pub scales: Vec<f32>,
    /// `[row][block]`: `Σ quants`, for kernels that store weights with an offset.
    pub sums: Vec<i32>,
}

impl QuantizedRows {
    /// Quantizes `x` (rows of `k` values, `k` a multiple of 32) block by block: scale
    /// `d = amax / 127` (kept rounded to f16, as stored), `q = round(x · (1 / d))` half away from
    /// zero, the operations of candle's `BlockQ8_0::from_float`.
    pub fn new(x: &[f32], k: usize) -> Self {
        assert!(
            k.is_multiple_of(BLOCK) && x.len().is_multiple_of(k),
            "q8_0 rows of whole blocks"
        );
        let count = x.len() / BLOCK;
        let mut rows = Self {
            blocks: k / BLOCK,
            quants: vec![0; x.len()],
            scales: vec![0.0; count],
            sums: vec![0; count],
        };
        let blocks = x
            .chunks_exact(BLOCK)
            .zip(rows.quants.chunks_exact_mut(BLOCK));
        for (i, (values, quants)) in blocks.enumerate() {
            let amax = values.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let inverse = if d != 0.0 { 1.0 / d } else { 0.0 };
            let mut sum = 0;
            for (q, &v) in quants.iter_mut().zip(values) {
                *q = f32::round(v * inverse) as i8;
                sum += *q as i32;
            }
            rows.scales[i] = half::f16::from_f32(d).to_f32();
            rows.sums[i] = sum;
        }
        rows
    }
}

/// Values per q8_k (and q4_k) super-block.
#[cfg(target_arch = "wasm32")]
pub const QK_K: usize = 256;

/// Rows of activations as q8_k super-blocks: per super-block `d`, 256 quants and the sums of
/// its eight 32-value sub-blocks.
#[cfg(target_arch = "wasm32")]
pub struct Q8kRows {
    /// Super-blocks per row (k / 256).
    pub blocks: usize,
    /// `[row][super-block]`: the super-block's scale `d`.
    pub scales: Vec<f32>,
    /// `[row][super-block][256]`.
    pub quants: Vec<i8>,
    /// `[row][super-block][8]`: `Σ quants` of each 32-value sub-block (at most 4,096).
    pub sub_sums: Vec<i16>,
}

#[cfg(target_arch = "wasm32")]
impl Q8kRows {
    /// Quantizes the rows of `x` (`k` values each, `k` a multiple of 256) as candle does for
    /// its q4_k products (candle's own `BlockQ8K::from_float`).
    pub fn new(x: &[f32], k: usize) -> Self {
        use candle_core::quantized::k_quants::{BlockQ8K, GgmlType};
        assert!(
            k.is_multiple_of(QK_K) && x.len().is_multiple_of(k),
            "q8_k rows of whole super-blocks"
        );
        /// Bytes of candle's `BlockQ8K` (`#[repr(C)]`: f32 `d`, 256 i8 quants, 16 i16 sums of
        /// 16; its fields are candle's own).
        const Q8K_BYTES: usize = 4 + QK_K + 2 * QK_K / 16;
        let total = x.len() / QK_K;
        let mut q8 = vec![BlockQ8K::zeros(); total];
        BlockQ8K::from_float(x, &mut q8);
        // SAFETY: `BlockQ8K` is `#[repr(C)]` and `Q8K_BYTES` long (candle asserts its size); the
        // bytes are read, never written.
        let bytes =
            unsafe { std::slice::from_raw_parts(q8.as_ptr().cast::<u8>(), total * Q8K_BYTES) };
        let mut rows = Self {
            blocks: k / QK_K,
            scales: Vec::with_capacity(total),
            quants: Vec::with_capacity(total * QK_K),
            sub_sums: Vec::with_capacity(total * 8),
        };
        for block in bytes.chunks_exact(Q8K_BYTES) {
            let (d, rest) = block.split_at(4);
            let (quants, sums) = rest.split_at(QK_K);
            rows.scales
                .push(f32::from_le_bytes([d[0], d[1], d[2], d[3]]));
            rows.quants.extend(quants.iter().map(|&q| q as i8));
            // Two sums of 16 (each at most 2,048 in magnitude) per sub-block.
            rows.sub_sums.extend(
                sums.chunks_exact(4)
                    .map(|s| i16::from_le_bytes([s[0], s[1]]) + i16::from_le_bytes([s[2], s[3]])),
            );
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    #[test]
    fn quantizes_like_candle_q8_0() {
        // Scale 1 (amax 127): exact halves must round away from zero, like f32::round.
        let mut values: Vec<f32> = vec![127.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 126.5, -126.5];
        values.resize(BLOCK, 0.25);
        let random = Tensor::randn(0f32, 3.0, 31 * BLOCK, &Device::Cpu).unwrap();
        values.extend(random.to_vec1::<f32>().unwrap());
        values.extend([0.0; BLOCK]);
        let k = values.len();
        let ours = QuantizedRows::new(&values, k);
        let tensor = Tensor::from_vec(values, (1, k), &Device::Cpu).unwrap();
        let candle = QTensor::quantize(&tensor, GgmlDType::Q8_0).unwrap();
        for (b, block) in candle.data().unwrap().chunks_exact(2 + BLOCK).enumerate() {
            let scale = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
            let quants: Vec<i8> = block[2..].iter().map(|&q| q as i8).collect();
            assert_eq!(ours.scales[b], scale, "block {b} scale");
            assert_eq!(
                &ours.quants[b * BLOCK..(b + 1) * BLOCK],
                quants,
                "block {b}"
            );
            let sum: i32 = quants.iter().map(|&q| q as i32).sum();
            assert_eq!(ours.sums[b], sum, "block {b} sum");
        }
        assert_eq!(ours.quants[1..9], [1, -1, 2, -2, 3, -3, 127, -127]);
    }
}
