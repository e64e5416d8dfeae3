// Two tabs of the app on the same story (one browser profile, so one IndexedDB): a pick made in
// one tab is never overwritten by the other. The second tab, still showing the story as it was
// before that pick, has its own pick refused with a message saying why, and then shows the
// story as the first tab saved it. Run by tests/e2e/run.sh (E2E_URL, E2E_OUT).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  browserForFile,
  byTestId,
  candidatesReady,
  cardText,
  freshPage,
  modelReady,
  pressKeyIn,
  storyIs,
  textMatching,
  watch,
} from './lib.mjs';
import { exportedRecords } from './soak.mjs';

const BASE = process.env.E2E_URL;
const OUT = process.env.E2E_OUT ?? 'target/e2e';
if (!BASE) throw new Error('E2E_URL must be set: run tests/e2e/run.sh');
const SLOW = 120_000;

const browser = browserForFile();

const storyText = (page) => page.locator(byTestId('story')).textContent();

test('two tabs on one story: the second tab cannot overwrite the first tab’s pick, and then shows it', { timeout: 5 * SLOW }, async () => {
  const { context, page: first, problems } = await freshPage(browser(), SLOW);
  const opening = 'Two lamps burned in the tower';
  await first.goto(BASE);
  await modelReady(first, SLOW);
  await first.locator(byTestId('prompt')).fill(opening);
  await first.locator(byTestId('write')).click();
  await candidatesReady(first, SLOW);

  // The second tab opens the same story, with the same round waiting.
  const second = await context.newPage();
  watch(second, problems);
  await second.goto(BASE);
  await modelReady(second, SLOW);
  await storyIs(second, opening, SLOW);
  await candidatesReady(second, SLOW);

  // The first tab picks candidate 1; its story grows by that text.
  const picked = await cardText(first, 1);
  await pressKeyIn(first, '1');
  await storyIs(first, opening + picked, SLOW);
  const afterFirst = await storyText(first);

  // The second tab, which has not seen that pick, picks candidate 2: refused, and then it shows
  // the story as the first tab saved it.
  await pressKeyIn(second, '2');
  const notice = await textMatching(second, 'notice', /changed in another tab/, SLOW);
  console.log(`second tab's notice: ${notice}`);
  assert.match(notice, /^Not saved: this story was changed in another tab or window/);
  assert.match(notice, /the picks made there stay/);
  await storyIs(second, afterFirst, SLOW);
  await second.screenshot({ path: join(OUT, 'two-tabs.png') });

  // Stored: exactly the first tab's pick.
  const chosen = (await exportedRecords(second)).filter((r) => r.chosen);
  assert.equal(chosen.length, 1, JSON.stringify(chosen.map((r) => r.output_text)));
  assert.equal(chosen[0].output_text, picked);
  const third = await context.newPage();
  await third.goto(BASE);
  await storyIs(third, afterFirst, SLOW);

  // A pick the second tab makes now (it has read the first tab's version) is saved.
  await second.locator(byTestId('write')).click();
  await candidatesReady(second, SLOW);
  const next = await cardText(second, 3);
  await pressKeyIn(second, '3');
  await storyIs(second, afterFirst + next, SLOW);
  assert.doesNotMatch(await second.locator(byTestId('notice')).textContent(), /Not saved/);
  assert.equal((await exportedRecords(second)).filter((r) => r.chosen).length, 2);
  assert.deepEqual(problems, []);
  await context.close();
});
