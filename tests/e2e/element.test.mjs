// End-to-end test of the <story-writer> element (pkg/story-writer.js) through
// examples/embed-element.html: a page whose Content-Security-Policy forbids inline scripts and
// styles, served as it is from the repository's root (tests/e2e/run.sh passes E2E_PKG_URL).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { examplePage } from './lib.mjs';

const OUT = process.env.E2E_OUT ?? 'target/e2e';
mkdirSync(OUT, { recursive: true });
const SLOW = 120_000;
const problems = [];
// Every violation of the page's policy, whatever reports it.
const example = examplePage('embed-element.html', SLOW, problems, (page) =>
  page.addInitScript(() => {
    window.violations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.violations.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  }));
const PAGE = example.url;
let page;

/** The element's part `id` (a data-testid inside its shadow root; locators pierce it). */
const part = (id) => page.locator(`story-writer [data-testid="${id}"]`);

const ready = () =>
  page.waitForFunction(() =>
    /^Ready: /.test(document.querySelector('story-writer').shadowRoot.querySelector('[data-testid="status"]').textContent));

test('<story-writer> writes, picks with a key, exports read-only, keeps its records and takes its candidates attribute, under a strict CSP', { timeout: 4 * SLOW }, async () => {
  page = example.page();
  try {
    await page.goto(PAGE);
    await ready();
    const opening = await part('opening').inputValue();
    await part('write').click();
    const cards = page.locator('story-writer .card:not([disabled])');
    await page.waitForFunction(() =>
      document.querySelector('story-writer').shadowRoot.querySelectorAll('.card:not([disabled])').length === 3);
    const texts = await cards.evaluateAll((all) => all.map((card) => card.querySelector('.text').textContent));

    await page.locator('story-writer').focus();
    await page.keyboard.press('3');
    await page.waitForFunction(() =>
      document.querySelector('story-writer').shadowRoot.querySelectorAll('.card').length === 0);
    const story = opening + texts[2];
    assert.equal(await part('story').textContent(), story);

    await part('exportButton').click();
    const records = page.locator('story-writer textarea[data-file="records.jsonl"]');
    await records.waitFor();
    assert.equal(await records.getAttribute('readonly'), '');
    const lines = (await records.inputValue()).trim().split('\n').map((line) => JSON.parse(line))
      .sort((a, b) => a.candidate - b.candidate);
    assert.deepEqual(lines.map((r) => r.output_text), texts);
    assert.deepEqual(lines.map((r) => r.chosen), [false, false, true]);
    assert.equal(await page.locator('story-writer .files a').count(), 0, 'readonly-export offers no downloads');
    assert.match(await page.locator('story-writer textarea[data-file="preferences.jsonl"]').inputValue(), /"chosen"/);

    // The page's font and colours reach the shadow root; the accent comes from the custom property.
    const looks = await page.evaluate(() => {
      const root = document.querySelector('story-writer').shadowRoot;
      const style = (selector) => getComputedStyle(root.querySelector(selector));
      return {
        font: style('.story').fontFamily,
        color: style('.story').color,
        accent: style('[data-testid="write"]').backgroundColor,
        sheets: root.adoptedStyleSheets.length,
        inline: document.querySelectorAll('[style], style, script:not([src])').length,
      };
    });
    assert.deepEqual(looks, { font: 'Georgia, serif', color: 'rgb(30, 30, 60)', accent: 'rgb(150, 40, 40)', sheets: 1, inline: 0 });

    // The records are in the element's own database: a reload continues the story.
    await page.reload();
    await ready();
    assert.equal(await part('story').textContent(), story);
    assert.ok((await page.evaluate(() => indexedDB.databases())).some((db) => db.name === 'story-writer'));

    // The candidates attribute decides the next round's cards, which continue the kept story.
    await page.evaluate(() => document.querySelector('story-writer').setAttribute('candidates', '2'));
    await part('write').click();
    await page.waitForFunction(() =>
      document.querySelector('story-writer').shadowRoot.querySelectorAll('.card:not([disabled])').length === 2);
    assert.equal(await page.evaluate(() => document.querySelector('story-writer').story.path.length), 1);

    assert.deepEqual(await page.evaluate(() => window.violations), []);
    assert.deepEqual(problems, []);
  } catch (error) {
    await page.screenshot({ path: join(OUT, 'embed-element-failure.png'), fullPage: true }).catch(() => {});
    throw error;
  }
});
