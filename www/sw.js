// Service worker: keeps the app shell for offline use. Network first (so a new build is picked
// up at once), the cached copy when the network fails. Model files are not cached here: the
// app keeps them in the Origin Private File System.
//
// It also makes the page cross-origin isolated on hosts that cannot send headers: every answer
// it hands the page carries COOP/COEP (as `storywriter serve` sends them), so from the first
// navigation it controls on, the page may run the threaded build.
const CACHE = 'storywriter-shell-v4';
const SHELL = [
  './', 'index.html', 'boot.js', 'app.js', 'app_bg.wasm', 'worker.js', 'worker_bg.wasm',
  'worker_loader.js', 'worker_threads.js', 'threads/worker.js', 'threads/worker_bg.wasm',
  'relaxed/worker.js', 'relaxed/worker_bg.wasm',
  'style.css', 'manifest.webmanifest', 'icon.svg', 'params/steps.json',
  'models/index.json',
];

// The modules a cached script imports by relative path (the threaded worker's wasm-bindgen
// snippets, whose directory is named by a hash of their crate, so SHELL cannot list them).
async function cacheImports(cache, script) {
  const response = await cache.match(script);
  if (!response) return;
  const base = new URL(script, self.registration.scope);
  const text = await response.text();
  const imports = [...text.matchAll(/from\s*['"](\.{1,2}\/[^'"]+)['"]/g)].map((m) => new URL(m[1], base).href);
  await Promise.all(imports.map((url) => cache.add(url).catch(() => undefined)));
}

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches.open(CACHE)
      .then((cache) => Promise.all(SHELL.map((url) => cache.add(url).catch(() => undefined)))
        .then(() => cacheImports(cache, 'threads/worker.js')))
      .then(() => self.skipWaiting()),
  );
});

// No `clients.claim()`: the page that registered this worker stays uncontrolled, and the next
// visit is controlled. In Firefox a claim waits on every worker of the page, and rayon's pool
// workers never return to their event loop: the claim never ended, this worker stayed
// "activating", and every request of the page waited on it (the pool's next `new Worker` hung,
// the model's download failed after a minute). A new version still takes over the pages the
// old one controls (`skipWaiting` above), which does not wait on their workers.
self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k)))),
  );
});

// The answer with the isolation headers added (when the server did not send them).
function isolated(response) {
  if (!response || response.type === 'opaque' || response.headers.has('cross-origin-embedder-policy')) {
    return response;
  }
  const headers = new Headers(response.headers);
  headers.set('Cross-Origin-Opener-Policy', 'same-origin');
  headers.set('Cross-Origin-Embedder-Policy', 'require-corp');
  headers.set('Cross-Origin-Resource-Policy', 'cross-origin');
  const { status, statusText } = response;
  return new Response(response.body, { status, statusText, headers });
}

// A cached answer made anew, so that it takes the URL of the request it answers: a worker reads
// its options from its own URL (`worker_threads.js?threads=2`), and a worker's URL is its
// script's answer's, which for the cached entry is the one stored (often without the query).
function asAnswerTo(cached) {
  const { status, statusText, headers } = cached;
  return new Response(cached.body, { status, statusText, headers });
}

self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== self.location.origin) return;
  // Model files are large and cached by the app itself; range requests pass through.
  if (url.pathname.endsWith('.gguf') || request.headers.has('range')) return;
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put(request, copy));
        }
        return isolated(response);
      })
      .catch(() => caches.match(request, { ignoreSearch: true })
        .then((cached) => (cached ? isolated(asAnswerTo(cached)) : Response.error()))),
  );
});
