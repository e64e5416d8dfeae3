// Measures the model worker's wasm memory when the hub loader quantizes a checkpoint, and when
// the same model is loaded again from the OPFS cache. Run by scripts/bench_hub_memory.sh (which
// serves the app and a hub stand-in); prints one JSON line per dtype.
//
// Environment: E2E_URL (the app), HUB_BASE (the stand-in's address), HUB_REPO, DTYPES
// (comma-separated, default q8_0,q4_0).
import { chromium } from 'playwright-core';

const BASE = process.env.E2E_URL;
const HUB_BASE = process.env.HUB_BASE;
const REPO = process.env.HUB_REPO;
const DTYPES = (process.env.DTYPES ?? 'q8_0,q4_0').split(',');
if (!BASE || !HUB_BASE || !REPO) {
  throw new Error('E2E_URL, HUB_BASE and HUB_REPO must be set: run scripts/bench_hub_memory.sh');
}
const HOUR = 3_600_000;

/** The size of the worker's WebAssembly.Memory (it never shrinks: this is its peak). */
async function wasmMemory(page) {
  const [worker] = page.workers();
  if (!worker) throw new Error('no model worker');
  return worker.evaluate(() => wasm_bindgen.initSync().memory.buffer.byteLength);
}

/**
 * Loads `repo` at `dtype` through the hub loader; returns seconds, the wasm memory at the end,
 * and the last one sampled (every 200 ms, between two range requests) while quantizing.
 */
async function hubLoad(page, dtype) {
  await page.goto(BASE);
  await page.locator('[data-testid="model-sources"]').evaluate((d) => (d.open = true));
  await page.locator('[data-testid="hub-base"]').fill(HUB_BASE);
  await page.locator('[data-testid="hub-repo"]').fill(REPO);
  await page.locator('[data-testid="hub-dtype"]').selectOption(dtype);
  const started = Date.now();
  await page.locator('[data-testid="hub-load"]').click();
  let quantizingBytes = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const phase = await page.locator('[data-testid="model-progress-text"]').innerText().catch(() => '');
      if (phase.startsWith('Downloading and quantizing')) {
        quantizingBytes = await wasmMemory(page).catch(() => quantizingBytes);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  })();
  await page.waitForFunction(
    () => {
      const error = document.querySelector('[data-testid="model-error"]');
      if (error && !error.hidden && error.textContent.trim()) throw new Error(error.textContent);
      return /\bready\b/i.test(document.querySelector('[data-testid="model-status"]')?.textContent ?? '');
    },
    null,
    { timeout: HOUR, polling: 500 },
  );
  const seconds = (Date.now() - started) / 1000;
  sampling = false;
  await sampler;
  const status = await page.locator('[data-testid="model-status"]').innerText();
  return { seconds, wasmBytes: await wasmMemory(page), quantizingBytes, status };
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  for (const dtype of DTYPES) {
    // A fresh profile per dtype: an empty cache, so the first load quantizes.
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on('console', (msg) => msg.type() === 'error' && console.error(`console: ${msg.text()}`));
    const quantized = await hubLoad(page, dtype);
    // The same source again in a new page and worker: loaded from the cache.
    await page.close();
    const again = await context.newPage();
    const cached = await hubLoad(again, dtype);
    const fileBytes = await again.evaluate(async (name) => {
      const root = await navigator.storage.getDirectory();
      return (await (await root.getFileHandle(name)).getFile()).size;
    }, `${REPO.split('/').pop()}-${dtype}.gguf`);
    const mb = (b) => Math.round(b / 1e6);
    console.log(
      JSON.stringify({
        dtype,
        gguf_mb: mb(fileBytes),
        quantize_s: Math.round(quantized.seconds * 10) / 10,
        quantize_wasm_mb: mb(quantized.wasmBytes),
        while_quantizing_wasm_mb: mb(quantized.quantizingBytes),
        cached_load_s: Math.round(cached.seconds * 10) / 10,
        cached_wasm_mb: mb(cached.wasmBytes),
        status: cached.status,
      }),
    );
    await context.close();
  }
} finally {
  await browser.close();
}
