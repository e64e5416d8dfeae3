// Starts the threaded model worker (a module worker; scripts/lib.sh builds threads/worker.js
// and threads/worker_bg.wasm with shared memory and relaxed SIMD): the wasm, then rayon's pool
// of `?threads=N` Web Workers, then the worker itself. Any failure, or a pool that does not
// come up in time (a thread's worker that cannot start never answers), is reported to the page
// as a load error before `started`, and the page starts the single-threaded worker instead.
const threads = Number(new URL(self.location.href).searchParams.get('threads'));
const POOL_TIMEOUT_MS = 15000;

try {
  if (!(threads >= 1)) throw new Error(`bad thread count ${threads}`);
  const wasm = await import('./threads/worker.js');
  await wasm.default();
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(
      `its ${threads} threads did not start within ${POOL_TIMEOUT_MS / 1000} s`)), POOL_TIMEOUT_MS);
  });
  await Promise.race([wasm.initThreadPool(threads), timeout]);
  clearTimeout(timer);
  wasm.startWorker();
} catch (e) {
  const message = e && e.message ? e.message : String(e);
  postMessage({ type: 'error', failed: 'load', message });
}
