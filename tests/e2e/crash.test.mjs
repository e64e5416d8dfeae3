// Crashes in the middle of writing: the model worker killed in the middle of a round, and the tab
// closed in the middle of saving a pick (its IndexedDB transaction held open until the tab goes).
// After the app is opened again, every completed pick is there, and no round is half recorded:
// a step's records are all three candidates or none, and a chosen one is in the story. And the
// origin's storage full (Chromium's quota override, over the DevTools protocol): a clear
// message, the story kept, nothing half written. Run by tests/e2e/run.sh (E2E_URL).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  browserForFile,
  byTestId,
  candidatesReady,
  cardText,
  cardTexts,
  chromiumOnly,
  freshPage,
  modelReady,
  pressKeyIn,
  storyIs,
  textMatching,
} from './lib.mjs';
import { exportedRecords, storedRecords } from './soak.mjs';

const BASE = process.env.E2E_URL;
if (!BASE) throw new Error('E2E_URL must be set: run tests/e2e/run.sh');
const SLOW = 120_000;

const browser = browserForFile();

/**
 * Hooks installed before the app's scripts: `window.__workers`, every Worker the page starts;
 * and while `window.__holdSaves` is set, every read-write transaction on the story headers (a
 * save) is kept from committing by a chain of reads on it (`window.__heldSaves` counts them).
 */
function crashHooks() {
  const Original = window.Worker;
  window.__workers = [];
  window.Worker = class extends Original {
    constructor(...args) {
      super(...args);
      window.__workers.push(this);
    }
  };
  const transaction = IDBDatabase.prototype.transaction;
  IDBDatabase.prototype.transaction = function (stores, mode, ...rest) {
    const opened = transaction.call(this, stores, mode, ...rest);
    if (window.__holdSaves && mode === 'readwrite' && [].concat(stores).includes('story_headers')) {
      window.__heldSaves = (window.__heldSaves ?? 0) + 1;
      const headers = opened.objectStore('story_headers');
      const spin = () => {
        headers.count().onsuccess = spin;
      };
      spin();
    }
    return opened;
  };
}

/** A fresh profile's page with a story of one pick; returns its text. */
async function storyOfOnePick(page, opening) {
  await page.addInitScript(crashHooks);
  await page.goto(BASE);
  await modelReady(page, SLOW);
  await page.locator(byTestId('prompt')).fill(opening);
  await page.locator(byTestId('write')).click();
  await candidatesReady(page, SLOW);
  const picked = await cardText(page, 1);
  await pressKeyIn(page, '1');
  await storyIs(page, opening + picked, SLOW);
  return opening + picked;
}

/** The stored records by step: step → { records, chosen }. */
async function storedSteps(page) {
  const steps = new Map();
  for (const record of await storedRecords(page)) {
    const step = steps.get(record.step) ?? { records: 0, chosen: 0 };
    step.records += 1;
    step.chosen += record.chosen ? 1 : 0;
    steps.set(record.step, step);
  }
  return Object.fromEntries(steps);
}

/** The app opened again in `context` (the same profile): the story and the stored steps. */
async function reopened(context, story) {
  const page = await context.newPage();
  await page.goto(BASE);
  await modelReady(page, SLOW);
  await storyIs(page, story, SLOW);
  return page;
}

test('the worker killed in the middle of a round: the pick before it is kept, nothing of the round is', { timeout: 3 * SLOW }, async () => {
  const { context, page } = await freshPage(browser(), SLOW);
  try {
    const story = await storyOfOnePick(page, 'The night train stopped');
    // At the first token the next round shows, the worker is terminated, then the tab closed.
    const running = await page.evaluate(
      () =>
        new Promise((resolve) => {
          const cards = document.querySelector('[data-testid="candidate-1"]').parentElement;
          const observer = new MutationObserver(() => {
            const texts = [...cards.querySelectorAll('.text')].map((t) => t.textContent);
            if (!texts.some((t) => t.length > 0)) return;
            observer.disconnect();
            const stop = document.querySelector('[data-testid="stop"]');
            window.__workers.forEach((worker) => worker.terminate());
            resolve({ workers: window.__workers.length, roundRunning: stop.disabled === false });
          });
          observer.observe(cards, { childList: true, characterData: true, subtree: true });
          document.querySelector('[data-testid="write"]').click();
        }),
    );
    assert.ok(running.workers > 0 && running.roundRunning, `not in the middle of a round: ${JSON.stringify(running)}`);
    await page.close({ runBeforeUnload: false });

    const again = await reopened(context, story);
    const steps = await storedSteps(again);
    console.log(`stored after the killed round: ${JSON.stringify(steps)}`);
    assert.deepEqual(steps[1], { records: 3, chosen: 1 });
    // The killed round was never finished: none of its candidates is stored.
    assert.equal(steps[2], undefined);
    assert.equal((await exportedRecords(again)).length, 3);
    // And writing goes on.
    await again.locator(byTestId('write')).click();
    await candidatesReady(again, SLOW);
  } finally {
    await context.close();
  }
});

test('the tab closed while a pick is being saved: the pick is not half saved, the round waits again', { timeout: 3 * SLOW }, async () => {
  const { context, page } = await freshPage(browser(), SLOW);
  try {
    const story = await storyOfOnePick(page, 'The lamp went out');
    await page.locator(byTestId('write')).click();
    await candidatesReady(page, SLOW);
    const cards = await cardTexts(page);
    await page.evaluate(() => {
      window.__holdSaves = true;
    });
    await pressKeyIn(page, '2');
    await page.waitForFunction(() => window.__heldSaves > 0, null, { timeout: SLOW });
    // The pick's save has not committed, so the page does not show it as made.
    assert.equal(await page.locator(byTestId('story')).textContent(), story);
    await page.close({ runBeforeUnload: false });

    const again = await reopened(context, story);
    const steps = await storedSteps(again);
    console.log(`stored after the interrupted save: ${JSON.stringify(steps)}`);
    assert.deepEqual(steps, { 1: { records: 3, chosen: 1 }, 2: { records: 3, chosen: 0 } });
    // The round waits with the same candidates; picking again saves.
    await candidatesReady(again, SLOW);
    assert.deepEqual(await cardTexts(again), cards);
    await pressKeyIn(again, '2');
    await storyIs(again, story + cards[1], SLOW);
    const exported = await exportedRecords(again);
    assert.equal(exported.length, 6);
    assert.equal(exported.filter((r) => r.chosen).length, 2);
  } finally {
    await context.close();
  }
});

test('the storage full: a clear message, the story kept in the page, nothing half written', { timeout: 3 * SLOW, skip: chromiumOnly('the DevTools protocol') }, async () => {
  const { context, page } = await freshPage(browser(), SLOW);
  try {
    // Chromium applies a quota to a database opened after it is set: set before the app opens
    // its own, far below what the app's files and the demo model take.
    const cdp = await context.newCDPSession(page);
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: new URL(BASE).origin, quotaSize: 1000 });
    await page.goto(BASE);
    await modelReady(page, SLOW);
    const opening = 'The snow kept falling';
    await page.locator(byTestId('prompt')).fill(opening);
    await page.locator(byTestId('write')).click();
    await candidatesReady(page, SLOW);
    const picked = await cardText(page, 2);
    await pressKeyIn(page, '2');
    const notice = await textMatching(page, 'notice', /Not saved/, SLOW);
    console.log(`notice (storage full): ${notice}`);
    assert.match(notice, /storage for this page is full/);
    assert.match(notice, /nothing was written/);
    // The story stays in the page as it was (the pick not made), and nothing is stored.
    await storyIs(page, opening, SLOW);
    await candidatesReady(page, SLOW);
    assert.equal(await cardText(page, 2), picked);
    assert.deepEqual(await storedSteps(page), {});
  } finally {
    await context.close();
  }
});
