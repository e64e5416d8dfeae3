// End-to-end tests of the web app in headless Chromium, through the stable data-testid
// attributes. Run by tests/e2e/run.sh, which serves the built app and a test model directory
// and passes E2E_URL (the app), E2E_MODELS (that directory: demo-tiny-q8_0.gguf listed in
// index.json, corrupt.gguf not listed) and E2E_OUT (screenshots).
//
// The tests run in order and share one page (and so one IndexedDB): each step of the story
// continues the one before, as a writer would, so once a step fails the later steps are skipped
// (and a screenshot of the failure is kept). The other tests only need the model.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.E2E_URL;
const MODELS = process.env.E2E_MODELS;
const OUT = process.env.E2E_OUT ?? 'target/e2e';
if (!BASE || !MODELS) {
  throw new Error('E2E_URL and E2E_MODELS must be set: run tests/e2e/run.sh');
}
mkdirSync(OUT, { recursive: true });

// Loading and generating with the tiny model takes seconds; a cold wasm compile on a busy
// machine can take longer. Each wait has this timeout; a whole test gets more, so that the
// wait's own (descriptive) error is what fails it.
const SLOW = 120_000;
const TEST_TIMEOUT = 5 * SLOW;
// The flags of the contract; playwright gives every launch a fresh profile directory.
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const PROMPT = 'Once upon a time';

let browser;
let context;
let page;
/** Console errors, page errors and worker errors of the main page, asserted empty at the end. */
const problems = [];

/** Records console errors and uncaught errors of `target` (and its workers) into `sink`. */
function watch(target, sink) {
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

const byTestId = (id) => `[data-testid="${id}"]`;

async function text(id) {
  return page.locator(byTestId(id)).innerText();
}

/** The generated text of candidate card `index` (its `.text` part, or the whole card). */
async function candidateText(index) {
  return page.evaluate((id) => {
    const card = document.querySelector(`[data-testid="${id}"]`);
    const part = card?.querySelector('.text') ?? card;
    return part?.textContent ?? '';
  }, `candidate-${index}`);
}

async function candidateTexts() {
  return Promise.all([1, 2, 3].map(candidateText));
}

/** Waits until model-status says the model is ready (and fails early on a load error). */
async function waitForModel(target = page) {
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
    { timeout: SLOW, polling: 100 },
  );
}

/** Waits until a round is over (Stop disabled, Write enabled) and the three cards hold text. */
async function waitForCandidates() {
  await page.waitForFunction(
    () => {
      const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
      const idle = $('stop')?.disabled !== false && $('write')?.disabled === false;
      const filled = [1, 2, 3].every((i) => {
        const card = $(`candidate-${i}`);
        return (card?.querySelector('.text') ?? card)?.textContent.trim().length > 0;
      });
      return idle && filled;
    },
    null,
    { timeout: SLOW, polling: 100 },
  );
}

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

/** Presses a key with the focus on the page body, not in a text field. */
async function pressKey(key) {
  await page.evaluate(() => document.activeElement?.blur());
  await page.keyboard.press(key);
}

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

storyStep('pressing 3 and then u takes the choice back', async () => {
  await pressKey('3');
  await page.waitForFunction(
    (before) => (document.querySelector('[data-testid="story"]')?.textContent ?? '') !== before,
    storyAfterPick,
    { timeout: SLOW },
  );
  await pressKey('u');
  await page.waitForFunction(
    (expected) => document.querySelector('[data-testid="story"]')?.textContent === expected,
    storyAfterPick,
    { timeout: SLOW },
  );
  // The regenerated candidates wait for a choice again.
  assert.ok((await candidateText(3)).trim().length > 0);
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
    for (const record of round) {
      assert.equal(record.schema, 'storywriter.record/1');
      assert.equal(typeof record.output_text, 'string');
      assert.equal(record.output_ids.length, record.logprobs.length);
    }
  }
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
  // Frames are counted from the page itself: a model computing on the UI thread would starve them.
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
  // A click during generation is handled at once: the settings panel opens.
  const clickStarted = Date.now();
  await page.locator(byTestId('settings-toggle')).click();
  await page.waitForFunction(() => !document.querySelector('[data-testid="settings"]')?.hidden, null, {
    timeout: SLOW,
  });
  const clickMs = Date.now() - clickStarted;
  const generatingAfterClick = await page.evaluate(
    () => document.querySelector('[data-testid="stop"]')?.disabled === false,
  );
  await page.waitForTimeout(300);
  await page.locator(byTestId('stop')).click();
  // A stopped round records nothing: wait until the page is idle again.
  await page.waitForFunction(() => document.querySelector('[data-testid="stop"]')?.disabled === true);
  const probe = await page.evaluate(() => {
    window.__probe.done = true;
    return window.__probe;
  });
  console.log(
    `responsiveness: click handled in ${clickMs} ms; ${probe.frames} frames while generating, longest gap ${probe.longestGap.toFixed(0)} ms`,
  );
  assert.ok(generatingAfterClick, 'the round ended before the click could be measured');
  assert.ok(probe.frames >= 3, `only ${probe.frames} animation frames while generating`);
  assert.ok(probe.longestGap < 500, `a frame took ${probe.longestGap} ms while generating`);
  assert.ok(clickMs < 500, `the click took ${clickMs} ms to handle`);
  await page.locator(byTestId('settings-toggle')).click();
});

test('no console errors, page errors or worker errors', () => {
  assert.deepEqual(problems, []);
});

/** Opens the app in a second tab, loads `load(tab)` and returns the model-error text. */
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
    return tab.locator(byTestId('model-error')).innerText();
  } finally {
    // Errors are expected here (it is the point); they are shown, not asserted.
    if (tabProblems.length) console.log(`messages while loading a corrupt model:\n  ${tabProblems.join('\n  ')}`);
    await tab.close();
  }
}

test('a corrupt model file from a URL gives a clear error', { timeout: TEST_TIMEOUT }, async () => {
  const message = await loadError(async (tab) => {
    await tab.locator(byTestId('model-url')).fill(new URL('models/corrupt.gguf', BASE).href);
    await tab.locator(byTestId('model-url-load')).click();
  });
  console.log(`model-error (URL): ${message}`);
  assert.match(message, /corrupt\.gguf|gguf|truncat|end of|too short|invalid/i);
});

test('a corrupt local model file gives a clear error', { timeout: TEST_TIMEOUT }, async () => {
  const message = await loadError(async (tab) => {
    await tab.locator(byTestId('model-file')).setInputFiles(join(MODELS, 'corrupt.gguf'));
  });
  console.log(`model-error (file): ${message}`);
  assert.match(message, /corrupt\.gguf|gguf|truncat|end of|too short|invalid/i);
});
