// What the e2e tests and the browser benchmarks share: how the browser (Chromium, or Firefox ESR
// with E2E_BROWSER=firefox) is started, how page
// problems are collected, and how a test waits for the model and for a round.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium, firefox } from 'playwright-core';

/** The flags of the contract; playwright gives every launch a fresh profile directory. */
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** The CSS selector of the element with `data-testid="id"`. */
export const byTestId = (id) => `[data-testid="${id}"]`;

/**
 * The hash source of the style element playwright-core's `page.screenshot()` adds to every frame
 * and removes at once in Firefox (`body {}`, to sync animations: inPagePrepareForScreenshots in
 * its screenshotter). The app's Content-Security-Policy blocks it, and Firefox reports that on
 * the console as an error naming the style's hash; Chromium lets the driver's styles through.
 */
const SCREENSHOT_STYLE_HASH = `'sha256-${createHash('sha256').update('body {}').digest('base64')}'`;

/** Whether error `text` is Firefox's CSP report of playwright's screenshot style (and
 * so the test driver's doing, not the app's: any other blocked style has another hash). */
const isScreenshotStyleReport = (text) =>
  text.includes('Content-Security-Policy: ') && text.includes(SCREENSHOT_STYLE_HASH);

/** Records console errors and uncaught errors of `target` (and its workers) into `sink`
 * (except the CSP report of playwright's own screenshot style in Firefox). */
export function watch(target, sink) {
  target.on('console', (msg) => {
    const problem = `console: ${msg.text()} (${msg.location().url})`;
    if (msg.type() === 'error' && !isScreenshotStyleReport(problem)) sink.push(problem);
  });
  // Firefox's WebDriver BiDi reports the page's CSP violations as page errors.
  target.on('pageerror', (error) => {
    const problem = `page error: ${error.stack ?? error}`;
    if (!isScreenshotStyleReport(problem)) sink.push(problem);
  });
  target.on('crash', () => sink.push('the page crashed'));
  target.on('worker', (worker) => {
    worker.on('console', (msg) => {
      if (msg.type() === 'error') sink.push(`worker console: ${msg.text()}`);
    });
  });
}

/** The browser the e2e tests run in: `chromium` (the default) or `firefox` (env E2E_BROWSER). */
export const BROWSER = process.env.E2E_BROWSER ?? 'chromium';
if (!['chromium', 'firefox'].includes(BROWSER)) {
  throw new Error(`E2E_BROWSER must be chromium or firefox, not ${BROWSER}`);
}
export const IN_FIREFOX = BROWSER === 'firefox';

/**
 * node:test's `skip` option for a test that needs a facility only Chromium has (`capability`,
 * e.g. "CDP heap snapshots"): false in Chromium, a reason naming it in Firefox (shown in the
 * test report as the skip's reason).
 */
export const chromiumOnly = (capability) =>
  IN_FIREFOX ? `Firefox lacks ${capability} (Chromium only)` : false;

/**
 * The browser of E2E_BROWSER, headless: Chromium with CHROMIUM_FLAGS and `chromiumArgs`, or
 * Firefox ESR (Debian's, or `$FIREFOX`) over WebDriver BiDi through tests/e2e/firefox_bidi.mjs
 * (`chromiumArgs` are Chromium flags and are not passed to Firefox).
 */
export function launchBrowser(chromiumArgs = []) {
  if (IN_FIREFOX) {
    return firefox.launch({
      channel: 'moz-firefox-esr',
      executablePath: join(dirname(fileURLToPath(import.meta.url)), 'firefox_bidi.mjs'),
      env: { ...process.env, FIREFOX: process.env.FIREFOX ?? '/usr/bin/firefox-esr' },
    });
  }
  return launchChromium(chromiumArgs);
}

/** Headless Chromium (Debian's, or `$CHROMIUM`) with CHROMIUM_FLAGS and `extraArgs`. */
export function launchChromium(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: [...CHROMIUM_FLAGS, ...extraArgs],
  });
}

/** One browser (of E2E_BROWSER) for the tests of a file: launched before them (Chromium with
 * `chromiumArgs`), closed after them; returns a function giving it. */
export function browserForFile(chromiumArgs = []) {
  let browser;
  before(async () => {
    browser = await launchBrowser(chromiumArgs);
  });
  after(async () => browser?.close());
  return () => browser;
}

/**
 * `step(name, body)` for a story that consecutive tests build up on one page: a step is
 * skipped once an earlier one failed, and a failing step's page (`currentPage()`) is
 * screenshotted to `screenshotPath(n)`, n counting the failures.
 */
export function storySteps(currentPage, { timeout, screenshotPath }) {
  let failures = 0;
  return (name, body) =>
    test(name, { timeout }, async (t) => {
      if (failures > 0) {
        t.skip('an earlier step of the story failed');
        return;
      }
      try {
        await body();
      } catch (error) {
        failures += 1;
        await currentPage()
          .screenshot({ path: screenshotPath(failures), fullPage: true })
          .catch(() => {});
        throw error;
      }
    });
}

/** A page in a fresh profile of `browser` (downloads accepted, `timeout` as the default);
 * its problems (console errors, page errors, worker errors) are collected in `problems`. */
export async function freshPage(browser, timeout, problems = []) {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  context.setDefaultTimeout(timeout);
  const page = await context.newPage();
  watch(page, problems);
  return { context, page, problems };
}

/** The threaded build's default thread count in `target` (a page or frame): min(4, cores). */
export const defaultThreads = async (target) =>
  Math.min(4, await target.evaluate(() => navigator.hardwareConcurrency));

/**
 * Waits (20 s at most) until `tab`'s service worker registration has an activated worker whose
 * script URL `isScript` accepts; fails naming the states it saw.
 */
export async function serviceWorkerActive(tab, isScript) {
  const state = () =>
    tab.evaluate(async () => {
      const registration = await navigator.serviceWorker.getRegistration();
      const { installing, waiting, active } = registration ?? {};
      return { installing: installing?.state, waiting: waiting?.state, active: active?.state, script: active?.scriptURL };
    });
  let seen;
  for (const until = Date.now() + 20_000; Date.now() < until; ) {
    seen = await state();
    if (seen.active === 'activated' && isScript(seen.script ?? '')) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  assert.fail(`the service worker did not activate within 20 s: ${JSON.stringify(seen)}`);
}

/**
 * Clicks `trigger` (a locator of `page`) and returns the text of the file named `name` it makes
 * the browser download, decoded as a whole (a chunk boundary may fall inside a character). The
 * download is deleted once read: Firefox would name the next one "name(1)…".
 */
export async function downloadedText(page, trigger, name) {
  const downloaded = page.waitForEvent('download', {
    predicate: (download) => download.suggestedFilename() === name,
    timeout: 60_000,
  });
  await trigger.click();
  const download = await downloaded;
  const chunks = [];
  for await (const chunk of await download.createReadStream()) chunks.push(chunk);
  await download.delete();
  return Buffer.concat(chunks).toString('utf8');
}

/** Waits until model-status says the model is ready (and fails early on a load error). */
export async function modelReady(target, timeout) {
  await target.waitForFunction(
    () => {
      const error = document.querySelector('[data-testid="model-error"]');
      if (error && !error.hidden && error.textContent.trim()) {
        throw new Error(`model-error: ${error.textContent}`);
      }
      return /\bready\b/i.test(
        document.querySelector('[data-testid="model-status"]')?.textContent ?? '',
      );
    },
    null,
    { timeout, polling: 50 },
  );
}

/**
 * Waits until a round is over (Stop disabled, Write enabled) and the three cards show finished
 * candidates (their line "N tokens · reason · press N"; the text may be empty when a candidate
 * drew the end-of-sequence token first or wrote only tokens with no text of their own, which the
 * random demo model sometimes does).
 */
export async function candidatesReady(target, timeout) {
  await target.waitForFunction(
    () => {
      const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
      const idle = $('stop')?.disabled !== false && $('write')?.disabled === false;
      const filled = [1, 2, 3].every((i) => {
        return /press \d/.test($(`candidate-${i}`)?.querySelector('.meta')?.textContent ?? '');
      });
      return idle && filled;
    },
    null,
    { timeout, polling: 50 },
  );
}

/** Presses a key on `target` with the focus on the page body, not in a text field. */
export async function pressKeyIn(target, key) {
  await target.evaluate(() => document.activeElement?.blur());
  await target.keyboard.press(key);
}

/** The generated text of candidate card `index` of `target` (its `.text` part, or the whole card). */
export async function cardText(target, index) {
  return target.evaluate((id) => {
    const card = document.querySelector(`[data-testid="${id}"]`);
    const part = card?.querySelector('.text') ?? card;
    return part?.textContent ?? '';
  }, `candidate-${index}`);
}

/** The text of part `part` (`source`, `params`, `text`, `meta`) of each of the three cards of
 * `target`. */
export async function cardParts(target, part) {
  return target.evaluate(
    (cls) =>
      [1, 2, 3].map(
        (i) => document.querySelector(`[data-testid="candidate-${i}"] .${cls}`)?.textContent ?? '',
      ),
    part,
  );
}

/** The generated texts of the three candidate cards of `target`. */
export async function cardTexts(target) {
  return Promise.all([1, 2, 3].map((i) => cardText(target, i)));
}

/**
 * The generated texts of the three finished cards of `target`, after asserting that a card with
 * no text says why: a random model may end a candidate at once (eos) or write only tokens with no
 * text of their own ("no text").
 */
export async function explainedCardTexts(target) {
  const [texts, metas] = await Promise.all([cardTexts(target), cardParts(target, 'meta')]);
  texts.forEach((text, i) => {
    if (text === '') assert.match(metas[i], /\beos\b|\bno text\b/, `candidate ${i + 1} is blank: ${metas[i]}`);
  });
  return texts;
}

/** Waits until the story text of `target` is `expected`; on a timeout the error shows both. */
export async function storyIs(target, expected, timeout) {
  try {
    await target.waitForFunction(
      (want) => document.querySelector('[data-testid="story"]')?.textContent === want,
      expected,
      { timeout },
    );
  } catch (error) {
    const shown = await target
      .evaluate(() => document.querySelector('[data-testid="story"]')?.textContent ?? null)
      .catch(() => '(the page is gone)');
    throw new Error(
      `${error.message}\n  the story shows: ${JSON.stringify(shown)}\n  expected:        ${JSON.stringify(expected)}`,
      { cause: error },
    );
  }
}

/** Opens the settings panel of `target` (`open`) or closes it, unless it already is. */
export async function showSettings(target, open) {
  const settings = target.locator(byTestId('settings'));
  if (open ? await settings.isHidden() : await settings.isVisible()) {
    await target.locator(byTestId('settings-toggle')).click();
  }
}

/** Requests the server has logged in `log` so far ("ADDR METHOD PATH STATUS" lines). */
export function serverRequests(log) {
  return readFileSync(log, 'utf8')
    .split('\n')
    .filter((line) => /^\S+ (GET|HEAD|POST|PUT|DELETE|OPTIONS) \S+ \d{3}/.test(line));
}

/**
 * Writes `name` into the served directory `models` (at `models/` of `base`): a page holding the
 * app's `?embed=1` view in an iframe with the README's sandbox, `iframe` its other attributes,
 * between `before` and `after`. Returns its URL on another site: the same server under the other
 * name of this machine, localhost or 127.0.0.1 (a public site may not frame a local address).
 */
export function writeEmbedder(base, models, name, { iframe, before = '', after = '', bodyStyle = '' }) {
  const src = new URL('?embed=1', base);
  const embedder = new URL(`models/${name}`, base);
  embedder.hostname = embedder.hostname === 'localhost' ? '127.0.0.1' : 'localhost';
  const style = bodyStyle ? ` style="${bodyStyle}"` : '';
  writeFileSync(
    join(models, name),
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Another site</title>
<link rel="icon" href="data:,"></head><body${style}>${before}
<iframe src="${src.href}" title="Storywriter" ${iframe}
  sandbox="allow-scripts allow-same-origin allow-downloads allow-forms allow-popups allow-popups-to-escape-sandbox"
  allow="clipboard-write"></iframe>${after}</body></html>\n`,
  );
  return embedder.href;
}

/** Waits until the page's model-error shows a message. */
export async function modelErrorShown(target, timeout) {
  await target.waitForFunction(
    () => {
      const error = document.querySelector('[data-testid="model-error"]');
      return error && !error.hidden && error.textContent.trim().length > 0;
    },
    null,
    { timeout },
  );
}

/** Waits until element `id`'s text in `target` matches `pattern`, and returns it. */
export async function textMatching(target, id, pattern, timeout) {
  await target.waitForFunction(
    ([testid, source, flags]) =>
      new RegExp(source, flags).test(document.querySelector(`[data-testid="${testid}"]`)?.textContent ?? ''),
    [id, pattern.source, pattern.flags],
    { timeout },
  );
  return target.locator(byTestId(id)).textContent();
}

/** Starts the page's autopilot for `steps` steps picking with `chooser` (its option value). */
export async function startAutopilot(page, steps, chooser) {
  const field = page.locator(byTestId('autopilot-steps'));
  // Emptied first: Firefox cannot select a number field's text, so there playwright's fill
  // types after the value the field holds (its 5 and a 3 asked for made 53 steps).
  await field.evaluate((input) => {
    input.value = '';
  });
  await field.fill(String(steps));
  const asked = await field.inputValue();
  if (asked !== String(steps)) throw new Error(`the steps field holds ${asked}, not ${steps}`);
  await page.locator(byTestId('autopilot-chooser')).selectOption(chooser);
  await page.locator(byTestId('autopilot')).click();
  await page.waitForSelector(`${byTestId('autopilot-status')}[data-running="true"]`);
}

/** The median of `values`. */
export const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

/** An opening of `n` characters of varied words, for the browser benchmarks (about half as many
 * tokens: the tokenizer merges the repeated words). */
export function openingOf(n) {
  const words = 'the keeper lit a lamp and the sea was dark while ships passed near rocks'.split(' ');
  let text = '';
  for (let i = 0; text.length < n; i += 1) text += `${words[(i * 7) % words.length]} `;
  return text.slice(0, n);
}

/**
 * For the tests of the package's example `name` (examples/NAME, served from the repository's
 * root at E2E_PKG_URL by run.sh): launches a browser before the file's tests (running `setup`
 * on its fresh page, problems collected in `problems`) and closes it after. Returns the
 * page's address, the package's root and a function giving the page.
 */
export function examplePage(name, timeout, problems, setup = async () => {}) {
  const base = process.env.E2E_PKG_URL;
  if (!base) throw new Error('E2E_PKG_URL must be set: run tests/e2e/run.sh');
  let browser;
  let page;
  before(async () => {
    browser = await launchBrowser();
    ({ page } = await freshPage(browser, timeout, problems));
    await setup(page);
  });
  after(async () => browser?.close());
  return { base, url: new URL(`examples/${name}`, base).href, page: () => page };
}

/**
 * Starts `server` (a `node:net` or `node:http` server standing in front of the one at `target`)
 * on a free port of 127.0.0.1; returns `target` on the server's origin, as a string.
 */
export async function listenInFrontOf(server, target) {
  server.listen(0, '127.0.0.1');
  await new Promise((resolve, reject) => server.once('listening', resolve).once('error', reject));
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String(server.address().port);
  return url.href;
}
