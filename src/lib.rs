//! `storywriter`: BLOOM on candle, with a tokenizer, Hugging Face-exact sampling, a GGUF
//! quantizer and candidate generation, compiled both natively and for wasm32.

pub mod config;
pub mod dataset;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod init;
pub mod loader;
pub mod model;
pub mod params;
#[cfg(target_arch = "x86_64")]
pub mod q4_0_x86;
pub mod records;
pub mod sampling;
pub mod stats;
pub mod story;
pub mod tokenizer;
pub mod web;

pub use error::{Error, Result};
