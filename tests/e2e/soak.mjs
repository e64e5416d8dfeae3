// A long writing session driven as a writer would (Write, wait for the three cards, pick one), with
// memory read every few rounds. Shared by storage.test.mjs (100 rounds, asserts the records)
// and bench_soak.mjs (longer runs, prints the figures).
import { byTestId, candidatesReady, downloadedText, pressKeyIn } from './lib.mjs';

/** Chromium flags that let `window.gc()` force a collection before the heap is read. */
export const GC_FLAGS = ['--js-flags=--expose-gc', '--enable-precise-memory-info'];

/** Waits until no card waits for a choice (a pick has been saved and shown). */
async function waitForPicked(page, timeout) {
  await page.waitForFunction(
    () =>
      [1, 2, 3].every(
        (i) =>
          !/press \d/.test(
            document.querySelector(`[data-testid="candidate-${i}"] .meta`)?.textContent ?? '',
          ),
      ),
    null,
    { timeout, polling: 50 },
  );
}

/**
 * The page's memory now: JS heap after a forced collection (when the page has `gc`), the
 * worker's wasm memory (the `model-memory` figure), DOM nodes and the origin's storage use.
 */
export async function memoryFigures(page) {
  return page.evaluate(async () => {
    window.gc?.();
    const storage = await navigator.storage?.estimate?.();
    return {
      jsHeapBytes: performance.memory?.usedJSHeapSize ?? null,
      workerWasmBytes:
        Number(document.querySelector('[data-testid="model-memory"]')?.dataset.bytes) || null,
      pageWasmBytes:
        Number(document.querySelector('[data-testid="model-memory"]')?.dataset.pageBytes) || null,
      domNodes: document.getElementsByTagName('*').length,
      storageBytes: storage?.usage ?? null,
      indexedDbBytes: storage?.usageDetails?.indexedDB ?? null,
    };
  });
}

/**
 * A census of the page's JS heap from a heap snapshot taken through the DevTools protocol (the
 * snapshot collects garbage first): a Map from "type name" (e.g. "closure onclick",
 * "native HTMLDivElement") to { count, bytes } of the objects of that type and name.
 */
export async function heapCensus(page) {
  const cdp = await page.context().newCDPSession(page);
  const chunks = [];
  cdp.on('HeapProfiler.addHeapSnapshotChunk', ({ chunk }) => chunks.push(chunk));
  await cdp.send('HeapProfiler.enable');
  await cdp.send('HeapProfiler.takeHeapSnapshot', { reportProgress: false });
  await cdp.detach();
  const snapshot = JSON.parse(chunks.join(''));
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[fields.indexOf('type')];
  const [type, name, size] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f));
  const census = new Map();
  for (let i = 0; i < snapshot.nodes.length; i += fields.length) {
    const key = `${types[snapshot.nodes[i + type]]} ${snapshot.strings[snapshot.nodes[i + name]]}`;
    const entry = census.get(key) ?? { count: 0, bytes: 0 };
    entry.count += 1;
    entry.bytes += snapshot.nodes[i + size];
    census.set(key, entry);
  }
  return census;
}

/**
 * What grew from census `before` to census `after`: [key, { count, bytes }] of the growth,
 * largest count first, for the keys whose count grew.
 */
export function censusGrowth(before, after) {
  const growth = [];
  for (const [key, { count, bytes }] of after) {
    const was = before.get(key) ?? { count: 0, bytes: 0 };
    if (count > was.count) growth.push([key, { count: count - was.count, bytes: bytes - was.bytes }]);
  }
  return growth.sort((a, b) => b[1].count - a[1].count);
}

/**
 * Writes `rounds` rounds on the open story (its opening already written), picking candidate
 * 1 + (round mod 3) each time; reads `memoryFigures` after round 1 and every `every` rounds,
 * and awaits `afterRound(round)` after each round when given. Returns the rows ({ round,
 * seconds, ...figures }).
 */
export async function writeRounds(
  page,
  { rounds, every = 10, timeout = 120_000, onRow = () => {}, afterRound = async () => {} },
) {
  const rows = [];
  const started = Date.now();
  for (let round = 1; round <= rounds; round += 1) {
    await page.locator(byTestId('write')).click();
    await candidatesReady(page, timeout);
    await pressKeyIn(page, String(1 + (round % 3)));
    await waitForPicked(page, timeout);
    if (round === 1 || round % every === 0) {
      const row = { round, seconds: (Date.now() - started) / 1000, ...(await memoryFigures(page)) };
      rows.push(row);
      onRow(row);
    }
    await afterRound(round);
  }
  return rows;
}

/** Every record in the page's IndexedDB (`story_records`), parsed. */
export async function storedRecords(page) {
  return page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const open = indexedDB.open('storywriter');
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const db = open.result;
          const request = db.transaction('story_records').objectStore('story_records').getAll();
          request.onerror = () => reject(request.error);
          request.onsuccess = () => {
            db.close();
            resolve(request.result.map((text) => JSON.parse(text)));
          };
        };
      }),
  );
}

/** Clicks Export and returns the records of the downloaded records.jsonl. */
export async function exportedRecords(page) {
  const text = await downloadedText(page, page.locator(byTestId('export')), 'records.jsonl');
  return text
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line));
}

/** The rows as a Markdown table. */
export function markdownTable(rows) {
  const mb = (bytes) => (bytes == null ? '–' : (bytes / 1e6).toFixed(1));
  const lines = [
    '| round | seconds | JS heap after GC MB | page wasm MB | worker wasm MB | IndexedDB MB | DOM nodes |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.round} | ${r.seconds.toFixed(0)} | ${mb(r.jsHeapBytes)} | ${mb(r.pageWasmBytes)} | ${mb(r.workerWasmBytes)} | ${mb(r.indexedDbBytes)} | ${r.domNodes} |`,
    );
  }
  return lines.join('\n');
}
