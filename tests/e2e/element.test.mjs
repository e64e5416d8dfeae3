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

test('<story-writer>: Stop ends a long round at once, records nothing of it and keeps the model; a new table keeps it too', { timeout: 4 * SLOW }, async () => {
  page = example.page();
  try {
    // A fresh page continues the story kept in IndexedDB, with three candidates a step.
    await page.goto(PAGE);
    await ready();
    const stored = () => page.evaluate(() => new Promise((resolve, reject) => {
      const open = indexedDB.open('story-writer');
      open.onerror = () => reject(open.error);
      open.onsuccess = () => {
        const all = open.result.transaction('records').objectStore('records').getAll();
        all.onsuccess = () => { open.result.close(); resolve(all.result); };
      };
    }));
    const before = { records: (await stored()).length, story: await part('story').textContent() };
    // The model object the element holds: a reload of the model would replace it.
    await page.evaluate(() => { window.loadedModel = document.querySelector('story-writer').writer.model; });

    // Rounds of 256 tokens per candidate, from a table the element loads when its attribute changes.
    await page.evaluate(() => document.querySelector('story-writer').setAttribute('table', '../tests/fixtures/long_steps.json'));
    // Stop is clicked in the same task as the first streamed token shows, so that the round is
    // still running whatever the machine's speed (its three candidates hold up to 768 tokens).
    const stopped = page.evaluate(() => new Promise((resolve) => {
      const root = document.querySelector('story-writer').shadowRoot;
      const watch = new MutationObserver(() => {
        const texts = [...root.querySelectorAll('.card .text')].map((text) => text.textContent);
        if (texts.join('') === '') return;
        watch.disconnect();
        root.querySelector('[data-testid="stop"]').click();
        resolve(texts.join('').length);
      });
      watch.observe(root.querySelector('.cards'), { childList: true, subtree: true, characterData: true });
      root.querySelector('[data-testid="write"]').click();
    }));
    assert.ok((await stopped) > 0);
    await page.waitForFunction(() =>
      document.querySelector('story-writer').shadowRoot.querySelector('[data-testid="status"]').textContent.startsWith('Stopped'));
    const after = await page.evaluate(() => {
      const element = document.querySelector('story-writer');
      const $ = (id) => element.shadowRoot.querySelector(`[data-testid="${id}"]`);
      return {
        status: $('status').textContent,
        write: $('write').disabled,
        stop: $('stop').disabled,
        cards: element.shadowRoot.querySelectorAll('.card').length,
        sameModel: element.writer.model === window.loadedModel,
      };
    });
    assert.deepEqual(after, { status: 'Stopped: nothing was recorded for that round.', write: false, stop: true, cards: 0, sameModel: true });
    assert.equal((await stored()).length, before.records, 'the stopped round left records');
    assert.equal(await part('story').textContent(), before.story);

    // Write works again on the same model, with the new table: three whole candidates of up to
    // 256 tokens each, recorded.
    await part('write').click();
    await page.waitForFunction(() =>
      document.querySelector('story-writer').shadowRoot.querySelectorAll('.card:not([disabled])').length === 3, null, { timeout: SLOW });
    const records = await stored();
    assert.equal(records.length, before.records + 3);
    const newest = records.sort((a, b) => a.created_at.localeCompare(b.created_at)).slice(-3);
    assert.deepEqual(newest.map((r) => [r.params.max_new_tokens, r.param_table]), Array(3).fill([256, '../tests/fixtures/long_steps.json']));
    assert.ok(newest.every((r) => r.finish_reason !== 'stopped'), JSON.stringify(newest.map((r) => r.finish_reason)));
    assert.ok(await page.evaluate(() => document.querySelector('story-writer').writer.model === window.loadedModel));
    assert.deepEqual(problems, []);
  } catch (error) {
    await page.screenshot({ path: join(OUT, 'embed-element-stop-failure.png'), fullPage: true }).catch(() => {});
    throw error;
  }
});
