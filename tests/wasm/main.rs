//! The library compiled to wasm32 and run in headless Chromium and Firefox (`cargo test --target
//! wasm32-unknown-unknown --test wasm`), as modules of one test crate. The browser has no file
//! system: fixtures are compiled in with `include_bytes!`.
#![cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

#[path = "../common/mod.rs"]
mod common;

mod kernels;
mod model;
mod smoke;
