// End-to-end tests of the web app in headless Chromium, through the stable data-testid
// attributes. Run by tests/e2e/run.sh, which serves the built app and a test model directory
// and passes E2E_URL (the app), E2E_MODELS (that directory: demo-tiny-q8_0.gguf listed in
// index.json, corrupt.gguf not listed), E2E_OUT (screenshots) and E2E_SERVE_LOG (the server's
// request log).
//
// The tests run in order and share one page (and so one IndexedDB): each step of the story
// continues the one before, as a writer would (write, pick, reload, regenerate, undo, export,
// branches, settings, parameter tables, chart, story list, model cache), so once a step fails
// the later steps are skipped (and a screenshot of the failure is kept). The other tests only
// need the model; offline use and the embedded view get browser contexts of their own.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM_FLAGS, byTestId, candidatesReady, modelReady, pressKeyIn, watch } from './lib.mjs';

const BASE = process.env.E2E_URL;
const MODELS = process.env.E2E_MODELS;
const OUT = process.env.E2E_OUT ?? 'target/e2e';
// The server's log: one line per request, to check what the page fetched (and that it fetched
// nothing while offline).
const SERVE_LOG = process.env.E2E_SERVE_LOG ?? join(OUT, 'serve.log');
if (!BASE || !MODELS) {
  throw new Error('E2E_URL and E2E_MODELS must be set: run tests/e2e/run.sh');
}
mkdirSync(OUT, { recursive: true });

// Loading and generating with the tiny model takes seconds; a cold wasm compile on a busy
// machine can take longer. Each wait has this timeout; a whole test gets more, so that the
// wait's own (descriptive) error is what fails it.
const SLOW = 120_000;
const TEST_TIMEOUT = 5 * SLOW;
const PROMPT = 'Once upon a time';

let browser;
let context;
let page;
/** Console errors, page errors and worker errors of the main page, asserted empty at the end. */
const problems = [];

async function text(id) {
  return page.locator(byTestId(id)).innerText();
}

/** The generated text of candidate card `index` (its `.text` part, or the whole card). */
async function candidateText(index, target = page) {
  return target.evaluate((id) => {
    const card = document.querySelector(`[data-testid="${id}"]`);
    const part = card?.querySelector('.text') ?? card;
    return part?.textContent ?? '';
  }, `candidate-${index}`);
}

async function candidateTexts(target = page) {
  return Promise.all([1, 2, 3].map((i) => candidateText(i, target)));
}

/** The text of part `part` (`source`, `params`, `text`, `meta`) of each of the three cards. */
async function cardParts(part, target = page) {
  return target.evaluate(
    (cls) =>
      [1, 2, 3].map(
        (i) => document.querySelector(`[data-testid="candidate-${i}"] .${cls}`)?.textContent ?? '',
      ),
    part,
  );
}

const waitForModel = (target = page) => modelReady(target, SLOW);
const waitForCandidates = (target = page) => candidatesReady(target, SLOW);

let storyFailed = false;
let failures = 0;

/** A step of the shared story: skipped once an earlier step failed; a failure is screenshotted. */
function storyStep(name, body) {
  test(name, { timeout: TEST_TIMEOUT }, async (t) => {
    if (storyFailed) {
      t.skip('an earlier step of the story failed');
      return;
    }
    try {
      await body();
    } catch (error) {
      storyFailed = true;
      failures += 1;
      await page.screenshot({ path: join(OUT, `failed-${failures}.png`), fullPage: true }).catch(() => {});
      throw error;
    }
  });
}

const pressKey = (key) => pressKeyIn(page, key);

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: CHROMIUM_FLAGS,
  });
  context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  context.setDefaultTimeout(SLOW);
  page = await context.newPage();
  watch(page, problems);
});

after(async () => {
  if (page) await page.screenshot({ path: join(OUT, 'app.png'), fullPage: true }).catch(() => {});
  await browser?.close();
});

storyStep('the page loads and the demo model from models/ becomes ready', async () => {
  const response = await page.goto(BASE);
  assert.equal(response.status(), 200);
  await page.screenshot({ path: join(OUT, 'loading.png') });
  await waitForModel();
  const status = await text('model-status');
  assert.match(status, /ready/);
  await page.screenshot({ path: join(OUT, 'ready.png') });
});

let firstRound;
storyStep('Write gives three non-empty candidates', async () => {
  await page.locator(byTestId('prompt')).fill(PROMPT);
  await page.locator(byTestId('write')).click();
  await waitForCandidates();
  firstRound = await candidateTexts();
  // A candidate may end at once on the end-of-sequence token (random weights): then its card
  // says so, and the round is written again (the story's later steps need three texts).
  for (let attempt = 1; firstRound.some((t) => t.trim() === '') && attempt < 5; attempt += 1) {
    const metas = await cardParts('meta');
    firstRound.forEach((t, i) => {
      if (t.trim() === '') assert.match(metas[i], /\beos\b/, `candidate ${i + 1} is empty: ${metas[i]}`);
    });
    const round = () => document.querySelector('[data-testid="round-stats"]')?.dataset.round;
    const before = await page.evaluate(round);
    await pressKey('r');
    await page.waitForFunction(
      (last) => document.querySelector('[data-testid="round-stats"]')?.dataset.round !== last,
      before,
      { timeout: SLOW },
    );
    await waitForCandidates();
    firstRound = await candidateTexts();
  }
  for (const [i, candidate] of firstRound.entries()) {
    assert.ok(candidate.trim().length > 0, `candidate ${i + 1} is empty`);
  }
});

let storyAfterPick;
storyStep('pressing 2 takes the second candidate and the story grows', async () => {
  await pressKey('2');
  await page.waitForFunction(
    (prompt) => (document.querySelector('[data-testid="story"]')?.textContent ?? '').length > prompt.length,
    PROMPT,
    { timeout: SLOW },
  );
  storyAfterPick = await page.locator(byTestId('story')).textContent();
  assert.ok(storyAfterPick.startsWith(PROMPT), `story: ${JSON.stringify(storyAfterPick)}`);
  assert.ok(
    storyAfterPick.endsWith(firstRound[1].trimEnd()) || storyAfterPick.includes(firstRound[1].trim()),
    `story ${JSON.stringify(storyAfterPick)} does not hold candidate 2 ${JSON.stringify(firstRound[1])}`,
  );
});

storyStep('after a reload the story is intact', async () => {
  await page.reload();
  await waitForModel();
  await page.waitForFunction(
    (expected) => document.querySelector('[data-testid="story"]')?.textContent === expected,
    storyAfterPick,
    { timeout: SLOW },
  );
  assert.equal(await page.locator(byTestId('story')).textContent(), storyAfterPick);
  // The model came from the Origin Private File System this time.
  assert.match(await text('model-status'), /from the cache/);
});

storyStep('r writes a round for the next step, and again r regenerates it', async () => {
  // After a pick no candidates are pending, so the cards are empty until the new round is done.
  await pressKey('r');
  await waitForCandidates();
  const secondRound = await candidateTexts();
  await pressKey('r');
  await page.waitForFunction(
    (before) => {
      const texts = [1, 2, 3].map((i) => {
        const card = document.querySelector(`[data-testid="candidate-${i}"]`);
        return (card?.querySelector('.text') ?? card)?.textContent ?? '';
      });
      return texts.some((t, i) => t !== before[i]);
    },
    secondRound,
    { timeout: SLOW },
  );
  await waitForCandidates();
  const thirdRound = await candidateTexts();
  await page.screenshot({ path: join(OUT, 'candidates.png'), fullPage: true });
  assert.notDeepEqual(thirdRound, secondRound, 'regenerating gave the same three texts');
  assert.equal(await page.locator(byTestId('story')).textContent(), storyAfterPick);
});

/** The story text along the branch that took candidate 3 at step 2. */
let branchThree;
storyStep('pressing 3 and then u takes the choice back', async () => {
  await pressKey('3');
  await page.waitForFunction(
    (before) => (document.querySelector('[data-testid="story"]')?.textContent ?? '') !== before,
    storyAfterPick,
    { timeout: SLOW },
  );
  branchThree = await page.locator(byTestId('story')).textContent();
  await pressKey('u');
  await page.waitForFunction(
    (expected) => document.querySelector('[data-testid="story"]')?.textContent === expected,
    storyAfterPick,
    { timeout: SLOW },
  );
  // The regenerated candidates wait for a choice again.
  assert.match((await cardParts('meta'))[2], /press 3/);
});

storyStep('Export downloads records.jsonl: three candidates per round, the picks marked chosen', async () => {
  const downloads = new Map();
  const onDownload = (download) => downloads.set(download.suggestedFilename(), download);
  page.on('download', onDownload);
  await page.locator(byTestId('export')).click();
  const deadline = Date.now() + 30_000;
  while (!downloads.has('records.jsonl') && Date.now() < deadline) {
    await page.waitForTimeout(100);
  }
  page.off('download', onDownload);
  assert.ok(downloads.has('records.jsonl'), `downloads: ${[...downloads.keys()].join(', ') || 'none'}`);
  const path = join(OUT, 'records.jsonl');
  await downloads.get('records.jsonl').saveAs(path);

  const lines = readFileSync(path, 'utf8').split('\n').filter((line) => line.trim());
  const records = lines.map((line, i) => {
    try {
      return JSON.parse(line);
    } catch (error) {
      throw new Error(`records.jsonl line ${i + 1} is not JSON: ${error.message}`);
    }
  });
  assert.equal(new Set(records.map((r) => r.record_id)).size, records.length, 'duplicate record ids');
  // A round: the candidates generated together (same story, step, parent and time).
  const rounds = new Map();
  for (const record of records) {
    const key = JSON.stringify([record.story_id, record.step, record.parent_record_id, record.created_at]);
    rounds.set(key, [...(rounds.get(key) ?? []), record]);
  }
  // Step 1 once; step 2 twice (r, then r again).
  assert.equal(rounds.size, 3, `rounds: ${[...rounds.keys()].join(' | ')}`);
  assert.equal(records.length, 9);
  for (const round of rounds.values()) {
    assert.deepEqual(round.map((r) => r.candidate).sort(), [1, 2, 3]);
    // Shown where the candidate number says; the policies' slots shuffled by a recorded seed.
    assert.deepEqual(round.map((r) => r.display_position), round.map((r) => r.candidate));
    assert.deepEqual(round.map((r) => r.mix_slot).sort(), [1, 2, 3]);
    assert.equal(new Set(round.map((r) => r.order_seed)).size, 1);
    assert.equal(typeof round[0].order_seed, 'number');
    for (const record of round) {
      assert.equal(record.schema, 'storywriter.record/2');
      assert.equal(typeof record.output_text, 'string');
      assert.equal(record.output_ids.length, record.logprobs.length);
      // step-mean is deterministic; step-sample knows the density of its draw.
      assert.equal(typeof record.log_propensity, 'number', `${record.policy}: log_propensity`);
      assert.equal(typeof record.decision_ms === 'number', record.chosen, 'decision_ms only on the pick');
    }
  }
  // The first step-2 round was regenerated with r: all its candidates rejected, at one time.
  const rejected = records.filter((r) => r.rejected_all_at);
  assert.deepEqual(rejected.map((r) => r.step), [2, 2, 2]);
  assert.equal(new Set(rejected.map((r) => r.rejected_all_at)).size, 1);
  assert.ok(rejected.every((r) => !r.chosen));
  const chosen = records.filter((r) => r.chosen);
  // Candidate 2 at step 1; candidate 3 of the regenerated step-2 round (then undone: undo keeps
  // the branch in the records).
  assert.deepEqual(
    chosen.map((r) => [r.step, r.candidate, r.chosen_by]).sort(),
    [
      [1, 2, 'human'],
      [2, 3, 'human'],
    ],
  );
  for (const round of rounds.values()) {
    assert.ok(round.filter((r) => r.chosen).length <= 1, 'two candidates of one round chosen');
  }
  const step1 = records.find((r) => r.step === 1 && r.candidate === 2);
  assert.equal(step1.input_text, PROMPT);
  assert.equal(step1.output_text, firstRound[1]);
});

/** The source line of the step-mean candidate's card. */
async function stepMeanSource() {
  return (await cardParts('source')).find((source) => source.startsWith('step-mean: ')) ?? '';
}

/** The story text of `target`. */
async function storyText(target = page) {
  return target.locator(byTestId('story')).textContent();
}

/** Waits until the story text is `expected`. */
async function waitForStory(expected, target = page) {
  await target.waitForFunction(
    (want) => document.querySelector('[data-testid="story"]')?.textContent === want,
    expected,
    { timeout: SLOW },
  );
}

/** Waits until the story text is no longer `before`. */
async function waitForStoryChange(before, target = page) {
  await target.waitForFunction(
    (old) => (document.querySelector('[data-testid="story"]')?.textContent ?? old) !== old,
    before,
    { timeout: SLOW },
  );
}

/** Whether each card is marked as chosen before (a branch walked earlier). */
async function chosenBefore() {
  return page.evaluate(() =>
    [1, 2, 3].map((i) =>
      document.querySelector(`[data-testid="candidate-${i}"]`).classList.contains('chosen-before'),
    ),
  );
}

/** Starts a round with `start` (default: the r key) and waits until its three cards are done. */
async function newRound(start = () => pressKey('r')) {
  // Every render of the cards replaces their children, so these markers go with the old round.
  await page.evaluate(() => {
    for (const card of document.querySelectorAll('.cards > article')) {
      const marker = document.createElement('i');
      marker.className = 'e2e-stale';
      card.append(marker);
    }
  });
  await start();
  await page.waitForFunction(() => !document.querySelector('.cards .e2e-stale'), null, { timeout: SLOW });
  await waitForCandidates();
}

async function openSettings(target = page) {
  if (await target.locator(byTestId('settings')).isHidden()) {
    await target.locator(byTestId('settings-toggle')).click();
  }
}

async function closeSettings(target = page) {
  if (await target.locator(byTestId('settings')).isVisible()) {
    await target.locator(byTestId('settings-toggle')).click();
  }
}

/** Waits until element `id`'s text matches `pattern`, and returns it. */
async function waitForText(id, pattern, target = page) {
  await target.waitForFunction(
    ([testid, source, flags]) =>
      new RegExp(source, flags).test(document.querySelector(`[data-testid="${testid}"]`)?.textContent ?? ''),
    [id, pattern.source, pattern.flags],
    { timeout: SLOW },
  );
  return target.locator(byTestId(id)).textContent();
}

/** Requests the server has logged so far ("ADDR METHOD PATH STATUS" lines of its log). */
function serverRequests() {
  return readFileSync(SERVE_LOG, 'utf8')
    .split('\n')
    .filter((line) => /^\S+ (GET|HEAD|POST|PUT|DELETE|OPTIONS) \S+ \d{3}/.test(line));
}

let branchOne;
storyStep('picking another candidate after undo keeps both branches, and either can be walked again', async () => {
  // After the undo the round the undone pick came from waits again, the pick marked.
  assert.deepEqual(await chosenBefore(), [false, false, true]);
  await pressKey('1');
  await waitForStoryChange(storyAfterPick);
  branchOne = await storyText();
  assert.ok(branchOne.startsWith(storyAfterPick));
  assert.notEqual(branchOne, branchThree);
  const stepTwo = page.locator(`${byTestId('branches')} li`).nth(1);
  assert.match(await stepTwo.innerText(), /^Step 2: candidate 1 of \d+ .*1 other branch/);

  // "Choose again here" goes back to step 2; picking 3 walks the first branch again.
  await page.locator(byTestId('back-to-step-2')).click();
  await waitForStory(storyAfterPick);
  assert.deepEqual(await chosenBefore(), [true, false, true]);
  await pressKey('3');
  await waitForStory(branchThree);
  await page.locator(byTestId('back-to-step-2')).click();
  await waitForStory(storyAfterPick);
  await pressKey('1');
  await waitForStory(branchOne);

  // Both survive a reload.
  await page.reload();
  await waitForModel();
  await waitForStory(branchOne);
  assert.match(await stepTwo.innerText(), /1 other branch/);
  await page.locator(byTestId('back-to-step-2')).click();
  await waitForStory(storyAfterPick);
  assert.deepEqual(await chosenBefore(), [true, false, true]);
  await pressKey('3');
  await waitForStory(branchThree);
});

storyStep('settings: policies and a manual override decide the next round, show on its cards, and survive a reload', async () => {
  await openSettings();
  await page.locator(byTestId('policy-1')).selectOption('fixed');
  await page.locator(byTestId('policy-2')).selectOption('coupled-random');
  await page.locator(byTestId('policy-3')).selectOption('step-mean');
  await newRound();
  // The cards come in a shuffled order (recorded): find each policy's card.
  let sources = await cardParts('source');
  const cardOf = (policy) => sources.findIndex((source) => source.startsWith(`${policy}: `));
  assert.match(sources[cardOf('fixed')] ?? '', /^fixed: fixed parameters/);
  assert.match(sources[cardOf('coupled-random')] ?? '', /^coupled-random: .*\(bundled table\)/);
  assert.match(sources[cardOf('step-mean')] ?? '', /^step-mean: .*\(bundled table\)/);
  const fixedParams = (await cardParts('params'))[cardOf('fixed')];

  // A manual override applies to every candidate, recorded as "manual".
  await page.locator(byTestId('override-temperature')).fill('0.5');
  await newRound();
  for (const source of await cardParts('source')) assert.match(source, /^manual: overridden by hand/);
  for (const params of await cardParts('params')) assert.match(params, /^temperature 0\.50 ·/);

  await page.reload();
  await waitForModel();
  await waitForCandidates();
  await openSettings();
  assert.equal(await page.locator(byTestId('policy-1')).inputValue(), 'fixed');
  assert.equal(await page.locator(byTestId('policy-2')).inputValue(), 'coupled-random');
  assert.equal(await page.locator(byTestId('policy-3')).inputValue(), 'step-mean');
  assert.equal(await page.locator(byTestId('override-temperature')).inputValue(), '0.5');
  // Restored in effect, not just in the fields.
  await newRound();
  for (const params of await cardParts('params')) assert.match(params, /^temperature 0\.50 ·/);
  await page.locator(byTestId('override-temperature')).fill('');
  await newRound();
  sources = await cardParts('source');
  assert.deepEqual(sources.map((source) => source.replace(/:.*/, '')).sort(), ['coupled-random', 'fixed', 'step-mean']);
  // The fixed policy gives the same parameters every round.
  assert.equal((await cardParts('params'))[cardOf('fixed')], fixedParams);

  // Unshuffled, the cards follow the policies' order; the choice survives a reload.
  await page.locator(byTestId('shuffle-cards')).uncheck();
  await page.reload();
  await waitForModel();
  await waitForCandidates();
  await openSettings();
  assert.equal(await page.locator(byTestId('shuffle-cards')).isChecked(), false);
  for (let round = 0; round < 3; round++) {
    await newRound();
    sources = await cardParts('source');
    assert.deepEqual(sources.map((source) => source.replace(/:.*/, '')), ['fixed', 'coupled-random', 'step-mean']);
  }
  await page.locator(byTestId('shuffle-cards')).check();
});

storyStep('the parameter table: a bad URL is refused with a clear message, a good URL and my own choices are used', async () => {
  await openSettings();
  const useTable = async (source, url = '') => {
    await page.locator(byTestId('table-source')).selectOption(source);
    await page.locator(byTestId('table-url')).fill(url);
    await page.evaluate(() => (document.querySelector('[data-testid="table-status"]').textContent = ''));
    await page.locator(byTestId('table-apply')).click();
    return waitForText('table-status', /\S/);
  };
  // A missing table: the server's answer, and the table stays the bundled one.
  let status = await useTable('url', 'models/no-such-table.json');
  console.log(`table-status (missing URL): ${status}`);
  assert.match(status, /^Table not changed: models\/no-such-table\.json: the server answered 404/);
  await newRound();
  assert.match(await stepMeanSource(), /\(bundled table\)$/);
  // A file that is not a table (the corrupt model): refused, naming the file.
  status = await useTable('url', 'models/corrupt.gguf');
  console.log(`table-status (not a table): ${status}`);
  assert.match(status, /^Table not changed: .*corrupt\.gguf/);
  // A table at a URL (the bundled file, fetched by URL).
  status = await useTable('url', 'params/steps.json');
  assert.match(status, /^Using the table from params\/steps\.json\./);
  await newRound();
  assert.match(await stepMeanSource(), /\(table from params\/steps\.json\)$/);
  // Learned from the choices made so far (steps 1 and 2, on both branches).
  status = await useTable('learned');
  assert.match(status, /^Using the table learned from my [1-9]\d* choices\./);
  // The table source is restored after a reload, once the model is ready.
  await page.reload();
  await waitForModel();
  await waitForText('table-status', /^Using the table learned from my/);
  await openSettings();
  status = await useTable('bundled');
  assert.match(status, /^Using the bundled table\./);
  for (const [i, policy] of ['step-mean', 'step-sample', 'step-sample'].entries()) {
    await page.locator(byTestId(`policy-${i + 1}`)).selectOption(policy);
  }
  await closeSettings();
});

storyStep('the chart draws the table per step and a point per chosen step of the story', async () => {
  await openSettings();
  const chart = () =>
    page.evaluate(() => {
      const svg = document.querySelector('[data-testid="chart"] svg');
      if (!svg) return null;
      return {
        label: svg.getAttribute('aria-label'),
        bands: svg.querySelectorAll('polygon.band').length,
        means: (svg.querySelector('polyline.mean')?.getAttribute('points') ?? '').trim().split(/\s+/).length,
        chosen: [...svg.querySelectorAll('circle.chosen')].map((c) => c.querySelector('title')?.textContent),
      };
    });
  let drawn = await chart();
  assert.ok(drawn, 'no svg in the chart');
  assert.match(drawn.label, /^temperature per step/);
  assert.equal(drawn.bands, 1);
  assert.ok(drawn.means >= 10, `${drawn.means} points on the mean line`);
  const steps = await page.locator(`${byTestId('branches')} li`).count();
  assert.equal(steps, 2);
  assert.deepEqual(
    drawn.chosen.map((title) => title.replace(/:.*/, '')),
    ['step 1', 'step 2'],
  );
  // Picking candidate 1 adds a point at step 3 with its temperature.
  await newRound();
  const params = (await cardParts('params'))[0];
  await pressKey('1');
  await page.waitForFunction(
    (n) => document.querySelectorAll('[data-testid="chart"] circle.chosen').length === n,
    steps + 1,
    { timeout: SLOW },
  );
  drawn = await chart();
  const [, step, value] = drawn.chosen.at(-1).match(/^step (\d+): ([\d.]+)$/);
  assert.equal(Number(step), 3);
  const temperature = Number(params.match(/temperature ([\d.]+)/)[1]);
  assert.ok(Math.abs(Number(value) - temperature) < 0.006, `chart ${value}, card ${temperature}`);
  // Another parameter.
  await page.locator(byTestId('chart-param')).selectOption('top_k');
  await page.waitForFunction(
    () => /^top_k per step/.test(document.querySelector('[data-testid="chart"] svg')?.getAttribute('aria-label') ?? ''),
    null,
    { timeout: SLOW },
  );
  drawn = await chart();
  assert.equal(drawn.chosen.length, 3);
  assert.equal(Number(drawn.chosen.at(-1).match(/: ([\d.]+)$/)[1]), Number(params.match(/top-k (\d+)/)[1]));
  await page.screenshot({ path: join(OUT, 'settings.png'), fullPage: true });
  await page.locator(byTestId('chart-param')).selectOption('temperature');
  await closeSettings();
});

storyStep('the story list: new, rename, open and delete stories', async () => {
  const items = () => page.locator(`${byTestId('story-list')} li`);
  const item = (title) => items().filter({ has: page.locator('button.open', { hasText: title }) });
  const titles = () => page.locator(`${byTestId('story-list')} li button.open`).allTextContents();
  const waitForTitles = (want) =>
    page.waitForFunction(
      (expected) =>
        JSON.stringify(
          [...document.querySelectorAll('[data-testid="story-list"] li button.open')].map((b) => b.textContent).sort(),
        ) === JSON.stringify(expected),
      [...want].sort(),
      { timeout: SLOW },
    );
  const before = await titles();
  assert.deepEqual(before, [PROMPT]);
  const firstStory = await storyText();

  await page.locator(byTestId('new-story')).click();
  await waitForStory('');
  assert.equal(await page.locator(byTestId('story-title')).inputValue(), '');
  const opening = 'The second story begins';
  await page.locator(byTestId('prompt')).fill(opening);
  await newRound(() => page.locator(byTestId('write')).click());
  await pressKey('2');
  await waitForStoryChange(opening);
  const secondStory = await storyText();
  assert.ok(secondStory.startsWith(opening));
  await waitForTitles([...before, opening]);

  // Renaming: the title field, saved when it changes.
  await page.locator(byTestId('story-title')).fill('The renamed story');
  await page.locator(byTestId('story-title')).blur();
  await waitForTitles([...before, 'The renamed story']);
  assert.equal(await item('The renamed story').getAttribute('class'), 'current');

  // Opening switches the story.
  await item(PROMPT).locator('button.open').click();
  await waitForStory(firstStory);
  assert.equal(await page.locator(byTestId('story-title')).inputValue(), PROMPT);
  await item('The renamed story').locator('button.open').click();
  await waitForStory(secondStory);
  await page.reload();
  await waitForModel();
  await waitForStory(secondStory);
  assert.equal(await page.locator(byTestId('story-title')).inputValue(), 'The renamed story');
  await waitForTitles([...before, 'The renamed story']);

  // Deleting asks first; dismissing keeps the story.
  page.once('dialog', (dialog) => dialog.dismiss());
  await item('The renamed story').locator('button', { hasText: '×' }).click();
  assert.deepEqual((await titles()).sort(), [...before, 'The renamed story'].sort());
  page.once('dialog', (dialog) => dialog.accept());
  await item('The renamed story').locator('button', { hasText: '×' }).click();
  await waitForTitles(before);
  await waitForStory('');
  await item(PROMPT).locator('button.open').click();
  await waitForStory(firstStory);
  await page.reload();
  await waitForModel();
  await waitForStory(firstStory);
  await waitForTitles(before);
});

storyStep('the model is cached in the Origin Private File System: listed with its size, deleted, downloaded again', async () => {
  const name = 'demo-tiny-q8_0.gguf';
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
  await page.locator(byTestId('stop')).click();
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

/** A fresh browser context (its own storage, service worker and cache) and a watched page. */
async function freshTab(options = {}) {
  const isolated = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...options });
  isolated.setDefaultTimeout(SLOW);
  const tab = await isolated.newPage();
  const tabProblems = [];
  watch(tab, tabProblems);
  return { isolated, tab, tabProblems };
}

test('the web manifest is linked and valid, and Chromium finds the app installable', { timeout: TEST_TIMEOUT }, async () => {
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
  // Chromium's own reading of the manifest and its installability checks.
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
  const { isolated, tab, tabProblems } = await freshTab();
  // A request no cache holds: online the server answers 404, offline it fails.
  const probe = () =>
    tab.evaluate(
      (url) => fetch(url).then((r) => `answered ${r.status}`, (e) => `failed: ${e.message}`),
      `offline-probe-${Date.now()}.txt`,
    );
  try {
    await tab.goto(BASE);
    await waitForModel(tab);
    // The service worker has cached the app shell (its install step) and controls the page.
    await tab.waitForFunction(() => navigator.serviceWorker?.controller?.state === 'activated', null, {
      timeout: SLOW,
    });
    assert.equal(await probe(), 'answered 404');

    await isolated.setOffline(true);
    const seen = serverRequests().length;
    assert.match(await probe(), /^failed/);
    const response = await tab.reload();
    assert.ok(response?.ok(), `reload answered ${response?.status()}`);
    await waitForModel(tab);
    assert.match(await tab.locator(byTestId('model-status')).innerText(), /from the cache/);
    await tab.locator(byTestId('prompt')).fill('Far from any network');
    await tab.locator(byTestId('write')).click();
    await waitForCandidates(tab);
    const [first] = await candidateTexts(tab);
    await tab.locator(byTestId('candidate-1')).click();
    await waitForStory(`Far from any network${first}`, tab);
    await tab.screenshot({ path: join(OUT, 'offline.png'), fullPage: true });
    assert.match(await probe(), /^failed/);
    // Nothing reached the server but the browser's own update checks of the service worker
    // script, which it makes outside the emulated offline state of pages and workers.
    assert.deepEqual(
      serverRequests()
        .slice(seen)
        .filter((line) => !/ GET \/sw\.js \d+$/.test(line)),
      [],
      'the server was asked while offline',
    );
  } finally {
    await isolated.close();
  }
  // The probes' failed loads are the point; anything else is a problem.
  assert.deepEqual(
    tabProblems.filter((line) => !line.includes('offline-probe-')),
    [],
  );
});

test('?embed=1 gives the compact view, and a round can be written in an iframe on another site', { timeout: TEST_TIMEOUT }, async () => {
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

  // The README's snippet on a page of another site: the same server under the name localhost
  // (a site of its own; a public one may not frame a local address, Local Network Access).
  const src = new URL('?embed=1', BASE);
  const embedder = new URL('models/embedder.html', BASE);
  embedder.hostname = embedder.hostname === 'localhost' ? '127.0.0.1' : 'localhost';
  writeFileSync(
    join(MODELS, 'embedder.html'),
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Another site</title>
<link rel="icon" href="data:,"></head><body><h1>A page embedding the app</h1>
<iframe src="${src.href}" title="Storywriter" width="100%" height="720" style="max-width: 960px; border: 0"
  loading="lazy" sandbox="allow-scripts allow-same-origin allow-downloads allow-forms"
  allow="clipboard-write"></iframe></body></html>\n`,
  );
  const { isolated, tab, tabProblems } = await freshTab();
  try {
    await tab.goto(embedder.href);
    const frame = await (await tab.waitForSelector('iframe')).contentFrame();
    await waitForModel(frame);
    assert.equal(await frame.evaluate(() => document.body.classList.contains('embed')), true);
    const shown = await visibility(frame);
    assert.deepEqual(shown, {
      ...Object.fromEntries(parts.hidden.map((name) => [name, false])),
      ...Object.fromEntries(parts.shown.map((name) => [name, true])),
    });
    await frame.locator(byTestId('prompt')).fill('Inside a frame');
    await frame.locator(byTestId('write')).click();
    await waitForCandidates(frame);
    const [, second] = await candidateTexts(frame);
    await frame.locator(byTestId('candidate-2')).click();
    await waitForStory(`Inside a frame${second}`, frame);
    // The frame of a page that is not isolated cannot share memory: one thread, and it says why.
    const stats = frame.locator(byTestId('round-stats'));
    assert.equal(await stats.getAttribute('data-threads'), '1');
    assert.match(await stats.textContent(), /1 thread \(single-threaded: the page is not cross-origin isolated/);
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
  return { line: await stats.textContent(), threads: Number(await stats.getAttribute('data-threads')) };
}

test('threads: the isolated page runs the threaded build, the Threads setting picks the count, too many are capped', { timeout: TEST_TIMEOUT }, async () => {
  const { isolated, tab, tabProblems } = await freshTab();
  try {
    await tab.goto(BASE);
    assert.equal(await tab.evaluate(() => crossOriginIsolated), true, 'storywriter serve sends COOP/COEP');
    const cores = await tab.evaluate(() => navigator.hardwareConcurrency);
    const expected = Math.min(4, cores);
    await waitForModel(tab);
    const first = await roundThreads(tab, 'Threads one');
    assert.equal(first.threads, expected, first.line);
    assert.match(first.line, new RegExp(`· ${expected} threads?$`));
    // One thread: the worker restarts with the single-threaded build and reloads the model.
    await openSettings(tab);
    await tab.locator(byTestId('threads')).selectOption('1');
    await closeSettings(tab);
    await waitForModel(tab);
    const single = await roundThreads(tab, 'Threads two');
    assert.equal(single.threads, 1, single.line);
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

test('no console errors, page errors or worker errors', () => {
  // The one failed load the tests cause on purpose: a parameter table URL that does not exist.
  assert.deepEqual(
    problems.filter((line) => !line.includes('no-such-table.json')),
    [],
  );
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
    await tab.waitForFunction(
      () => {
        const error = document.querySelector('[data-testid="model-error"]');
        return error && !error.hidden && error.textContent.trim().length > 0;
      },
      null,
      { timeout: SLOW },
    );
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
