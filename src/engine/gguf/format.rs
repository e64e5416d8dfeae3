//! The GGUF format's vocabulary, shared by the reader, the writer and the tests' file builder:
//! storage and metadata value type numbers, alignment, BLOOM's tensor names and shapes in
//! llama.cpp's layout, and the storage type names `storywriter quantize` accepts.

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::GgmlDType;

use crate::engine::config::BloomConfig;
use crate::error::{Error, Result};

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

/// Lower-case name of a GGUF storage type, as `storywriter quantize --dtype` spells it.
pub fn dtype_name(dtype: GgmlDType) -> String {
    format!("{dtype:?}").to_lowercase()
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

/// Tensor data is aligned to this many bytes (GGUF's default `general.alignment`).
pub const ALIGNMENT: u64 = 32;

/// `offset` rounded up to [`ALIGNMENT`].
pub fn align(offset: u64) -> u64 {
    offset.div_ceil(ALIGNMENT) * ALIGNMENT
}

/// GGML's number for a storage type, as GGUF tensor tables record it.
pub fn ggml_type_id(dtype: GgmlDType) -> u32 {
    match dtype {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q5_0 => 6,
        GgmlDType::Q5_1 => 7,
        GgmlDType::Q8_0 => 8,
        GgmlDType::Q8_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 11,
        GgmlDType::Q4K => 12,
        GgmlDType::Q5K => 13,
        GgmlDType::Q6K => 14,
        GgmlDType::Q8K => 15,
        GgmlDType::BF16 => 30,
    }
}

/// Appends a GGUF string: its length as a u64, then its bytes.
pub fn push_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// GGUF's numbers for metadata value types.
pub mod value_type {
    /// `u8`.
    pub const U8: u32 = 0;
    /// `i8`.
    pub const I8: u32 = 1;
    /// `u16`.
    pub const U16: u32 = 2;
    /// `i16`.
    pub const I16: u32 = 3;
    /// `u32`.
    pub const U32: u32 = 4;
    /// `i32`.
    pub const I32: u32 = 5;
    /// `f32`.
    pub const F32: u32 = 6;
    /// `bool` (one byte).
    pub const BOOL: u32 = 7;
    /// A string: its length, then its bytes.
    pub const STRING: u32 = 8;
    /// An array: its item type, its length, then the items.
    pub const ARRAY: u32 = 9;
    /// `u64`.
    pub const U64: u32 = 10;
    /// `i64`.
    pub const I64: u32 = 11;
    /// `f64`.
    pub const F64: u32 = 12;
}

/// GGUF's number for a metadata value's type.
pub fn value_type_id(value: &Value) -> u32 {
    use value_type::*;
    match value {
        Value::U8(_) => U8,
        Value::I8(_) => I8,
        Value::U16(_) => U16,
        Value::I16(_) => I16,
        Value::U32(_) => U32,
        Value::I32(_) => I32,
        Value::F32(_) => F32,
        Value::Bool(_) => BOOL,
        Value::String(_) => STRING,
        Value::Array(_) => ARRAY,
        Value::U64(_) => U64,
        Value::I64(_) => I64,
        Value::F64(_) => F64,
    }
}

/// The size in bytes of a metadata value of type `id` when it has a fixed size; `None` for
/// strings, arrays and unknown types.
pub fn fixed_value_size(id: u32) -> Option<u64> {
    use value_type::*;
    match id {
        U8 | I8 | BOOL => Some(1),
        U16 | I16 => Some(2),
        U32 | I32 | F32 => Some(4),
        U64 | I64 | F64 => Some(8),
        _ => None,
    }
}

/// Appends a metadata value (without its type) in GGUF's encoding.
pub fn push_value(out: &mut Vec<u8>, key: &str, value: &Value) -> Result<()> {
    match value {
        Value::U8(v) => out.push(*v),
        Value::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::String(v) => push_string(out, v),
        Value::Array(items) => {
            // An empty array's element type does not matter; GGUF writers say u32.
            let item_type = items.first().map_or(value_type::U32, value_type_id);
            if items.iter().any(|item| value_type_id(item) != item_type) {
                return Err(Error::Invalid(format!(
                    "GGUF metadata `{key}`: an array mixes value types"
                )));
            }
            out.extend_from_slice(&item_type.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                push_value(out, key, item)?;
            }
        }
    }
    Ok(())
}
