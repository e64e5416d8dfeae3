//! Loading a BLOOM model and its tokenizer from a Hugging Face directory or a GGUF file.
//!
//! Both formats are turned into a [`WeightSource`] that answers by llama.cpp tensor name; the
//! Hugging Face source maps names (`transformer.h.N.…` with or without the prefix) and
//! reorders the fused QKV rows from the per-head interleave `(n_head, 3, head_dim)` into the
//! contiguous Q|K|V layout that GGUF files and [`crate::engine::model`] use.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use crate::engine::config::BloomConfig;
pub use crate::engine::gguf::read::{
    gguf_config, load_gguf, load_gguf_reader, open_gguf, open_gguf_reader,
};
use crate::engine::model::{Weight, WeightSource};
use crate::engine::tokenizer::Tokenizer;
use crate::engine::weights::{candle_message, check_shape, check_tokenizer};
pub use crate::engine::weights::{LoadedModel, OpenedModel};
use crate::error::{Error, Result};
pub use crate::shared::ModelIdentity;

/// The Hugging Face name of a llama.cpp tensor name, without the `transformer.` prefix.
pub fn hf_name(gguf_name: &str) -> Option<String> {
    let (stem, suffix) = gguf_name.rsplit_once('.')?;
    let mapped = match stem {
        "token_embd" => "word_embeddings".to_string(),
        "token_embd_norm" => "word_embeddings_layernorm".to_string(),
        "output_norm" => "ln_f".to_string(),
        "output" => "lm_head".to_string(),
        _ => {
            let rest = stem.strip_prefix("blk.")?;
            let (layer, part) = rest.split_once('.')?;
            let part = match part {
                "attn_norm" => "input_layernorm",
                "attn_qkv" => "self_attention.query_key_value",
                "attn_output" => "self_attention.dense",
                "ffn_norm" => "post_attention_layernorm",
                "ffn_up" => "mlp.dense_h_to_4h",
                "ffn_down" => "mlp.dense_4h_to_h",
                _ => return None,
            };
            format!("h.{layer}.{part}")
        }
    };
    Some(format!("{mapped}.{suffix}"))
}

/// Reorders HF's fused QKV rows `(n_head, 3, head_dim, …)` into contiguous Q|K|V rows
/// `(3, n_head, head_dim, …)`, as llama.cpp's converter does.
pub fn qkv_hf_to_contiguous(t: &Tensor, n_head: usize) -> Result<Tensor> {
    let dims = t.dims().to_vec();
    let head_dim = dims[0] / (3 * n_head);
    let mut split = vec![n_head, 3, head_dim];
    split.extend_from_slice(&dims[1..]);
    Ok(t.reshape(split)?
        .transpose(0, 1)?
        .contiguous()?
        .reshape(dims)?)
}

/// Named tensors of a Hugging Face checkpoint.
pub enum TensorStore {
    /// Tensors already in memory (e.g. from [`candle_core::safetensors::load_buffer`]).
    Loaded(HashMap<String, Tensor>),
    /// Memory-mapped safetensors files, read on demand.
    #[cfg(not(target_arch = "wasm32"))]
    Mapped(candle_core::safetensors::MmapedSafetensors),
}

impl TensorStore {
    /// The tensor `name` on `device`, or why it cannot be read.
    fn get(&self, name: &str, device: &Device) -> std::result::Result<Tensor, String> {
        let tensor = match self {
            Self::Loaded(map) => map
                .get(name)
                .cloned()
                .ok_or_else(|| "no such tensor".to_string()),
            #[cfg(not(target_arch = "wasm32"))]
            Self::Mapped(st) => st.load(name, device).map_err(|e| candle_message(&e)),
        }?;
        tensor.to_device(device).map_err(|e| candle_message(&e))
    }

    /// The shape of `name`, without reading its data.
    fn dims(&self, name: &str) -> Option<Vec<usize>> {
        match self {
            Self::Loaded(map) => map.get(name).map(|t| t.dims().to_vec()),
            #[cfg(not(target_arch = "wasm32"))]
            Self::Mapped(st) => st.get(name).ok().map(|view| view.shape().to_vec()),
        }
    }

    fn contains(&self, name: &str) -> bool {
        match self {
            Self::Loaded(map) => map.contains_key(name),
            #[cfg(not(target_arch = "wasm32"))]
            Self::Mapped(st) => st.get(name).is_ok(),
        }
    }
}

/// A Hugging Face checkpoint seen through llama.cpp names and layout.
pub struct HfSource {
    store: TensorStore,
    n_head: usize,
    origin: String,
    device: Device,
}

impl HfSource {
    /// Wraps `store`; `origin` names the checkpoint in errors.
    pub fn new(store: TensorStore, config: &BloomConfig, origin: &str, device: &Device) -> Self {
        Self {
            store,
            n_head: config.n_head,
            origin: origin.to_string(),
            device: device.clone(),
        }
    }

    fn find(&self, name: &str) -> Option<String> {
        let hf = hf_name(name)?;
        [format!("transformer.{hf}"), hf]
            .into_iter()
            .find(|n| self.store.contains(n))
    }
}

impl WeightSource for HfSource {
    fn weight(&mut self, name: &str, shape: &[usize]) -> Result<Weight> {
        let hf = self.find(name).ok_or_else(|| {
            let wanted = hf_name(name).unwrap_or_else(|| name.to_string());
            Error::Format(format!(
                "{}: tensor `transformer.{wanted}` (or `{wanted}`) is missing",
                self.origin
            ))
        })?;
        // Checked before reading, so a misshapen tensor is never loaded.
        if let Some(dims) = self.store.dims(&hf) {
            check_shape(&self.origin, &hf, &dims, shape)?;
        }
        let tensor = self.store.get(&hf, &self.device).map_err(|e| {
            Error::Format(format!(
                "{}: tensor `{hf}` cannot be read: {e}",
                self.origin
            ))
        })?;
        check_shape(&self.origin, &hf, tensor.dims(), shape)?;
        let tensor = tensor.to_dtype(DType::F32)?;
        let tensor = if name.contains(".attn_qkv.") {
            qkv_hf_to_contiguous(&tensor, self.n_head)?
        } else {
            tensor
        };
        Ok(Weight::Dense(tensor))
    }

    fn contains(&self, name: &str) -> bool {
        // BLOOM ties lm_head to the embeddings (tie_word_embeddings), whatever the file holds.
        name != "output.weight" && self.find(name).is_some()
    }
}

/// When `config.json` does not parse, the first known field whose value has the wrong type,
/// named (serde's message gives only a line and column).
fn config_field_error(config_json: &str, origin: &str) -> Option<Error> {
    const UNSIGNED: [&str; 10] = [
        "vocab_size",
        "hidden_size",
        "n_embed",
        "n_layer",
        "num_hidden_layers",
        "n_head",
        "num_attention_heads",
        "seq_length",
        "bos_token_id",
        "eos_token_id",
    ];
    let json: serde_json::Value = serde_json::from_str(config_json).ok()?;
    let Some(fields) = json.as_object() else {
        return Some(Error::Format(format!(
            "{origin}: expected a JSON object, found {json}"
        )));
    };
    fields.iter().find_map(|(key, value)| {
        let present = !value.is_null();
        let expected = match key.as_str() {
            "bos_token_id" | "eos_token_id"
                if value.as_u64().is_some_and(|v| v > u32::MAX as u64) =>
            {
                "an integer below 2^32"
            }
            k if UNSIGNED.contains(&k) && present && !value.is_u64() => "a non-negative integer",
            "layer_norm_epsilon" if present && !value.is_number() => "a number",
            "apply_residual_connection_post_layernorm" if present && !value.is_boolean() => {
                "true or false"
            }
            _ => return None,
        };
        Some(Error::Format(format!(
            "{origin}: field `{key}` is {value}, expected {expected}"
        )))
    })
}

/// Opens the contents of a Hugging Face checkpoint: `config.json`, `tokenizer.json` and its
/// tensors; `hash` is the checkpoint's fingerprint.
pub fn open_hf(
    config_json: &str,
    tokenizer_json: &[u8],
    store: TensorStore,
    name: &str,
    hash: String,
    device: &Device,
) -> Result<OpenedModel<'static>> {
    let origin = format!("{name}/config.json");
    let config = BloomConfig::from_json(config_json, &origin)
        .map_err(|e| config_field_error(config_json, &origin).unwrap_or(e))?;
    let tokenizer = Tokenizer::from_json(tokenizer_json, &format!("{name}/tokenizer.json"))?;
    check_tokenizer(&tokenizer, &config, name)?;
    let source = HfSource::new(store, &config, name, device);
    let quantization = source
        .find("blk.0.ffn_up.weight")
        .and_then(|n| source.store.get(&n, device).ok())
        .map_or("unknown".into(), |t| {
            format!("{:?}", t.dtype()).to_lowercase()
        });
    let identity = ModelIdentity {
        name: name.to_string(),
        format: "safetensors".into(),
        quantization,
        content_hash: hash,
    };
    Ok(OpenedModel {
        config,
        tokenizer,
        source: Box::new(source),
        identity,
    })
}

/// Native file access: a directory or a `.gguf` path.
#[cfg(not(target_arch = "wasm32"))]
pub mod native {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::engine::weights::fingerprint;

    fn read(path: &Path) -> Result<Vec<u8>> {
        std::fs::read(path).map_err(|e| Error::io(path.display(), e))
    }

    /// Maps a file into memory.
    pub fn map(path: &Path) -> Result<memmap2::Mmap> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path.display(), e))?;
        // SAFETY: the file is only read; a concurrent writer could change what we read, which
        // the loaders treat like any other corrupt content.
        unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path.display(), e))
    }

    /// The safetensors files of a Hugging Face directory: `model.safetensors`, or the shards
    /// listed by `model.safetensors.index.json`.
    pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
        let single = dir.join("model.safetensors");
        if single.exists() {
            return Ok(vec![single]);
        }
        let index_path = dir.join("model.safetensors.index.json");
        if !index_path.exists() {
            return Err(Error::Format(format!(
                "{}: neither model.safetensors nor model.safetensors.index.json exists",
                dir.display()
            )));
        }
        let index: serde_json::Value = serde_json::from_slice(&read(&index_path)?)
            .map_err(|e| Error::Format(format!("{}: {e}", index_path.display())))?;
        let map = index["weight_map"].as_object().ok_or_else(|| {
            Error::Format(format!("{}: no `weight_map` object", index_path.display()))
        })?;
        let mut files: Vec<PathBuf> = map
            .values()
            .map(|v| {
                let file = v.as_str().ok_or_else(|| {
                    Error::Format(format!(
                        "{}: weight_map values must be file names, found {v}",
                        index_path.display()
                    ))
                })?;
                let mut parts = Path::new(file).components();
                let plain = matches!(
                    (parts.next(), parts.next()),
                    (Some(std::path::Component::Normal(_)), None)
                );
                if !plain {
                    return Err(Error::Format(format!(
                        "{}: shard `{file}` is not a file name in the model's directory",
                        index_path.display()
                    )));
                }
                let path = dir.join(file);
                if !path.is_file() {
                    return Err(Error::Format(format!(
                        "{}: lists shard `{file}`, which does not exist",
                        index_path.display()
                    )));
                }
                Ok(path)
            })
            .collect::<Result<_>>()?;
        files.sort();
        files.dedup();
        Ok(files)
    }

    /// Opens a Hugging Face directory or a GGUF file and hands it to `f`.
    pub fn with_opened<T>(
        path: &Path,
        device: &Device,
        f: impl for<'a> FnOnce(OpenedModel<'a>) -> Result<T>,
    ) -> Result<T> {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        if path.is_dir() {
            let config = read(&path.join("config.json"))?;
            let tokenizer = read(&path.join("tokenizer.json"))?;
            let files = safetensors_files(path)?;
            let maps = files.iter().map(|f| map(f)).collect::<Result<Vec<_>>>()?;
            let mut parts: Vec<&[u8]> = vec![&config];
            parts.extend(maps.iter().map(|m| &m[..]));
            let hash = fingerprint(&parts);
            // SAFETY: as in `map`.
            let st = unsafe { candle_core::safetensors::MmapedSafetensors::multi(&files) }
                .map_err(|e| {
                    Error::Format(format!(
                        "{}: invalid safetensors (truncated or corrupt?): {}",
                        path.display(),
                        candle_message(&e)
                    ))
                })?;
            let config = String::from_utf8(config).map_err(|_| {
                Error::Format(format!("{}/config.json is not UTF-8", path.display()))
            })?;
            f(open_hf(
                &config,
                &tokenizer,
                TensorStore::Mapped(st),
                &name,
                hash,
                device,
            )?)
        } else {
            let bytes = map(path)?;
            // Shorter files are reported as truncated by `open_gguf`.
            if bytes.len() >= 4 && &bytes[..4] != b"GGUF" {
                return Err(Error::Format(format!(
                    "{}: not a GGUF file (wrong magic) and not a Hugging Face directory",
                    path.display()
                )));
            }
            let opened = open_gguf(&bytes, &name, device)?;
            f(opened)
        }
    }

    /// Loads a model from a Hugging Face directory or a GGUF file.
    pub fn load(path: &Path, device: &Device) -> Result<LoadedModel> {
        with_opened(path, device, |opened| opened.build(device))
    }
}
