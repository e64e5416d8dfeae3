// The page's stories in IndexedDB: a database written by the previous version (whole stories in
// `stories`) is moved to the current stores without losing anything, and a long session keeps
// exactly the records it wrote (100 rounds: 300 records in IndexedDB and in the export), with
// its memory figures reported. Run by tests/e2e/run.sh (E2E_URL, E2E_OUT).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { byTestId, candidatesReady, freshPage, launchChromium, modelReady } from './lib.mjs';
import {
  GC_FLAGS,
  censusGrowth,
  exportedRecords,
  heapCensus,
  markdownTable,
  storedRecords,
  writeRounds,
} from './soak.mjs';

const BASE = process.env.E2E_URL;
const OUT = process.env.E2E_OUT ?? 'target/e2e';
if (!BASE) throw new Error('E2E_URL must be set: run tests/e2e/run.sh');
const SLOW = 120_000;
const ROUNDS = Number(process.env.E2E_SOAK_ROUNDS ?? 100);

let browser;
before(async () => {
  browser = await launchChromium(GC_FLAGS);
});
after(async () => browser?.close());

/** Story 3 of the sample log as version 1 stored it: two picks and a round waiting. */
function versionOneStory() {
  const records = readFileSync('tests/fixtures/records_sample.jsonl', 'utf8')
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line))
    .filter((r) => r.story_id.endsWith('57010002'));
  const chosen = records.filter((r) => r.chosen).sort((a, b) => a.step - b.step);
  const pending = records.filter((r) => r.step === 3);
  assert.equal(chosen.length, 2);
  assert.equal(pending.length, 3);
  return {
    title: 'A story from version 1',
    updated_at: '2026-11-30T12:00:00.000Z',
    story: {
      id: records[0].story_id,
      text: pending[0].input_text,
      path: chosen.map((r) => r.record_id),
      pending: pending.map((r) => r.record_id),
      records,
    },
  };
}

test('a database of version 1 is moved to the current stores, nothing lost', { timeout: 5 * SLOW }, async () => {
  const { context, page, problems } = await freshPage(browser, SLOW);
  const stored = versionOneStory();
  // Seed version 1 from a page of the same origin that does not run the app.
  await page.goto(new URL('manifest.webmanifest', BASE).href);
  await page.evaluate(
    (stored) =>
      new Promise((resolve, reject) => {
        const open = indexedDB.open('storywriter', 1);
        open.onupgradeneeded = () => {
          open.result.createObjectStore('stories');
          open.result.createObjectStore('records');
        };
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const db = open.result;
          const tx = db.transaction(['stories', 'records'], 'readwrite');
          tx.objectStore('stories').put(JSON.stringify(stored), stored.story.id);
          for (const record of stored.story.records) {
            tx.objectStore('records').put(JSON.stringify(record), record.record_id);
          }
          tx.oncomplete = () => {
            db.close();
            resolve();
          };
          tx.onerror = () => reject(tx.error);
        };
      }),
    stored,
  );

  await page.goto(BASE);
  await page.waitForFunction(
    (text) => document.querySelector('[data-testid="story"]')?.textContent === text,
    stored.story.text,
    { timeout: SLOW },
  );
  assert.match(await page.locator(byTestId('story-list')).innerText(), /A story from version 1/);
  // The waiting round is shown, and the records are all there, with their inputs rebuilt.
  await modelReady(page, SLOW);
  await candidatesReady(page, SLOW);
  const inStore = await storedRecords(page);
  assert.equal(inStore.length, stored.story.records.length);
  assert.ok(inStore.some((r) => r.input_delta), 'no record is stored as what it adds to its parent');
  const exported = await exportedRecords(page);
  const byId = new Map(exported.map((r) => [r.record_id, r]));
  for (const record of stored.story.records) {
    const back = byId.get(record.record_id);
    assert.ok(back, `record ${record.record_id} is missing from the export`);
    assert.equal(back.input_text, record.input_text);
    assert.deepEqual(back.input_ids, record.input_ids);
  }
  // Version 1's stores are empty now.
  const left = await page.evaluate(
    () =>
      new Promise((resolve) => {
        const open = indexedDB.open('storywriter');
        open.onsuccess = () => {
          const db = open.result;
          const request = db.transaction('stories').objectStore('stories').count();
          request.onsuccess = () => {
            db.close();
            resolve({ version: db.version, stories: request.result });
          };
        };
      }),
  );
  assert.deepEqual(left, { version: 2, stories: 0 });
  // The seeding page (a JSON file) has no icon, so Chromium asks for /favicon.ico, which 404s.
  assert.deepEqual(problems.filter((p) => !p.includes('/favicon.ico')), []);
  await context.close();
});

test(`${ROUNDS} rounds: IndexedDB and the export hold exactly the ${3 * ROUNDS} records written`, { timeout: ROUNDS * 30_000 }, async (t) => {
  const { context, page, problems } = await freshPage(browser, SLOW);
  await page.goto(BASE);
  await modelReady(page, SLOW);
  await page.locator(byTestId('prompt')).fill('The soak test began');
  // Heap snapshots a third of the way and at the end: what the page keeps per round.
  const censuses = new Map();
  const firstCensus = Math.max(2, Math.floor(ROUNDS / 3));
  const rows = await writeRounds(page, {
    rounds: ROUNDS,
    timeout: SLOW,
    onRow: (row) => t.diagnostic(JSON.stringify(row)),
    afterRound: async (round) => {
      if (round === firstCensus || round === ROUNDS) censuses.set(round, await heapCensus(page));
    },
  });
  const table = markdownTable(rows);
  writeFileSync(join(OUT, 'soak.md'), `${table}\n`);
  t.diagnostic(`\n${table}`);
  for (const row of rows) {
    assert.ok(
      row.jsHeapBytes > 0 && row.pageWasmBytes > 0 && row.workerWasmBytes > 0 && row.domNodes > 0,
      JSON.stringify(row),
    );
  }
  // Between the two snapshots: the JS objects that grew, per round. A listener kept per render
  // (a closure that is never dropped) would add at least one function per round; the branches
  // list adds its DOM nodes (proportional to the story, as the DOM node count shows).
  const span = ROUNDS - firstCensus;
  const growth = censusGrowth(censuses.get(firstCensus), censuses.get(ROUNDS));
  const lines = growth
    .slice(0, 15)
    .map(([key, { count, bytes }]) => `| ${key.slice(0, 60)} | ${(count / span).toFixed(2)} | ${(bytes / span).toFixed(0)} |`);
  const growthTable = [
    `| objects that grew, rounds ${firstCensus} → ${ROUNDS} | per round | bytes per round |`,
    '|---|---|---|',
    ...lines,
  ].join('\n');
  writeFileSync(join(OUT, 'heap-growth.md'), `${growthTable}\n`);
  t.diagnostic(`\n${growthTable}`);
  const functions = growth
    .filter(([key]) => key.startsWith('closure '))
    .reduce((sum, [, { count }]) => sum + count, 0);
  const functionsAtEnd = [...censuses.get(ROUNDS)]
    .filter(([key]) => key.startsWith('closure '))
    .reduce((sum, [, { count }]) => sum + count, 0);
  t.diagnostic(`functions in the page's heap: ${functionsAtEnd} at round ${ROUNDS}, ${functions} more than at round ${firstCensus}`);
  assert.ok(functionsAtEnd > 100, `the snapshot holds no functions (${functionsAtEnd}): the census is broken`);
  assert.ok(
    functions < span / 2,
    `the page keeps ${functions} more functions after ${span} rounds: a listener or closure per round?\n${growthTable}`,
  );

  const stored = await storedRecords(page);
  assert.equal(stored.length, 3 * ROUNDS);
  assert.equal(new Set(stored.map((r) => r.record_id)).size, 3 * ROUNDS);
  const exported = await exportedRecords(page);
  assert.equal(exported.length, 3 * ROUNDS);
  assert.equal(exported.filter((r) => r.chosen).length, ROUNDS);
  const steps = new Set(exported.map((r) => r.step));
  assert.equal(steps.size, ROUNDS);
  // Every later round continues the pick before it: its input is that record's input and output.
  const byId = new Map(exported.map((r) => [r.record_id, r]));
  for (const record of exported.filter((r) => r.step > 1)) {
    const parent = byId.get(record.parent_record_id);
    assert.ok(parent?.chosen, `record ${record.record_id}: its parent is not a chosen record`);
    assert.equal(record.input_text, parent.input_text + parent.output_text);
  }
  // Stored, each record holds only what it adds: its size does not grow with the story.
  const meanSize = (records, from, to) => {
    const part = records.filter((r) => r.step >= from && r.step <= to);
    return part.reduce((sum, r) => sum + JSON.stringify(r).length, 0) / part.length;
  };
  const [early, late] = [meanSize(stored, 2, 11), meanSize(stored, ROUNDS - 9, ROUNDS)];
  const [earlyExported, lateExported] = [meanSize(exported, 2, 11), meanSize(exported, ROUNDS - 9, ROUNDS)];
  t.diagnostic(`mean record JSON, steps 2-11 → last 10: stored ${early.toFixed(0)} → ${late.toFixed(0)} bytes, exported ${earlyExported.toFixed(0)} → ${lateExported.toFixed(0)} bytes`);
  assert.ok(late < 2 * early, `stored records grow with the story: ${early} → ${late} bytes`);
  assert.deepEqual(problems, []);
  await context.close();
});

test('a .partial model left by a cut-off download is removed and never listed', { timeout: 3 * SLOW }, async () => {
  const { context, page, problems } = await freshPage(browser, SLOW);
  // What a tab closed in the middle of a download leaves: the file under its `.partial` name.
  await page.goto(new URL('manifest.webmanifest', BASE).href);
  await page.evaluate(async () => {
    const root = await navigator.storage.getDirectory();
    const handle = await root.getFileHandle('cut-off-q8_0.gguf.partial', { create: true });
    const writable = await handle.createWritable();
    await writable.write(new Uint8Array(4096).fill(7));
    await writable.close();
  });
  await page.goto(BASE);
  await modelReady(page, SLOW);
  // The cache list, once it shows the demo model, has been read after the removal.
  await page.waitForFunction(
    () => document.querySelector('[data-testid="cached-models"]')?.textContent.includes('demo-tiny'),
    null,
    { timeout: SLOW },
  );
  assert.doesNotMatch(await page.locator(byTestId('cached-models')).textContent(), /partial|cut-off/);
  const names = await page.evaluate(async () => {
    const names = [];
    for await (const name of (await navigator.storage.getDirectory()).keys()) names.push(name);
    return names;
  });
  assert.deepEqual(names.filter((name) => name.endsWith('.partial')), [], `cache: ${names.join(', ')}`);
  assert.deepEqual(problems.filter((p) => !p.includes('/favicon.ico')), []);
  await context.close();
});
