// End-to-end tests of the page as a whole, each on its own (the story session is
// app.test.mjs; cross-origin isolation, threads and the embedded view are isolation.test.mjs):
// the model cache, HTML shown as text, a responsive page while the worker generates, the web
// manifest, offline use (through a proxy that the test switches off), story changes asked while
// one is being saved, and corrupt model files. Run by tests/e2e/run.sh, which serves the built
// app and a test model directory and passes E2E_URL, E2E_MODELS (demo-tiny-q8_0.gguf listed in
// index.json, corrupt.gguf not listed), E2E_OUT (screenshots) and E2E_SERVE_LOG (the server's
// request log).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  byTestId,
  candidatesReady,
  cardTexts,
  chromiumOnly,
  defaultThreads,
  IN_FIREFOX,
  freshPage,
  launchBrowser,
  modelErrorShown,
  modelReady,
  pressKeyIn,
  serverRequests as readServerRequests,
  serviceWorkerActive,
  storyIs,
  textMatching,
  watch,
} from './lib.mjs';
import { startOfflineProxy } from './offline_proxy.mjs';

const BASE = process.env.E2E_URL;
const MODELS = process.env.E2E_MODELS;
const OUT = process.env.E2E_OUT ?? 'target/e2e';
const SERVE_LOG = process.env.E2E_SERVE_LOG ?? join(OUT, 'serve.log');
if (!BASE || !MODELS) {
  throw new Error('E2E_URL and E2E_MODELS must be set: run tests/e2e/run.sh');
}
mkdirSync(OUT, { recursive: true });

const SLOW = 120_000;
const TEST_TIMEOUT = 5 * SLOW;

let browser;
let context;
/** A page with the model loaded, shared by the tests that need no context of their own. */
let page;
/** Console errors, page errors and worker errors of that page, asserted empty at the end. */
const problems = [];

const waitForModel = (target = page) => modelReady(target, SLOW);
const waitForCandidates = (target = page) => candidatesReady(target, SLOW);
const candidateTexts = (target = page) => cardTexts(target);
const waitForStory = (expected, target = page) => storyIs(target, expected, SLOW);
const pressKey = (key) => pressKeyIn(page, key);
const text = (id) => page.locator(byTestId(id)).innerText();
/** Requests the server has logged so far. */
const serverRequests = () => readServerRequests(SERVE_LOG);

/** Waits until element `id`'s text matches `pattern`, and returns it. */
const waitForText = (id, pattern, target = page) => textMatching(target, id, pattern, SLOW);

before(async () => {
  browser = await launchBrowser();
  ({ context, page } = await freshPage(browser, SLOW, problems));
  await page.goto(BASE);
  await waitForModel();
});

after(async () => {
  if (page) await page.screenshot({ path: join(OUT, 'page.png'), fullPage: true }).catch(() => {});
  await browser?.close();
});

test('the model is cached in the Origin Private File System: listed with its size, deleted, downloaded again', { timeout: TEST_TIMEOUT }, async () => {
  const name = 'demo-tiny-q8_0.gguf';
  // A second visit reads the model from the cache.
  await page.reload();
  await waitForModel();
  const size = statSync(join(MODELS, name)).size;
  const opfs = () =>
    page.evaluate(async () => {
      const files = {};
      for await (const [file, handle] of (await navigator.storage.getDirectory()).entries()) {
        if (handle.kind === 'file') files[file] = (await handle.getFile()).size;
      }
      return files;
    });
  assert.deepEqual(await opfs(), { [name]: size });
  assert.match(await text('model-status'), /from the cache/);
  await page.locator(byTestId('model-sources')).evaluate((details) => (details.open = true));
  const listed = await waitForText('cached-models', new RegExp(name.replace(/\./g, '\\.')));
  // The size as the page writes it (kB with no decimals, MB with one).
  const human = size >= 1e6 ? `${(size / 1e6).toFixed(1)} MB` : `${(size / 1e3).toFixed(0)} kB`;
  assert.match(listed, new RegExp(`^${name.replace(/\./g, '\\.')} \\(${human}\\) LoadDelete$`));

  await page.locator(byTestId(`delete-cached-${name}`)).click();
  await waitForText('cached-models', /^No cached models yet\.$/);
  assert.deepEqual(await opfs(), {});

  // The next load downloads the file again (the server sees it) and caches it again.
  const seen = serverRequests().length;
  await page.reload();
  await waitForModel();
  assert.doesNotMatch(await text('model-status'), /from the cache/);
  assert.ok(
    serverRequests()
      .slice(seen)
      // 304: the browser's HTTP cache revalidated its copy with the server.
      .some((line) => line.includes(` GET /models/${name} 200`) || line.includes(` GET /models/${name} 304`)),
    'the model was not downloaded again',
  );
  assert.deepEqual(await opfs(), { [name]: size });
  await page.locator(byTestId('model-sources')).evaluate((details) => (details.open = true));
  await waitForText('cached-models', new RegExp(name.replace(/\./g, '\\.')));
  await page.locator(byTestId('model-sources')).evaluate((details) => (details.open = false));
});

test('HTML in the prompt is shown as text', { timeout: TEST_TIMEOUT }, async () => {
  const injected = '<img src=x onerror=window.__xss=1>';
  await waitForModel();
  await page.locator(byTestId('new-story')).click();
  await page.locator(byTestId('prompt')).fill(injected);
  await page.locator(byTestId('write')).click();
  await waitForCandidates();
  await pressKey('1');
  await page.waitForFunction(
    (html) => (document.querySelector('[data-testid="story"]')?.textContent ?? '').startsWith(html),
    injected,
    { timeout: SLOW },
  );
  assert.ok((await page.locator(byTestId('story')).textContent()).startsWith(injected));
  assert.equal(await page.locator(`${byTestId('story')} img`).count(), 0);
  assert.equal(await page.locator('img[src="x"]').count(), 0);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
});

test('Write, Stop and at once Write again: the second round is written, nothing fails', { timeout: TEST_TIMEOUT }, async () => {
  await waitForModel();
  await page.locator(byTestId('new-story')).click();
  await page.locator(byTestId('prompt')).fill('A quick change of mind');
  // In one task of the page: the worker gets the second round while the first one is still
  // running or not yet started (its Stop may even arrive before it begins).
  await page.evaluate(() => {
    const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
    $('write').click();
    $('stop').click();
    $('write').click();
  });
  await waitForCandidates();
  assert.doesNotMatch((await page.locator(byTestId('notice')).textContent()) ?? '', /failed/i);
  // One round recorded and waiting for a choice: the stopped one left nothing.
  const waiting = await page.evaluate(
    () => [1, 2, 3].filter((i) => /press \d/.test(document.querySelector(`[data-testid="candidate-${i}"] .meta`)?.textContent ?? '')).length,
  );
  assert.equal(waiting, 3);
});

test('the page stays responsive while the worker generates', { timeout: TEST_TIMEOUT }, async () => {
  await waitForModel();
  // A long round: 256 new tokens per candidate.
  await page.locator(byTestId('settings-toggle')).click();
  await page.locator(byTestId('override-max-new-tokens')).fill('256');
  await page.locator(byTestId('settings-toggle')).click();
  // Frames are counted from the page itself, only while a round is running: a model computing
  // on the UI thread would starve them (no frame until the round is over). No time limits here
  // (timings belong in benchmarks); the times are printed for the log.
  await page.evaluate(() => {
    const probe = { frames: 0, longestGap: 0, last: 0 };
    window.__probe = probe;
    const stop = document.querySelector('[data-testid="stop"]');
    const tick = (now) => {
      if (stop && !stop.disabled) {
        if (probe.last) probe.longestGap = Math.max(probe.longestGap, now - probe.last);
        probe.frames += 1;
        probe.last = now;
      } else {
        probe.last = 0;
      }
      if (!probe.done) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
  await page.locator(byTestId('write')).click();
  await page.waitForFunction(() => document.querySelector('[data-testid="stop"]')?.disabled === false, null, {
    timeout: SLOW,
  });
  // A click during generation is handled while the round still runs: the settings panel opens
  // and the round is still going when it has.
  const clickStarted = Date.now();
  await page.locator(byTestId('settings-toggle')).click();
  const openedWhileGenerating = await page.waitForFunction(
    () => {
      if (document.querySelector('[data-testid="settings"]')?.hidden) return undefined;
      return { generating: document.querySelector('[data-testid="stop"]')?.disabled === false };
    },
    null,
    { timeout: SLOW, polling: 'raf' },
  );
  const clickMs = Date.now() - clickStarted;
  const { generating } = await openedWhileGenerating.jsonValue();
  assert.ok(generating, 'the settings panel opened only after the round was over');
  // Ten animation frames while the round runs (a blocked UI thread paints none until it ends).
  const framesWhileGenerating = await page.waitForFunction(
    () => {
      const stop = document.querySelector('[data-testid="stop"]');
      if (window.__probe.frames >= 10) return 'frames';
      return stop?.disabled ? 'round over' : undefined;
    },
    null,
    { timeout: SLOW },
  );
  const outcome = await framesWhileGenerating.jsonValue();
  assert.equal(outcome, 'frames', 'the round ended before ten animation frames were painted');
  // Stop, checked and clicked in one task of the page: on a fast machine the round may have
  // ended since the frames were counted (a click from here could then find Stop disabled). Then
  // another round is started and stopped as soon as it runs.
  const stopped = await page.evaluate(
    () =>
      new Promise((resolve) => {
        const button = (id) => document.querySelector(`[data-testid="${id}"]`);
        if (!button('stop').disabled) {
          button('stop').click();
          resolve('the first round');
          return;
        }
        let wrote = false;
        const poll = () => {
          if (!wrote && !button('write').disabled) {
            button('write').click();
            wrote = true;
          } else if (wrote && !button('stop').disabled) {
            button('stop').click();
            resolve('a second round (the first had ended)');
            return;
          }
          requestAnimationFrame(poll);
        };
        requestAnimationFrame(poll);
      }),
  );
  console.log(`responsiveness: Stop ended ${stopped}`);
  // A stopped round records nothing: wait until the page is idle again.
  await page.waitForFunction(() => document.querySelector('[data-testid="stop"]')?.disabled === true);
  // The worker stopped the round and kept its model: nothing is loaded again, and the next
  // round can start at once.
  assert.match(await text('model-status'), /^Model ready/);
  assert.equal(await page.locator(byTestId('write')).isDisabled(), false);
  const probe = await page.evaluate(() => {
    window.__probe.done = true;
    return window.__probe;
  });
  console.log(
    `responsiveness: click handled in ${clickMs} ms; ${probe.frames} frames while generating, longest gap ${probe.longestGap.toFixed(0)} ms`,
  );
  await page.locator(byTestId('settings-toggle')).click();
});

test('the web manifest is linked and valid', { timeout: TEST_TIMEOUT }, async () => {
  await waitForModel();
  const href = await page.locator('link[rel="manifest"]').getAttribute('href');
  const url = new URL(href, page.url());
  const response = await fetch(url);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type'), /^application\/manifest\+json/);
  const manifest = await response.json();
  assert.equal(manifest.name, 'Storywriter');
  assert.ok(manifest.short_name);
  assert.equal(new URL(manifest.start_url, url).href, new URL('./', BASE).href);
  assert.ok(['standalone', 'fullscreen', 'minimal-ui'].includes(manifest.display), manifest.display);
  assert.ok(manifest.icons?.length > 0, 'no icons');
  for (const icon of manifest.icons) {
    const image = await fetch(new URL(icon.src, url));
    assert.equal(image.status, 200, icon.src);
    assert.equal(image.headers.get('content-type')?.split(';')[0], icon.type, icon.src);
  }
});

test('Chromium reads the manifest without errors and finds the app installable', {
  timeout: TEST_TIMEOUT,
  skip: chromiumOnly('the DevTools protocol, where Chromium reports its reading of the manifest'),
}, async () => {
  await waitForModel();
  const cdp = await context.newCDPSession(page);
  try {
    const { errors } = await cdp.send('Page.getAppManifest');
    assert.deepEqual(errors, []);
    const { installabilityErrors } = await cdp.send('Page.getInstallabilityErrors');
    // Playwright's browser contexts are off the record, which alone rules out installing.
    assert.deepEqual(
      installabilityErrors.filter((error) => error.errorId !== 'in-incognito'),
      [],
    );
  } finally {
    await cdp.detach();
  }
});

test('offline: after one visit the page, the cached model and a round of writing work without the network', { timeout: TEST_TIMEOUT }, async () => {
  // The network, switched off below: a proxy in front of the server, which the page is loaded
  // through from the start (tests/e2e/offline_proxy.mjs).
  const network = await startOfflineProxy(BASE);
  const { context: isolated, page: tab, problems: tabProblems } = await freshPage(browser, SLOW);
  // A request no cache holds: online the server answers 404, offline it fails.
  const probe = () =>
    tab.evaluate(
      (url) => fetch(url).then((r) => `answered ${r.status}`, (e) => `failed: ${e.message}`),
      `offline-probe-${Date.now()}.txt`,
    );
  try {
    await tab.goto(network.url);
    // The server's isolation headers came through the proxy (the service worker, which would add
    // them, does not control this first visit).
    assert.equal(await tab.evaluate(() => crossOriginIsolated), true, 'the proxy passes COOP/COEP on');
    await waitForModel(tab);
    // The service worker has cached the app shell (its install step) and is active: it controls
    // the next visit (not this one: see the next test).
    await serviceWorkerActive(tab, (url) => url.endsWith('/sw.js'));
    assert.equal(await probe(), 'answered 404');

    network.goOffline();
    // A request relayed just before may still be answered, and logged, after: count once the
    // server's log has kept still for half a second (it once logged a 304 for /sw.js late).
    let seen = serverRequests().length;
    for (let last = -1; seen !== last; seen = serverRequests().length) {
      last = seen;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    assert.match(await probe(), /^failed/);
    const response = await tab.reload();
    assert.ok(response?.ok(), `reload answered ${response?.status()}`);
    await waitForModel(tab);
    assert.match(await tab.locator(byTestId('model-status')).innerText(), /from the cache/);
    await tab.locator(byTestId('prompt')).fill('Far from any network');
    await tab.locator(byTestId('write')).click();
    await waitForCandidates(tab);
    const [first] = await candidateTexts(tab);
    // The threaded build started offline too: the service worker's cached worker script kept
    // its `?threads=N`, and the rayon helper module it imports was cached at install (the page
    // once fell back to one thread offline, for either).
    const stats = tab.locator(byTestId('round-stats'));
    assert.doesNotMatch(await stats.textContent(), /bad thread count/);
    if (!IN_FIREFOX) {
      // (In Firefox rayon's pool at times does not start at all; see the threads test.)
      assert.equal(Number(await stats.getAttribute('data-threads')), await defaultThreads(tab), await stats.textContent());
    }
    await tab.locator(byTestId('candidate-1')).click();
    await waitForStory(`Far from any network${first}`, tab);
    await tab.screenshot({ path: join(OUT, 'offline.png'), fullPage: true });
    assert.match(await probe(), /^failed/);
    // Each request line once, with how often it was tried (Firefox tries a request up to 10 times).
    const tries = new Map();
    for (const line of network.refused) tries.set(line, (tries.get(line) ?? 0) + 1);
    const summary = [...tries].map(([line, count]) => `${line} ×${count}`).join('; ');
    console.log(`offline: the proxy refused ${network.refused.length} connections: ${summary}`);
    assert.ok(
      network.refused.some((line) => line.includes('offline-probe-')),
      'the probes did not go through the proxy',
    );
    // Nothing reached the server through the network, the browser's own update checks of this
    // page's service worker included (other pages of the browser, still open from other tests,
    // reach the server directly: once a 304 for their /sw.js landed in this window).
    const reached = serverRequests().slice(seen).filter(network.relayed);
    assert.deepEqual(reached, [], 'the server was asked while offline');
  } finally {
    await isolated.close();
    await network.close();
  }
  // The probes' failed loads are the point; anything else is a problem.
  assert.deepEqual(
    tabProblems.filter((line) => !line.includes('offline-probe-')),
    [],
  );
});

/** Writes rounds in `tab` until none of the three candidates is blank (the random model may end
 * one at once); returns their texts. */
async function nonBlankRound(tab) {
  for (let round = 0; round < 10; round += 1) {
    await tab.locator(byTestId('write')).click();
    await waitForCandidates(tab);
    const texts = await candidateTexts(tab);
    if (texts.every((text) => text.trim() !== '')) return texts;
  }
  assert.fail('ten rounds in a row had a blank candidate');
}

test('a change asked while another is being saved applies after it: a pick then undo at once leave the story as before the pick; a key pressed twice picks once', {
  timeout: TEST_TIMEOUT,
}, async () => {
  const { context: isolated, page: tab, problems: tabProblems } = await freshPage(browser, SLOW);
  try {
    await tab.goto(BASE);
    await waitForModel(tab);
    await tab.locator(byTestId('prompt')).fill('Quick hands');
    const [first] = await nonBlankRound(tab);
    await tab.locator(byTestId('candidate-1')).click();
    const picked = `Quick hands${first}`;
    await waitForStory(picked, tab);
    const second = await nonBlankRound(tab);
    // Every text the story shows from now on.
    await tab.evaluate(() => {
      const story = document.querySelector('[data-testid="story"]');
      window.shownStories = [];
      new MutationObserver(() => window.shownStories.push(story.textContent)).observe(story, {
        childList: true,
        subtree: true,
        characterData: true,
      });
    });
    // The pick and the undo in one task: the undo is asked while the pick is being saved.
    await tab.evaluate(() => {
      document.querySelector('[data-testid="candidate-2"]').click();
      document.dispatchEvent(new KeyboardEvent('keydown', { key: 'u', bubbles: true }));
    });
    // The pick is shown once saved; then the undo applies to it (it once applied to the story
    // before the pick, and undid the first pick as well).
    await tab.waitForFunction((text) => window.shownStories.includes(text), `${picked}${second[1]}`);
    await waitForStory(picked, tab);
    await tab.waitForTimeout(1000);
    assert.equal(await tab.locator(byTestId('story')).textContent(), picked);
    assert.deepEqual(await candidateTexts(tab), second, 'the second round waits for a choice again');
    // A key pressed twice before the first pick is saved: one pick, no error.
    await tab.evaluate(() => {
      for (let i = 0; i < 2; i += 1) {
        document.dispatchEvent(new KeyboardEvent('keydown', { key: '1', bubbles: true }));
      }
    });
    await waitForStory(`${picked}${second[0]}`, tab);
    await tab.waitForTimeout(1000);
    assert.equal(await tab.locator(byTestId('story')).textContent(), `${picked}${second[0]}`);
    assert.equal(await tab.locator(byTestId('notice')).textContent(), '');
  } finally {
    await isolated.close();
  }
  assert.deepEqual(tabProblems, []);
});

/**
 * Opens the app in a second tab, loads `load(tab)` and returns the model-error text and the
 * names of the files in the model cache (the Origin Private File System) after the failure.
 */
async function loadError(load) {
  const tab = await context.newPage();
  const tabProblems = [];
  watch(tab, tabProblems);
  try {
    await tab.goto(BASE);
    // The demo model loads first by itself; the corrupt file replaces it.
    await waitForModel(tab);
    await tab.locator(byTestId('model-sources')).evaluate((details) => (details.open = true));
    await load(tab);
    await modelErrorShown(tab, SLOW);
    assert.doesNotMatch(await tab.locator(byTestId('model-status')).innerText(), /ready/);
    await tab.screenshot({ path: join(OUT, 'corrupt-model.png') });
    const cached = await tab.evaluate(async () => {
      const names = [];
      for await (const name of (await navigator.storage.getDirectory()).keys()) names.push(name);
      return names;
    });
    return { message: await tab.locator(byTestId('model-error')).innerText(), cached };
  } finally {
    // Errors are expected here (it is the point); they are shown, not asserted.
    if (tabProblems.length) console.log(`messages while loading a corrupt model:\n  ${tabProblems.join('\n  ')}`);
    await tab.close();
  }
}

test('a corrupt model file from a URL gives a clear error and is not cached', { timeout: TEST_TIMEOUT }, async () => {
  const { message, cached } = await loadError(async (tab) => {
    await tab.locator(byTestId('model-url')).fill(new URL('models/corrupt.gguf', BASE).href);
    await tab.locator(byTestId('model-url-load')).click();
  });
  console.log(`model-error (URL): ${message}`);
  assert.match(message, /corrupt\.gguf|gguf|truncat|end of|too short|invalid/i);
  assert.ok(!cached.includes('corrupt.gguf'), `cached: ${cached.join(', ')}`);
});

test('a corrupt local model file gives a clear error and is not cached', { timeout: TEST_TIMEOUT }, async () => {
  const { message, cached } = await loadError(async (tab) => {
    await tab.locator(byTestId('model-file')).setInputFiles(join(MODELS, 'corrupt.gguf'));
  });
  console.log(`model-error (file): ${message}`);
  assert.match(message, /corrupt\.gguf|gguf|truncat|end of|too short|invalid/i);
  assert.ok(!cached.includes('corrupt.gguf'), `cached: ${cached.join(', ')}`);
});

/** A sparse file of 5 GiB in the served models directory (no disk used), removed after `body`. */
async function withHugeModel(body) {
  const path = join(MODELS, 'huge-5gib.gguf');
  writeFileSync(path, '');
  truncateSync(path, 5 * 2 ** 30);
  try {
    return await body(path);
  } finally {
    rmSync(path, { force: true });
  }
}

/** The too-large message names the file, its 5.37 GB and the 4.29 GB limit; nothing is cached. */
function assertTooLarge({ message, cached }) {
  assert.match(message, /huge-5gib\.gguf is too large for the browser: the model file is 5\.37 GB/);
  assert.match(message, /more than the 4\.29 GB a WebAssembly page can address/);
  assert.ok(!cached.some((name) => name.startsWith('huge-5gib')), `cached: ${cached.join(', ')}`);
}

test('a model file from a URL too large for WebAssembly memory is refused from its length', { timeout: TEST_TIMEOUT }, async () => {
  const result = await withHugeModel(() =>
    loadError(async (tab) => {
      await tab.locator(byTestId('model-url')).fill(new URL('models/huge-5gib.gguf', BASE).href);
      await tab.locator(byTestId('model-url-load')).click();
    }),
  );
  console.log(`model-error (URL too large): ${result.message}`);
  assertTooLarge(result);
});

test('a local model file too large for WebAssembly memory is refused from its size', { timeout: TEST_TIMEOUT }, async () => {
  const result = await withHugeModel((path) =>
    loadError(async (tab) => {
      await tab.locator(byTestId('model-file')).setInputFiles(path);
    }),
  );
  console.log(`model-error (file too large): ${result.message}`);
  assertTooLarge(result);
});

test('no console errors, page errors or worker errors on the shared page', () => {
  assert.deepEqual(problems, []);
});
