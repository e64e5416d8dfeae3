//! Loading a BLOOM model and its tokenizer from a Hugging Face directory or a GGUF file.
//!
//! Both formats are turned into a [`WeightSource`] that answers by llama.cpp tensor name; the
//! Hugging Face source maps names (`transformer.h.N.…` with or without the prefix) and
//! reorders the fused QKV rows from the per-head interleave `(n_head, 3, head_dim)` into the
//! contiguous Q|K|V layout that GGUF files and [`crate::model`] use.

use std::collections::HashMap;
use std::io::{BufReader, Cursor, Read, Seek, SeekFrom};
use std::sync::Arc;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::BloomConfig;
use crate::error::{Error, Result};
use crate::model::{Bloom, Weight, WeightSource};
use crate::tokenizer::Tokenizer;

/// What a model is, recorded with every candidate it generates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelIdentity {
    /// File or directory name.
    pub name: String,
    /// `gguf` or `safetensors`.
    pub format: String,
    /// Storage type of the largest weight (`q4_0`, `f32`, …).
    pub quantization: String,
    /// SHA-256 over the file lengths and their first and last MiB (a fingerprint, not a checksum).
    pub content_hash: String,
}

/// A model ready to run, with its tokenizer and identity.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The network.
    pub model: Bloom,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// What it is.
    pub identity: ModelIdentity,
}

/// Lower-case name of a GGUF storage type, as `storywriter quantize --dtype` spells it.
pub fn dtype_name(dtype: GgmlDType) -> String {
    format!("{dtype:?}").to_lowercase()
}

/// How much of each end of a file [`ModelIdentity::content_hash`] covers.
const FINGERPRINT_EDGE: usize = 1 << 20;

#[cfg(any(test, not(target_arch = "wasm32")))]
fn fingerprint(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(&part[..part.len().min(FINGERPRINT_EDGE)]);
        hasher.update(&part[part.len().saturating_sub(FINGERPRINT_EDGE)..]);
    }
    hex(&hasher.finalize())
}

/// [`fingerprint`] of one file of `len` bytes read through `reader` (only its two ends are read).
fn reader_fingerprint<R: Read + Seek>(reader: &mut R, len: u64) -> std::io::Result<String> {
    let edge = len.min(FINGERPRINT_EDGE as u64);
    let mut head = vec![0; edge as usize];
    reader.seek(SeekFrom::Start(0))?;
    reader.read_exact(&mut head)?;
    let mut tail = vec![0; edge as usize];
    reader.seek(SeekFrom::Start(len - edge))?;
    reader.read_exact(&mut tail)?;
    let mut hasher = Sha256::new();
    hasher.update(len.to_le_bytes());
    hasher.update(&head);
    hasher.update(&tail);
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_tokenizer(tokenizer: &Tokenizer, config: &BloomConfig, origin: &str) -> Result<()> {
    let max = tokenizer.max_token_id();
    if max as usize >= config.vocab_size {
        return Err(Error::Format(format!(
            "{origin}: the tokenizer has token id {max}, beyond the embedding table ({} rows)",
            config.vocab_size
        )));
    }
    for (field, id) in [
        ("bos_token_id", config.bos_token_id),
        ("eos_token_id", config.eos_token_id),
    ] {
        if id as usize >= config.vocab_size {
            return Err(Error::Format(format!(
                "{origin}: {field} {id} is beyond the embedding table ({} rows)",
                config.vocab_size
            )));
        }
    }
    Ok(())
}

/// A candle error without the backtrace candle attaches when `RUST_BACKTRACE` is set.
fn candle_message(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(inner),
        other => other.to_string(),
    }
}

fn check_shape(origin: &str, name: &str, got: &[usize], expected: &[usize]) -> Result<()> {
    if got != expected {
        return Err(Error::Format(format!(
            "{origin}: tensor `{name}` has shape {got:?}, expected {expected:?}"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// GGUF
// ---------------------------------------------------------------------------------------------

/// Tensors of a GGUF file, read one at a time through `reader`.
struct GgufSource<R> {
    content: Content,
    reader: BufReader<R>,
    origin: String,
    device: Device,
}

impl<R: Read + Seek> WeightSource for GgufSource<R> {
    fn weight(&mut self, name: &str, shape: &[usize]) -> Result<Weight> {
        let info =
            self.content.tensor_infos.get(name).ok_or_else(|| {
                Error::Format(format!("{}: tensor `{name}` is missing", self.origin))
            })?;
        check_shape(&self.origin, name, info.shape.dims(), shape)?;
        let tensor = info
            .read(
                &mut self.reader,
                self.content.tensor_data_offset,
                &self.device,
            )
            .map_err(|e| {
                Error::Format(format!(
                    "{}: tensor `{name}`: {}",
                    self.origin,
                    candle_message(&e)
                ))
            })?;
        Ok(match tensor.dtype() {
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {
                Weight::Dense(tensor.dequantize(&self.device)?)
            }
            _ => Weight::Quantized(Arc::new(tensor)),
        })
    }

    fn contains(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }
}

fn metadata_usize(metadata: &HashMap<String, Value>, key: &str, origin: &str) -> Result<usize> {
    let value = metadata
        .get(key)
        .ok_or_else(|| Error::Format(format!("{origin}: GGUF metadata has no `{key}`")))?;
    let n = match value {
        Value::U8(v) => *v as u64,
        Value::U16(v) => *v as u64,
        Value::U32(v) => *v as u64,
        Value::U64(v) => *v,
        Value::I32(v) if *v >= 0 => *v as u64,
        Value::I64(v) if *v >= 0 => *v as u64,
        other => {
            return Err(Error::Format(format!(
                "{origin}: GGUF metadata `{key}` is {other:?}, expected a non-negative integer"
            )))
        }
    };
    usize::try_from(n).map_err(|_| {
        Error::Format(format!(
            "{origin}: GGUF metadata `{key}` = {n} does not fit this platform"
        ))
    })
}

/// The model shape recorded in a GGUF file's `bloom.*` metadata (vocab size from `token_embd`).
pub fn gguf_config(content: &Content, origin: &str) -> Result<BloomConfig> {
    let md = &content.metadata;
    match md.get("general.architecture") {
        Some(Value::String(arch)) if arch == "bloom" => {}
        Some(Value::String(arch)) => {
            return Err(Error::Format(format!(
                "{origin}: general.architecture is `{arch}`, only `bloom` models are supported"
            )))
        }
        Some(other) => {
            return Err(Error::Format(format!(
                "{origin}: general.architecture is {other:?}, expected the string `bloom`"
            )))
        }
        None => {
            return Err(Error::Format(format!(
                "{origin}: GGUF metadata has no `general.architecture`"
            )))
        }
    }
    let embd = content
        .tensor_infos
        .get("token_embd.weight")
        .ok_or_else(|| Error::Format(format!("{origin}: tensor `token_embd.weight` is missing")))?;
    let epsilon = match md.get("bloom.attention.layer_norm_epsilon") {
        Some(Value::F32(e)) => *e as f64,
        Some(Value::F64(e)) => *e,
        _ => 1e-5,
    };
    let defaults = BloomConfig::bloom_560m();
    let optional_id = |key: &str, default: u32| match md.get(key) {
        Some(v) => v.to_u32().unwrap_or(default),
        None => default,
    };
    let config = BloomConfig {
        vocab_size: embd.shape.dims().first().copied().unwrap_or(0),
        hidden_size: metadata_usize(md, "bloom.embedding_length", origin)?,
        n_layer: metadata_usize(md, "bloom.block_count", origin)?,
        n_head: metadata_usize(md, "bloom.attention.head_count", origin)?,
        layer_norm_epsilon: epsilon,
        apply_residual_connection_post_layernorm: matches!(
            md.get(crate::gguf::RESIDUAL_POST_LAYERNORM_KEY),
            Some(Value::Bool(true))
        ),
        bos_token_id: optional_id("tokenizer.ggml.bos_token_id", defaults.bos_token_id),
        eos_token_id: optional_id("tokenizer.ggml.eos_token_id", defaults.eos_token_id),
        context_length: metadata_usize(md, "bloom.context_length", origin)
            .unwrap_or(defaults.context_length),
    };
    config.validate(origin)?;
    if let Ok(ff) = metadata_usize(md, "bloom.feed_forward_length", origin) {
        if ff != 4 * config.hidden_size {
            return Err(Error::Format(format!(
                "{origin}: bloom.feed_forward_length {ff} is not 4 × embedding_length {}",
                config.hidden_size
            )));
        }
    }
    Ok(config)
}

/// A model file opened and checked, its tensors not read yet.
pub struct OpenedModel<'a> {
    /// The model's shape.
    pub config: BloomConfig,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Its tensors, by llama.cpp name.
    pub source: Box<dyn WeightSource + 'a>,
    /// What it is.
    pub identity: ModelIdentity,
}

impl OpenedModel<'_> {
    /// Reads every tensor and builds the network.
    pub fn build(mut self, device: &Device) -> Result<LoadedModel> {
        let model = Bloom::load(&self.config, self.source.as_mut(), device)?;
        Ok(LoadedModel {
            model,
            tokenizer: self.tokenizer,
            identity: self.identity,
        })
    }
}

/// `general.alignment` as candle's GGUF reader will take it (the last entry of a type it honours),
/// found by walking the metadata of the `len`-byte file behind `reader` from its start; `None`
/// when absent or when the header is unreadable (the reader then reports the problem). Checked
/// beforehand because the reader divides by it.
fn gguf_alignment<R: Read + Seek>(reader: &mut BufReader<R>, len: u64) -> Option<u64> {
    const KEY: &[u8] = b"general.alignment";
    struct Walk<'r, R> {
        reader: &'r mut BufReader<R>,
        remaining: u64,
        version: u32,
    }
    impl<R: Read + Seek> Walk<'_, R> {
        /// Reads `buf.len()` bytes (small amounts only).
        fn read(&mut self, buf: &mut [u8]) -> Option<()> {
            self.remaining = self.remaining.checked_sub(buf.len() as u64)?;
            self.reader.read_exact(buf).ok()
        }
        fn skip(&mut self, n: u64) -> Option<()> {
            self.remaining = self.remaining.checked_sub(n)?;
            self.reader.seek_relative(i64::try_from(n).ok()?).ok()
        }
        fn u32(&mut self) -> Option<u32> {
            let mut b = [0; 4];
            self.read(&mut b)?;
            Some(u32::from_le_bytes(b))
        }
        fn len(&mut self) -> Option<u64> {
            if self.version == 1 {
                self.u32().map(u64::from)
            } else {
                let mut b = [0; 8];
                self.read(&mut b)?;
                Some(u64::from_le_bytes(b))
            }
        }
        /// Whether the next `n`-byte key is [`KEY`] (the reader drops trailing NULs from strings).
        fn key_is_alignment(&mut self, n: u64) -> Option<bool> {
            if n > self.remaining {
                return None;
            }
            let mut head = [0; KEY.len()];
            let head = &mut head[..n.min(KEY.len() as u64) as usize];
            self.read(head)?;
            let mut matches = head == KEY;
            let mut rest = n - head.len() as u64;
            let mut chunk = [0; 256];
            while rest > 0 {
                let part = &mut chunk[..rest.min(256) as usize];
                self.read(part)?;
                matches &= part.iter().all(|&b| b == 0);
                rest -= part.len() as u64;
            }
            Some(matches)
        }
        fn skip_value(&mut self, value_type: u32, depth: usize) -> Option<()> {
            let fixed = |t: u32| match t {
                0 | 1 | 7 => Some(1),
                2 | 3 => Some(2),
                4..=6 => Some(4),
                10..=12 => Some(8),
                _ => None,
            };
            match value_type {
                8 => {
                    let n = self.len()?;
                    self.skip(n)?;
                }
                9 if depth < 64 => {
                    let item_type = self.u32()?;
                    let n = self.len()?;
                    match fixed(item_type) {
                        Some(size) => self.skip(n.checked_mul(size)?)?,
                        // Every item takes at least one byte, so this ends with the file.
                        None => (0..n).try_for_each(|_| self.skip_value(item_type, depth + 1))?,
                    }
                }
                t => self.skip(fixed(t)?)?,
            }
            Some(())
        }
    }
    reader.seek(SeekFrom::Start(4)).ok()?;
    let mut walk = Walk {
        reader,
        remaining: len.checked_sub(4)?,
        version: 0,
    };
    walk.version = walk.u32()?;
    let _tensor_count = walk.len()?;
    let kv_count = walk.len()?;
    let mut alignment = None;
    for _ in 0..kv_count {
        let key_len = walk.len()?;
        let is_alignment = walk.key_is_alignment(key_len)?;
        let value_type = walk.u32()?;
        if is_alignment {
            let size = match value_type {
                0 | 1 => 1,
                2 | 3 => 2,
                4 | 5 => 4,
                _ => 0,
            };
            let mut raw = [0; 4];
            let raw = &mut raw[..size];
            walk.read(raw)?;
            if size == 0 {
                walk.skip_value(value_type, 0)?;
            }
            let unsigned = raw
                .iter()
                .rev()
                .fold(0u64, |acc, &b| acc << 8 | u64::from(b));
            let negative = raw.last().is_some_and(|&b| b & 0x80 != 0);
            alignment = match value_type {
                0 | 2 | 4 => Some(unsigned),
                1 | 3 | 5 if !negative => Some(unsigned),
                _ => None,
            };
        } else {
            walk.skip_value(value_type, 0)?;
        }
    }
    alignment
}

/// Rejects what candle's GGUF reader cannot be trusted with: a missing magic and a zero or
/// non-power-of-two alignment.
fn check_gguf_header<R: Read + Seek>(
    reader: &mut BufReader<R>,
    len: u64,
    name: &str,
) -> Result<()> {
    if len < 8 {
        return Err(Error::Format(format!(
            "{name}: {len} bytes is too short for a GGUF file (truncated?)"
        )));
    }
    let mut magic = [0; 4];
    reader
        .seek(SeekFrom::Start(0))
        .and_then(|_| reader.read_exact(&mut magic))
        .map_err(|e| Error::io(name, e))?;
    if &magic != b"GGUF" {
        return Err(Error::Format(format!(
            "{name}: not a GGUF file (wrong magic {:?}, expected \"GGUF\")",
            String::from_utf8_lossy(&magic)
        )));
    }
    match gguf_alignment(reader, len) {
        Some(a) if !a.is_power_of_two() => Err(Error::Format(format!(
            "{name}: general.alignment is {a}, expected a power of two"
        ))),
        _ => Ok(()),
    }
}

/// The reader's error, saying so when the file ends early.
fn gguf_read_error(name: &str, len: u64, e: &candle_core::Error) -> Error {
    fn ends_early(e: &candle_core::Error) -> bool {
        match e {
            candle_core::Error::Io(io) => io.kind() == std::io::ErrorKind::UnexpectedEof,
            candle_core::Error::WithBacktrace { inner, .. }
            | candle_core::Error::WithPath { inner, .. }
            | candle_core::Error::Context { inner, .. } => ends_early(inner),
            _ => false,
        }
    }
    let message = candle_message(e);
    let hint = if ends_early(e) || message.contains("remaining") {
        " (the file ends early: truncated?)"
    } else {
        ""
    };
    Error::Format(format!(
        "{name}: not a readable GGUF file ({len} bytes): {message}{hint}"
    ))
}

/// Checks that every tensor's type can be read, its size is computable and its bytes lie inside
/// the file without overlapping another tensor's, before anything is allocated or read (a wrong
/// type or shape in a header would otherwise read past the end or silently read garbage).
fn check_gguf_tensors(content: &Content, file_len: u64, origin: &str) -> Result<()> {
    // In file order, so that a truncated file names the first tensor it cuts.
    let mut infos: Vec<_> = content.tensor_infos.iter().collect();
    infos.sort_by_key(|(name, info)| (info.offset, name.as_str()));
    let mut extents = Vec::with_capacity(infos.len());
    for (name, info) in infos {
        let dtype = info.ggml_dtype;
        let dims = info.shape.dims();
        let bad = |what: String| {
            Error::Format(format!(
                "{origin}: tensor `{name}` ({} {dims:?}) {what}",
                dtype_name(dtype)
            ))
        };
        if matches!(dtype, GgmlDType::Q8_1 | GgmlDType::Q8K) {
            return Err(bad(
                "has a type that is only used for intermediate results and cannot be loaded".into(),
            ));
        }
        let elems = dims
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
            .ok_or_else(|| bad("has absurd dimensions (their product overflows)".into()))?;
        let block = dtype.block_size() as u64;
        if !elems.is_multiple_of(block) {
            return Err(bad(format!(
                "has {elems} values, not a whole number of {block}-value blocks"
            )));
        }
        let size = (elems / block).checked_mul(dtype.type_size() as u64);
        let start = content.tensor_data_offset.checked_add(info.offset);
        let end = size
            .zip(start)
            .and_then(|(size, start)| start.checked_add(size));
        match end {
            Some(end) if end <= file_len => extents.push((start.unwrap_or(0), end, name)),
            _ => {
                return Err(bad(format!(
                    "needs {} bytes at offset {}, past the end of the file ({file_len} bytes; truncated?)",
                    size.map_or("more than 2^64".into(), |s| s.to_string()),
                    start.map_or("beyond 2^64".into(), |s| s.to_string()),
                )))
            }
        }
    }
    extents.retain(|(start, end, _)| end > start);
    extents.sort();
    for pair in extents.windows(2) {
        let ((_, end, a), (start, _, b)) = (pair[0], pair[1]);
        if end > start {
            let info = &content.tensor_infos[a.as_str()];
            return Err(Error::Format(format!(
                "{origin}: tensor `{a}` ({} {:?}) runs into tensor `{b}`: wrong type or shape for `{a}`?",
                dtype_name(info.ggml_dtype),
                info.shape.dims()
            )));
        }
    }
    Ok(())
}

/// Opens a GGUF file in llama.cpp's BLOOM layout, tokenizer included, read through `reader`:
/// the header now, the tensors one at a time when the model is built (so only the model and its
/// largest tensor are ever in memory, not the file). `name` names the file in errors.
pub fn open_gguf_reader<'a, R: Read + Seek + 'a>(
    reader: R,
    name: &str,
    device: &Device,
) -> Result<OpenedModel<'a>> {
    // Large reads (tensors) bypass the buffer; the header's many small ones go through it.
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let len = reader
        .seek(SeekFrom::End(0))
        .map_err(|e| Error::io(name, e))?;
    check_gguf_header(&mut reader, len, name)?;
    let content = reader
        .seek(SeekFrom::Start(0))
        .map_err(candle_core::Error::from)
        .and_then(|_| Content::read(&mut reader))
        .map_err(|e| gguf_read_error(name, len, &e))?;
    check_gguf_tensors(&content, len, name)?;
    let config = gguf_config(&content, name)?;
    let tokenizer = Tokenizer::from_gguf(&content.metadata, name)?;
    check_tokenizer(&tokenizer, &config, name)?;
    let quantization = content
        .tensor_infos
        .get("blk.0.ffn_up.weight")
        .map_or("unknown".to_string(), |info| dtype_name(info.ggml_dtype));
    let identity = ModelIdentity {
        name: name.to_string(),
        format: "gguf".into(),
        quantization,
        content_hash: reader_fingerprint(&mut reader, len).map_err(|e| Error::io(name, e))?,
    };
    let source = GgufSource {
        content,
        reader,
        origin: name.to_string(),
        device: device.clone(),
    };
    Ok(OpenedModel {
        config,
        tokenizer,
        source: Box::new(source),
        identity,
    })
}

/// Opens the bytes of a GGUF file in llama.cpp's BLOOM layout, tokenizer included.
pub fn open_gguf<'a>(bytes: &'a [u8], name: &str, device: &Device) -> Result<OpenedModel<'a>> {
    open_gguf_reader(Cursor::new(bytes), name, device)
}

/// Loads a model from a GGUF file read through `reader`, one tensor at a time
/// ([`open_gguf_reader`]).
pub fn load_gguf_reader<R: Read + Seek>(
    reader: R,
    name: &str,
    device: &Device,
) -> Result<LoadedModel> {
    open_gguf_reader(reader, name, device)?.build(device)
}

/// Loads a model from the bytes of a GGUF file in llama.cpp's BLOOM layout, tokenizer included.
pub fn load_gguf(bytes: &[u8], name: &str, device: &Device) -> Result<LoadedModel> {
    open_gguf(bytes, name, device)?.build(device)
}

// ---------------------------------------------------------------------------------------------
// Hugging Face safetensors
// ---------------------------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_reader_fingerprint_matches_the_in_memory_one() {
        for len in [0, 10, FINGERPRINT_EDGE + 3, 2 * FINGERPRINT_EDGE + 7] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let streamed = reader_fingerprint(&mut Cursor::new(&bytes), len as u64).unwrap();
            assert_eq!(streamed, fingerprint(&[&bytes]), "{len} bytes");
        }
    }
}
