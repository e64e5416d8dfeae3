//! GGUF files in llama.cpp's BLOOM layout: [`format`] (the types and names all code shares),
//! [`read`] (opening and loading, one tensor at a time) and [`write`] (the quantizer behind
//! `storywriter quantize` and the hub loader).

pub mod format;
pub mod read;
pub mod write;

pub use format::{
    dtype_name, parse_dtype, tensor_layout, QUANT_TYPES, RESIDUAL_POST_LAYERNORM_KEY,
};
pub use write::{plan_gguf, write_gguf, GgufPlan, PlannedTensor, TensorProgress, TensorTypes};
