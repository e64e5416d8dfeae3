//! Reading GGUF files in llama.cpp's BLOOM layout: the header and metadata checked before
//! anything large is allocated, the model shape from `bloom.*`, the tokenizer from
//! `tokenizer.ggml.*`, and the tensors read one at a time through any `Read + Seek`.

use std::collections::HashMap;
use std::io::{BufReader, Cursor, Read, Seek, SeekFrom};
use std::sync::Arc;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::GgmlDType;
use candle_core::Device;

use crate::engine::config::BloomConfig;
use crate::engine::gguf::format::{dtype_name, fixed_value_size, value_type};
use crate::engine::model::{Weight, WeightSource};
use crate::engine::tokenizer::Tokenizer;
use crate::engine::weights::{
    candle_message, check_shape, check_tokenizer, reader_fingerprint, LoadedModel, OpenedModel,
};
use crate::error::{Error, Result};
use crate::shared::ModelIdentity;

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
            md.get(crate::engine::gguf::RESIDUAL_POST_LAYERNORM_KEY),
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
            match value_type {
                value_type::STRING => {
                    let n = self.len()?;
                    self.skip(n)?;
                }
                value_type::ARRAY if depth < 64 => {
                    let item_type = self.u32()?;
                    let n = self.len()?;
                    match fixed_value_size(item_type) {
                        Some(size) => self.skip(n.checked_mul(size)?)?,
                        // Every item takes at least one byte, so this ends with the file.
                        None => (0..n).try_for_each(|_| self.skip_value(item_type, depth + 1))?,
                    }
                }
                t => self.skip(fixed_value_size(t)?)?,
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
            // Integer types only; anything else is skipped and gives no alignment.
            let size = match value_type {
                value_type::U8
                | value_type::I8
                | value_type::U16
                | value_type::I16
                | value_type::U32
                | value_type::I32 => fixed_value_size(value_type)? as usize,
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
                value_type::U8 | value_type::U16 | value_type::U32 => Some(unsigned),
                value_type::I8 | value_type::I16 | value_type::I32 if !negative => Some(unsigned),
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
