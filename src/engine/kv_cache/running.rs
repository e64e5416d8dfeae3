//! A piece of many queries' attention over the cache's blocks one at a time, with a running
//! softmax, so that its scores never cover more than a block of keys (chunked prefill).

use candle_core::{Device, Tensor};

use crate::engine::kernels::f16;
use crate::error::{Error, Result};

/// `q · kᵀ` for queries `(b, n_head, s, d)` and keys `(1 or b, n_head, n, d)`: `(b, n_head, s, n)`.
/// Keys of batch 1 are shared: every sequence's queries meet them in one product.
fn scores(q: &Tensor, k: &Tensor) -> Result<Tensor> {
    let (b, h, s, d) = q.dims4()?;
    if k.dim(0)? == b {
        return Ok(q.matmul(&k.t()?)?);
    }
    let n = k.dim(2)?;
    let q = q.transpose(0, 1)?.contiguous()?.reshape((1, h, b * s, d))?;
    let product = q.matmul(&k.t()?)?.reshape((h, b, s, n))?;
    Ok(product.transpose(0, 1)?)
}

/// `p · v` for weights `(b, n_head, s, n)` and values `(1 or b, n_head, n, d)`: `(b, n_head, s, d)`.
fn weighted(p: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (b, h, s, n) = p.dims4()?;
    if v.dim(0)? == b {
        return Ok(p.contiguous()?.matmul(v)?);
    }
    let d = v.dim(3)?;
    let p = p.transpose(0, 1)?.contiguous()?.reshape((1, h, b * s, n))?;
    let product = p.matmul(v)?.reshape((h, b, s, d))?;
    Ok(product.transpose(0, 1)?)
}

/// One block's keys and values as a piece's attention reads them: buffers `(1 or b, n_head,
/// capacity, head_dim)` of which the first `n` positions count.
pub(super) struct Part<'a> {
    /// Keys.
    pub k: &'a Tensor,
    /// Values.
    pub v: &'a Tensor,
    /// Filled positions.
    pub n: usize,
}

/// ALiBi biases and the causal mask of keys `start..start + n` for `s` queries after `past`
/// cached positions: `slope · j` for key j, −∞ where key j lies after query i (`j > past + i`).
/// `(1, n_head, 1, n)` when every query sees every key, else `(1, n_head, s, n)`. `slopes`: one
/// per head.
pub(super) fn key_bias(
    (slopes, device): (&[f32], &Device),
    past: usize,
    s: usize,
    start: usize,
    n: usize,
) -> Result<Tensor> {
    let slopes = Tensor::from_slice(slopes, (1, slopes.len(), 1, 1), device)?;
    let positions: Vec<f32> = (start..start + n).map(|j| j as f32).collect();
    let positions = Tensor::from_vec(positions, (1, 1, 1, n), device)?;
    let alibi = slopes.broadcast_mul(&positions)?;
    if start + n <= past + 1 {
        return Ok(alibi);
    }
    let mask: Vec<f32> = (0..s)
        .flat_map(|i| {
            (start..start + n).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 })
        })
        .collect();
    let mask = Tensor::from_vec(mask, (1, 1, s, n), device)?;
    Ok(alibi.broadcast_add(&mask)?)
}

/// softmax(bias + q · kᵀ) · v for a piece of `s` queries `(b, n_head, s, head_dim)`, one block
/// at a time with a running softmax (in f32, as BLOOM does): for block j with scores `x_j`,
/// `m ← max(m, max x_j)`, `l ← l·e^(m_old − m) + Σ e^(x_j − m)`, `o ← o·e^(m_old − m) +
/// e^(x_j − m) · v_j`, and the context is `o / l`. The first block holds key 0, which every
/// query sees, so `m` is finite from the start. `biases`: [`key_bias`] of each part's keys.
pub(super) fn piece_attention(q: &Tensor, parts: &[Part<'_>], biases: &[Tensor]) -> Result<Tensor> {
    // (running maximum, running sum, running weighted values)
    let mut state: Option<(Tensor, Tensor, Tensor)> = None;
    for (p, bias) in parts.iter().zip(biases) {
        // (b, n_head, s, n), keys and values widened to f32 from an f16 cache
        let scores = scores(q, &f16::to_f32(&p.k.narrow(2, 0, p.n)?)?)?.broadcast_add(bias)?;
        let block_max = scores.max_keepdim(3)?;
        let max = match &state {
            Some((max, _, _)) => max.maximum(&block_max)?,
            None => block_max,
        };
        let exp = scores.broadcast_sub(&max)?.exp()?;
        let sum = exp.sum_keepdim(3)?;
        let values = weighted(&exp, &f16::to_f32(&p.v.narrow(2, 0, p.n)?)?)?;
        state = Some(match state {
            Some((old_max, old_sum, old_values)) => {
                let rescale = (old_max - &max)?.exp()?;
                let sum = ((old_sum * &rescale)? + sum)?;
                let values = (old_values.broadcast_mul(&rescale)? + values)?;
                (max, sum, values)
            }
            None => (max, sum, values),
        });
    }
    let (_, sum, values) =
        state.ok_or_else(|| Error::Invalid("attention over no positions".into()))?;
    Ok(values.broadcast_div(&sum)?)
}
