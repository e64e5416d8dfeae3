//! `storywriter`: BLOOM on candle, with a tokenizer, Hugging Face-exact sampling, a GGUF
//! quantizer and candidate generation, compiled both natively and for wasm32.
//!
//! Three layers, each a folder:
//! - [`engine`]: the model, its loading and quantizing, kernels, tokenizer, sampling and
//!   generation (candle);
//! - [`data`]: the per-step parameter table, candidate records, stories, statistics and the
//!   dataset export (no candle);
//! - the front ends: [`web`] (the page and its model worker) and the `storywriter` CLI
//!   (`src/bin/storywriter/`).
//!
//! [`shared`] holds the few types both the engine and the data layer speak (sampling
//! parameters, a model's identity, why generation stopped), and [`session`] joins the two: a
//! story's rounds run on a loaded model.

pub mod autopilot;
pub mod data;
pub mod engine;
pub mod error;
pub mod picker;
#[cfg(test)]
mod retained;
pub mod session;
pub mod shared;
pub mod web;

pub use data::{dataset, params, records, stats, story};
pub use engine::{
    alternatives, config, generate, gguf, init, kv_cache, loader, model, sampling, tokenizer,
};
pub use error::{Error, Result};
