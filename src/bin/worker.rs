//! The model worker of the web app (a wasm32 Web Worker); see `storywriter::web::worker`.
//! Its loader (`www/worker_loader.js`, or `www/worker_threads.js` for the threaded build) calls
//! `startWorker` once the wasm, and in the threaded build its thread pool, is ready: rayon's
//! global pool must exist before any kernel runs. Natively it does nothing.

fn main() {}

/// Starts the worker's message loop (it then posts `Started` to the page).
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(js_name = startWorker)]
pub fn start_worker() {
    storywriter::web::worker::run();
}

/// `initThreadPool(n)` for `www/worker_threads.js`: rayon's pool on `n` Web Workers sharing the
/// wasm memory.
#[cfg(all(target_arch = "wasm32", feature = "threads"))]
pub use wasm_bindgen_rayon::init_thread_pool;
