//! BLOOM (BigScience, 2022) as in transformers' `modeling_bloom.py`, on candle.
//!
//! ```text
//! ids ─ word_embeddings ─ word_embeddings_layernorm ─┬─ block × n_layer ─ ln_f ─ lm_head (tied) ─ logits
//! block:  x ─ input_layernorm ─ attention(ALiBi) ─ +residual ─ post_attention_layernorm ─ MLP ─ +residual
//! ```
//!
//! Weights are named as in llama.cpp's GGUF files (`token_embd`, `blk.N.attn_qkv`, …) and the
//! fused QKV projection is stored as contiguous Q|K|V rows, the llama.cpp layout; the Hugging Face
//! loader reorders its per-head interleaved rows into that layout. Linear layers are
//! [`QMatMul`]s, so a layer is either a dense f32 matrix or a quantized one, except q4_0 layers
//! on x86-64 and q4_0 / q8_0 layers on wasm32, which run on the crate's own kernels
//! (`kernels::q4_0_x86`, `kernels::q_wasm`); the embedding table stays quantized as stored and
//! rows are gathered from it.

#[cfg(target_arch = "x86_64")]
use std::borrow::Cow;
use std::sync::Arc;

#[cfg(target_arch = "x86_64")]
use candle_core::quantized::QStorage;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::LayerNorm;

use crate::engine::config::BloomConfig;
#[cfg(target_arch = "x86_64")]
use crate::engine::kernels::q4_0_x86::Q4_0Matrix;
#[cfg(target_arch = "wasm32")]
use crate::engine::kernels::{
    q4k_wasm::Q4kMatrix,
    q_wasm::{Path, SimdMatrix},
    split::RowSplit,
};
pub use crate::engine::kv_cache::{KvCache, KvDtype};
use crate::error::{Error, Result};

/// A tensor as a file stores it: dense (any float type, used as f32) or quantized.
#[derive(Clone, Debug)]
pub enum Weight {
    /// A dense tensor.
    Dense(Tensor),
    /// A quantized (or f16/f32 GGUF) tensor.
    Quantized(Arc<QTensor>),
}

impl Weight {
    /// The tensor as dense f32.
    pub fn to_dense(&self) -> Result<Tensor> {
        Ok(match self {
            Self::Dense(t) => t.to_dtype(DType::F32)?,
            Self::Quantized(q) => q.dequantize(&q.device())?,
        })
    }

    /// The tensor as the weight of a linear layer `gelu?(x Wᵀ + b)`: quantized types stay
    /// quantized (q4_0 on x86-64 and q4_0 / q8_0 on wasm32 run on this crate's kernels, see
    /// [`q4_0_linear`] and [`simd_linear`]).
    fn into_linear(self, bias: Option<Tensor>, gelu: bool) -> Result<Linear> {
        #[cfg(target_arch = "wasm32")]
        if let Self::Quantized(q) = &self {
            if let Some(matrix) = SimdMatrix::new(q.clone(), Path::best())? {
                return simd_linear(matrix, bias, gelu);
            }
            if bias.is_none() && !gelu {
                if let Some(matrix) = Q4kMatrix::new(q.clone())? {
                    return Ok(Linear::Q4k(Arc::new(matrix)));
                }
                return Ok(Linear::Split(RowSplit::new(q, SPLIT_PARTS)?));
            }
        }
        let weight = match self {
            Self::Dense(t) => QMatMul::Tensor(t.to_dtype(DType::F32)?),
            Self::Quantized(q) if q.dtype() == GgmlDType::Q4_0 => {
                return q4_0_linear(q, bias, gelu)
            }
            Self::Quantized(q) => QMatMul::from_arc(q)?,
        };
        Ok(Linear::Candle { weight, bias, gelu })
    }

    /// The tensor as an embedding table, rows gathered as stored (quantized types stay so).
    fn into_table(self) -> Result<QMatMul> {
        Ok(match self {
            Self::Dense(t) => QMatMul::Tensor(t.to_dtype(DType::F32)?),
            Self::Quantized(q) => QMatMul::from_arc(q)?,
        })
    }
}

/// A linear layer `y = x Wᵀ + b`, optionally followed by GELU; `b` is optional too (lm_head).
#[derive(Debug, Clone)]
enum Linear {
    /// candle's kernels, dense or quantized; bias and GELU as separate ops.
    Candle {
        weight: QMatMul,
        bias: Option<Tensor>,
        gelu: bool,
    },
    /// q4_0 with this crate's x86-64 kernels, bias and GELU fused into the product (the same
    /// f32 operations as the separate ops, run by the matmul's worker threads).
    #[cfg(target_arch = "x86_64")]
    Q4_0(Arc<Q4_0Matrix>),
    /// q4_0 or q8_0 with this crate's wasm32 simd128 kernels, bias and GELU fused likewise.
    #[cfg(target_arch = "wasm32")]
    Simd(Arc<SimdMatrix>),
    /// q4_k on wasm32 (the output projection of q4_0 files) with this crate's simd128 kernel.
    #[cfg(target_arch = "wasm32")]
    Q4k(Arc<Q4kMatrix>),
    /// Other quantized types on wasm32 (the q6_k output projection, say): candle's kernels
    /// on blocks of rows, run on rayon's threads, since candle's own pool has none on wasm.
    #[cfg(target_arch = "wasm32")]
    Split(RowSplit),
}

impl Linear {
    /// The layer `name` (`name.weight`: out_dim × in_dim, `name.bias`), GELU after it if `gelu`.
    fn load(
        src: &mut dyn WeightSource,
        name: &str,
        (out_dim, in_dim): (usize, usize),
        gelu: bool,
    ) -> Result<Self> {
        let weight = src.weight(&format!("{name}.weight"), &[out_dim, in_dim])?;
        let bias = src
            .weight(&format!("{name}.bias"), &[out_dim])?
            .to_dense()?;
        weight.into_linear(Some(bias), gelu)
    }

    /// (…, in_dim) → (…, out_dim)
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let _span = tracing::trace_span!("matmul").entered();
        match self {
            Self::Candle { weight, bias, gelu } => {
                let mut y = weight.forward(x)?;
                if let Some(bias) = bias {
                    y = y.broadcast_add(bias)?;
                }
                if *gelu {
                    y = bloom_gelu(&y)?;
                }
                Ok(y)
            }
            #[cfg(target_arch = "x86_64")]
            Self::Q4_0(matrix) => Ok(x.contiguous()?.apply_op1_no_bwd(matrix.as_ref())?),
            #[cfg(target_arch = "wasm32")]
            Self::Simd(matrix) => Ok(x.contiguous()?.apply_op1_no_bwd(matrix.as_ref())?),
            #[cfg(target_arch = "wasm32")]
            Self::Q4k(matrix) => Ok(x.contiguous()?.apply_op1_no_bwd(matrix.as_ref())?),
            #[cfg(target_arch = "wasm32")]
            Self::Split(matrix) => matrix.forward(x),
        }
    }
}

/// A q4_0 layer on x86-64: repacked for this crate's AVX2 / VNNI kernels, which read the
/// 4-bit weights directly (`crate::engine::kernels::q4_0_x86`). On CPUs without AVX2 the matrix is widened to
/// q8_0 instead ([`widen_q4_0`]), which candle multiplies faster than q4_0.
#[cfg(target_arch = "x86_64")]
fn q4_0_linear(q: Arc<QTensor>, bias: Option<Tensor>, gelu: bool) -> Result<Linear> {
    let Some(mut matrix) = Q4_0Matrix::new(&q)? else {
        let weight = QMatMul::from_qtensor(widen_q4_0(&q)?)?;
        return Ok(Linear::Candle { weight, bias, gelu });
    };
    if let Some(bias) = bias {
        matrix = matrix.with_bias(bias.to_vec1()?)?;
    }
    if gelu {
        matrix = matrix.with_gelu();
    }
    Ok(Linear::Q4_0(Arc::new(matrix)))
}

/// A q4_0 layer elsewhere (on wasm32 only when the simd128 kernels do not take it): candle's.
#[cfg(not(target_arch = "x86_64"))]
fn q4_0_linear(q: Arc<QTensor>, bias: Option<Tensor>, gelu: bool) -> Result<Linear> {
    let weight = QMatMul::from_arc(q)?;
    Ok(Linear::Candle { weight, bias, gelu })
}

/// A q4_0 or q8_0 layer on wasm32, bias and GELU fused into this crate's simd128 kernels.
#[cfg(target_arch = "wasm32")]
fn simd_linear(mut matrix: SimdMatrix, bias: Option<Tensor>, gelu: bool) -> Result<Linear> {
    if let Some(bias) = bias {
        matrix = matrix.with_bias(bias.to_vec1()?)?;
    }
    if gelu {
        matrix = matrix.with_gelu();
    }
    Ok(Linear::Simd(Arc::new(matrix)))
}

/// Row blocks [`Linear::Split`] cuts a matrix into: a few per thread, for balance.
#[cfg(target_arch = "wasm32")]
const SPLIT_PARTS: usize = 16;

/// Re-encodes a q4_0 tensor as q8_0 without changing any value: each 4-bit quant `q` becomes
/// the byte `q − 8` under the same f16 scale, so products and logits are those of q4_0.
///
/// On x86-64 without AVX2, candle's q8_0 dot product is faster than its q4_0 one even though
/// the wider matrix reads twice the bytes.
#[cfg(target_arch = "x86_64")]
fn widen_q4_0(q: &QTensor) -> Result<QTensor> {
    const Q4_0_BLOCK: usize = 18; // f16 scale + 16 bytes of nibble pairs
    const Q8_0_BLOCK: usize = 34; // f16 scale + 32 signed bytes
    let data = q.data()?;
    let mut wide = Vec::with_capacity(data.len() / Q4_0_BLOCK * Q8_0_BLOCK);
    for block in data.chunks_exact(Q4_0_BLOCK) {
        let (scale, nibbles) = block.split_at(2);
        wide.extend_from_slice(scale);
        // Value j sits in the low nibble of byte j, value j + 16 in its high nibble.
        wide.extend(nibbles.iter().map(|b| ((b & 0x0F) as i8 - 8) as u8));
        wide.extend(nibbles.iter().map(|b| ((b >> 4) as i8 - 8) as u8));
    }
    let storage = QStorage::from_data(Cow::Owned(wide), &q.device(), GgmlDType::Q8_0)?;
    Ok(QTensor::new(storage, q.shape().clone())?)
}

/// Where a model's tensors come from, by their llama.cpp GGUF names.
pub trait WeightSource {
    /// The tensor `name`, checked to have exactly `shape`; a clear error when missing or misshapen.
    fn weight(&mut self, name: &str, shape: &[usize]) -> Result<Weight>;
    /// Whether the optional tensor `name` is present.
    fn contains(&self, name: &str) -> bool;
}

fn layer_norm(src: &mut dyn WeightSource, name: &str, dim: usize, eps: f64) -> Result<LayerNorm> {
    let weight = src.weight(&format!("{name}.weight"), &[dim])?.to_dense()?;
    let bias = src.weight(&format!("{name}.bias"), &[dim])?.to_dense()?;
    Ok(LayerNorm::new(weight, bias, eps))
}

/// BLOOM's tanh approximation of GELU, `x · 0.5 · (1 + tanh(0.79788456 · x · (1 + 0.044715 · x²)))`
/// (`modeling_bloom.bloom_gelu_forward`). candle's `gelu` is this formula in one pass; its
/// constant √(2/π) and BLOOM's 0.79788456 are the same f32 number.
fn bloom_gelu(x: &Tensor) -> Result<Tensor> {
    Ok(x.gelu()?)
}

/// The ALiBi slope of every head, as `build_alibi_tensor` computes them (any head count: heads
/// beyond the largest power of two take the odd powers of the next base).
pub fn alibi_slopes(n_head: usize) -> Vec<f32> {
    let closest_pow2 = 1usize << (usize::BITS - 1 - n_head.leading_zeros());
    let base_for = |n: usize| 2f64.powf(-(2f64.powf(-((n as f64).log2() - 3.0)))) as f32;
    let base = base_for(closest_pow2);
    let mut slopes: Vec<f32> = (1..=closest_pow2 as i32).map(|p| base.powi(p)).collect();
    if closest_pow2 != n_head {
        let extra_base = base_for(2 * closest_pow2);
        let remaining = (n_head - closest_pow2).min(closest_pow2);
        slopes.extend((0..remaining as i32).map(|i| extra_base.powi(2 * i + 1)));
    }
    slopes
}

/// Self-attention with ALiBi biases (`BloomAttention`).
#[derive(Debug, Clone)]
struct Attention {
    query_key_value: Linear,
    dense: Linear,
    n_head: usize,
    head_dim: usize,
}

impl Attention {
    /// x: (b, s, hidden), slopes: one per head → (b, s, hidden)
    fn forward(
        &self,
        x: &Tensor,
        slopes: &[f32],
        cache: &mut KvCache,
        layer: usize,
    ) -> Result<Tensor> {
        let _span = tracing::trace_span!("attention").entered();
        let (b, s, hidden) = x.dims3()?;
        // Fused projection, rows laid out as Q|K|V: (b, s, 3·hidden).
        let qkv = self.query_key_value.forward(x)?;
        let split = |i: usize| -> Result<Tensor> {
            // (b, s, hidden) → (b, n_head, s, head_dim)
            Ok(qkv
                .narrow(D::Minus1, i * hidden, hidden)?
                .reshape((b, s, self.n_head, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        // softmax(alibi + (q · kᵀ) / √head_dim) · v over the cached positions and these:
        // (b, n_head, s, head_dim), the cache storing k and v.
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let context = {
            let _span = tracing::trace_span!("attend").entered();
            cache.attend(layer, &q.affine(scale, 0.0)?, &k, &v, slopes)?
        };
        // context: (b, n_head, s, head_dim) → (b, s, hidden)
        let context = context.transpose(1, 2)?.reshape((b, s, hidden))?;
        self.dense.forward(&context)
    }
}

/// The feed-forward block (`BloomMLP`): dense_h_to_4h → GELU → dense_4h_to_h (`up` applies
/// the GELU).
#[derive(Debug, Clone)]
struct Mlp {
    up: Linear,
    down: Linear,
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let _span = tracing::trace_span!("mlp").entered();
        self.down.forward(&self.up.forward(x)?)
    }
}

/// One transformer block (`BloomBlock`).
#[derive(Debug, Clone)]
struct Block {
    input_layernorm: LayerNorm,
    attention: Attention,
    post_attention_layernorm: LayerNorm,
    mlp: Mlp,
    residual_post_layernorm: bool,
}

impl Block {
    fn forward(
        &self,
        x: &Tensor,
        slopes: &[f32],
        cache: &mut KvCache,
        layer: usize,
    ) -> Result<Tensor> {
        let normed = self.input_layernorm.forward(x)?;
        let residual = if self.residual_post_layernorm {
            &normed
        } else {
            x
        };
        let attended = (self.attention.forward(&normed, slopes, cache, layer)? + residual)?;
        let normed = self.post_attention_layernorm.forward(&attended)?;
        let residual = if self.residual_post_layernorm {
            &normed
        } else {
            &attended
        };
        Ok((self.mlp.forward(&normed)? + residual)?)
    }
}

/// A BLOOM causal language model (`BloomForCausalLM`).
#[derive(Debug, Clone)]
pub struct Bloom {
    config: BloomConfig,
    word_embeddings: QMatMul,
    word_embeddings_layernorm: LayerNorm,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    lm_head: Linear,
    /// ALiBi's slope of each head.
    alibi_slopes: Vec<f32>,
    /// What new caches store keys and values as.
    kv_dtype: KvDtype,
    device: Device,
}

impl Bloom {
    /// Builds the model from `src`, checking every tensor's presence and shape against `config`.
    pub fn load(config: &BloomConfig, src: &mut dyn WeightSource, device: &Device) -> Result<Self> {
        let (h, v, eps) = (
            config.hidden_size,
            config.vocab_size,
            config.layer_norm_epsilon,
        );
        let embedding = src.weight("token_embd.weight", &[v, h])?;
        // The lm_head is tied to the embeddings unless the file carries its own `output`.
        let lm_head = if src.contains("output.weight") {
            src.weight("output.weight", &[v, h])?
                .into_linear(None, false)?
        } else {
            embedding.clone().into_linear(None, false)?
        };
        let word_embeddings = embedding.into_table()?;
        let blocks = (0..config.n_layer)
            .map(|i| {
                let p = format!("blk.{i}");
                Ok(Block {
                    input_layernorm: layer_norm(src, &format!("{p}.attn_norm"), h, eps)?,
                    attention: Attention {
                        query_key_value: Linear::load(
                            src,
                            &format!("{p}.attn_qkv"),
                            (3 * h, h),
                            false,
                        )?,
                        dense: Linear::load(src, &format!("{p}.attn_output"), (h, h), false)?,
                        n_head: config.n_head,
                        head_dim: config.head_dim(),
                    },
                    post_attention_layernorm: layer_norm(src, &format!("{p}.ffn_norm"), h, eps)?,
                    mlp: Mlp {
                        up: Linear::load(src, &format!("{p}.ffn_up"), (4 * h, h), true)?,
                        down: Linear::load(src, &format!("{p}.ffn_down"), (h, 4 * h), false)?,
                    },
                    residual_post_layernorm: config.apply_residual_connection_post_layernorm,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config: config.clone(),
            word_embeddings,
            word_embeddings_layernorm: layer_norm(src, "token_embd_norm", h, eps)?,
            blocks,
            ln_f: layer_norm(src, "output_norm", h, eps)?,
            lm_head,
            alibi_slopes: alibi_slopes(config.n_head),
            kv_dtype: KvDtype::default(),
            device: device.clone(),
        })
    }

    /// The model's shape.
    pub fn config(&self) -> &BloomConfig {
        &self.config
    }

    /// Caps the context: generation slides the cache to stay within `n` positions (at least 2).
    pub fn set_context_length(&mut self, n: usize) {
        self.config.context_length = n.max(2);
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Makes the caches of [`Self::new_cache`] store keys and values as `dtype` (f32 unless
    /// set).
    pub fn set_kv_dtype(&mut self, dtype: KvDtype) {
        self.kv_dtype = dtype;
    }

    /// What the caches of [`Self::new_cache`] store keys and values as.
    pub fn kv_dtype(&self) -> KvDtype {
        self.kv_dtype
    }

    /// A fresh cache for one sequence.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.n_layer, self.kv_dtype)
    }

    /// Runs `ids` (b, s) after what `cache` holds and returns the logits (b, positions, vocab)
    /// at the given positions of the new tokens only (e.g. `&[s - 1]` for the next token).
    pub fn forward(
        &self,
        ids: &Tensor,
        cache: &mut KvCache,
        positions: &[usize],
    ) -> Result<Tensor> {
        self.logits(&self.final_hidden(ids, cache, positions)?)
    }

    /// Runs `ids` (b, s) after what `cache` holds and returns the final hidden states (after
    /// `ln_f`: the input of `lm_head`), (b, positions, hidden), at the given positions of the
    /// new tokens only; [`Self::logits`] turns them into logits.
    pub fn final_hidden(
        &self,
        ids: &Tensor,
        cache: &mut KvCache,
        positions: &[usize],
    ) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        if s == 0 {
            return Err(Error::Invalid("forward needs at least one token".into()));
        }
        if let Some(&p) = positions.iter().find(|&&p| p >= s) {
            return Err(Error::Invalid(format!(
                "logit position {p} is beyond the {s} new tokens"
            )));
        }
        let vocab = self.config.vocab_size as u32;
        let flat = ids.flatten_all()?.to_vec1::<u32>()?;
        if let Some(&bad) = flat.iter().find(|&&id| id >= vocab) {
            return Err(Error::Invalid(format!(
                "token id {bad} is beyond the embedding table ({vocab} rows)"
            )));
        }
        // The tokens run in pieces that end at the cache's block boundaries, so that attention
        // scores never cover more than a block of queries (chunked prefill). Only the hidden
        // states at the asked-for positions are kept: (position index, (b, 1, hidden)).
        let mut kept: Vec<(usize, Tensor)> = Vec::with_capacity(positions.len());
        let mut done = 0;
        while done < s {
            let piece = cache.next_piece(b, s - done);
            cache.begin_piece(b, piece)?;
            // (b, piece) → (b, piece, hidden)
            let mut x = self
                .word_embeddings
                .embedding(&ids.narrow(1, done, piece)?)?;
            x = self.word_embeddings_layernorm.forward(&x)?;
            for (layer, block) in self.blocks.iter().enumerate() {
                x = block.forward(&x, &self.alibi_slopes, cache, layer)?;
            }
            cache.end_piece(piece);
            for (k, &p) in positions.iter().enumerate() {
                if (done..done + piece).contains(&p) {
                    kept.push((k, x.narrow(1, p - done, 1)?));
                }
            }
            done += piece;
        }
        kept.sort_by_key(|(k, _)| *k);
        // (b, positions, hidden): only the asked-for positions go through ln_f.
        let x = Tensor::cat(&kept.into_iter().map(|(_, t)| t).collect::<Vec<_>>(), 1)?;
        Ok(self.ln_f.forward(&x)?)
    }

    /// The `lm_head` (tied to the embeddings unless the file has its own): final hidden states (b, positions, hidden) → logits (b, positions,
    /// vocab).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let _span = tracing::trace_span!("lm_head").entered();
        self.lm_head.forward(hidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn widened_q4_0_multiplies_like_q4_0() {
        let device = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (8, 64), &device).unwrap();
        let x = Tensor::randn(0f32, 1.0, (3, 64), &device).unwrap();
        let q4 = QTensor::quantize(&w, GgmlDType::Q4_0).unwrap();
        let q8 = widen_q4_0(&q4).unwrap();
        assert_eq!(q8.dtype(), GgmlDType::Q8_0);
        let exact = |q: &QTensor| {
            q.dequantize(&device)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(exact(&q4), exact(&q8), "same values after widening");
        let y4 = QMatMul::from_arc(Arc::new(q4))
            .unwrap()
            .forward(&x)
            .unwrap();
        let y8 = QMatMul::from_qtensor(q8).unwrap().forward(&x).unwrap();
        let diff = (y4 - y8)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-3, "products differ by {diff}");
    }

    #[test]
    fn gelu_is_bloom_gelu() {
        let values: Vec<f32> = (-40..=40).map(|i| i as f32 * 0.25).collect();
        let x = Tensor::new(values.as_slice(), &Device::Cpu).unwrap();
        let got: Vec<f32> = bloom_gelu(&x).unwrap().to_vec1().unwrap();
        for (v, g) in values.iter().zip(got) {
            // transformers' formula and constant, in f64.
            let v = *v as f64;
            let expected = v * 0.5 * (1.0 + (0.79788456 * v * (1.0 + 0.044715 * v * v)).tanh());
            let error = (g as f64 - expected).abs();
            assert!(
                error <= 1e-6 * expected.abs().max(1.0),
                "{v}: {g} vs {expected}"
            );
        }
    }

    #[test]
    fn alibi_slopes_match_transformers() {
        // The slopes transformers' build_alibi_tensor computes.
        let eight = alibi_slopes(8);
        let expected8 = [
            0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625,
        ];
        assert_eq!(eight, expected8);
        // 6 heads: powers 1..4 of base 2^-2, then the odd powers 1 and 3 of base 2^-1.
        assert_eq!(
            alibi_slopes(6),
            [0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125]
        );
        // 5 heads: powers of 2^-2, then one of 2^-1.
        assert_eq!(alibi_slopes(5), [0.25, 0.0625, 0.015625, 0.00390625, 0.5]);
    }
}
