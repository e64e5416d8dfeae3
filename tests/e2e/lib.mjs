// What the e2e tests and the browser benchmarks share: how Chromium is started, how page
// problems are collected, and how a test waits for the model and for a round.

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

/** Records console errors and uncaught errors of `target` (and its workers) into `sink`. */
export function watch(target, sink) {
  target.on('console', (msg) => {
    if (msg.type() === 'error') sink.push(`console: ${msg.text()} (${msg.location().url})`);
  });
  target.on('pageerror', (error) => sink.push(`page error: ${error.stack ?? error}`));
  target.on('crash', () => sink.push('the page crashed'));
  target.on('worker', (worker) => {
    worker.on('console', (msg) => {
      if (msg.type() === 'error') sink.push(`worker console: ${msg.text()}`);
    });
  });
}

/** A page in a fresh profile of `browser` (downloads accepted, `timeout` as the default);
 * its problems (console errors, page errors, worker errors) are collected in `problems`. */
export async function freshPage(browser, timeout) {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  context.setDefaultTimeout(timeout);
  const page = await context.newPage();
  const problems = [];
  watch(page, problems);
  return { context, page, problems };
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
 * drew the end-of-sequence token first, which the random demo model sometimes does).
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
