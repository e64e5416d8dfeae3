// Starts the app's wasm (an external script, so the Content-Security-Policy needs no
// 'unsafe-inline'), and registers the service worker that caches the app shell.
import init from './app.js';

await init({ module_or_path: './app_bg.wasm' });

if ('serviceWorker' in navigator && location.protocol !== 'file:') {
  navigator.serviceWorker.register('./sw.js').catch((e) => console.warn('service worker:', e.message));
}
