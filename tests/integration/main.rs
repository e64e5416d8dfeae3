//! The native integration tests, as modules of one test crate (one binary to link instead of
//! one per file): the model against transformers' references, bad files, the data layer and the
//! CLI commands on it, and `storywriter serve`.
#![cfg(not(target_arch = "wasm32"))]

#[path = "../common/mod.rs"]
mod common;

mod alternatives;
mod auto_cli;
mod bad_files;
mod dataset;
mod hidden_state;
mod kv_reuse;
mod odd_input;
mod params;
mod parity;
mod picker;
mod records_v2;
mod serve;
mod stats;
mod stored_records;
mod story;
mod write_cli;
mod write_soak;
