//! Writing GGUF files in llama.cpp's BLOOM layout: the quantizer behind `storywriter quantize`.
//!
//! The tensor names, metadata keys and contiguous Q|K|V layout are those of llama.cpp's
//! `convert_hf_to_gguf.py`; the choice of types per tensor follows `llama-quantize`: norms and
//! biases stay f32, weights take the asked type, and the output projection may get its own
//! `output` tensor of another type ([`TensorTypes`]: q4_k for q4_0 files by default, q6_k as
//! llama-quantize on request; the embedding rows stay at the asked type). A weight whose rows
//! do not fit the type's block falls back to a type that fits (reported by the callback).

use std::io::{Seek, Write};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};

use crate::config::BloomConfig;
use crate::error::{Error, Result};
use crate::loader::{dtype_name, OpenedModel};

/// Metadata key for BLOOM's `apply_residual_connection_post_layernorm` (not a llama.cpp key:
/// llama.cpp ignores it, and no released BLOOM checkpoint sets the option).
pub const RESIDUAL_POST_LAYERNORM_KEY: &str =
    "storywriter.apply_residual_connection_post_layernorm";

/// The storage types `storywriter quantize --dtype` offers.
pub const QUANT_TYPES: [&str; 6] = ["f32", "f16", "q8_0", "q4_0", "q4_k", "q6_k"];

/// Parses a `--dtype` name.
pub fn parse_dtype(name: &str) -> Result<GgmlDType> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "f32" => GgmlDType::F32,
        "f16" => GgmlDType::F16,
        "q8_0" => GgmlDType::Q8_0,
        "q4_0" => GgmlDType::Q4_0,
        "q4_k" => GgmlDType::Q4K,
        "q6_k" => GgmlDType::Q6K,
        other => {
            return Err(Error::Invalid(format!(
                "unknown dtype `{other}`, expected one of {}",
                QUANT_TYPES.join(", ")
            )))
        }
    })
}

/// llama.cpp's `general.file_type` (`enum llama_ftype`) for a main storage type.
fn file_type(dtype: GgmlDType) -> u32 {
    match dtype {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q8_0 => 7,
        GgmlDType::Q4K => 15,
        GgmlDType::Q6K => 18,
        _ => 0,
    }
}

/// The type a weight with rows of `row_len` values gets when `wanted` does not fit its blocks
/// (llama.cpp's fallbacks: k-quants to 32-blocks, 32-blocks to f16).
fn fitting_type(wanted: GgmlDType, row_len: usize) -> GgmlDType {
    let fits = |t: GgmlDType| row_len.is_multiple_of(t.block_size());
    let fallback = match wanted {
        GgmlDType::Q4K => GgmlDType::Q5_0,
        GgmlDType::Q6K => GgmlDType::Q8_0,
        _ => GgmlDType::F16,
    };
    [wanted, fallback, GgmlDType::F16]
        .into_iter()
        .find(|&t| fits(t))
        .unwrap_or(GgmlDType::F32)
}

/// Every tensor of a BLOOM model as (llama.cpp name, shape), in file order.
pub fn tensor_layout(config: &BloomConfig) -> Vec<(String, Vec<usize>)> {
    let (h, v) = (config.hidden_size, config.vocab_size);
    let mut layout = vec![
        ("token_embd.weight".to_string(), vec![v, h]),
        ("token_embd_norm.weight".to_string(), vec![h]),
        ("token_embd_norm.bias".to_string(), vec![h]),
    ];
    for i in 0..config.n_layer {
        let p = format!("blk.{i}");
        for (part, out_dim, in_dim) in [
            ("attn_qkv", 3 * h, h),
            ("attn_output", h, h),
            ("ffn_up", 4 * h, h),
            ("ffn_down", h, 4 * h),
        ] {
            layout.push((format!("{p}.{part}.weight"), vec![out_dim, in_dim]));
            layout.push((format!("{p}.{part}.bias"), vec![out_dim]));
        }
        for norm in ["attn_norm", "ffn_norm"] {
            layout.push((format!("{p}.{norm}.weight"), vec![h]));
            layout.push((format!("{p}.{norm}.bias"), vec![h]));
        }
    }
    layout.push(("output_norm.weight".to_string(), vec![h]));
    layout.push(("output_norm.bias".to_string(), vec![h]));
    layout
}

/// What the quantizer reports for each tensor it has written.
#[derive(Debug, Clone)]
pub struct TensorProgress<'a> {
    /// Tensors done so far, this one included.
    pub done: usize,
    /// Tensors in all.
    pub total: usize,
    /// The tensor's name.
    pub name: &'a str,
    /// The type it was stored as.
    pub dtype: GgmlDType,
    /// True when the asked type did not fit the rows and a fallback was used.
    pub fell_back: bool,
}

/// The storage types of a quantized file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorTypes {
    /// The type of every weight matrix, the embedding rows included.
    pub weights: GgmlDType,
    /// The type of a separate `output` projection, or `None` to keep it tied to the embeddings.
    pub output: Option<GgmlDType>,
}

impl TensorTypes {
    /// Our default: the output projection of q4_0 models in its own q4_k tensor (candle runs
    /// q4_k with repacked kernels, ~25% faster decode than llama-quantize's q6_k for a
    /// 7% larger logit error on bloom-560m's shape, see BENCHMARKS.md), tied otherwise.
    pub fn default_for(weights: GgmlDType) -> Self {
        let output = (weights == GgmlDType::Q4_0).then_some(GgmlDType::Q4K);
        Self { weights, output }
    }
}

/// Quantizes `model` to `types` and writes it as a GGUF file in llama.cpp's BLOOM layout,
/// tokenizer included; `progress` is called after every tensor.
pub fn write_gguf<W: Write + Seek>(
    out: &mut W,
    mut model: OpenedModel<'_>,
    types: TensorTypes,
    mut progress: impl FnMut(TensorProgress<'_>),
) -> Result<()> {
    let dtype = types.weights;
    let config = model.config.clone();
    let mut layout = tensor_layout(&config);
    let output = types
        .output
        .filter(|&t| t != dtype)
        .map(|t| fitting_type(t, config.hidden_size));
    if output.is_some() {
        layout.push((
            "output.weight".to_string(),
            vec![config.vocab_size, config.hidden_size],
        ));
    }
    let total = layout.len();
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(total);
    for (done, (name, shape)) in layout.iter().enumerate() {
        let source_name = if name == "output.weight" {
            "token_embd.weight"
        } else {
            name
        };
        let dense = model.source.weight(source_name, shape)?.to_dense()?;
        let wanted = match (name.as_str(), shape.len(), output) {
            (_, 1, _) => GgmlDType::F32,
            ("output.weight", _, Some(t)) => t,
            _ => dtype,
        };
        let stored = fitting_type(wanted, *shape.last().unwrap_or(&1));
        let tensor = QTensor::quantize(&dense, stored)
            .map_err(|e| Error::Format(format!("cannot quantize `{name}` to {stored:?}: {e}")))?;
        tensors.push((name.clone(), tensor));
        progress(TensorProgress {
            done: done + 1,
            total,
            name,
            dtype: stored,
            fell_back: stored != wanted,
        });
    }
    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("bloom".into())),
        (
            "general.name".into(),
            Value::String(model.identity.name.clone()),
        ),
        ("general.file_type".into(), Value::U32(file_type(dtype))),
        ("general.quantization_version".into(), Value::U32(2)),
        (
            "general.source.quantization".into(),
            Value::String(model.identity.quantization.clone()),
        ),
        ("storywriter.dtype".into(), Value::String(dtype_name(dtype))),
        (
            "bloom.context_length".into(),
            Value::U32(config.context_length as u32),
        ),
        (
            "bloom.embedding_length".into(),
            Value::U32(config.hidden_size as u32),
        ),
        (
            "bloom.feed_forward_length".into(),
            Value::U32(4 * config.hidden_size as u32),
        ),
        (
            "bloom.block_count".into(),
            Value::U32(config.n_layer as u32),
        ),
        (
            "bloom.attention.head_count".into(),
            Value::U32(config.n_head as u32),
        ),
        (
            "bloom.attention.head_count_kv".into(),
            Value::U32(config.n_head as u32),
        ),
        (
            "bloom.attention.layer_norm_epsilon".into(),
            Value::F32(config.layer_norm_epsilon as f32),
        ),
    ];
    if config.apply_residual_connection_post_layernorm {
        // llama.cpp has no such key and would ignore it; our loader honours it.
        metadata.push((RESIDUAL_POST_LAYERNORM_KEY.into(), Value::Bool(true)));
    }
    metadata.extend(model.tokenizer.gguf_metadata(config.vocab_size)?);
    let metadata_refs: Vec<(&str, &Value)> =
        metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    gguf_file::write(out, &metadata_refs, &tensor_refs)?;
    Ok(())
}
