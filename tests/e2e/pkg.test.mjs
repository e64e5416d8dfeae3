// End-to-end tests of the JavaScript package (pkg/, built by scripts/build_pkg.sh) through
// examples/pkg-basic.html, served as it is from the repository's root by `storywriter serve`
// (tests/e2e/run.sh passes its address as E2E_PKG_URL; the test models are under models/).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { examplePage } from './lib.mjs';

const OUT = process.env.E2E_OUT ?? 'target/e2e';
mkdirSync(OUT, { recursive: true });
const SLOW = 120_000;
const problems = [];
const example = examplePage('pkg-basic.html', SLOW, problems);
const BASE = example.base;
const PAGE = example.url;
let page;

/** The candidates' texts and streamed token counts shown by the example page. */
const cards = () =>
  page.$$eval('#candidates li', (items) =>
    items.map((li) => ({ text: li.querySelector('button').textContent, tokens: Number(li.dataset.tokens) })));

test('pkg-basic.html loads the demo model, streams three candidates, picks with a key and exports', { timeout: 4 * SLOW }, async () => {
  page = example.page();
  try {
    await page.goto(PAGE);
    await page.waitForFunction(() => /^Ready: /.test(document.getElementById('status').textContent));
    const opening = await page.inputValue('#opening');
    await page.click('#write');
    await page.waitForFunction(() => document.querySelectorAll('#candidates li button:not([disabled])').length === 3);
    const shown = await cards();
    assert.equal(shown.length, 3);
    // Tokens came one message at a time (the random model may end a candidate at once, not all).
    assert.ok(shown.some((card) => card.tokens > 1), JSON.stringify(shown));

    await page.keyboard.press('2');
    await page.waitForFunction(() => document.getElementById('story').textContent.length > 0);
    assert.equal(await page.textContent('#story'), opening + shown[1].text);

    await page.click('#export');
    await page.waitForFunction(() => document.getElementById('dataset').textContent.includes('storywriter.record'));
    const [summary, lines] = (await page.textContent('#dataset')).split('\n\n');
    assert.equal(summary, '2 preference pairs');
    const records = lines.trim().split('\n').map((line) => JSON.parse(line));
    assert.equal(records.length, 3);
    // What the cards show is what was recorded, and the pick is recorded.
    assert.deepEqual(records.map((r) => r.output_text), shown.map((card) => card.text));
    assert.deepEqual(records.map((r) => r.chosen), [false, true, false]);
    for (const record of records) {
      assert.equal(record.schema, 'storywriter.record/2');
      assert.equal(record.input_text, opening);
      assert.equal(record.step, 1);
      assert.ok(['step-mean', 'step-sample', 'coupled-random'].includes(record.policy), record.policy);
      assert.equal(record.logprobs.length, record.output_ids.length);
    }
    assert.deepEqual(problems, []);
  } catch (error) {
    await page.screenshot({ path: join(OUT, 'pkg-basic-failure.png'), fullPage: true }).catch(() => {});
    throw error;
  }
});

test('the API: tokenize, decode, abort a generation, the model cache, tables, and errors with their codes', { timeout: 4 * SLOW }, async () => {
  page = example.page();
  const modelUrl = new URL('models/demo-tiny-q8_0.gguf', BASE).href;
  const outcome = await page.evaluate(async ([pkg, url]) => {
    const { StoryWriter, StoryWriterError, ERROR_CODES } = await import(pkg);
    const failure = (promise) =>
      promise.then(() => null, (e) => ({ code: e.code, message: e.message, typed: e instanceof StoryWriterError }));
    const writer = new StoryWriter();
    const noModel = await failure(writer.tokenize('a'));
    const progress = [];
    const model = await writer.loadModel(url, { onProgress: (p) => progress.push(p.phase) });
    const ids = await writer.tokenize('Once upon a time');
    const decoded = await writer.decode(ids);

    // Abort after the first token of three long candidates.
    const controller = new AbortController();
    const long = writer.generate(
      { ids, candidates: [1, 2, 3].map((seed) => ({ params: { max_new_tokens: 256 }, seed })) },
      { signal: controller.signal },
    );
    let tokens = 0;
    let aborted = null;
    try {
      for await (const token of long) {
        tokens += 1;
        if (tokens === 1) controller.abort();
      }
    } catch (e) {
      aborted = { code: e.code, typed: e instanceof StoryWriterError };
    }
    const resultAborted = await failure(long.result);

    // The model stays loaded; the same seed gives the same tokens.
    const spec = { params: { max_new_tokens: 8, temperature: 0.9 }, seed: 7 };
    const once = await writer.generate({ text: 'The sea', candidates: [spec] }).result;
    const again = await writer.generate({ text: 'The sea', candidates: [spec] }).result;
    // The session's memory is claimed at load: three whole 256-token candidates on a story
    // continued from them leave it as it was.
    const full = await writer.generate({ ids, candidates: [1, 2, 3].map((seed) => ({ params: { max_new_tokens: 256 }, seed })) }).result;
    const longer = [...ids, ...full.candidates[0].ids];
    const fuller = await writer.generate({ ids: longer, candidates: [4, 5, 6].map((seed) => ({ params: { max_new_tokens: 256 }, seed })) }).result;
    const memory = [model.wasm_memory_bytes, once.wasm_memory_bytes, full.wasm_memory_bytes, fuller.wasm_memory_bytes];

    // The model cache: kept once it has built, loaded from there, removed.
    const cachedPhases = [];
    await writer.loadModel(url, { cache: true });
    const listed = await writer.listCached();
    const fromCache = await writer.loadModel({ cached: model.name }, { onProgress: (p) => cachedPhases.push(p.phase) });
    const cachedIds = await writer.tokenize('Once upon a time');
    await writer.deleteCached(model.name);
    const cache = {
      listed,
      fromCache: fromCache.from_cache,
      fresh: model.from_cache,
      phases: [...new Set(cachedPhases)],
      sameIds: JSON.stringify(cachedIds) === JSON.stringify(ids),
      afterDelete: await writer.listCached(),
      absent: await failure(writer.loadModel({ cached: 'absent.gguf' })),
    };

    const { table, warnings } = await writer.loadTable(new URL('../www/params/steps.json', pkg).href);
    const planned = await writer.planRound({ table, policies: ['fixed', 'step-mean'], step: 2, seed: 5, shuffle: false });
    return {
      noModel,
      model,
      progress: [...new Set(progress)],
      ids,
      decoded,
      tokens,
      aborted,
      resultAborted,
      sameTokens: JSON.stringify(once.candidates[0].ids) === JSON.stringify(again.candidates[0].ids),
      onceTokens: once.candidates[0].ids.length,
      memory,
      inputTokens: fuller.input_ids.length,
      tableSchema: table.schema,
      warnings,
      planned: planned.map((p) => [p.policy, p.seed, p.design.display_position]),
      cache,
      badParams: await failure(writer.generate({ text: 'x', candidates: [{ params: { temperature: -1 }, seed: 1 }] }).result),
      badIds: await failure(writer.generate({ ids: [model.vocab_size], candidates: [spec] }).result),
      badInput: await failure(writer.generate({ text: 'x', ids: [1], candidates: [spec] }).result),
      badTable: await failure(writer.checkTable({ schema: 'nope' })),
      badPolicy: await failure(writer.planRound({ table, policies: ['best'], step: 1 })),
      badRecords: await failure(writer.exportDataset([{ schema: 'storywriter.record/2' }])),
      preAborted: await failure(writer.generate({ text: 'x', candidates: [spec] }, { signal: AbortSignal.abort() }).result),
      badModel: await failure(writer.loadModel(new Blob([new Uint8Array(600)]), { name: 'zeros.gguf' })),
      afterBadModel: await failure(writer.tokenize('a')),
      missing: await failure(writer.loadModel(new URL('models/absent.gguf', url).href)),
      codes: ERROR_CODES,
      modelBytes: (await (await fetch(url)).arrayBuffer()).byteLength,
    };
  }, [new URL('pkg/index.js', BASE).href, modelUrl]);

  assert.deepEqual(outcome.noModel, { code: 'no-model', message: 'no model is loaded yet: load one first', typed: true });
  assert.equal(outcome.model.name, 'demo-tiny-q8_0.gguf');
  assert.equal(outcome.model.identity.quantization, 'q8_0');
  assert.deepEqual(outcome.progress, ['download', 'build']);
  assert.ok(outcome.ids.length > 0);
  assert.equal(outcome.decoded, 'Once upon a time');
  assert.ok(outcome.tokens >= 1 && outcome.tokens < 3 * 256, `${outcome.tokens} tokens before the abort ended it`);
  assert.deepEqual(outcome.aborted, { code: 'aborted', typed: true });
  assert.equal(outcome.resultAborted.code, 'aborted');
  assert.ok(outcome.sameTokens && outcome.onceTokens > 0);
  assert.ok(outcome.memory[0] > outcome.modelBytes, JSON.stringify(outcome.memory));
  assert.deepEqual(outcome.memory, Array(4).fill(outcome.memory[0]), `the worker's memory grew (input of ${outcome.inputTokens} tokens)`);
  assert.deepEqual(outcome.cache.listed, [{ name: 'demo-tiny-q8_0.gguf', bytes: outcome.modelBytes }]);
  assert.deepEqual(
    { ...outcome.cache, listed: undefined, absent: outcome.cache.absent.code },
    { listed: undefined, fromCache: true, fresh: false, phases: ['read', 'build'], sameIds: true, afterDelete: [], absent: 'bad-params' },
  );
  assert.equal(outcome.tableSchema, 'storywriter.step-params/1');
  assert.deepEqual(outcome.planned.map(([policy, , position]) => [policy, position]), [['fixed', 1], ['step-mean', 2]]);
  assert.deepEqual(outcome.planned.map(([, seed]) => seed), [5, 6]);
  assert.equal(outcome.badParams.code, 'bad-params');
  assert.match(outcome.badParams.message, /candidates\[0\]\.params: temperature/);
  assert.equal(outcome.badIds.code, 'bad-params');
  assert.match(outcome.badIds.message, /ids\[0\]/);
  assert.match(outcome.badInput.message, /exactly one of text, ids and story/);
  assert.equal(outcome.badTable.code, 'bad-params');
  assert.equal(outcome.badPolicy.code, 'bad-params');
  assert.match(outcome.badPolicy.message, /unknown policy "best"/);
  assert.equal(outcome.badRecords.code, 'bad-params');
  assert.equal(outcome.preAborted.code, 'aborted');
  assert.equal(outcome.badModel.code, 'bad-model');
  assert.match(outcome.badModel.message, /zeros\.gguf/);
  assert.equal(outcome.afterBadModel.code, 'no-model');
  assert.equal(outcome.missing.code, 'network');
  assert.match(outcome.missing.message, /404/);
  assert.ok(outcome.codes.includes('out-of-memory'));
  assert.deepEqual(problems.filter((p) => !p.includes('404')), []);
});
