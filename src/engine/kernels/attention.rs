//! Attention of one new position per sequence (a decode step) over a cache block, read in
//! place from the block's buffer.
//!
//! candle's matmul would first copy the filled part of a block out of its buffer (a strided
//! view), and runs a 64-deep product of 1–3 rows per head as a general matrix product; at a
//! story of 1,500 tokens that made attention cost as much as all of BLOOM-560m's weights. These
//! loops read the keys and values where they lie, one pass over them per step, written so the
//! compiler vectorizes the 64-wide dot products and sums (simd128 on wasm32, SSE/AVX natively).
//! No crate offers attention over candle's storage without that copy, hence this file.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape};
#[cfg(not(target_arch = "wasm32"))]
use rayon::prelude::*;

/// `(q · kᵀ)` for queries `(b, n_head, 1, d)` and the first `len` positions of a key buffer
/// `(1 or b, n_head, capacity, d)`: `(b, n_head, 1, len)`.
pub struct DecodeScores {
    /// Filled positions of the buffer.
    pub len: usize,
}

/// `p · v` for weights `(b, n_head, 1, len)` and the first `len` positions of a value buffer
/// `(1 or b, n_head, capacity, d)`: `(b, n_head, 1, d)`.
pub struct DecodeContext {
    /// Filled positions of the buffer.
    pub len: usize,
}

/// The contiguous f32 data of a tensor and its four dimensions.
fn f32_4d<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    what: &str,
) -> candle_core::Result<(&'a [f32], [usize; 4])> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("decode attention needs f32 {what}")
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("decode attention needs contiguous {what}, got {layout:?}")
    };
    let dims: [usize; 4] = layout
        .shape()
        .dims()
        .try_into()
        .map_err(|_| candle_core::Error::Msg(format!("{what} must have 4 dimensions")))?;
    Ok((&data[start..end], dims))
}

/// Checks that a buffer `(bb, h, capacity, d)` fits a batch `b` of `h` heads, `len` positions.
fn check_buffer(b: usize, h: usize, len: usize, buffer: [usize; 4]) -> candle_core::Result<()> {
    let [bb, bh, capacity, _] = buffer;
    if !(bb == 1 || bb == b) || bh != h || len > capacity {
        candle_core::bail!("decode attention: buffer {buffer:?} for {b}×{h} heads, {len} positions")
    }
    Ok(())
}

/// Runs `f(row, out_row)` for every `row_len`-long row of `out`: on rayon's threads natively,
/// in turn on wasm32; with AVX2 where the CPU has it (the loops are written to vectorize).
fn for_each_row(out: &mut [f32], row_len: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    #[cfg(target_arch = "x86_64")]
    {
        /// # Safety
        /// The CPU must support AVX2.
        #[target_feature(enable = "avx2")]
        unsafe fn with_avx2(row: usize, out: &mut [f32], f: &(impl Fn(usize, &mut [f32]) + Sync)) {
            f(row, out)
        }
        if is_x86_feature_detected!("avx2") {
            out.par_chunks_exact_mut(row_len)
                .enumerate()
                // SAFETY: AVX2 was detected just above.
                .for_each(|(row, out)| unsafe { with_avx2(row, out, &f) });
            return;
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    out.par_chunks_exact_mut(row_len)
        .enumerate()
        .for_each(|(row, out)| f(row, out));
    #[cfg(target_arch = "wasm32")]
    out.chunks_exact_mut(row_len)
        .enumerate()
        .for_each(|(row, out)| f(row, out));
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums, so that the loop vectorizes.
    let mut acc = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

impl CustomOp2 for DecodeScores {
    fn name(&self) -> &'static str {
        "decode-scores"
    }

    fn cpu_fwd(
        &self,
        q_storage: &CpuStorage,
        q_layout: &Layout,
        k_storage: &CpuStorage,
        k_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (q, [b, h, s, d]) = f32_4d(q_storage, q_layout, "queries")?;
        let (k, k_dims) = f32_4d(k_storage, k_layout, "keys")?;
        check_buffer(b, h, self.len, k_dims)?;
        if s != 1 || k_dims[3] != d {
            candle_core::bail!("decode scores of queries {:?}", q_layout.shape())
        }
        let capacity = k_dims[2];
        let mut out = vec![0f32; b * h * self.len];
        let len = self.len;
        for_each_row(&mut out, len, |row, scores| {
            let (seq, head) = (row / h, row % h);
            let query = &q[row * d..(row + 1) * d];
            let keys = if k_dims[0] == 1 { head } else { seq * h + head };
            let keys = &k[keys * capacity * d..][..len * d];
            for (score, key) in scores.iter_mut().zip(keys.chunks_exact(d)) {
                *score = dot(query, key);
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, h, 1, self.len))))
    }
}

impl CustomOp2 for DecodeContext {
    fn name(&self) -> &'static str {
        "decode-context"
    }

    fn cpu_fwd(
        &self,
        p_storage: &CpuStorage,
        p_layout: &Layout,
        v_storage: &CpuStorage,
        v_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (p, [b, h, s, n]) = f32_4d(p_storage, p_layout, "weights")?;
        let (v, v_dims) = f32_4d(v_storage, v_layout, "values")?;
        check_buffer(b, h, self.len, v_dims)?;
        if s != 1 || n != self.len {
            candle_core::bail!("decode context of weights {:?}", p_layout.shape())
        }
        let (capacity, d) = (v_dims[2], v_dims[3]);
        let mut out = vec![0f32; b * h * d];
        for_each_row(&mut out, d, |row, context| {
            let (seq, head) = (row / h, row % h);
            let weights = &p[row * n..(row + 1) * n];
            let values = if v_dims[0] == 1 { head } else { seq * h + head };
            let values = &v[values * capacity * d..][..n * d];
            for (&w, value) in weights.iter().zip(values.chunks_exact(d)) {
                for (c, x) in context.iter_mut().zip(value) {
                    *c += w * x;
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, h, 1, d))))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    /// The kernels against candle's matmuls, for a shared (batch 1) and an own (batch b) buffer.
    #[test]
    fn decode_attention_matches_candle() {
        let device = Device::Cpu;
        let (b, h, capacity, d, len) = (3, 4, 20, 64, 13);
        let q = Tensor::randn(0f32, 1.0, (b, h, 1, d), &device).unwrap();
        for bb in [1, b] {
            let k = Tensor::randn(0f32, 1.0, (bb, h, capacity, d), &device).unwrap();
            let v = Tensor::randn(0f32, 1.0, (bb, h, capacity, d), &device).unwrap();
            let scores = q.apply_op2(&k, DecodeScores { len }).unwrap();
            let k_used = k
                .narrow(2, 0, len)
                .unwrap()
                .broadcast_as((b, h, len, d))
                .unwrap();
            let expected = q
                .matmul(&k_used.contiguous().unwrap().t().unwrap())
                .unwrap();
            let diff = (scores.clone() - expected).unwrap().abs().unwrap();
            assert!(diff.max_all().unwrap().to_scalar::<f32>().unwrap() < 1e-4);
            let p = candle_nn::ops::softmax_last_dim(&scores).unwrap();
            let context = p.apply_op2(&v, DecodeContext { len }).unwrap();
            let v_used = v
                .narrow(2, 0, len)
                .unwrap()
                .broadcast_as((b, h, len, d))
                .unwrap();
            let expected = p.matmul(&v_used.contiguous().unwrap()).unwrap();
            let diff = (context - expected).unwrap().abs().unwrap();
            assert!(diff.max_all().unwrap().to_scalar::<f32>().unwrap() < 1e-5);
        }
    }
}
