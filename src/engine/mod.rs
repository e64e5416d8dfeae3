//! The engine: BLOOM on candle, its loading from Hugging Face checkpoints and GGUF files, the
//! quantizer, the kernels, the tokenizer, sampling and batched generation.

pub mod alternatives;
pub mod config;
pub mod generate;
pub mod gguf;
pub mod init;
pub mod kernels;
pub mod kv_cache;
pub mod loader;
pub mod memory_budget;
pub mod model;
pub mod profile;
pub mod sampling;
pub mod st_header;
pub mod tokenizer;
pub mod weights;

impl From<candle_core::Error> for crate::error::Error {
    fn from(error: candle_core::Error) -> Self {
        Self::Tensor(Box::new(error))
    }
}
