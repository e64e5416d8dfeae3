//! The WebAssembly side of the JavaScript package `pkg/` (built by `scripts/build_pkg.sh` with
//! wasm-bindgen `--target web`): an [`engine::Engine`] holding a loaded model, and the data
//! layer's step table, policies, stories, records and dataset export as plain functions
//! (`data`). Values cross the boundary as JavaScript objects through `serde-wasm-bindgen`;
//! failures are JavaScript `Error`s with a `code` (`failure`). The package's own worker
//! (`pkg/worker.js`) is the only caller. Natively this binary does nothing.

fn main() {}

#[cfg(target_arch = "wasm32")]
mod data;
#[cfg(target_arch = "wasm32")]
mod engine;
#[cfg(target_arch = "wasm32")]
mod failure;
