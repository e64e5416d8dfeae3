// The web app's benchmark in headless Chromium (run by scripts/bench_web.sh, which builds the
// app, makes the models and serves them). For each model: in a fresh browser profile, the first
// load (download, store in the Origin Private File System, build) and, after a reload, the load
// from the cache; then rounds of 1 and of 3 candidates with a fixed prompt and length, read from
// the page's `round-stats` data attributes; the worker's wasm memory from `model-memory`; and
// the size of the built bundle. Prints Markdown tables and writes a JSON file.
//
// Environment: BENCH_TARGETS (JSON: [{"label":"q8_0","url":"http://127.0.0.1:PORT/"}, …], each
// URL serving the app with the model in its models/index.json), BENCH_DIST (the built dist/),
// BENCH_OUT (the JSON file to write), BENCH_PROFILES (a directory for the browser profiles,
// removed after each model), BENCH_REPEATS (measured rounds per candidate count, default 3),
// BENCH_NEW_TOKENS (new tokens per candidate, default 32), BENCH_THREADS (thread counts for the
// single-sequence rounds and the prefill of a ~300-token opening, default "1 2"; set through the
// Settings menu, which restarts the worker and reloads the model from the cache; skipped on a
// build without that menu),
// BENCH_STORY_CHARS (opening lengths in characters for the rounds-as-the-story-grows table,
// default "68 680 2025": 54, 504 and 1,499 tokens with the random models' tokenizer, the story
// lengths of issue #9's goal; the table gives the tokens they make; empty skips it),
// BENCH_PROFILE (set: the page runs with `?profile`, and each round's time per engine span —
// attention, MLP, matmuls, output projection, sampling — is printed and kept in the JSON),
// BENCH_CLI and BENCH_PAIRS (the `storywriter` binary, and how many paired single-sequence
// decodes, page then native on the target's `model` file, to run at each thread count; default
// 8, 0 or no BENCH_CLI skips them).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { chromium } from 'playwright-core';
import { CHROMIUM_FLAGS, byTestId, median, modelReady, openingOf, watch } from './lib.mjs';

const TARGETS = JSON.parse(process.env.BENCH_TARGETS ?? '[]');
const DIST = process.env.BENCH_DIST ?? 'dist';
const OUT = process.env.BENCH_OUT ?? 'target/bench-web/result.json';
const PROFILES = process.env.BENCH_PROFILES ?? 'target/bench-web/profiles';
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const NEW_TOKENS = Number(process.env.BENCH_NEW_TOKENS ?? 32);
const THREADS = (process.env.BENCH_THREADS ?? '1 2').split(/\s+/).filter(Boolean).map(Number);
const PROFILE = Boolean(process.env.BENCH_PROFILE);
const STORY_CHARS = (process.env.BENCH_STORY_CHARS ?? '68 680 2025').split(/\s+/).filter(Boolean).map(Number);
const CLI = process.env.BENCH_CLI;
const PAIRS = CLI ? Number(process.env.BENCH_PAIRS ?? 8) : 0;
if (!TARGETS.length) throw new Error('BENCH_TARGETS is empty: run scripts/bench_web.sh');
// 32 tokens with the random models' byte-level tokenizer (`storywriter tokenize`).
const PROMPT = 'The lighthouse keeper woke up at noon';
// Loading 0.5–0.6 GB and generating with BLOOM-560m in wasm takes minutes on a slow machine.
const TIMEOUT = 20 * 60_000;

/**
 * Runs in the page before its scripts: notes when the page asks its worker for the model (the
 * status says "Loading"), when each loading phase starts (the `data-phase` of the progress bar)
 * and when the model status first says "ready", in ms since navigation.
 */
function recordLoadTimeline() {
  const timeline = { requested: null, phases: [], ready: null };
  window.__loadTimeline = timeline;
  const observe = () => {
    const check = () => {
      const phase = document.querySelector('[data-testid="model-progress"]')?.dataset.phase;
      if (phase && timeline.phases.at(-1)?.phase !== phase) {
        timeline.phases.push({ phase, ms: performance.now() });
      }
      const status = document.querySelector('[data-testid="model-status"]')?.textContent ?? '';
      if (timeline.requested === null && /^Loading/.test(status)) timeline.requested = performance.now();
      if (timeline.ready === null && /\bready\b/i.test(status)) timeline.ready = performance.now();
    };
    new MutationObserver(check).observe(document.body, {
      subtree: true,
      childList: true,
      characterData: true,
      attributes: true,
      attributeFilter: ['data-phase'],
    });
    check();
  };
  if (document.body) observe();
  else document.addEventListener('DOMContentLoaded', observe);
}

/**
 * Waits until `predicate` (run in the page with `arg`) is true, for up to TIMEOUT; fails at
 * once when the page, its worker or the browser reported an error (into `problems`).
 */
async function waitFor(page, problems, predicate, arg) {
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    try {
      await page.waitForFunction(predicate, arg, { timeout: 5_000, polling: 100 });
      return;
    } catch (error) {
      if (error.name !== 'TimeoutError') throw error;
      if (problems.length) throw new Error(`the page reported errors:\n  ${problems.join('\n  ')}`);
      if (Date.now() > deadline) throw error;
    }
  }
}

/** Waits until the model is ready (failing on a load error); returns the load timeline. */
async function loadTimeline(page, problems) {
  await waitFor(
    page,
    problems,
    () => {
      const error = document.querySelector('[data-testid="model-error"]');
      if (error && !error.hidden && error.textContent.trim()) {
        throw new Error(`model-error: ${error.textContent}`);
      }
      return window.__loadTimeline?.ready != null;
    },
    null,
  );
  const timeline = await page.evaluate(() => ({
    ...window.__loadTimeline,
    // The navigation itself (for a reload: unloading the old page, then fetching this one).
    navigation: performance.getEntriesByType('navigation')[0]?.toJSON(),
  }));
  // Each phase lasts until the next one starts; the last one until the model is ready.
  const phases = timeline.phases.map(({ phase, ms }, i) => ({
    phase,
    s: ((timeline.phases[i + 1]?.ms ?? timeline.ready) - ms) / 1000,
  }));
  const firstPhase = timeline.phases[0]?.ms ?? timeline.ready;
  const navigation = timeline.navigation ?? {};
  return {
    total_s: timeline.ready / 1000,
    // Navigation start to the first byte of the page, and to its DOMContentLoaded.
    navigation_s: { response_start: navigation.responseStart / 1000, dom_content_loaded: navigation.domContentLoadedEventEnd / 1000 },
    page_start_s: (timeline.requested ?? firstPhase) / 1000,
    worker_start_s: (firstPhase - (timeline.requested ?? firstPhase)) / 1000,
    phases,
  };
}

function describeLoad(load) {
  const phases = load.phases.map((p) => `${p.phase} ${p.s.toFixed(2)} s`).join(', ');
  return (
    `ready after ${load.total_s.toFixed(2)} s (page start ${load.page_start_s.toFixed(2)} s, of which navigation ` +
    `${load.navigation_s.response_start.toFixed(2)} s to the first byte, ${load.navigation_s.dom_content_loaded.toFixed(2)} s to DOMContentLoaded; ` +
    `worker start and cache lookup ${load.worker_start_s.toFixed(2)} s, ${phases}); wasm memory ${load.wasm_memory_bytes} bytes`
  );
}

async function wasmMemoryBytes(page) {
  const bytes = await page.locator(byTestId('model-memory')).getAttribute('data-bytes');
  return bytes === null ? null : Number(bytes);
}

/** The `data-*` figures of the last round (see `show_round_stats` in src/web/app.rs). */
async function roundStats(page) {
  return page.locator(byTestId('round-stats')).evaluate((el) => ({
    round: Number(el.dataset.round),
    candidates: Number(el.dataset.candidates),
    prompt_tokens: Number(el.dataset.promptTokens),
    // Story tokens a kept cache already held (0 from a build without the attribute).
    reused_tokens: Number(el.dataset.reusedTokens ?? 0),
    prefill_s: Number(el.dataset.prefillS),
    generated_tokens: Number(el.dataset.generatedTokens),
    decode_steps: Number(el.dataset.decodeSteps),
    decode_s: Number(el.dataset.decodeS),
    // The worker's threads (a build before the threads setting has no such attribute).
    threads: el.dataset.threads ? Number(el.dataset.threads) : null,
    // With BENCH_PROFILE: seconds per engine span ({name, calls, seconds}).
    spans: el.dataset.spans ? JSON.parse(el.dataset.spans) : null,
  }));
}

/** Clicks `button` and waits for the round it starts to be done; returns its figures. */
async function round(page, problems, button) {
  const before = await page.locator(byTestId('round-stats')).getAttribute('data-round');
  await page.locator(byTestId(button)).click();
  await waitFor(
    page,
    problems,
    (previous) => {
      const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
      const notice = $('notice')?.textContent ?? '';
      if (/failed/i.test(notice)) throw new Error(`notice: ${notice}`);
      const done = $('round-stats')?.dataset.round;
      return done !== undefined && done !== previous && $('write')?.disabled === false;
    },
    before,
  );
  return roundStats(page);
}

/** Spans as "name calls× seconds s" for a log line. */
const describeSpans = (spans) =>
  spans.map((s) => `${s.name} ${s.calls}× ${s.seconds.toFixed(3)} s`).join(', ');

/** Sets the page's rounds to `candidates` candidates of NEW_TOKENS tokens. */
async function roundSettings(page, candidates) {
  await page.locator(byTestId('settings-toggle')).click();
  await page.locator(byTestId('candidates-per-step')).selectOption(String(candidates));
  await page.locator(byTestId('override-max-new-tokens')).fill(String(NEW_TOKENS));
  await page.locator(byTestId('settings-toggle')).click();
}

/** One warm-up round and REPEATS measured rounds of `candidates` candidates (a new story). */
async function writeRounds(page, problems, candidates) {
  await roundSettings(page, candidates);
  await page.locator(byTestId('new-story')).click();
  await page.locator(byTestId('prompt')).fill(PROMPT);
  const warmup = await round(page, problems, 'write');
  const rounds = [];
  for (let i = 0; i < REPEATS; i += 1) {
    rounds.push(await round(page, problems, 'regenerate'));
    const r = rounds.at(-1);
    console.log(
      `  ${candidates} candidate(s), round ${i + 1}/${REPEATS}: prefill ${r.prompt_tokens} tokens in ${r.prefill_s.toFixed(2)} s, ` +
        `decode ${r.generated_tokens} tokens in ${r.decode_s.toFixed(2)} s`,
    );
    if (r.spans) console.log(`    spans: ${describeSpans(r.spans)}`);
  }
  const prefill = rounds.map((r) => r.prompt_tokens / r.prefill_s);
  const decode = rounds.map((r) => r.generated_tokens / r.decode_s);
  return {
    candidates,
    warmup,
    rounds,
    prefill_tok_s: median(prefill),
    decode_tok_s: median(decode),
    decode_tok_s_per_candidate: median(decode) / candidates,
    threads: rounds.at(-1)?.threads ?? null,
    wasm_memory_bytes: await wasmMemoryBytes(page),
  };
}

/**
 * The page's single-sequence decode against native `storywriter bench` on the same `model` file
 * at the same thread count, paired: PAIRS times a round in the page (regenerate: the story's
 * PROMPT kept in cache, NEW_TOKENS new tokens) then a native prefill of as many tokens and a
 * decode of as many. A ratio of two runs seconds apart is what the machine's drift over minutes
 * (±25% on the project's VM) leaves alone; returns the pairs and the ratios' median.
 */
async function pairedWithNative(page, problems, threads, model) {
  const pairs = [];
  for (let i = 0; i < PAIRS; i += 1) {
    const ours = await round(page, problems, 'regenerate');
    const out = execFileSync(CLI, [
      'bench', '--model', model, '--prompt-tokens', String(ours.reused_tokens + ours.prompt_tokens),
      '--new-tokens', String(NEW_TOKENS), '--candidates', '1', '--threads', String(threads), '--json',
    ]);
    const page_tok_s = ours.generated_tokens / ours.decode_s;
    const native_tok_s = JSON.parse(out).decode_tok_s;
    pairs.push({ page_tok_s, native_tok_s, ratio: page_tok_s / native_tok_s });
    console.log(
      `  pair ${i + 1}/${PAIRS}: page ${page_tok_s.toFixed(1)} tok/s, native ${native_tok_s.toFixed(1)} tok/s: ${pairs.at(-1).ratio.toFixed(2)}`,
    );
  }
  const ratios = pairs.map((p) => p.ratio);
  return { pairs, median_ratio: median(ratios), min_ratio: Math.min(...ratios), max_ratio: Math.max(...ratios) };
}

/**
 * The round time as the story grows: for each length of STORY_CHARS a page of its own (a
 * browser context each: its own worker and storage), a new story of that many characters and
 * its first round (the whole story prefilled); then REPEATS turns in which each page in turn
 * picks the first card and runs a round (the kept caches run only the picked candidate's last
 * token): three candidates of NEW_TOKENS tokens, wall time from the click to the round's end.
 * The lengths take their rounds in turn, not one length after the other, so that the machine's
 * drift over minutes (±15% on the project's VM) stays out of their ratios.
 */
async function storyRounds(url, problems) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: CHROMIUM_FLAGS,
  });
  const timed = async (page) => {
    const start = Date.now();
    const stats = await round(page, problems, 'write');
    return { ...stats, wall_s: (Date.now() - start) / 1000 };
  };
  try {
    const stories = [];
    for (const chars of STORY_CHARS) {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      page.setDefaultTimeout(TIMEOUT);
      watch(page, problems);
      await page.goto(PROFILE ? `${url}?profile` : url);
      await modelReady(page, TIMEOUT);
      await roundSettings(page, 3);
      await page.locator(byTestId('new-story')).click();
      await page.locator(byTestId('prompt')).fill(openingOf(chars));
      stories.push({ page, first: await timed(page), rounds: [] });
    }
    for (let i = 0; i < REPEATS; i += 1) {
      for (const { page, rounds } of stories) {
        await page.locator(byTestId('candidate-1')).click();
        // The pick is saved and shown before the next round starts from it.
        await page.waitForSelector(`${byTestId('candidate-1')}.empty`);
        rounds.push(await timed(page));
      }
    }
    return stories.map(({ first, rounds }) => {
      const row = {
        story_tokens: first.reused_tokens + first.prompt_tokens,
        first,
        rounds,
        round_wall_s: median(rounds.map((r) => r.wall_s)),
        prefill_s: median(rounds.map((r) => r.prefill_s)),
        decode_s: median(rounds.map((r) => r.decode_s)),
        threads: rounds.at(-1)?.threads ?? null,
      };
      console.log(
        `  story of ${row.story_tokens} tokens: first round ${first.wall_s.toFixed(1)} s; after a pick ${row.round_wall_s.toFixed(1)} s ` +
          `(rounds ${rounds.map((r) => r.wall_s.toFixed(2)).join(', ')} s; prefill ${rounds.map((r) => r.prompt_tokens).join(', ')} tokens in ${row.prefill_s.toFixed(2)} s, decode ${row.decode_s.toFixed(2)} s)`,
      );
      return row;
    });
  } finally {
    await browser.close();
  }
}

async function benchTarget({ label, url, model: modelFile }, index) {
  const profile = join(PROFILES, `profile-${index}`);
  rmSync(profile, { recursive: true, force: true });
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: CHROMIUM_FLAGS,
    viewport: { width: 1280, height: 900 },
  });
  const problems = [];
  try {
    context.setDefaultTimeout(TIMEOUT);
    await context.addInitScript(recordLoadTimeline);
    const page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (msg) => msg.type() === 'error' && problems.push(`console: ${msg.text()}`));
    page.on('pageerror', (error) => problems.push(`page error: ${error}`));
    page.on('crash', () => problems.push('the page crashed'));
    page.on('worker', (worker) =>
      worker.on('console', (msg) => msg.type() === 'error' && problems.push(`worker console: ${msg.text()}`)),
    );
    console.log(`${label}: first load (download, store in the cache, build)`);
    // `?profile`: the worker times the engine's spans and each round's stats carry them.
    await page.goto(PROFILE ? `${url}?profile` : url);
    const first = await loadTimeline(page, problems);
    first.wasm_memory_bytes = await wasmMemoryBytes(page);
    console.log(`  ${describeLoad(first)}`);
    console.log(`${label}: reload (from the cache)`);
    await page.reload();
    const cached = await loadTimeline(page, problems);
    cached.wasm_memory_bytes = await wasmMemoryBytes(page);
    console.log(`  ${describeLoad(cached)}`);
    // From the cache: no download (the file is read one tensor at a time while building).
    if (cached.phases.some((p) => p.phase === 'download')) {
      throw new Error(`the reload did not load from the cache: ${JSON.stringify(cached.phases)}`);
    }
    const model = await page.locator(byTestId('model-status')).innerText();
    console.log(`${label}: writing`);
    const one = await writeRounds(page, problems, 1);
    const three = await writeRounds(page, problems, 3);
    const threaded = [];
    if ((await page.locator(byTestId('threads')).count()) > 0) {
      for (const threads of THREADS) {
        console.log(`${label}: ${threads} thread(s) asked, single sequence`);
        await page.locator(byTestId('settings-toggle')).click();
        await page.evaluate(() => {
          window.__loadTimeline.ready = null;
        });
        await page.locator(byTestId('threads')).selectOption(String(threads));
        await page.locator(byTestId('settings-toggle')).click();
        await waitFor(page, problems, () => window.__loadTimeline?.ready != null, null);
        const result = await writeRounds(page, problems, 1);
        const line = await page.locator(byTestId('round-stats')).innerText();
        console.log(`  ${line}`);
        const paired = PAIRS > 0 && modelFile ? await pairedWithNative(page, problems, threads, modelFile) : null;
        // Prefill of one sequence: a new story whose opening is ~300 tokens, the whole of it run.
        await page.locator(byTestId('new-story')).click();
        await page.locator(byTestId('prompt')).fill(openingOf(300));
        const long = await round(page, problems, 'write');
        const story_prefill = {
          tokens: long.prompt_tokens,
          seconds: long.prefill_s,
          tok_s: long.prompt_tokens / long.prefill_s,
        };
        console.log(`  prefill of a ${long.prompt_tokens}-token opening: ${story_prefill.tok_s.toFixed(1)} tok/s`);
        threaded.push({ asked: threads, ...result, story_prefill, paired });
      }
    }
    console.log(`${label}: rounds as the story grows`);
    const stories = STORY_CHARS.length ? await storyRounds(url, problems) : [];
    return { label, url, model, first_load: first, cached_load: cached, write: [one, three], threaded, stories, problems };
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

/** Raw and gzip (level 9) sizes of the built app's wasm and JavaScript files. */
function bundleSizes(dist) {
  const files = readdirSync(dist)
    .filter((name) => /\.(wasm|js)$/.test(name))
    .sort()
    .map((name) => {
      const data = readFileSync(join(dist, name));
      return { file: name, bytes: statSync(join(dist, name)).size, gzip_bytes: gzipSync(data, { level: 9 }).length };
    });
  const total = files.reduce((sum, f) => ({ bytes: sum.bytes + f.bytes, gzip_bytes: sum.gzip_bytes + f.gzip_bytes }), {
    bytes: 0,
    gzip_bytes: 0,
  });
  return { files, total };
}

const mb = (bytes) => (bytes / 1e6).toFixed(1);
const fixed = (value, digits) => (Number.isFinite(value) ? value.toFixed(digits) : '–');

function markdown(results, bundle) {
  const lines = [];
  lines.push(
    '| model | first load s | start · download · store · build s | reload, from the cache s | start · read · build s | wasm memory after load MB (first · reload) |',
  );
  lines.push('|---|---|---|---|---|---|');
  for (const r of results) {
    const parts = (load) => [load.page_start_s + load.worker_start_s, ...load.phases.map((p) => p.s)].map((v) => fixed(v, 1)).join(' · ');
    const { first_load: first, cached_load: cached } = r;
    lines.push(
      `| ${r.label} | ${fixed(first.total_s, 1)} | ${parts(first)} | ${fixed(cached.total_s, 1)} | ${parts(cached)} | ${mb(first.wasm_memory_bytes)} · ${mb(cached.wasm_memory_bytes)} |`,
    );
  }
  lines.push('');
  lines.push(
    `| model | candidates | prefill tok/s (${results[0]?.write[0].rounds[0]?.prompt_tokens ?? '?'} tokens) | decode tok/s, all candidates | decode tok/s per candidate | wasm memory after writing MB |`,
  );
  lines.push('|---|---|---|---|---|---|');
  for (const r of results) {
    for (const w of r.write) {
      lines.push(
        `| ${r.label} | ${w.candidates} | ${fixed(w.prefill_tok_s, 1)} | ${fixed(w.decode_tok_s, 2)} | ${fixed(w.decode_tok_s_per_candidate, 2)} | ${mb(w.wasm_memory_bytes)} |`,
      );
    }
  }
  lines.push('');
  lines.push(
    '| model | threads asked · running | prefill tok/s (opening of ~300 tokens) | decode tok/s, 1 candidate | decode ÷ native, paired: median (range) |',
  );
  lines.push('|---|---|---|---|---|');
  for (const r of results) {
    for (const t of r.threaded) {
      const paired = t.paired
        ? `${fixed(t.paired.median_ratio, 2)} (${fixed(t.paired.min_ratio, 2)}–${fixed(t.paired.max_ratio, 2)}, ${t.paired.pairs.length} pairs)`
        : '–';
      lines.push(
        `| ${r.label} | ${t.asked} · ${t.threads ?? '?'} | ${fixed(t.story_prefill?.tok_s, 1)} | ${fixed(t.decode_tok_s, 2)} | ${paired} |`,
      );
    }
  }
  lines.push('');
  lines.push('| model | story tokens | threads | first round s (whole story prefilled) | round after a pick s, median | of which prefill s · decode s |');
  lines.push('|---|---|---|---|---|---|');
  for (const r of results) {
    for (const st of r.stories) {
      lines.push(
        `| ${r.label} | ${st.story_tokens} | ${st.threads ?? '?'} | ${fixed(st.first.wall_s, 1)} | ${fixed(st.round_wall_s, 1)} | ${fixed(st.prefill_s, 2)} · ${fixed(st.decode_s, 2)} |`,
      );
    }
  }
  lines.push('');
  lines.push('| file | bytes | gzip -9 bytes |');
  lines.push('|---|---|---|');
  for (const f of [...bundle.files, { file: 'total', ...bundle.total }]) {
    lines.push(`| ${f.file} | ${f.bytes.toLocaleString('en')} | ${f.gzip_bytes.toLocaleString('en')} |`);
  }
  return lines.join('\n');
}

mkdirSync(PROFILES, { recursive: true });
const bundle = bundleSizes(DIST);
const results = [];
for (const [index, target] of TARGETS.entries()) {
  results.push(await benchTarget(target, index));
}
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: CHROMIUM_FLAGS });
const chromiumVersion = browser.version();
await browser.close();
const report = {
  date: new Date().toISOString(),
  chromium: chromiumVersion,
  prompt: PROMPT,
  new_tokens: NEW_TOKENS,
  repeats: REPEATS,
  results,
  bundle,
};
writeFileSync(OUT, `${JSON.stringify(report, null, 2)}\n`);
console.log(`\nChromium ${chromiumVersion}; ${REPEATS} rounds of ${NEW_TOKENS} new tokens per candidate after a warm-up round (medians)\n`);
console.log(markdown(results, bundle));
console.log(`\nwrote ${OUT}`);
for (const r of results) {
  if (r.problems.length) console.log(`${r.label}: console errors:\n  ${r.problems.join('\n  ')}`);
}
