//! A safetensors file's header checked against a BLOOM shape before any tensor is read: the
//! hub loader reads the header with one range request and then each tensor's bytes, so every
//! name, dtype, shape and byte range must be right first.

use std::collections::HashMap;

use candle_core::DType;
use serde::Deserialize;

use crate::engine::config::BloomConfig;
use crate::engine::gguf::tensor_layout;
use crate::engine::loader::hf_name;
use crate::error::{Error, Result};

/// Headers larger than this are refused (bloom-560m's is ~30 KB).
pub const MAX_HEADER_BYTES: u64 = 100 << 20;

/// One tensor's entry in a safetensors header.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct TensorInfo {
    /// The element type's name (`F32`, `F16`, `BF16`, …).
    pub dtype: String,
    /// The tensor's shape.
    pub shape: Vec<usize>,
    /// Its bytes, relative to the end of the header: `[start, end)`.
    pub data_offsets: [u64; 2],
}

/// A tensor the model needs, as the header places it.
#[derive(Clone, Debug, PartialEq)]
pub struct HeaderTensor {
    /// Its llama.cpp name (the order of [`tensor_layout`]).
    pub gguf_name: String,
    /// Its shape, as the model expects it.
    pub shape: Vec<usize>,
    /// Its name in the file (`transformer.…` or without the prefix).
    pub key: String,
    /// Its element type.
    pub dtype: DType,
    /// Its entry in the header.
    pub info: TensorInfo,
}

/// The header's length from a safetensors file's first 8 bytes (little-endian), refused when
/// shorter than 8 bytes or over [`MAX_HEADER_BYTES`].
pub fn header_len(first: &[u8], origin: &str) -> Result<u64> {
    let len = first
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| Error::Format(format!("{origin}: shorter than 8 bytes")))?;
    if len > MAX_HEADER_BYTES {
        return Err(Error::Format(format!(
            "{origin}: a header of {len} bytes is not a safetensors header"
        )));
    }
    Ok(len)
}

fn dtype_of(origin: &str, name: &str, dtype: &str) -> Result<DType> {
    match dtype {
        "F32" => Ok(DType::F32),
        "F16" => Ok(DType::F16),
        "BF16" => Ok(DType::BF16),
        other => Err(Error::Format(format!(
            "{origin}: tensor `{name}` has dtype {other}; expected F32, F16 or BF16"
        ))),
    }
}

/// The tensors `config`'s model needs, in [`tensor_layout`] order, from the JSON `header` of a
/// safetensors file: each present, of its expected shape, F32/F16/BF16, and spanning exactly
/// its size. `origin` names the file in errors.
pub fn header_tensors(
    header: &[u8],
    config: &BloomConfig,
    origin: &str,
) -> Result<Vec<HeaderTensor>> {
    let header: HashMap<String, serde_json::Value> = serde_json::from_slice(header)
        .map_err(|e| Error::Format(format!("{origin}: header is not valid JSON: {e}")))?;
    tensor_layout(config)
        .into_iter()
        .map(|(gguf_name, shape)| {
            let hf = hf_name(&gguf_name).unwrap_or_else(|| gguf_name.clone());
            let (key, value) = [format!("transformer.{hf}"), hf.clone()]
                .into_iter()
                .find_map(|k| header.get(&k).map(|v| (k, v.clone())))
                .ok_or_else(|| {
                    Error::Format(format!(
                        "{origin}: tensor `transformer.{hf}` (or `{hf}`) is missing"
                    ))
                })?;
            let info: TensorInfo = serde_json::from_value(value)
                .map_err(|e| Error::Format(format!("{origin}: tensor `{key}`: {e}")))?;
            if info.shape != shape {
                return Err(Error::Format(format!(
                    "{origin}: tensor `{key}` has shape {:?}, expected {shape:?}",
                    info.shape
                )));
            }
            let dtype = dtype_of(origin, &key, &info.dtype)?;
            let expected =
                (shape.iter().product::<usize>() as u64).checked_mul(dtype.size_in_bytes() as u64);
            let [start, end] = info.data_offsets;
            if end.checked_sub(start) != expected || end > u64::MAX - 8 - MAX_HEADER_BYTES {
                return Err(Error::Format(format!(
                    "{origin}: tensor `{key}` spans bytes {start}..{end}, expected {} bytes",
                    expected.map_or("more than 2^64".into(), |e| e.to_string())
                )));
            }
            Ok(HeaderTensor {
                gguf_name,
                shape,
                key,
                dtype,
                info,
            })
        })
        .collect()
}
