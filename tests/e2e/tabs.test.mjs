// Two tabs of the app on the same story (one browser profile, so one IndexedDB): a pick made in
// one tab shows in the other at once (BroadcastChannel), and is never overwritten by it: a tab
// that missed the announcement, still showing the story from before that pick, has its own pick
// refused with a message saying why, and then shows the story as the first tab saved it. Run by
// tests/e2e/run.sh (E2E_URL, E2E_OUT).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  browserForFile,
  byTestId,
  candidatesReady,
  cardText,
  freshPage,
  IN_FIREFOX,
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

/** A first tab with a round waiting, and a second tab of the same profile on the same story
 * (`setUp(second)` runs before it loads). */
async function twoTabs(opening, setUp = async () => {}) {
  const { context, page: first, problems } = await freshPage(browser(), SLOW);
  await first.goto(BASE);
  await modelReady(first, SLOW);
  await first.locator(byTestId('prompt')).fill(opening);
  await first.locator(byTestId('write')).click();
  await candidatesReady(first, SLOW);
  const second = await context.newPage();
  watch(second, problems);
  await setUp(second);
  await second.goto(BASE);
  await modelReady(second, SLOW);
  await storyIs(second, opening, SLOW);
  await candidatesReady(second, SLOW);
  return { context, first, second, problems };
}

/** The first tab picks candidate 1; returns the story it then shows. */
async function pickInFirst(first, opening) {
  const picked = await cardText(first, 1);
  await pressKeyIn(first, '1');
  await storyIs(first, opening + picked, SLOW);
  return { picked, story: await storyText(first) };
}

/** The second tab writes a round and picks candidate 3: saved; both picks are stored. */
async function secondPicksToo(second, story) {
  await second.locator(byTestId('write')).click();
  await candidatesReady(second, SLOW);
  const next = await cardText(second, 3);
  await pressKeyIn(second, '3');
  await storyIs(second, story + next, SLOW);
  assert.doesNotMatch(await second.locator(byTestId('notice')).textContent(), /Not saved/);
  assert.equal((await exportedRecords(second)).filter((r) => r.chosen).length, 2);
  return story + next;
}

test('two tabs on one story: a pick in one shows in the other at once', { timeout: 5 * SLOW }, async () => {
  const opening = 'One lamp burned in the tower';
  const { context, first, second, problems } = await twoTabs(opening);
  const { story } = await pickInFirst(first, opening);
  // The second tab does nothing: the first tab's pick reaches it.
  await storyIs(second, story, SLOW);
  const notice = await textMatching(second, 'notice', /another tab/, SLOW);
  assert.match(notice, /changed in another tab: it now shows the picks made there/);
  // And the other way round.
  const both = await secondPicksToo(second, story);
  await storyIs(first, both, SLOW);
  assert.deepEqual(problems, []);
  await context.close();
});

test('two tabs on one story: a tab that missed the other’s pick cannot overwrite it, and then shows it', {
  timeout: 5 * SLOW,
}, async () => {
  const opening = 'Two lamps burned in the tower';
  // The second tab gets no announcements (as in a browser without BroadcastChannel).
  const { context, first, second, problems } = await twoTabs(opening, (tab) =>
    tab.addInitScript(() => {
      delete window.BroadcastChannel;
    }),
  );
  const { picked, story } = await pickInFirst(first, opening);
  assert.equal(await storyText(second), opening, 'the second tab was told of the pick');

  // The second tab, which has not seen that pick, picks candidate 2: refused, and then it shows
  // the story as the first tab saved it.
  await pressKeyIn(second, '2');
  const notice = await textMatching(second, 'notice', /changed in another tab/, SLOW);
  console.log(`second tab's notice: ${notice}`);
  assert.match(notice, /^Not saved: this story was changed in another tab or window/);
  assert.match(notice, /the picks made there stay/);
  await storyIs(second, story, SLOW);
  await second.screenshot({ path: join(OUT, 'two-tabs.png') });

  // Stored: exactly the first tab's pick.
  const chosen = (await exportedRecords(second)).filter((r) => r.chosen);
  assert.equal(chosen.length, 1, JSON.stringify(chosen.map((r) => r.output_text)));
  assert.equal(chosen[0].output_text, picked);
  const third = await context.newPage();
  await third.goto(BASE);
  await storyIs(third, story, SLOW);

  // A pick the second tab makes now (it has read the first tab's version) is saved.
  await secondPicksToo(second, story);
  assert.deepEqual(problems, []);
  await context.close();
});
