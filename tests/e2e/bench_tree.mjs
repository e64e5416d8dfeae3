// The tree benchmark (scripts/bench_tree.sh): imports a story of many rounds (TREE_LOG, written
// by `storywriter auto` with the demo model) into a fresh profile, opens it, and times the tree's
// answer to key presses: from the keydown (a capturing listener on the window) to the next
// animation frame (requestAnimationFrame registered there, run after the key's handling) and to
// the end of that frame (a message posted from the frame's callback arrives after its style,
// layout and paint). Prints a Markdown table per key; nothing is asserted.
import { readFileSync } from 'node:fs';
import { byTestId, launchChromium, median, modelReady, textMatching } from './lib.mjs';

const TIMEOUT = 600_000;
const url = process.env.TREE_URL;
const log = process.env.TREE_LOG;
if (!url || !log) throw new Error('TREE_URL and TREE_LOG must be set: run scripts/bench_tree.sh');
const records = new Set(
  readFileSync(log, 'utf8')
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line).record_id),
);

const browser = await launchChromium();
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  context.setDefaultTimeout(TIMEOUT);
  const page = await context.newPage();
  await page.goto(url);
  await modelReady(page, TIMEOUT);
  await page.locator(byTestId('import')).setInputFiles(log);
  console.log(await textMatching(page, 'import-report', /Imported/, TIMEOUT));
  // Open the imported story: the time until its tree is drawn and a frame has passed.
  const opened = Date.now();
  await page.locator(`${byTestId('story-list')} li button.open`).first().click();
  await page.waitForFunction(
    (n) => document.querySelectorAll('[data-testid="tree"] li[data-kind="candidate"]').length === n,
    records.size,
    { polling: 'raf' },
  );
  const openMs = Date.now() - opened;
  const counts = await page.evaluate(() => ({
    steps: document.querySelector('[data-testid="story-counts"]')?.dataset.steps,
    items: document.querySelectorAll('[data-testid="tree-node"]').length,
    elements: document.querySelectorAll('*').length,
  }));
  console.log(
    `\nOpened a story of ${counts.steps} steps (${records.size} candidates, ${counts.items} tree items, ` +
      `${counts.elements} elements in the page) in ${openMs} ms (click to the tree drawn, polled per frame)\n`,
  );

  await page.evaluate(() => {
    window.__samples = [];
    window.addEventListener(
      'keydown',
      (event) => {
        const start = performance.now();
        const sample = { key: event.key };
        window.addEventListener('keydown', () => (sample.handled = performance.now() - start), { once: true });
        requestAnimationFrame(() => {
          sample.frame = performance.now() - start;
          const channel = new MessageChannel();
          channel.port1.onmessage = () => {
            sample.painted = performance.now() - start;
            window.__samples.push(sample);
          };
          channel.port2.postMessage(0);
        });
      },
      { capture: true },
    );
  });
  const press = async (key) => {
    const before = await page.evaluate(() => window.__samples.length);
    await page.keyboard.press(key);
    await page.waitForFunction((n) => window.__samples.length > n, before, { polling: 'raf' });
  };
  // The tab stop is the current path's last item (the last pick); walk back up the story,
  // along siblings, forward again, fold and unfold, then continue from a few items (Enter:
  // the story changes and the tree is drawn again).
  await page.locator(`${byTestId('tree')} li[tabindex="0"]`).focus();
  const plan = [
    ...Array(100).fill('ArrowLeft'),
    ...Array(20).fill(['ArrowDown', 'ArrowUp']).flat(),
    ...Array(40).fill('ArrowRight'),
    ...Array(20).fill(' '),
  ];
  for (const key of plan) await press(key);
  // Enter: also the time until the story has changed (saved first) and the tree is drawn again
  // with the item chosen, polled per frame from here.
  const redrawn = [];
  for (let i = 0; i < 5; i += 1) {
    await press('ArrowDown');
    const start = Date.now();
    await press('Enter');
    await page.waitForFunction(() => document.activeElement?.dataset.outcome === 'chosen', null, { polling: 'raf' });
    redrawn.push(Date.now() - start);
  }
  const samples = await page.evaluate(() => window.__samples);
  const name = (key) => (key === ' ' ? 'Space (fold)' : key === 'Enter' ? 'Enter (continue from there)' : key);
  const rows = [];
  for (const key of [...new Set(samples.map((s) => s.key))]) {
    const of = samples.filter((s) => s.key === key);
    const figure = (field) => {
      const values = of.map((s) => s[field]).sort((a, b) => a - b);
      const p95 = values[Math.min(values.length - 1, Math.floor(values.length * 0.95))];
      return `${median(values).toFixed(1)} / ${p95.toFixed(1)} / ${values[values.length - 1].toFixed(1)}`;
    };
    rows.push(`| ${name(key)} | ${of.length} | ${figure('handled')} | ${figure('frame')} | ${figure('painted')} |`);
  }
  console.log('| key | presses | handled, ms (median / p95 / max) | to the next frame, ms | to the end of that frame, ms |');
  console.log('|---|---|---|---|---|');
  console.log(rows.join('\n'));
  const sorted = redrawn.sort((a, b) => a - b);
  console.log(
    `\nEnter, until the story is saved and the tree drawn again: median ${median(sorted)} ms, max ${sorted[sorted.length - 1]} ms`,
  );
  await context.close();
} finally {
  await browser.close();
}
