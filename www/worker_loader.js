// Starts a single-threaded model worker: with `?relaxed`, the build whose kernels use relaxed
// SIMD (scripts/lib.sh builds relaxed/worker.js and relaxed/worker_bg.wasm), else the simd128
// one (trunk builds worker.js and worker_bg.wasm from src/bin/worker.rs). A failed start (the
// wasm not found, not compiling, out of memory) is reported to the page as the protocol's error
// event: a rejected promise would otherwise leave the page waiting.
const dir = new URL(self.location.href).searchParams.has('relaxed') ? './relaxed/' : './';
try {
  importScripts(`${dir}worker.js`);
  wasm_bindgen({ module_or_path: `${dir}worker_bg.wasm` })
    .then(() => wasm_bindgen.startWorker())
    .catch(failed);
} catch (e) {
  failed(e);
}

function failed(e) {
  const message = `the model worker could not start: ${e && e.message ? e.message : e}`;
  postMessage({ type: 'error', failed: 'load', message });
}
