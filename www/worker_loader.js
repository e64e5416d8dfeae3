// Starts the single-threaded model worker (trunk builds worker.js and worker_bg.wasm from
// src/bin/worker.rs). A failed start (the wasm not found, not compiling, out of memory) is
// reported to the page as the protocol's error event: a rejected promise would otherwise leave
// the page waiting.
importScripts('./worker.js');
wasm_bindgen({ module_or_path: './worker_bg.wasm' })
  .then(() => wasm_bindgen.startWorker())
  .catch((e) => {
    const message = `the model worker could not start: ${e && e.message ? e.message : e}`;
    postMessage({ type: 'error', failed: 'load', message });
  });
