// End-to-end tests of cross-origin isolation and what it decides: the service worker (beside a
// running pool; isolating a static host's page, through a relay that drops the server's
// isolation headers), the embedded view in another site's iframe, threads, and the simd128
// build for a browser without relaxed SIMD. Each test opens its own browser context. Run by
// tests/e2e/run.sh, which serves the built app and a test model directory and passes E2E_URL,
// E2E_MODELS and E2E_OUT (screenshots).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  byTestId,
  candidatesReady,
  cardTexts,
  defaultThreads,
  IN_FIREFOX,
  freshPage,
  launchBrowser,
  modelReady,
  serviceWorkerActive,
  showSettings,
  storyIs,
  writeEmbedder,
} from './lib.mjs';
import { startStaticHost } from './static_host.mjs';

const BASE = process.env.E2E_URL;
const MODELS = process.env.E2E_MODELS;
const OUT = process.env.E2E_OUT ?? 'target/e2e';
if (!BASE || !MODELS) {
  throw new Error('E2E_URL and E2E_MODELS must be set: run tests/e2e/run.sh');
}
mkdirSync(OUT, { recursive: true });

const SLOW = 120_000;
const TEST_TIMEOUT = 5 * SLOW;

let browser;
/** The app in a page of its own (not embedded), with the model loaded. */
let page;
/** Console errors, page errors and worker errors of that page, asserted empty at the end. */
const problems = [];

const waitForModel = (target = page) => modelReady(target, SLOW);
const waitForCandidates = (target = page) => candidatesReady(target, SLOW);
const candidateTexts = (target = page) => cardTexts(target);
const waitForStory = (expected, target = page) => storyIs(target, expected, SLOW);
const openSettings = (target = page) => showSettings(target, true);
const closeSettings = (target = page) => showSettings(target, false);

before(async () => {
  browser = await launchBrowser();
  ({ page } = await freshPage(browser, SLOW, problems));
  await page.goto(BASE);
  await waitForModel();
});

after(async () => {
  await browser?.close();
});

test('the service worker activates beside a running threaded build, and so does a new version of it', {
  timeout: TEST_TIMEOUT,
}, async () => {
  // It claimed the open page once (`clients.claim()`). In Firefox that waits on every worker of
  // the page, and rayon's pool workers never return to their event loop: the service worker
  // stayed "activating" for good, and every request of the page waited on it (the pool's next
  // `new Worker` hung, the model's download failed after a minute). Now it controls the next
  // visit, and a new version takes over the pages it controls (`skipWaiting`).
  const { context: isolated, page: tab, problems: tabProblems } = await freshPage(browser, SLOW);
  try {
    await tab.goto(BASE);
    const threads = await defaultThreads(tab);
    await waitForModel(tab);
    const first = await roundThreads(tab, 'Service worker one');
    assert.equal(first.threads, threads, first.line);
    await serviceWorkerActive(tab, (url) => url.endsWith('/sw.js'));
    assert.equal(await tab.evaluate(() => navigator.serviceWorker.controller), null);
    await tab.reload();
    await waitForModel(tab);
    assert.equal(await tab.evaluate(() => navigator.serviceWorker.controller?.state), 'activated');
    const controlled = await roundThreads(tab, 'Service worker two');
    assert.equal(controlled.threads, threads, controlled.line);
    // A new version (another script URL), installed and activated beside the running pool; the
    // page's requests still answered.
    await tab.evaluate(() => navigator.serviceWorker.register('./sw.js?version=2'));
    await serviceWorkerActive(tab, (url) => url.endsWith('/sw.js?version=2'));
    assert.equal(await tab.evaluate(() => fetch('models/index.json').then((r) => r.status)), 200);
    await tab.reload();
    await waitForModel(tab);
    const updated = await roundThreads(tab, 'Service worker three');
    assert.equal(updated.threads, threads, updated.line);
  } finally {
    await isolated.close();
  }
  assert.deepEqual(tabProblems, []);
});

test('a static host without isolation headers: one thread on the first visit, the threaded build from the next (the service worker isolates the page)', {
  timeout: TEST_TIMEOUT,
}, async () => {
  const host = await startStaticHost(BASE);
  const { context: isolated, page: tab, problems: tabProblems } = await freshPage(browser, SLOW);
  try {
    await tab.goto(host.url);
    assert.equal(await tab.evaluate(() => crossOriginIsolated), false, 'the relay drops COOP/COEP');
    const threads = await defaultThreads(tab);
    await waitForModel(tab);
    const first = await roundThreads(tab, 'Static host one');
    assert.equal(first.threads, 1, first.line);
    assert.match(first.line, /not cross-origin isolated/);
    await serviceWorkerActive(tab, (url) => url.endsWith('/sw.js'));
    await tab.reload();
    assert.equal(await tab.evaluate(() => crossOriginIsolated), true, 'the service worker adds COOP/COEP');
    await waitForModel(tab);
    const next = await roundThreads(tab, 'Static host two');
    assert.equal(next.threads, threads, next.line);
  } finally {
    await isolated.close();
    await host.close();
  }
  assert.deepEqual(tabProblems, []);
});

/**
 * Clicks element `id` of `frame`: as a user would, or in Firefox by script in the frame (its
 * `click()`, so the app's own handlers run), since playwright's clicks over WebDriver BiDi miss
 * the elements of a cross-site (out-of-process) frame.
 */
async function clickIn(frame, id) {
  if (IN_FIREFOX) await frame.locator(byTestId(id)).evaluate((element) => element.click());
  else await frame.locator(byTestId(id)).click();
}

/**
 * Fills field `id` of `frame` with `text` and clicks button `button` there ([`clickIn`]); in
 * Firefox the field's value is set by script and its `input` event sent, as keys miss the
 * frame there too.
 */
async function fillAndClickIn(frame, id, text, button) {
  if (IN_FIREFOX) {
    await frame.locator(byTestId(id)).evaluate((field, value) => {
      field.value = value;
      field.dispatchEvent(new Event('input', { bubbles: true }));
    }, text);
  } else {
    await frame.locator(byTestId(id)).fill(text);
  }
  await clickIn(frame, button);
}

test('?embed=1 gives the compact view, and a round can be written in an iframe on another site', {
  timeout: TEST_TIMEOUT,
}, async () => {
  // The full page shows what the compact view hides.
  const parts = {
    hidden: ['.stories', 'settings-toggle', 'model-sources', '.branches', 'export', '.keys'],
    shown: ['prompt', 'write', 'stop', 'regenerate', 'undo', 'story', 'model-status', 'candidate-1', 'candidate-2', 'candidate-3'],
  };
  const visibility = (target) =>
    target.evaluate((names) => {
      const visible = (name) => {
        const element = document.querySelector(name.startsWith('.') ? name : `[data-testid="${name}"]`);
        return !!element && element.getClientRects().length > 0 && getComputedStyle(element).visibility !== 'hidden';
      };
      return Object.fromEntries(names.map((name) => [name, visible(name)]));
    }, [...parts.hidden, ...parts.shown]);
  const all = (value) => Object.fromEntries([...parts.hidden, ...parts.shown].map((name) => [name, value]));
  assert.deepEqual(await visibility(page), all(true));

  // The README's snippet on a page of another site.
  const embedder = writeEmbedder(BASE, MODELS, 'embedder.html', {
    before: '<h1>A page embedding the app</h1>',
    iframe: 'width="100%" height="600" style="max-width: 960px; border: 0" loading="lazy"',
  });
  const { context: isolated, page: tab, problems: tabProblems } = await freshPage(browser, SLOW);
  try {
    await tab.goto(embedder);
    const frame = await (await tab.waitForSelector('iframe')).contentFrame();
    await waitForModel(frame);
    assert.equal(await frame.evaluate(() => document.body.classList.contains('embed')), true);
    const shown = await visibility(frame);
    assert.deepEqual(shown, {
      ...Object.fromEntries(parts.hidden.map((name) => [name, false])),
      ...Object.fromEntries(parts.shown.map((name) => [name, true])),
    });
    await fillAndClickIn(frame, 'prompt', 'Inside a frame', 'write');
    await waitForCandidates(frame);
    const [, second] = await candidateTexts(frame);
    await clickIn(frame, 'candidate-2');
    await waitForStory(`Inside a frame${second}`, frame);
    const stats = frame.locator(byTestId('round-stats'));
    const line = await stats.textContent();
    assert.equal(await stats.getAttribute('data-simd'), 'relaxed', line);
    if (IN_FIREFOX) {
      // Firefox isolates a cross-site frame of an isolated page: the threaded build runs there.
      const threads = Number(await stats.getAttribute('data-threads'));
      assert.equal(await frame.evaluate(() => crossOriginIsolated), true);
      assert.equal(threads, await defaultThreads(frame), line);
    } else {
      // The frame of a page that is not isolated cannot share memory: one thread, and it says why.
      assert.equal(await stats.getAttribute('data-threads'), '1');
      assert.match(line, /1 thread \(single-threaded: the page is not cross-origin isolated/);
    }
    // A browser that gives a cross-site frame no storage says the story is not saved.
    const note = await frame.locator(byTestId('notice')).textContent();
    if (note) console.log(`embedded notice: ${note}`);
    await tab.screenshot({ path: join(OUT, 'embed.png'), fullPage: true });
  } finally {
    await isolated.close();
  }
  assert.deepEqual(tabProblems, []);
});

/** Writes a round in `tab` and returns the round-stats line and its `data-threads`. */
async function roundThreads(tab, prompt) {
  await tab.locator(byTestId('prompt')).fill(prompt);
  await tab.locator(byTestId('write')).click();
  await waitForCandidates(tab);
  const stats = tab.locator(byTestId('round-stats'));
  return {
    line: await stats.textContent(),
    threads: Number(await stats.getAttribute('data-threads')),
    simd: await stats.getAttribute('data-simd'),
  };
}

test('threads: the isolated page runs the threaded build, the Threads setting picks the count, too many are capped', {
  timeout: TEST_TIMEOUT,
}, async () => {
  const { context: isolated, page: tab, problems: tabProblems } = await freshPage(browser, SLOW);
  try {
    await tab.goto(BASE);
    assert.equal(await tab.evaluate(() => crossOriginIsolated), true, 'storywriter serve sends COOP/COEP');
    // rayon's pool starts its workers from their script's own address (scripts/lib.sh,
    // start_pool_from_own_url): started from a blob: URL, Firefox now and then never starts one.
    const poolStarter = await tab.evaluate(async () => {
      const glue = await (await fetch('./threads/worker.js')).text();
      const path = glue.match(/from '(\.\/snippets\/wasm-bindgen-rayon-[^']+)'/)[1];
      return (await fetch(new URL(path, new URL('./threads/', location.href)))).text();
    });
    assert.match(poolStarter, /new Worker\(import\.meta\.url, \{/);
    assert.doesNotMatch(poolStarter, /new Worker\(url/);
    const cores = await tab.evaluate(() => navigator.hardwareConcurrency);
    const expected = await defaultThreads(tab);
    await waitForModel(tab);
    const first = await roundThreads(tab, 'Threads one');
    assert.equal(first.threads, expected, first.line);
    assert.match(first.line, new RegExp(`· ${expected} threads?$`));
    assert.equal(first.simd, 'relaxed', first.line);
    // One thread: the worker restarts with the single-threaded build (its relaxed-SIMD twin, as
    // this browser has relaxed SIMD) and reloads the model.
    await openSettings(tab);
    await tab.locator(byTestId('threads')).selectOption('1');
    await closeSettings(tab);
    await waitForModel(tab);
    const single = await roundThreads(tab, 'Threads two');
    assert.equal(single.threads, 1, single.line);
    assert.equal(single.simd, 'relaxed', single.line);
    assert.match(single.line, /· 1 thread$/);
    // More than the machine has (a stored choice from another machine): capped, and said so.
    await tab.evaluate(() => localStorage.setItem('storywriter.threads', '64'));
    await tab.reload();
    await waitForModel(tab);
    const many = await roundThreads(tab, 'Threads three');
    assert.equal(many.threads, cores, many.line);
    assert.match(many.line, new RegExp(`\\(64 threads asked, this machine has ${cores}\\)$`));
  } finally {
    await isolated.close();
  }
  assert.deepEqual(tabProblems, []);
});

test('a browser without relaxed SIMD runs the simd128 single-threaded build and says why', {
  timeout: TEST_TIMEOUT,
}, async () => {
  const { context: isolated, page: tab, problems: tabProblems } = await freshPage(browser, SLOW);
  try {
    // Such a browser does not validate a module using relaxed SIMD (the page's probe: a module
    // of 36 bytes ending in i8x16.relaxed_swizzle); every other module validates as before.
    await tab.addInitScript(() => {
      const validate = WebAssembly.validate;
      WebAssembly.validate = (bytes) =>
        bytes.byteLength === 36 && new Uint8Array(bytes)[32] === 0xfd ? false : validate(bytes);
    });
    await tab.goto(BASE);
    await waitForModel(tab);
    const round = await roundThreads(tab, 'Without relaxed SIMD');
    assert.equal(round.threads, 1, round.line);
    assert.equal(round.simd, 'simd128', round.line);
    assert.match(round.line, /· 1 thread \(single-threaded: this browser has no relaxed SIMD\)$/);
  } finally {
    await isolated.close();
  }
  assert.deepEqual(tabProblems, []);
});
test('no console errors, page errors or worker errors on the page of its own', () => {
  assert.deepEqual(problems, []);
});
