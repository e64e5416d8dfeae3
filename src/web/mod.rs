//! The web app (issue 4): the worker protocol and settings (platform-independent, unit-tested
//! natively) and, on wasm32, the page (`app`), the model worker (`worker`) and their helpers.
//! The binaries `src/bin/app.rs` and `src/bin/worker.rs` only call [`app::run`] and
//! [`worker::run`]; trunk builds both from `index.html`, and `scripts/lib.sh` the threaded
//! worker (see [`threads`]).

pub mod protocol;
pub mod retry;
pub mod settings;

#[cfg(target_arch = "wasm32")]
pub mod app;
#[cfg(target_arch = "wasm32")]
pub mod chart;
#[cfg(target_arch = "wasm32")]
pub mod dom;
#[cfg(target_arch = "wasm32")]
pub mod error;
#[cfg(target_arch = "wasm32")]
pub mod hub;
#[cfg(target_arch = "wasm32")]
pub mod hub_fetch;
#[cfg(target_arch = "wasm32")]
pub mod idb;
#[cfg(target_arch = "wasm32")]
pub mod opfs;
#[cfg(target_arch = "wasm32")]
pub mod threads;
#[cfg(target_arch = "wasm32")]
pub mod worker;
#[cfg(target_arch = "wasm32")]
pub mod worker_client;
