// End-to-end tests of the Hugging Face hub loader in headless Chromium and Firefox ESR. Run by
// tests/e2e/run.sh, which writes a tiny random checkpoint into the models directory
// (models/hub/test/bloom-tiny/resolve/main/{config.json,tokenizer.json,model.safetensors}) and
// passes E2E_HUB_REFERENCES: a directory with the q8_0 and q4_0 files `storywriter quantize`
// made natively of the same checkpoint (bloom-tiny-q8_0.gguf, …). The page quantizes in its
// worker and must write the very same bytes into its cache. The hub is hub_standin.mjs's, which
// answers as huggingface.co does (redirects to a content server of another origin, CORS, ETag,
// ranges) and plays the faults of the tests below (429, a connection cut part way, no
// Accept-Ranges, a server that keeps failing).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startHubStandIn } from './hub_standin.mjs';
import {
  byTestId,
  candidatesReady,
  chromiumOnly,
  explainedCardTexts,
  launchBrowser,
  modelErrorShown,
  watch,
} from './lib.mjs';

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
/** The checkpoint's files as `storywriter serve` serves them, on the page's own origin: the tests
 * that answer through `route` use this address. */
const SERVED_HUB = new URL('models/hub', BASE).href;
const REPO = 'test/bloom-tiny';
const HUB_FILES = join(MODELS, 'hub', REPO, 'resolve', 'main');
/** The stand-in hub and its address (started before the tests). */
let standIn;
let HUB;
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
async function startHubLoad(target, repo, dtype = 'q8_0', hub = HUB) {
  await target.goto(BASE);
  await waitForModel(target);
  await target.locator(byTestId('model-sources')).evaluate((details) => (details.open = true));
  await target.locator(byTestId('hub-base')).fill(hub);
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
  standIn = await startHubStandIn(HUB_FILES, [REPO]);
  HUB = standIn.hub;
  browser = await launchBrowser();
  // A fresh profile: an empty OPFS cache, so the hub loader has to quantize.
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  context.setDefaultTimeout(SLOW);
  page = await context.newPage();
  watch(page, problems);
});

after(async () => {
  if (page) await page.screenshot({ path: join(OUT, 'hub.png'), fullPage: true }).catch(() => {});
  await browser?.close();
  standIn?.close();
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

  // As on huggingface.co: config.json from the hub itself, the large files redirected to the
  // content server (another origin than the hub's and the page's), which sent the ranges.
  const seen = (server, file, status) =>
    standIn.requests.filter((r) => r.server === server && r.file === file && r.status === status);
  assert.notEqual(new URL(standIn.cdn).origin, new URL(HUB).origin);
  assert.notEqual(new URL(standIn.cdn).origin, new URL(BASE).origin);
  assert.equal(seen('hub', 'config.json', 200).length, 1);
  assert.equal(seen('hub', 'tokenizer.json', 302).length, 1);
  assert.equal(seen('cdn', 'tokenizer.json', 200).length, 1);
  const ranges = seen('cdn', 'model.safetensors', 206);
  assert.ok(ranges.length > 2, `ranges read: ${ranges.length}`);
  assert.equal(seen('hub', 'model.safetensors', 302).length, ranges.length);
  assert.deepEqual(standIn.requests.filter((r) => ![200, 206, 302].includes(r.status)), []);
  hubLoaded = true;
});

test('the quantized hub model writes a round of three candidates', { timeout: TEST_TIMEOUT }, async (t) => {
  if (!hubLoaded) return t.skip('the hub model did not load');
  await page.locator(byTestId('prompt')).fill('The lighthouse keeper');
  await page.locator(byTestId('write')).click();
  await candidatesReady(page, SLOW);
  await explainedCardTexts(page);
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

/** Starts the hub loader on `repo` of `hub` in a new profile (after `setUp(tab)`); returns
 * model-error. */
async function hubError(repo, setUp = async () => {}, hub = HUB) {
  // Without the service worker: requests it forwards would bypass `tab.route`.
  const errorContext = await browser.newContext({ serviceWorkers: 'block' });
  errorContext.setDefaultTimeout(SLOW);
  const tab = await errorContext.newPage();
  const tabProblems = [];
  watch(tab, tabProblems);
  try {
    await setUp(tab);
    await startHubLoad(tab, repo, 'q8_0', hub);
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
  // The hub answers 401 (RepoNotFound) to an anonymous request for a repository it does not
  // show, whether missing, private or gated.
  const message = await hubError('test/no-such-model');
  console.log(`model-error (401): ${message}`);
  assert.match(message, /no-such-model\/resolve\/main\/config\.json: the server answered 401/);
  assert.match(message, /not there, or it is private or gated/);
  assert.match(message, /check the repository name/);
  assert.match(message, /What to do: check the hub address/);
});

test('a server without range requests gives a clear error', { timeout: TEST_TIMEOUT }, async () => {
  // The stand-in's files under another repository name, answered whole (200) whatever the
  // Range header asks, as a plain static server without range support would.
  const message = await hubError(
    'norange/tiny-norange',
    (tab) =>
      tab.route(`${SERVED_HUB}/norange/tiny-norange/resolve/main/*`, (route) => {
        const file = new URL(route.request().url()).pathname.split('/').pop();
        return route.fulfill({ status: 200, body: readFileSync(join(HUB_FILES, file)) });
      }),
    SERVED_HUB,
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
  const tiny = readFileSync(join(HUB_FILES, 'model.safetensors'));
  const header = JSON.parse(tiny.subarray(8, 8 + Number(tiny.readBigUInt64LE(0))).toString());
  const config = JSON.parse(readFileSync(join(HUB_FILES, 'config.json')));
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
    tab.route(`${SERVED_HUB}/big/bloom-7b1/resolve/main/*`, (route) => {
      const file = new URL(route.request().url()).pathname.split('/').pop();
      if (file === 'config.json') return route.fulfill({ status: 200, body: JSON.stringify(config) });
      if (file === 'tokenizer.json') {
        return route.fulfill({ status: 200, body: readFileSync(join(HUB_FILES, file)) });
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
  SERVED_HUB);
  console.log(`model-error (too large): ${message}`);
  assert.match(message, /big\/bloom-7b1 quantized to q8_0 is too large for the browser/);
  // The q8_0 file's size, the keys and values of 2048 positions, and the limit, named.
  assert.match(message, /the model file is 7\.\d\d GB/);
  assert.match(message, /1\.01 GB for the keys and values of a full 2048-token story/);
  assert.match(message, /more than the 4\.29 GB a WebAssembly page can address/);
  // Only the header was read: its length, then the header itself.
  assert.deepEqual(ranges, [[0, 7], [8, bytes.length - 1]]);
});

/**
 * Loads REPO from the stand-in in a new profile while it plays `fault` (see hub_standin.mjs),
 * its content server sending `Accept-Ranges` or not; checks that the cached file is still the
 * one of `storywriter quantize`. Returns the stand-in's requests of this load.
 */
async function hubLoadsDespite(fault, { acceptRanges = true } = {}) {
  const first = standIn.requests.length;
  standIn.play(fault, { acceptRanges });
  const faultContext = await browser.newContext();
  faultContext.setDefaultTimeout(SLOW);
  const tab = await faultContext.newPage();
  const tabProblems = [];
  watch(tab, tabProblems);
  try {
    await startHubLoad(tab, REPO);
    await waitForModel(tab, CACHE_NAME);
    assert.deepEqual(await cachedDigest(tab, CACHE_NAME), referenceDigest(CACHE_NAME));
    return standIn.requests.slice(first);
  } finally {
    standIn.play(null);
    // The browser logs the failed requests; they are shown, not asserted.
    if (tabProblems.length) console.log(`messages during the load:\n  ${tabProblems.join('\n  ')}`);
    await faultContext.close();
  }
}

/** `bytes=a-b` as [a, b]. */
const rangeOf = (header) => (/^bytes=(\d+)-(\d+)$/.exec(header ?? '') ?? []).slice(1).map(Number);

test('a content server that does not send Accept-Ranges is read by ranges all the same', { timeout: TEST_TIMEOUT }, async () => {
  const requests = await hubLoadsDespite(null, { acceptRanges: false });
  assert.ok(requests.filter((r) => r.server === 'cdn' && r.status === 206).length > 2);
});

test('a 429 with Retry-After is waited out, then the same request is made again', { timeout: TEST_TIMEOUT }, async () => {
  // The hub's third request for model.safetensors (the first tensor's range).
  const requests = await hubLoadsDespite(({ server, file, count }) =>
    server === 'hub' && file === 'model.safetensors' && count === 3
      ? { status: 429, headers: { 'Retry-After': '1' } }
      : undefined,
  );
  const asked = requests.filter((r) => r.server === 'hub' && r.file === 'model.safetensors');
  const limited = asked.findIndex((r) => r.status === 429);
  assert.ok(limited >= 0, 'no 429 was answered');
  const [refused, again] = asked.slice(limited, limited + 2);
  assert.equal(again.range, refused.range);
  assert.equal(again.status, 302);
  assert.ok(again.at - refused.at >= 1000, `tried again after ${again.at - refused.at} ms, not the 1 s asked`);
});

test('a connection cut in the middle of a tensor is resumed from the byte where it stopped', { timeout: TEST_TIMEOUT }, async () => {
  let cut = false;
  const requests = await hubLoadsDespite(({ server, file, range }) => {
    const [first, last] = rangeOf(range);
    if (cut || server !== 'cdn' || file !== 'model.safetensors' || !(last - first > 100_000)) return undefined;
    cut = true;
    return { cutAfter: Math.floor((last - first + 1) / 3) };
  });
  const read = requests.filter((r) => r.server === 'cdn' && r.file === 'model.safetensors');
  const at = read.findIndex((r) => r.sent < rangeOf(r.range)[1] - rangeOf(r.range)[0] + 1);
  assert.ok(at >= 0, 'no answer was cut');
  const [first, last] = rangeOf(read[at].range);
  const later = read.slice(at + 1).map((r) => rangeOf(r.range));
  console.log(`cut after ${read[at].sent} bytes of ${first}-${last}; then ${read.slice(at + 1, at + 3).map((r) => r.range)}`);
  // Resumed after the bytes the page had (what the server sent, or less when the connection
  // ended before all of it reached the page), never from the piece's start again.
  assert.ok(later[0][0] > first && later[0][0] <= first + read[at].sent, 'the piece was not resumed where it stopped');
  assert.ok(later.some(([, end]) => end === last), 'the rest of the piece was never asked for');
  assert.ok(!later.some(([start]) => start === first), 'the piece was read again from its start');
});

/** The model-error of a load of REPO from the stand-in while it plays `fault`. */
async function hubErrorDuring(fault) {
  standIn.play(fault);
  try {
    return await hubError(REPO);
  } finally {
    standIn.play(null);
  }
}

test('a server that keeps failing is given up after 5 attempts, with the URL and the status', { timeout: TEST_TIMEOUT }, async () => {
  const first = standIn.requests.length;
  const message = await hubErrorDuring(({ server, file, range }) =>
    server === 'cdn' && file === 'model.safetensors' && rangeOf(range)[0] > 8
      ? { status: 503, headers: { 'Retry-After': '0' } }
      : undefined);
  console.log(`model-error (503): ${message}`);
  const failed = standIn.requests.slice(first).filter((r) => r.status === 503);
  assert.equal(failed.length, 5);
  assert.ok(failed.every((r) => r.range === failed[0].range));
  assert.match(message, new RegExp(`${REPO}/resolve/main/model\\.safetensors \\(redirected to ${standIn.cdn}/repos/`));
  assert.match(message, /the server answered 503 Service Unavailable \(5 attempts in a row failed\): try again later/);
});

test('a 429 asking to wait an hour is reported at once, not waited for', { timeout: TEST_TIMEOUT }, async () => {
  const message = await hubErrorDuring(({ file }) =>
    file === 'config.json' ? { status: 429, headers: { 'Retry-After': '3600' } } : undefined);
  console.log(`model-error (429): ${message}`);
  assert.match(message, /config\.json: the server answered 429 Too Many Requests, and asks to wait 60 min before trying again: try again later/);
});

test('the storage full while the model is written: a clear error, nothing left in the cache', { timeout: TEST_TIMEOUT, skip: chromiumOnly('the DevTools protocol') }, async () => {
  // Room for the demo model (1.8 MB) and the stories, not for a second model: the quota set
  // before the page opens its storage (Chromium applies it to storage opened after it is set).
  const message = await hubError(REPO, async (tab) => {
    const cdp = await tab.context().newCDPSession(tab);
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: new URL(BASE).origin, quotaSize: 3_000_000 });
  });
  console.log(`model-error (storage full): ${message}`);
  assert.match(message, /storage for this page is full/);
});
