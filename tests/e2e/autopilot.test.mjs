// The autopilot and the picker in the page: "Autopilot N steps" writes and picks round after
// round, each pick recorded as the chooser's (`chosen_by`), with the cards' order shuffled and
// recorded; any key or click stops it, and the round it was writing leaves no record. The
// picker trains on the writer's choices in the worker, shows each card's chance, survives a
// reload and picks for the autopilot. Run by tests/e2e/run.sh (E2E_URL).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  byTestId,
  candidatesReady,
  freshPage,
  launchBrowser,
  modelReady,
  startAutopilot,
  textMatching,
} from './lib.mjs';
import { exportedRecords, storedRecords } from './soak.mjs';

const BASE = process.env.E2E_URL;
if (!BASE) throw new Error('E2E_URL must be set: run tests/e2e/run.sh');
const SLOW = 120_000;

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => browser?.close());

/** A fresh profile's page with the model loaded; its problems are collected. */
async function readyPage() {
  const { context, page, problems } = await freshPage(browser, SLOW);
  await page.goto(BASE);
  await modelReady(page, SLOW);
  return { context, page, problems };
}

/** Waits until the autopilot's status matches `pattern`; returns the status text. */
const statusMatching = (page, pattern, timeout = 4 * SLOW) => textMatching(page, 'autopilot-status', pattern, timeout);

/** Steps picked so far, from the running status ("Autopilot: 2 of 50 steps…"). */
async function stepsPicked(page) {
  const text = await page.locator(byTestId('autopilot-status')).textContent();
  return Number(/Autopilot: (\d+) of/.exec(text)?.[1] ?? 0);
}

test('the autopilot writes the steps asked for, every pick recorded as the chooser\'s', { timeout: 6 * SLOW }, async () => {
  const { context, page, problems } = await readyPage();
  await page.locator(byTestId('prompt')).fill('The autopilot began the tale of a lighthouse');
  await startAutopilot(page, 3, 'position');
  await statusMatching(page, /Autopilot wrote 3 steps/);
  assert.equal(await page.locator(byTestId('autopilot-status')).getAttribute('data-running'), 'false');

  const records = await exportedRecords(page);
  assert.equal(records.length, 9, 'three rounds of three candidates');
  const chosen = records.filter((r) => r.chosen).sort((a, b) => a.step - b.step);
  assert.deepEqual(chosen.map((r) => r.step), [1, 2, 3]);
  for (const record of chosen) {
    assert.equal(record.chosen_by, 'position-1', 'the chooser, not the writer, picked');
    assert.equal(record.display_position, 1, 'always the first card shown');
  }
  // Each round's policies were shuffled over the cards with a recorded seed.
  for (const step of [1, 2, 3]) {
    const round = records.filter((r) => r.step === step);
    assert.deepEqual(round.map((r) => r.display_position).sort(), [1, 2, 3]);
    assert.equal(new Set(round.map((r) => r.order_seed)).size, 1);
  }
  // The story is the opening and the three picks; nothing waits for a choice.
  const story = await page.locator(byTestId('story')).textContent();
  assert.ok(story.endsWith(chosen[2].output_text));
  assert.equal((await storedRecords(page)).length, 9);
  assert.deepEqual(problems, []);
  await context.close();
});

test('any key or click stops the autopilot; the round being written leaves no record', { timeout: 6 * SLOW }, async () => {
  const { context, page, problems } = await readyPage();
  await page.locator(byTestId('prompt')).fill('A long night at sea');
  await startAutopilot(page, 50, 'random');
  await statusMatching(page, /Autopilot: [2-9]\d* of 50 steps/);
  await page.keyboard.press('x');
  const afterKey = await statusMatching(page, /Autopilot stopped after \d+ steps/, SLOW);
  const pickedByKey = Number(/after (\d+) steps/.exec(afterKey)[1]);
  assert.ok(pickedByKey >= 2);
  assert.equal(await page.locator(byTestId('autopilot-status')).getAttribute('data-running'), 'false');

  // A click on a card while it runs stops it and picks nothing. It stops as the button goes
  // down, before the release: by then a token may have replaced the text under the pointer, and
  // the browsers send no click when the node pressed is gone.
  await startAutopilot(page, 50, 'random');
  await statusMatching(page, /Autopilot: [1-9]\d* of 50 steps/);
  const pickedBeforeClick = await stepsPicked(page);
  const card = page.locator(byTestId('candidate-1'));
  await card.scrollIntoViewIfNeeded();
  const box = await card.boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + Math.min(box.height / 2, 20));
  await page.mouse.down();
  const afterClick = await statusMatching(page, /Autopilot stopped after \d+ steps/, SLOW);
  await page.mouse.up();
  const pickedByClick = Number(/after (\d+) steps/.exec(afterClick)[1]);
  assert.ok(pickedByClick >= pickedBeforeClick);

  // Nothing more happens once stopped.
  await page.waitForTimeout(2_000);
  const records = await storedRecords(page);
  const chosen = records.filter((r) => r.chosen);
  assert.equal(chosen.length, pickedByKey + pickedByClick, 'one pick per step counted, none by the click');
  assert.ok(chosen.every((r) => r.chosen_by === 'random'));
  // Every round recorded was picked, except at most one recorded just before a stop.
  const rounds = new Set(records.map((r) => `${r.step}:${r.order_seed}`));
  assert.ok(rounds.size - chosen.length <= 2, `${rounds.size} rounds for ${chosen.length} picks`);
  assert.equal(records.length % 3, 0);
  assert.deepEqual(problems, []);
  await context.close();
});

/** The chance each card shows ("Picker: 47% chance you pick this"), in card order. */
async function cardChances(page) {
  return page.evaluate(() =>
    [1, 2, 3].map((i) => {
      const text = document.querySelector(`[data-testid="candidate-${i}"] .chance`)?.textContent ?? '';
      const match = /(\d+)%/.exec(text);
      return match ? Number(match[1]) : null;
    }),
  );
}

test('the picker trains on my choices in the worker, shows each card\'s chance, and the autopilot picks with it', { timeout: 6 * SLOW }, async () => {
  const { context, page, problems } = await readyPage();
  // Three stories of six rounds each: the picker splits by story, so it needs at least two.
  for (const opening of ['A first tale', 'A second tale', 'A third tale']) {
    await page.locator(byTestId('new-story')).click();
    await page.locator(byTestId('prompt')).fill(opening);
    await startAutopilot(page, 6, 'random');
    await statusMatching(page, /Autopilot wrote 6 steps/);
  }
  const status = page.locator(byTestId('picker-status'));
  await page.locator(byTestId('picker-train')).click();
  await page.waitForFunction(
    (selector) => /^Trained on your choices/.test(document.querySelector(selector)?.textContent ?? ''),
    byTestId('picker-status'),
    { timeout: 4 * SLOW },
  );
  assert.match(await status.textContent(), /: 18 rounds of 3 stories \(\d+ held out\)/);
  const evaluation = await page.locator(byTestId('picker-eval')).textContent();
  assert.match(evaluation, /^Held out \(\d+ rounds, \d+ stor(y|ies)\): picks your choice first in \d+% .*chance 33%/);
  assert.match(evaluation, /position-1 \d+%/);

  // The next round's cards show their chances, which add up to 100%.
  await page.locator(byTestId('write')).click();
  await candidatesReady(page, SLOW);
  const chances = await cardChances(page);
  assert.ok(chances.every((c) => c !== null), `chances ${chances}`);
  const sum = chances.reduce((a, b) => a + b, 0);
  assert.ok(sum >= 98 && sum <= 102, `chances ${chances} add up to ${sum}%`);

  // The picker outlives a reload.
  await page.reload();
  await modelReady(page, SLOW);
  assert.match(await status.textContent(), /^Picker from an earlier visit: 18 rounds/);
  assert.deepEqual(await cardChances(page), chances);

  // The autopilot picks with it, and says so in the records.
  await startAutopilot(page, 2, 'picker');
  await statusMatching(page, /Autopilot wrote 2 steps/);
  const records = await storedRecords(page);
  const byPicker = records.filter((r) => r.chosen && r.chosen_by === 'picker:page');
  assert.equal(byPicker.length, 2);
  assert.deepEqual(problems, []);
  await context.close();
});
