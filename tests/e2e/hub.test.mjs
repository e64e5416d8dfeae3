// End-to-end tests of the Hugging Face hub loader in headless Chromium. Run by
// tests/e2e/run.sh, which serves a stand-in for the hub inside the models directory
// ({E2E_URL}models/hub/test/bloom-tiny/resolve/main/{config.json,tokenizer.json,model.safetensors},
// a tiny random checkpoint) and passes E2E_HUB_REFERENCES: a directory with the q8_0 and q4_0
// files `storywriter quantize` made natively of the same checkpoint (bloom-tiny-q8_0.gguf, …).
// The page quantizes in its worker and must write the very same bytes into its cache.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { byTestId, launchChromium, modelErrorShown, watch } from './lib.mjs';

const BASE = process.env.E2E_URL;
const REFERENCES = process.env.E2E_HUB_REFERENCES;
const MODELS = process.env.E2E_MODELS;
const OUT = process.env.E2E_OUT ?? 'target/e2e';
if (!BASE || !REFERENCES || !MODELS) {
  throw new Error('E2E_URL, E2E_MODELS and E2E_HUB_REFERENCES must be set: run tests/e2e/run.sh');
}
mkdirSync(OUT, { recursive: true });

const SLOW = 120_000;
const TEST_TIMEOUT = 5 * SLOW;
const HUB = new URL('models/hub', BASE).href;
const REPO = 'test/bloom-tiny';
const CACHE_NAME = 'bloom-tiny-q8_0.gguf';

/** The cached file `name` of the page's origin: its size and SHA-256. */
async function cachedDigest(target, name) {
  return target.evaluate(async (name) => {
    const root = await navigator.storage.getDirectory();
    const file = await (await root.getFileHandle(name)).getFile();
    const digest = await crypto.subtle.digest('SHA-256', await file.arrayBuffer());
    return { bytes: file.size, sha256: [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('') };
  }, name);
}

/** The size and SHA-256 of the file `storywriter quantize` made, named as the page caches it. */
function referenceDigest(name) {
  const reference = readFileSync(join(REFERENCES, name));
  return { bytes: reference.length, sha256: createHash('sha256').update(reference).digest('hex') };
}

let browser;
let context;
let page;
const problems = [];

/** Waits until model-status says `ready` and names `name` (fails early on a load error). */
async function waitForModel(target, name = '') {
  await target.waitForFunction(
    (name) => {
      const error = document.querySelector('[data-testid="model-error"]');
      if (error && !error.hidden && error.textContent.trim()) {
        throw new Error(`model-error: ${error.textContent}`);
      }
      const status = document.querySelector('[data-testid="model-status"]')?.textContent ?? '';
      return /\bready\b/i.test(status) && status.includes(name);
    },
    name,
    { timeout: SLOW, polling: 100 },
  );
}

/** Opens the app in `target`, waits for the demo model, and starts the hub loader on `repo`. */
async function startHubLoad(target, repo, dtype = 'q8_0') {
  await target.goto(BASE);
  await waitForModel(target);
  await target.locator(byTestId('model-sources')).evaluate((details) => (details.open = true));
  await target.locator(byTestId('hub-base')).fill(HUB);
  await target.locator(byTestId('hub-repo')).fill(repo);
  await target.locator(byTestId('hub-dtype')).selectOption(dtype);
  // Every text the progress line shows, kept from the first change on.
  await target.evaluate(() => {
    window.__progress = [];
    const line = document.querySelector('[data-testid="model-progress-text"]');
    new MutationObserver(() => window.__progress.push(line.textContent)).observe(line, {
      childList: true,
      characterData: true,
      subtree: true,
    });
  });
  await target.locator(byTestId('hub-load')).click();
}

/** The OPFS cache of the page's origin: file name → size. */
async function cachedFiles(target) {
  return target.evaluate(async () => {
    const files = {};
    for await (const [name, handle] of await navigator.storage.getDirectory()) {
      if (handle.kind === 'file') files[name] = (await handle.getFile()).size;
    }
    return files;
  });
}

before(async () => {
  browser = await launchChromium();
  // A fresh profile: an empty OPFS cache, so the hub loader has to quantize.
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  context.setDefaultTimeout(SLOW);
  page = await context.newPage();
  watch(page, problems);
});

after(async () => {
  if (page) await page.screenshot({ path: join(OUT, 'hub.png'), fullPage: true }).catch(() => {});
  await browser?.close();
});

let hubLoaded = false;

test('the hub loader quantizes to the very file `storywriter quantize` writes', { timeout: TEST_TIMEOUT }, async () => {
  await startHubLoad(page, REPO);
  await waitForModel(page, CACHE_NAME);
  assert.match(await page.locator(byTestId('model-status')).innerText(), /q8_0/);
  assert.doesNotMatch(await page.locator(byTestId('model-status')).innerText(), /from the cache/);

  const progress = await page.evaluate(() => window.__progress);
  console.log(`hub progress: ${progress.filter(Boolean).join(' | ')}`);
  assert.ok(
    progress.some((t) => /Downloading and quantizing \d+% · [\d.]+ [kMG]?B of [\d.]+ [kMG]?B/.test(t)),
    `the progress line never showed bytes: ${JSON.stringify(progress)}`,
  );

  // Written as `.partial` and renamed when complete.
  const files = await cachedFiles(page);
  assert.ok(CACHE_NAME in files, `cache: ${JSON.stringify(files)}`);
  assert.ok(!Object.keys(files).some((name) => name.endsWith('.partial')), `cache: ${JSON.stringify(files)}`);
  assert.deepEqual(await cachedDigest(page, CACHE_NAME), referenceDigest(CACHE_NAME));
  hubLoaded = true;
});

test('the quantized hub model writes a round of three candidates', { timeout: TEST_TIMEOUT }, async (t) => {
  if (!hubLoaded) return t.skip('the hub model did not load');
  await page.locator(byTestId('prompt')).fill('The lighthouse keeper');
  await page.locator(byTestId('write')).click();
  await page.waitForFunction(
    () => {
      const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
      const idle = $('stop')?.disabled !== false && $('write')?.disabled === false;
      return idle && [1, 2, 3].every((i) => {
        const card = $(`candidate-${i}`);
        return (card?.querySelector('.text') ?? card)?.textContent.trim().length > 0;
      });
    },
    null,
    { timeout: SLOW, polling: 100 },
  );
});

test('the hub model loads from the cache the next time', { timeout: TEST_TIMEOUT }, async (t) => {
  if (!hubLoaded) return t.skip('the hub model did not load');
  const again = await context.newPage();
  watch(again, problems);
  try {
    // Nothing may be fetched from the hub this time.
    const hubRequests = [];
    again.on('request', (request) => request.url().startsWith(HUB) && hubRequests.push(request.url()));
    await startHubLoad(again, REPO);
    await waitForModel(again, CACHE_NAME);
    assert.match(await again.locator(byTestId('model-status')).innerText(), /from the cache/);
    assert.deepEqual(hubRequests, []);
  } finally {
    await again.close();
  }
});

test('at q4_0 too (with its separate q4_k output tensor) the file is the one of `storywriter quantize`', { timeout: TEST_TIMEOUT }, async () => {
  const name = 'bloom-tiny-q4_0.gguf';
  const tab = await context.newPage();
  watch(tab, problems);
  try {
    await startHubLoad(tab, REPO, 'q4_0');
    await waitForModel(tab, name);
    assert.deepEqual(await cachedDigest(tab, name), referenceDigest(name));
  } finally {
    await tab.close();
  }
});

test('no console errors, page errors or worker errors', () => {
  assert.deepEqual(problems, []);
});

/** Starts the hub loader on `repo` in a new profile (after `setUp(tab)`); returns model-error. */
async function hubError(repo, setUp = async () => {}) {
  // Without the service worker: requests it forwards would bypass `tab.route`.
  const errorContext = await browser.newContext({ serviceWorkers: 'block' });
  errorContext.setDefaultTimeout(SLOW);
  const tab = await errorContext.newPage();
  const tabProblems = [];
  watch(tab, tabProblems);
  try {
    await setUp(tab);
    await startHubLoad(tab, repo);
    await modelErrorShown(tab, SLOW);
    const files = await cachedFiles(tab);
    assert.deepEqual(Object.keys(files), ['demo-tiny-q8_0.gguf'], 'a failed load left files in the cache');
    return await tab.locator(byTestId('model-error')).innerText();
  } finally {
    // Errors are expected here (a 404 is logged by the browser); they are shown, not asserted.
    if (tabProblems.length) console.log(`messages while the hub load failed:\n  ${tabProblems.join('\n  ')}`);
    await errorContext.close();
  }
}

test('a repository that is not there gives a clear error', { timeout: TEST_TIMEOUT }, async () => {
  const message = await hubError('test/no-such-model');
  console.log(`model-error (404): ${message}`);
  assert.match(message, /no-such-model\/resolve\/main\/config\.json/);
  assert.match(message, /not found \(404\)/);
  assert.match(message, /repository name/);
  assert.match(message, /What to do: check the hub address/);
});

test('a server without range requests gives a clear error', { timeout: TEST_TIMEOUT }, async () => {
  // The stand-in's files under another repository name, answered whole (200) whatever the
  // Range header asks, as a plain static server without range support would.
  const message = await hubError('norange/tiny-norange', (tab) =>
    tab.route(`${HUB}/norange/tiny-norange/resolve/main/*`, (route) => {
      const file = new URL(route.request().url()).pathname.split('/').pop();
      return route.fulfill({
        status: 200,
        body: readFileSync(join(MODELS, 'hub', REPO, 'resolve', 'main', file)),
      });
    }),
  );
  console.log(`model-error (no ranges): ${message}`);
  assert.match(message, /model\.safetensors/);
  assert.match(message, /range requests/);
});

/**
 * The stand-in's tiny safetensors header reshaped to bloom-7b1 (30 layers of width 4096, a
 * 250,880-row embedding), with the byte offsets that shape has: only the header, no tensor data.
 */
function bloom7b1Header() {
  const tiny = readFileSync(join(MODELS, 'hub', REPO, 'resolve', 'main', 'model.safetensors'));
  const header = JSON.parse(tiny.subarray(8, 8 + Number(tiny.readBigUInt64LE(0))).toString());
  const config = JSON.parse(readFileSync(join(MODELS, 'hub', REPO, 'resolve', 'main', 'config.json')));
  const [H, V, L] = [4096, 250880, 30];
  const big = { [config.hidden_size]: H, [3 * config.hidden_size]: 3 * H, [4 * config.hidden_size]: 4 * H, [config.vocab_size]: V };
  const tensors = {};
  let offset = 0;
  const add = (name, { dtype, shape }) => {
    const bigShape = shape.map((d) => big[d]);
    const bytes = bigShape.reduce((a, b) => a * b, 4);
    tensors[name] = { dtype, shape: bigShape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  };
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__' || /\.h\.[1-9]/.test(name)) continue;
    if (name.includes('.h.0.')) {
      for (let l = 0; l < L; l++) add(name.replace('.h.0.', `.h.${l}.`), info);
    } else add(name, info);
  }
  const json = Buffer.from(JSON.stringify(tensors));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return { bytes: Buffer.concat([length, json]), config: { ...config, hidden_size: H, n_head: 32, n_layer: L, vocab_size: V } };
}

test('a model too large for WebAssembly memory is refused before any tensor is downloaded', { timeout: TEST_TIMEOUT }, async () => {
  const { bytes, config } = bloom7b1Header();
  const ranges = [];
  const message = await hubError('big/bloom-7b1', (tab) =>
    tab.route(`${HUB}/big/bloom-7b1/resolve/main/*`, (route) => {
      const file = new URL(route.request().url()).pathname.split('/').pop();
      if (file === 'config.json') return route.fulfill({ status: 200, body: JSON.stringify(config) });
      if (file === 'tokenizer.json') {
        return route.fulfill({ status: 200, body: readFileSync(join(MODELS, 'hub', REPO, 'resolve', 'main', file)) });
      }
      // model.safetensors: its header, by range; a range past it is tensor data.
      const [, start, end] = /bytes=(\d+)-(\d+)/.exec(route.request().headers().range ?? '') ?? [];
      ranges.push([Number(start), Number(end)]);
      if (start === undefined || Number(end) >= bytes.length) return route.fulfill({ status: 500, body: 'tensor data asked for' });
      return route.fulfill({
        status: 206,
        headers: { 'Content-Range': `bytes ${start}-${end}/${bytes.length + 7_000_000_000}` },
        body: bytes.subarray(Number(start), Number(end) + 1),
      });
    }),
  );
  console.log(`model-error (too large): ${message}`);
  assert.match(message, /big\/bloom-7b1 quantized to q8_0 is too large for the browser/);
  // The q8_0 file's size, the keys and values of 2048 positions, and the limit, named.
  assert.match(message, /the model file is 7\.\d\d GB/);
  assert.match(message, /1\.01 GB for the keys and values of a full 2048-token story/);
  assert.match(message, /more than the 4\.29 GB a WebAssembly page can address/);
  // Only the header was read: its length, then the header itself.
  assert.deepEqual(ranges, [[0, 7], [8, bytes.length - 1]]);
});
