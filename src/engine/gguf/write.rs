//! Writing GGUF files in llama.cpp's BLOOM layout: the quantizer behind `storywriter quantize`.
//!
//! The tensor names, metadata keys and contiguous Q|K|V layout are those of llama.cpp's
//! `convert_hf_to_gguf.py`; the choice of types per tensor follows `llama-quantize`: norms and
//! biases stay f32, weights take the asked type, and the output projection may get its own
//! `output` tensor of another type ([`TensorTypes`]: q4_k for q4_0 files by default, q6_k as
//! llama-quantize on request; the embedding rows stay at the asked type). A weight whose rows
//! do not fit the type's block falls back to a type that fits (reported by the callback).

use std::io::Write;

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Storage, Tensor};

use crate::engine::gguf::format::{
    align, dtype_name, ggml_type_id, push_string, push_value, tensor_layout, value_type_id,
    RESIDUAL_POST_LAYERNORM_KEY,
};
use crate::engine::weights::OpenedModel;
use crate::error::{Error, Result};

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

/// A tensor of a [`GgufPlan`]: what it is made from and where its data goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTensor {
    /// Its llama.cpp name in the file.
    pub name: String,
    /// The model tensor it is made from (`token_embd.weight` for a separate `output.weight`).
    pub source: String,
    /// Its shape (rows first).
    pub shape: Vec<usize>,
    /// The type it is stored as.
    pub dtype: GgmlDType,
    /// True when the asked type did not fit the rows and a fallback was chosen.
    pub fell_back: bool,
    /// Where its data starts in the file.
    pub offset: u64,
}

impl PlannedTensor {
    /// The bytes one row takes in the file (a 1-D tensor is one row).
    pub fn row_bytes(&self) -> u64 {
        let row_len = *self.shape.last().unwrap_or(&1);
        (row_len / self.dtype.block_size() * self.dtype.type_size()) as u64
    }

    /// The bytes of its data in the file (without the alignment padding after it).
    pub fn data_bytes(&self) -> u64 {
        let rows: usize = self.shape.iter().rev().skip(1).product();
        rows as u64 * self.row_bytes()
    }

    /// Quantizes consecutive whole rows of this tensor (`dense`, f32, any number of rows) to
    /// its type: the bytes that belong in the file at `offset + first_row * row_bytes()`.
    pub fn quantize(&self, dense: &Tensor) -> Result<Vec<u8>> {
        let dense = dense.to_dtype(DType::F32)?;
        // candle's quantizer reads the whole storage: a view (`narrow`, …) is copied first.
        let whole = {
            let (storage, layout) = dense.storage_and_layout();
            let length = match &*storage {
                Storage::Cpu(cpu) => cpu.as_slice::<f32>().map_or(0, <[f32]>::len),
                _ => 0,
            };
            layout.start_offset() == 0 && layout.is_contiguous() && length == dense.elem_count()
        };
        let dense = if whole {
            dense
        } else {
            dense.force_contiguous()?
        };
        let quantized = QTensor::quantize(&dense, self.dtype).map_err(|e| {
            Error::Format(format!(
                "cannot quantize `{}` to {:?}: {e}",
                self.name, self.dtype
            ))
        })?;
        Ok(quantized.data()?.into_owned())
    }
}

/// A GGUF file laid out before any tensor is read: the header (metadata and tensor table) and
/// where each tensor's data goes, so that tensors can be quantized and written one at a time,
/// in any order, with only one of them in memory.
#[derive(Debug, Clone)]
pub struct GgufPlan {
    /// The file's first bytes: header, metadata, tensor table and padding.
    pub header: Vec<u8>,
    /// Every tensor, in file order.
    pub tensors: Vec<PlannedTensor>,
    /// The file's length.
    pub file_bytes: u64,
}

/// Lays out the GGUF file of `model` quantized to `types` in llama.cpp's BLOOM layout,
/// tokenizer included (the model's tensors are not read).
pub fn plan_gguf(model: &OpenedModel<'_>, types: TensorTypes) -> Result<GgufPlan> {
    let dtype = types.weights;
    let config = &model.config;
    let mut layout = tensor_layout(config);
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
    let mut offset = 0;
    let mut tensors = Vec::with_capacity(layout.len());
    for (name, shape) in layout {
        let wanted = match (name.as_str(), shape.len(), output) {
            (_, 1, _) => GgmlDType::F32,
            ("output.weight", _, Some(t)) => t,
            _ => dtype,
        };
        let stored = fitting_type(wanted, *shape.last().unwrap_or(&1));
        let source = if name == "output.weight" {
            "token_embd.weight".to_string()
        } else {
            name.clone()
        };
        let tensor = PlannedTensor {
            name,
            source,
            shape,
            dtype: stored,
            fell_back: stored != wanted,
            offset,
        };
        offset = align(offset + tensor.data_bytes());
        tensors.push(tensor);
    }
    let metadata = gguf_metadata(model, dtype)?;

    let mut header = Vec::new();
    header.extend_from_slice(b"GGUF");
    header.extend_from_slice(&2u32.to_le_bytes());
    header.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    header.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in &metadata {
        push_string(&mut header, key);
        header.extend_from_slice(&value_type_id(value).to_le_bytes());
        push_value(&mut header, key, value)?;
    }
    for tensor in &tensors {
        push_string(&mut header, &tensor.name);
        header.extend_from_slice(&(tensor.shape.len() as u32).to_le_bytes());
        for &dim in tensor.shape.iter().rev() {
            header.extend_from_slice(&(dim as u64).to_le_bytes());
        }
        header.extend_from_slice(&ggml_type_id(tensor.dtype).to_le_bytes());
        header.extend_from_slice(&tensor.offset.to_le_bytes());
    }
    header.resize(align(header.len() as u64) as usize, 0);
    let data_start = header.len() as u64;
    for tensor in &mut tensors {
        tensor.offset += data_start;
    }
    Ok(GgufPlan {
        header,
        tensors,
        file_bytes: data_start + offset,
    })
}

/// The metadata of a quantized file: architecture, shape, source and tokenizer.
fn gguf_metadata(model: &OpenedModel<'_>, dtype: GgmlDType) -> Result<Vec<(String, Value)>> {
    let config = &model.config;
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
    Ok(metadata)
}

/// Quantizes `model` to `types` and writes it as a GGUF file in llama.cpp's BLOOM layout,
/// tokenizer included, one tensor at a time (only one is held in memory); `progress` is called
/// after every tensor.
pub fn write_gguf<W: Write>(
    out: &mut W,
    mut model: OpenedModel<'_>,
    types: TensorTypes,
    mut progress: impl FnMut(TensorProgress<'_>),
) -> Result<()> {
    let plan = plan_gguf(&model, types)?;
    let io = |e| Error::io("GGUF output", e);
    out.write_all(&plan.header).map_err(io)?;
    let mut position = plan.header.len() as u64;
    let total = plan.tensors.len();
    for (done, tensor) in plan.tensors.iter().enumerate() {
        let dense = model
            .source
            .weight(&tensor.source, &tensor.shape)?
            .to_dense()?;
        let data = tensor.quantize(&dense)?;
        drop(dense);
        let padding = tensor.offset - position;
        out.write_all(&vec![0; padding as usize]).map_err(io)?;
        out.write_all(&data).map_err(io)?;
        position = tensor.offset + data.len() as u64;
        progress(TensorProgress {
            done: done + 1,
            total,
            name: &tensor.name,
            dtype: tensor.dtype,
            fell_back: tensor.fell_back,
        });
    }
    out.write_all(&vec![0; (plan.file_bytes - position) as usize])
        .map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use candle_core::quantized::gguf_file;
    use candle_core::Device;

    use super::*;
    use crate::engine::loader::{open_hf, TensorStore};
    use crate::engine::tokenizer::Tokenizer;

    fn tiny() -> OpenedModel<'static> {
        let config = crate::engine::init::named_config("tiny").unwrap();
        let tensors = crate::engine::init::random_checkpoint(&config, 3).unwrap();
        let tokenizer = Tokenizer::byte_level().unwrap().to_json().unwrap();
        open_hf(
            &crate::engine::init::hf_config_json(&config),
            tokenizer.as_bytes(),
            TensorStore::Loaded(tensors),
            "tiny",
            "hash".into(),
            &Device::Cpu,
        )
        .unwrap()
    }

    /// The streamed file is byte for byte what candle's writer makes of the same tensors.
    #[test]
    fn streamed_file_matches_candles_writer() {
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_0] {
            let types = TensorTypes::default_for(dtype);
            let mut streamed = Vec::new();
            let mut names = vec![];
            write_gguf(&mut streamed, tiny(), types, |p| {
                names.push(p.name.to_string())
            })
            .unwrap();

            let mut model = tiny();
            let plan = plan_gguf(&model, types).unwrap();
            assert_eq!(plan.file_bytes, streamed.len() as u64);
            assert_eq!(
                names,
                plan.tensors
                    .iter()
                    .map(|t| t.name.clone())
                    .collect::<Vec<_>>()
            );
            let tensors: Vec<(String, QTensor)> = plan
                .tensors
                .iter()
                .map(|t| {
                    let dense = model.source.weight(&t.source, &t.shape).unwrap();
                    let q = QTensor::quantize(&dense.to_dense().unwrap(), t.dtype).unwrap();
                    (t.name.clone(), q)
                })
                .collect();
            let metadata = gguf_metadata(&model, dtype).unwrap();
            let metadata: Vec<(&str, &Value)> =
                metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
            let tensors: Vec<(&str, &QTensor)> =
                tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
            let mut expected = Cursor::new(Vec::new());
            gguf_file::write(&mut expected, &metadata, &tensors).unwrap();
            assert!(
                streamed == expected.into_inner(),
                "{dtype:?}: the files differ"
            );
            if dtype == GgmlDType::Q4_0 {
                let output = plan.tensors.last().unwrap();
                assert_eq!(
                    (output.name.as_str(), output.dtype),
                    ("output.weight", GgmlDType::Q4K)
                );
            }
        }
    }

    /// Rows quantized a few at a time give the bytes of the whole tensor (the hub loader
    /// quantizes large tensors in row chunks).
    #[test]
    fn row_chunks_quantize_like_the_whole_tensor() {
        let model = tiny();
        let plan = plan_gguf(&model, TensorTypes::default_for(GgmlDType::Q4_0)).unwrap();
        let embedding = crate::engine::init::random_checkpoint(&model.config, 3).unwrap()
            ["transformer.word_embeddings.weight"]
            .clone();
        for name in ["token_embd.weight", "output.weight"] {
            let tensor = plan.tensors.iter().find(|t| t.name == name).unwrap();
            let whole = tensor.quantize(&embedding).unwrap();
            assert_eq!(whole.len() as u64, tensor.data_bytes());
            let rows = embedding.dim(0).unwrap();
            let mut chunked = vec![];
            for start in (0..rows).step_by(7) {
                let chunk = embedding.narrow(0, start, 7.min(rows - start)).unwrap();
                chunked.extend(tensor.quantize(&chunk).unwrap());
            }
            assert!(chunked == whole, "{name}: chunks differ from the whole");
        }
    }
}
