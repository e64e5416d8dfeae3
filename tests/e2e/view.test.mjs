// End-to-end tests of the writer's view in headless Chromium and Firefox ESR, through data-testid and data-*
// attributes (never colours): who wrote which words of the story, the counts under it, a picked
// passage's tokens with their probabilities, a selected token's alternatives (computed by the
// worker) and the tokens' single tab stop, the tree of rounds and candidates walked by
// keyboard, and "reroll from here" on a token, found with rerolled_from in the export. Run by
// tests/e2e/run.sh, which passes E2E_URL and E2E_OUT (the screenshots of the tree and the
// tokens, tree.png and tokens.png, are the README's).
//
// The tests share one page and one story, each step continuing the one before; once a step
// fails the later ones are skipped.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  byTestId,
  candidatesReady,
  cardTexts,
  freshPage,
  launchBrowser,
  modelReady,
  pressKeyIn,
  storyIs,
  storySteps,
} from './lib.mjs';

const BASE = process.env.E2E_URL;
const OUT = process.env.E2E_OUT ?? 'target/e2e';
if (!BASE) throw new Error('E2E_URL must be set: run tests/e2e/run.sh');
mkdirSync(OUT, { recursive: true });

const SLOW = 120_000;
const OPENING = 'The lighthouse keeper';
const ADDED = ' Then the storm came.';
const ENDING = ' The end.';

let browser;
let page;
const problems = [];

/** A step of the shared story, skipped once an earlier one failed. */
const step = storySteps(() => page, {
  timeout: 5 * SLOW,
  screenshotPath: () => join(OUT, 'view-failed.png'),
});

before(async () => {
  browser = await launchBrowser();
  ({ page } = await freshPage(browser, SLOW, problems));
});

after(async () => {
  await browser?.close();
});

/** Writes a round (with `words` added first, if any) and returns the number (1-3) of its first
 * candidate with text, writing it again while all are empty (the random model may end at once). */
async function round(words = '') {
  if (words) await page.locator(byTestId('prompt')).fill(words);
  for (let attempt = 0; attempt < 10; attempt += 1) {
    // Write (or r) starts the round at once: the cards wait until it is done.
    await (attempt === 0 && words ? page.locator(byTestId('write')).click() : pressKeyIn(page, 'r'));
    await candidatesReady(page, SLOW);
    const texts = await cardTexts(page);
    const tokens = await page.evaluate(() =>
      [1, 2, 3].map((i) =>
        Number(document.querySelector(`[data-testid="candidate-${i}"] .meta`)?.textContent.match(/(\d+) tokens/)?.[1]),
      ),
    );
    const at = texts.findIndex((t) => t.trim().length > 0);
    if (at >= 0) return { texts, tokens, pick: at + 1 };
  }
  throw new Error('ten rounds without a candidate with text');
}

/** The story's passages: author, step, record id, text and hover/focus information. */
const passages = () =>
  page.evaluate(() =>
    [...document.querySelectorAll('[data-testid="story"] [data-testid="passage"]')].map((p) => ({
      author: p.dataset.author,
      step: p.dataset.step ?? null,
      record: p.dataset.record ?? null,
      text: p.textContent,
      info: p.dataset.info ?? null,
    })),
  );

const storyText = () => page.locator(byTestId('story')).textContent();

let expected;
/** How many tokens the step-1 pick has. */
let firstTokens;
step('the writer\'s words and each picked candidate are marked apart, and stay so after a reload', async () => {
  await page.goto(BASE);
  await modelReady(page, SLOW);
  const first = await round(OPENING);
  await pressKeyIn(page, String(first.pick));
  await storyIs(page, OPENING + first.texts[first.pick - 1], SLOW);
  firstTokens = first.tokens[first.pick - 1];
  const second = await round(ADDED);
  await pressKeyIn(page, String(second.pick));
  const picked = OPENING + first.texts[first.pick - 1] + ADDED + second.texts[second.pick - 1];
  await storyIs(page, picked, SLOW);
  // A hand edit: the writer's words at the end.
  await page.locator(byTestId('edit-story')).click();
  await page.locator(byTestId('story-editor')).fill(picked + ENDING);
  await page.locator(byTestId('save-edit')).click();
  await storyIs(page, picked + ENDING, SLOW);

  expected = [
    ['writer', null, OPENING],
    ['model', '1', first.texts[first.pick - 1]],
    ['writer', null, ADDED],
    ['model', '2', second.texts[second.pick - 1]],
    ['writer', null, ENDING],
  ];
  const shown = await passages();
  assert.deepEqual(
    shown.map((p) => [p.author, p.step, p.text]),
    expected,
  );
  // The story's text is the story: the authors are attributes, not words in it.
  assert.equal(await storyText(), picked + ENDING);
  for (const p of shown.filter((p) => p.author === 'model')) {
    assert.match(p.info, new RegExp(`^Step ${p.step} · candidate \\d · [a-z-]+: .* · temperature [\\d.]+ · top-k \\d+`));
    assert.match(p.record, /^[0-9a-f]{32}$/);
  }
  // Screen readers hear who wrote each passage.
  const spoken = await page.locator(byTestId('story')).ariaSnapshot();
  assert.match(spoken, /Your words: The lighthouse keeper/);
  assert.match(spoken, /Model, step 1: /);
  assert.match(spoken, /Model, step 2: /);
  // The keyboard reaches a model passage and its information shows on focus.
  await page.locator(byTestId('story')).focus();
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('ArrowRight');
  const focused = await page.evaluate(() => ({
    author: document.activeElement?.dataset.author,
    info: document.activeElement?.dataset.info,
    shown: getComputedStyle(document.activeElement, '::after').content,
  }));
  assert.equal(focused.author, 'model');
  // Chromium computes `attr(data-info)` to the attribute's text, Firefox keeps the function:
  // either way the focused passage's ::after shows its data-info.
  const content = focused.shown.replace(/^attr\(data-info\)/, () => JSON.stringify(focused.info));
  assert.match(content, /^"Step 1 · candidate [^"]*"/);

  await page.reload();
  await modelReady(page, SLOW);
  await storyIs(page, picked + ENDING, SLOW);
  assert.deepEqual(await passages(), shown);
});

step('the counts: words, tokens, steps, time and the share of the model\'s window', async () => {
  const counts = await page.evaluate(() => ({ ...document.querySelector('[data-testid="story-counts"]').dataset }));
  const line = await page.locator(byTestId('story-counts')).textContent();
  const words = (await storyText()).split(/\s+/).filter(Boolean).length;
  assert.equal(Number(counts.words), words);
  assert.equal(Number(counts.steps), 2);
  assert.equal(Number(counts.context), 2048);
  // Nothing slid out of the window: the story's tokens are the window's.
  assert.equal(counts.tokens, counts.window);
  assert.ok(Number(counts.tokens) > 0);
  assert.equal(counts.fill, 'fits');
  const share = Math.round((100 * Number(counts.window)) / 2048);
  // The hand-edited ending is not tokenized until the next round: "+".
  assert.match(line, new RegExp(`^${words} words · ${counts.tokens}\\+ tokens · 2 steps · .+ spent · window ${share}% of 2048 tokens$`));
  assert.ok(await page.locator(byTestId('context-warning')).isHidden());
});

step('the token view: a click on a picked passage shows its tokens with their probabilities', async () => {
  await page.locator(`${byTestId('story')} [data-author="model"][data-step="1"]`).click();
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="token"]').length === n, firstTokens, {
    timeout: SLOW,
  });
  assert.ok(await page.locator(byTestId('tokens-box')).isVisible());
  const tokens = await page.evaluate(() =>
    [...document.querySelectorAll('[data-testid="token"]')].map((t) => ({ prob: Number(t.dataset.prob), label: t.dataset.label })),
  );
  for (const { prob, label } of tokens) {
    assert.ok(prob > 0 && prob <= 1, `probability ${prob}`);
    // The label is the percentage, rounded (data-prob keeps four decimals).
    const [, percent] = label.match(/^(\d+)%: $/);
    assert.ok(Math.abs(Number(percent) - 100 * prob) <= 0.51, `${label} for ${prob}`);
  }
  const spoken = await page.locator(byTestId('tokens')).ariaSnapshot();
  assert.match(spoken, /\d+%: /);
  await page.locator(byTestId('tokens-box')).screenshot({ path: join(OUT, 'tokens.png') });
});

/** The token view's selected token and the alternatives shown for it. */
const tokenDetail = () =>
  page.evaluate(() => {
    const tokens = [...document.querySelectorAll('[data-testid="token"]')];
    const selected = tokens.filter((t) => t.getAttribute('aria-selected') === 'true');
    return {
      selected: selected.map((t) => Number(t.dataset.position)),
      tabStops: tokens.filter((t) => t.tabIndex === 0).map((t) => Number(t.dataset.position)),
      focused: tokens.indexOf(document.activeElement),
      prob: Number(selected[0]?.dataset.prob),
      shownProb: Number(document.querySelector('[data-testid="token-chosen"]')?.dataset.prob),
      chosenLine: document.querySelector('[data-testid="token-chosen"]')?.textContent ?? '',
      alternatives: [...document.querySelectorAll('[data-testid="alternative"]')].map((a) => ({
        id: Number(a.dataset.id),
        prob: Number(a.dataset.prob),
        chosen: a.dataset.chosen === 'true',
        text: a.querySelector('.text')?.textContent,
        elements: a.querySelectorAll('.text *').length,
      })),
    };
  });

/** Waits until token `position` is selected and its alternatives have come from the worker. */
async function alternativesOf(position) {
  await page.waitForFunction(
    (at) =>
      document.querySelector(`[data-testid="token"][data-position="${at}"]`)?.getAttribute('aria-selected') === 'true' &&
      document.querySelectorAll('[data-testid="alternative"]').length > 0,
    position,
    { timeout: SLOW },
  );
  return tokenDetail();
}

step('the token view: a selected token shows the model\'s most likely tokens there, computed by the worker', async () => {
  await page.locator(`${byTestId('tokens')} [data-position="0"]`).click();
  const detail = await alternativesOf(0);
  assert.deepEqual(detail.selected, [0]);
  assert.ok(await page.locator(byTestId('token-detail')).isVisible());
  // The stored probability of the token, and the model's top five computed now.
  assert.equal(detail.shownProb, detail.prob);
  assert.match(detail.chosenLine, /^Token 1 of \d+: “.*”, \d+\.\d% when the model wrote it/s);
  const probs = detail.alternatives.map((a) => a.prob);
  assert.equal(probs.length, 5);
  assert.deepEqual(probs, [...probs].sort((a, b) => b - a), 'most likely first');
  assert.ok(probs.every((p) => p > 0 && p <= 1), `${probs}`);
  assert.ok(probs.reduce((a, b) => a + b, 0) <= 1.0005, `sum of ${probs}`);
  // The token written, when among them, has the probability stored with the record (the same
  // distribution, computed again); else it is less likely than the last of them.
  const written = detail.alternatives.filter((a) => a.chosen);
  assert.ok(written.length <= 1);
  if (written.length === 1) {
    assert.ok(Math.abs(written[0].prob - detail.prob) <= 0.002, `${written[0].prob} vs stored ${detail.prob}`);
  } else {
    assert.ok(detail.prob <= probs[probs.length - 1] + 0.002, `${detail.prob} vs ${probs}`);
  }
  // The model's token texts are text, never markup.
  assert.ok(detail.alternatives.every((a) => a.elements === 0 && typeof a.text === 'string'));
  await page.locator(byTestId('tokens-box')).screenshot({ path: join(OUT, 'tokens.png') });
});

step('the tokens are one tab stop: the arrow keys move the selection from token to token', async () => {
  const count = await page.locator(byTestId('token')).count();
  assert.equal(await page.locator(byTestId('tokens')).getAttribute('role'), 'listbox');
  assert.equal(await page.locator(`${byTestId('tokens')} [role="option"]`).count(), count);
  // Tab from the story reaches the selected token, the list's only tab stop.
  await page.locator(byTestId('story')).focus();
  await page.keyboard.press('Tab');
  let detail = await tokenDetail();
  assert.deepEqual([detail.focused, detail.selected, detail.tabStops], [0, [0], [0]]);
  const last = count - 1;
  for (const [key, at] of [
    ['ArrowRight', Math.min(1, last)],
    ['End', last],
    ['ArrowLeft', Math.max(last - 1, 0)],
    ['Home', 0],
  ]) {
    await page.keyboard.press(key);
    detail = await alternativesOf(at);
    assert.deepEqual([detail.focused, detail.selected, detail.tabStops], [at, [at], [at]], key);
    assert.match(detail.chosenLine, new RegExp(`^Token ${at + 1} of ${count}: `));
  }
  // Tab leaves the list (to the reroll button), Shift+Tab comes back to the selected token.
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), 'reroll-here');
  await page.keyboard.press('Shift+Tab');
  detail = await tokenDetail();
  assert.deepEqual([detail.focused, detail.selected], [0, [0]]);
});

/** Every tree item: kind, record, outcome, whether on the current path, and whether folded. */
const treeItems = () =>
  page.evaluate(() =>
    [...document.querySelectorAll('[data-testid="tree"] [data-testid="tree-node"]')].map((item) => [
      item.dataset.kind,
      item.dataset.record,
      item.dataset.outcome ?? '',
      item.dataset.current,
      item.getAttribute('aria-expanded') ?? '',
    ]),
  );

/** The focused tree item's kind, outcome and record. */
const focusedItem = () =>
  page.evaluate(() => {
    const item = document.activeElement;
    return {
      kind: item?.dataset.kind,
      outcome: item?.dataset.outcome,
      record: item?.dataset.record,
      label: item?.querySelector(':scope > .line .label')?.textContent ?? '',
    };
  });

step('the tree: walked by keyboard to a rejected candidate, continued from it, the same after a reload', async () => {
  // Two rounds of three candidates, a pick in each (the regenerations while all were empty
  // add rounds).
  let items = await treeItems();
  const candidates = items.filter(([kind]) => kind === 'candidate');
  assert.ok(candidates.length >= 6, `${candidates.length} candidates`);
  assert.deepEqual(
    candidates.filter(([, , outcome]) => outcome === 'chosen').map(([, , , current]) => current),
    ['true', 'true'],
  );
  assert.ok(candidates.some(([, , outcome]) => outcome === 'rejected'));

  // The tree's one tab stop is the last item of the current path: the step-2 pick.
  await page.locator(`${byTestId('tree')} li[tabindex="0"]`).focus();
  let at = await focusedItem();
  assert.deepEqual([at.kind, at.outcome], ['candidate', 'chosen']);
  // Left: its round; left again: the step-1 pick; then along its siblings to a rejected one.
  await page.keyboard.press('ArrowLeft');
  assert.equal((await focusedItem()).kind, 'round');
  await page.keyboard.press('ArrowLeft');
  at = await focusedItem();
  assert.deepEqual([at.kind, at.outcome], ['candidate', 'chosen']);
  const chosenFirst = at.record;
  // Its siblings were all rejected; the first with text (the random model may write none).
  const withText = async () => {
    const item = await focusedItem();
    return item.outcome === 'rejected' && !item.label.endsWith('“”');
  };
  for (const key of ['ArrowDown', 'ArrowDown', 'ArrowUp', 'ArrowUp', 'ArrowUp']) {
    if (await withText()) break;
    await page.keyboard.press(key);
  }
  assert.ok(await withText(), `stopped at ${JSON.stringify(await focusedItem())}`);
  const rejected = (await focusedItem()).record;

  // Enter continues from it: the story is the opening and that candidate.
  await page.keyboard.press('Enter');
  await page.waitForFunction(
    (id) => document.querySelector(`li[data-kind="candidate"][data-record="${id}"]`)?.dataset.current === 'true',
    rejected,
    { timeout: SLOW },
  );
  const shown = await passages();
  assert.deepEqual(shown.map((p) => [p.author, p.step, p.record]), [
    ['writer', null, null],
    ['model', '1', rejected],
  ]);
  assert.equal(shown[0].text, OPENING);
  // The focus stayed on it, now chosen; the first pick's branch is kept.
  at = await focusedItem();
  assert.deepEqual([at.record, at.outcome], [rejected, 'chosen']);
  items = await treeItems();
  assert.deepEqual(
    items
      .filter(([kind, record]) => kind === 'candidate' && record === chosenFirst)
      .map(([, , outcome, current]) => [outcome, current]),
    [['chosen', 'false']],
  );
  // Writing on: a round after it, and a pick.
  const next = await round();
  await pressKeyIn(page, String(next.pick));
  await page.waitForFunction(() => document.querySelector('[data-testid="story-counts"]')?.dataset.steps === '2', null, {
    timeout: SLOW,
  });

  // Folding a round hides its candidates; Space unfolds it.
  const roundItem = page.locator(`${byTestId('tree')} li[data-kind="round"]`).first();
  await roundItem.focus();
  await page.keyboard.press(' ');
  assert.equal(await roundItem.getAttribute('aria-expanded'), 'false');
  assert.ok(await roundItem.locator('li').first().isHidden());
  await page.keyboard.press(' ');
  assert.equal(await roundItem.getAttribute('aria-expanded'), 'true');

  const tree = await treeItems();
  await page.locator('.tree-panel').screenshot({ path: join(OUT, 'tree.png') });
  await page.reload();
  await modelReady(page, SLOW);
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="tree-node"]').length === n, tree.length, {
    timeout: SLOW,
  });
  assert.deepEqual(await treeItems(), tree);
  // A click on a round takes the story back to it: its candidates wait again.
  const firstRound = page.locator(`${byTestId('tree')} li[data-kind="round"]`).first();
  await firstRound.locator(':scope > .line').click();
  await storyIs(page, OPENING, SLOW);
  await candidatesReady(page, SLOW);
});

/** The records of every story, as Export downloads them. */
async function exportedRecords() {
  const [download] = await Promise.all([
    page.waitForEvent('download', (d) => d.suggestedFilename() === 'records.jsonl'),
    page.locator(byTestId('export')).click(),
  ]);
  const path = join(OUT, 'view-records.jsonl');
  await download.saveAs(path);
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line));
}

step('reroll from a token: new candidates continue the tokens before it, recorded with rerolled_from', async () => {
  const fresh = await round();
  await pressKeyIn(page, String(fresh.pick));
  await storyIs(page, OPENING + fresh.texts[fresh.pick - 1], SLOW);
  const passage = page.locator(`${byTestId('story')} [data-author="model"]`);
  const original = await passage.getAttribute('data-record');
  await passage.click();
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="token"]').length === n, fresh.tokens[fresh.pick - 1], {
    timeout: SLOW,
  });
  // The last token the reroll can start from (those before it decode exactly); Enter on it.
  const from = page.locator(`${byTestId('tokens')} [data-index]`).last();
  const kept = Number(await from.getAttribute('data-index'));
  const keptText = await page.evaluate(
    (n) => [...document.querySelectorAll('[data-testid="token"]')].slice(0, n).map((t) => t.textContent).join(''),
    kept,
  );
  await from.focus();
  await page.keyboard.press('Enter');
  await candidatesReady(page, SLOW);
  await storyIs(page, OPENING + keptText, SLOW);
  const cards = await cardTexts(page);
  await pressKeyIn(page, '1');
  await storyIs(page, OPENING + keptText + cards[0], SLOW);
  // The kept tokens are still the original candidate's words.
  const shown = await passages();
  assert.deepEqual(shown[0].text, OPENING);
  if (keptText) assert.deepEqual([shown[1].record, shown[1].text], [original, keptText]);

  const records = await exportedRecords();
  const originalRecord = records.find((r) => r.record_id === original);
  const rerolled = records.filter((r) => r.rerolled_from === original);
  assert.equal(rerolled.length, 3);
  for (const record of rerolled) {
    assert.equal(record.input_text, OPENING + keptText);
    assert.deepEqual(record.input_ids, [...originalRecord.input_ids, ...originalRecord.output_ids.slice(0, kept)]);
    assert.equal(record.policy, originalRecord.policy);
    assert.deepEqual(record.params, originalRecord.params);
    assert.equal(record.step, originalRecord.step);
    assert.equal(record.parent_record_id, originalRecord.parent_record_id);
  }
  assert.equal(rerolled.filter((r) => r.chosen).length, 1);
  // Records of other rounds carry no rerolled_from.
  assert.ok(records.filter((r) => !rerolled.includes(r)).every((r) => r.rerolled_from == null));
});

test('no console errors, page errors or worker errors', () => {
  assert.deepEqual(problems, []);
});
