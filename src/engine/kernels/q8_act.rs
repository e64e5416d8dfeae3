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
            let (d, sum) = quantize_block(values.try_into().expect("a block"), quants);
            rows.scales[i] = half::f16::from_f32(d).to_f32();
            rows.sums[i] = sum;
        }
        rows
    }
}

/// One block as candle's `BlockQ8_0::from_float`: `d = amax / 127`, `q = round(x · (1 / d))`
/// (half away from zero, saturated to i8); returns `d` and `Σ q`.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn quantize_block(values: &[f32; BLOCK], quants: &mut [i8]) -> (f32, i32) {
    let amax = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let inverse = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut sum = 0;
    for (q, &v) in quants.iter_mut().zip(values) {
        *q = f32::round(v * inverse) as i8;
        sum += *q as i32;
    }
    (d, sum)
}

/// [`quantize_block`] on simd128 lanes, the same numbers: wasm has no instruction for
/// `f32::round` (half away from zero), and its library call per value made quantizing a
/// 4096-value row cost as much as a small matrix product. Here `round(x) = t + (|x − t| ≥ ½ ?
/// ±1 : 0)` with `t = trunc(x)`, every step exact; `pmax` skips NaN like `f32::max`; the
/// saturating conversion and narrowings saturate like `as i8`.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn quantize_block(values: &[f32; BLOCK], quants: &mut [i8]) -> (f32, i32) {
    use std::arch::wasm32::*;
    assert_eq!(quants.len(), BLOCK);
    // SAFETY: `values` holds 32 f32s: eight 16-byte loads.
    let v: [v128; 8] =
        std::array::from_fn(|i| unsafe { v128_load(values.as_ptr().add(4 * i).cast()) });
    // The accumulator first: `pmax(m, NaN)` is `m`.
    let lanes = v
        .iter()
        .fold(f32x4_splat(0.0), |m, &x| f32x4_pmax(m, f32x4_abs(x)));
    // SAFETY: an f32x4 is four f32s.
    let amax = unsafe { std::mem::transmute::<v128, [f32; 4]>(lanes) }
        .into_iter()
        .fold(0f32, f32::max);
    let d = amax / 127.0;
    let inverse = f32x4_splat(if d != 0.0 { 1.0 / d } else { 0.0 });
    let ints = v.map(|x| {
        let x = f32x4_mul(x, inverse);
        let t = f32x4_trunc(x);
        let away = f32x4_ge(f32x4_abs(f32x4_sub(x, t)), f32x4_splat(0.5));
        let step = v128_and(
            away,
            v128_or(f32x4_splat(1.0), v128_and(x, f32x4_splat(-0.0))),
        );
        i32x4_trunc_sat_f32x4(f32x4_add(t, step))
    });
    let bytes = [0, 1].map(|half| {
        let at = 4 * half;
        i8x16_narrow_i16x8(
            i16x8_narrow_i32x4(ints[at], ints[at + 1]),
            i16x8_narrow_i32x4(ints[at + 2], ints[at + 3]),
        )
    });
    // The sum of the saturated quants, as stored.
    let sums = bytes.map(|b| i32x4_extadd_pairwise_i16x8(i16x8_extadd_pairwise_i8x16(b)));
    // SAFETY: an i32x4 is four i32s.
    let sum: i32 = unsafe { std::mem::transmute::<v128, [i32; 4]>(i32x4_add(sums[0], sums[1])) }
        .iter()
        .sum();
    // SAFETY: `quants` holds 32 bytes (asserted): two 16-byte stores.
    unsafe {
        v128_store(quants.as_mut_ptr().cast(), bytes[0]);
        v128_store(quants.as_mut_ptr().add(16).cast(), bytes[1]);
    }
    (d, sum)
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
