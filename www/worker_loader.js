// Starts the model worker (trunk builds worker.js and worker_bg.wasm from src/bin/worker.rs).
importScripts('./worker.js');
wasm_bindgen({ module_or_path: './worker_bg.wasm' });
