//! The web app's page (wasm32, UI thread); see `storywriter::web::app`. Natively it does
//! nothing.

fn main() {
    #[cfg(target_arch = "wasm32")]
    storywriter::web::app::run();
}
