// What the e2e tests (app.test.mjs, hub.test.mjs) and the browser benchmark (bench_web.mjs)
// share: how Chromium is started, and how page problems are collected.

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
