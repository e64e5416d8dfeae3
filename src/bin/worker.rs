//! The model worker of the web app (a wasm32 Web Worker); see `storywriter::web::worker`.
//! Natively it does nothing.

fn main() {
    #[cfg(target_arch = "wasm32")]
    storywriter::web::worker::run();
}
