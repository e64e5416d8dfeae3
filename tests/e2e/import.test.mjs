// Bad record files imported in the page (Import JSONL): every bad line is listed with its file
// and line number, the good lines are imported, and text from the file (HTML in a line or in a
// record's output) is shown as text, never as markup. Run by tests/e2e/run.sh (E2E_URL).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { browserForFile, byTestId, freshPage, modelReady, storyIs, textMatching } from './lib.mjs';
import { exportedRecords } from './soak.mjs';

const BASE = process.env.E2E_URL;
if (!BASE) throw new Error('E2E_URL must be set: run tests/e2e/run.sh');
const SLOW = 120_000;

const browser = browserForFile();

test('an imported file with bad lines: each named with its line, the good ones kept, HTML shown as text', { timeout: 3 * SLOW }, async () => {
  const { context, page, problems } = await freshPage(browser(), SLOW);
  await page.goto(BASE);
  await modelReady(page, SLOW);
  const sample = readFileSync('tests/fixtures/records_sample.jsonl', 'utf8').split('\n').filter((l) => l.trim());
  const good = JSON.parse(sample[0]);
  const withHtml = { ...JSON.parse(sample[1]), output_text: '<img src=x onerror=window.__xss=1>' };
  const lines = [
    JSON.stringify(good), // 1
    '{"record_id": "cut', // 2: not JSON
    JSON.stringify({ ...JSON.parse(sample[2]), seed: 'forty-two' }), // 3: a field of the wrong type
    '<b data-testid="injected">bold</b>', // 4: HTML, not JSON
    JSON.stringify(withHtml), // 5
  ];
  await page.locator(byTestId('import')).setInputFiles({
    name: 'bad.jsonl',
    mimeType: 'application/jsonl',
    buffer: Buffer.from(`${lines.join('\n')}\n`),
  });
  const report = await textMatching(page, 'import-report', /problem/, SLOW);
  console.log(`import report: ${report}`);
  assert.match(report, /Imported 2 records: 2 new/);
  assert.ok(Number(/(\d+) problem\(s\)/.exec(report)?.[1]) >= 3, report);
  assert.match(report, /bad\.jsonl:2: /);
  assert.match(report, /bad\.jsonl:3: .*seed/);
  assert.match(report, /bad\.jsonl:4: /);
  assert.doesNotMatch(report, /bad\.jsonl:[15]:/);
  // The HTML line is text in the report, not an element.
  assert.equal(await page.locator(byTestId('injected')).count(), 0);
  // Both good records are stored, the HTML output as it was, and nothing ran.
  const exported = await exportedRecords(page);
  assert.deepEqual(exported.map((r) => r.record_id).sort(), [good.record_id, withHtml.record_id].sort());
  assert.equal(exported.find((r) => r.record_id === withHtml.record_id).output_text, withHtml.output_text);
  assert.equal(await page.locator('img[src="x"]').count(), 0);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.deepEqual(problems, []);
  await context.close();
});

test('a hand edit of an imported story keeps the model\'s carriage returns (a text field turns them into \\n)', { timeout: 3 * SLOW }, async () => {
  const { context, page, problems } = await freshPage(browser(), SLOW);
  await page.goto(BASE);
  await modelReady(page, SLOW);
  const [first] = readFileSync('tests/fixtures/records_sample.jsonl', 'utf8').split('\n');
  const record = JSON.parse(first);
  const picked = {
    ...record,
    story_id: '000000000000000000000000c0ffee01',
    output_text: ' It rang.\r\rThen\r\nsilence.',
    chosen: true,
    chosen_by: 'writer',
    chosen_at: '2026-11-29T08:00:09.000Z',
  };
  await page.locator(byTestId('import')).setInputFiles({
    name: 'carriage-returns.jsonl',
    mimeType: 'application/jsonl',
    buffer: Buffer.from(`${JSON.stringify(picked)}\n`),
  });
  await textMatching(page, 'import-report', /Imported 1 record/, SLOW);
  await page.locator(`${byTestId('story-list')} [data-story-id="${picked.story_id}"] button.open`).click();
  const story = picked.input_text + picked.output_text;
  await storyIs(page, story, SLOW);
  await page.locator(byTestId('edit-story')).click();
  // The editor shows the story with \n for each line break, as every text field does.
  const field = page.locator(byTestId('story-editor'));
  assert.equal(await field.inputValue(), story.replace(/\r\n?/g, '\n'));
  await field.press('End');
  await field.pressSequentially(' The end.');
  await page.locator(byTestId('save-edit')).click();
  // Only the writer's words changed: the model's passage is still its own, \r and all.
  await storyIs(page, `${story} The end.`, SLOW);
  const authors = await page.evaluate(() =>
    [...document.querySelectorAll('[data-testid="story"] [data-testid="passage"]')].map((p) => [p.dataset.author, p.textContent]),
  );
  assert.deepEqual(authors, [
    ['writer', picked.input_text],
    ['model', picked.output_text],
    ['writer', ' The end.'],
  ]);
  assert.deepEqual(problems, []);
  await context.close();
});
