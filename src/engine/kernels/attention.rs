//! Attention of one new position per sequence (a decode step) over a cache block, read in
//! place from the block's buffer.
//!
//! candle's matmul would first copy the filled part of a block out of its buffer (a strided
//! view), and runs a 64-deep product of 1–3 rows per head as a general matrix product; at a
//! story of 1,500 tokens that made attention cost as much as all of BLOOM-560m's weights. These
//! loops read the keys and values where they lie, one pass over them per step (keys and values
//! shared by the batch are read once for all its sequences, not once per sequence), the heads
//! on rayon's threads, written so the compiler vectorizes the 64-wide dot products and sums
//! (simd128 on wasm32, AVX2 natively).
//! No crate offers attention over candle's storage without that copy, hence this file.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape};
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

/// The rows of `out` (`(b, h, row_len)`, row-major) grouped by head: `groups[head][seq]`.
fn rows_by_head(out: &mut [f32], h: usize, row_len: usize) -> Vec<Vec<&mut [f32]>> {
    let mut groups: Vec<Vec<&mut [f32]>> = (0..h).map(|_| vec![]).collect();
    for (row, chunk) in out.chunks_exact_mut(row_len).enumerate() {
        groups[row % h].push(chunk);
    }
    groups
}

/// A kernel's work for one head: fills that head's rows (one per sequence) of the output.
trait HeadKernel: Sync {
    fn run(&self, head: usize, rows: &mut [&mut [f32]]);
}

/// Multiply-adds below which a kernel call runs on the calling thread: waking rayon's threads
/// costs more than it saves for a short story (in the threaded web build, ~30 µs a call, 14
/// calls a layer).
const PARALLEL_WORK: usize = 1 << 20;

/// Runs `kernel` for every head's rows of `out` (see [`rows_by_head`]), on rayon's threads when
/// the call does at least [`PARALLEL_WORK`] multiply-adds (`work`), natively with AVX2 and FMA
/// where the CPU has them (`run` is inlined into a function compiled for them; the loops are
/// written to vectorize).
fn for_each_head(
    out: &mut [f32],
    (h, row_len): (usize, usize),
    work: usize,
    kernel: &impl HeadKernel,
) {
    let groups = rows_by_head(out, h, row_len);
    #[cfg(target_arch = "x86_64")]
    {
        /// # Safety
        /// The CPU must support AVX2 and FMA.
        #[target_feature(enable = "avx2,fma")]
        unsafe fn with_avx2(kernel: &impl HeadKernel, head: usize, rows: &mut [&mut [f32]]) {
            kernel.run(head, rows)
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: AVX2 and FMA were detected just above.
            let run = |(head, mut rows): (usize, Vec<&mut [f32]>)| unsafe {
                with_avx2(kernel, head, &mut rows)
            };
            return run_groups(groups, work, run);
        }
    }
    run_groups(groups, work, |(head, mut rows)| kernel.run(head, &mut rows));
}

/// Runs `run` on every head's group of rows: on rayon's threads when `work` is at least
/// [`PARALLEL_WORK`], else in turn on the calling thread (a rayon call would still hand the work
/// to the pool and wait).
fn run_groups<'a>(
    groups: Vec<Vec<&'a mut [f32]>>,
    work: usize,
    run: impl Fn((usize, Vec<&'a mut [f32]>)) + Sync + Send,
) {
    if work >= PARALLEL_WORK {
        groups.into_par_iter().enumerate().for_each(run);
    } else {
        groups.into_iter().enumerate().for_each(run);
    }
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

/// Where sequence `seq`'s positions of head `head` start in a buffer `(bb, h, capacity, d)`:
/// a shared buffer (`bb` = 1) holds one sequence for all.
fn buffer_start(buffer: [usize; 4], seq: usize, head: usize) -> usize {
    let [bb, h, capacity, d] = buffer;
    let row = if bb == 1 { head } else { seq * h + head };
    row * capacity * d
}

/// One head of [`DecodeScores`]: queries `(b, h, 1, d)` against the first `len` keys.
struct ScoresKernel<'a> {
    q: &'a [f32],
    k: &'a [f32],
    k_dims: [usize; 4],
    h: usize,
    len: usize,
}

impl HeadKernel for ScoresKernel<'_> {
    #[inline(always)]
    fn run(&self, head: usize, rows: &mut [&mut [f32]]) {
        let (h, d, len) = (self.h, self.k_dims[3], self.len);
        let query = |seq: usize| &self.q[(seq * h + head) * d..][..d];
        if self.k_dims[0] == 1 {
            // Keys shared by the batch: each key is read once for every sequence's query.
            let keys = &self.k[buffer_start(self.k_dims, 0, head)..][..len * d];
            for (j, key) in keys.chunks_exact(d).enumerate() {
                for (seq, row) in rows.iter_mut().enumerate() {
                    row[j] = dot(query(seq), key);
                }
            }
        } else {
            for (seq, row) in rows.iter_mut().enumerate() {
                let keys = &self.k[buffer_start(self.k_dims, seq, head)..][..len * d];
                for (score, key) in row.iter_mut().zip(keys.chunks_exact(d)) {
                    *score = dot(query(seq), key);
                }
            }
        }
    }
}

/// One head of [`DecodeContext`]: weights `(b, h, 1, n)` times the first `n` values.
struct ContextKernel<'a> {
    p: &'a [f32],
    v: &'a [f32],
    v_dims: [usize; 4],
    h: usize,
    n: usize,
}

impl HeadKernel for ContextKernel<'_> {
    #[inline(always)]
    fn run(&self, head: usize, contexts: &mut [&mut [f32]]) {
        let (h, d, n) = (self.h, self.v_dims[3], self.n);
        let weights = |seq: usize| &self.p[(seq * h + head) * n..][..n];
        if self.v_dims[0] == 1 {
            // Values shared by the batch: each value is read once for every sequence.
            let values = &self.v[buffer_start(self.v_dims, 0, head)..][..n * d];
            for (j, value) in values.chunks_exact(d).enumerate() {
                for (seq, context) in contexts.iter_mut().enumerate() {
                    add_scaled(context, weights(seq)[j], value);
                }
            }
        } else {
            for (seq, context) in contexts.iter_mut().enumerate() {
                let values = &self.v[buffer_start(self.v_dims, seq, head)..][..n * d];
                for (&w, value) in weights(seq).iter().zip(values.chunks_exact(d)) {
                    add_scaled(context, w, value);
                }
            }
        }
    }
}

/// `context += w · value`.
#[inline(always)]
fn add_scaled(context: &mut [f32], w: f32, value: &[f32]) {
    for (c, x) in context.iter_mut().zip(value) {
        *c += w * x;
    }
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
        let len = self.len;
        let mut out = vec![0f32; b * h * len];
        let kernel = ScoresKernel {
            q,
            k,
            k_dims,
            h,
            len,
        };
        for_each_head(&mut out, (h, len), b * h * len * d, &kernel);
        Ok((CpuStorage::F32(out), Shape::from((b, h, 1, len))))
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
        let d = v_dims[3];
        let mut out = vec![0f32; b * h * d];
        let kernel = ContextKernel { p, v, v_dims, h, n };
        for_each_head(&mut out, (h, d), b * h * n * d, &kernel);
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
