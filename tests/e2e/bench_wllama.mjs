// wllama (llama.cpp in wasm, the npm package @wllama/wllama) on the same GGUF file in the same
// Chromium as the app's benchmark (run by scripts/bench_web.sh, which serves tests/e2e/wllama/
// next to wllama's esm/ directory and the model, cross-origin isolated so that wllama can use
// threads). For each thread count: single-sequence decode (a short prompt, then new tokens,
// greedy, end-of-sequence ignored) and prefill (the ~300-character opening that bench_web.mjs
// prefills), from llama.cpp's own timings.
//
// Environment: WLLAMA_URL (the harness page), WLLAMA_MODEL (the model's URL), BENCH_THREADS
// (default "1 2"), BENCH_NEW_TOKENS (default 32), BENCH_REPEATS (default 3), WLLAMA_OUT (a JSON
// file to write).
import { writeFileSync } from 'node:fs';
import { launchChromium, median, openingOf, watch } from './lib.mjs';

const URL_ = process.env.WLLAMA_URL;
const MODEL = process.env.WLLAMA_MODEL;
if (!URL_ || !MODEL) throw new Error('WLLAMA_URL and WLLAMA_MODEL must be set: run scripts/bench_web.sh');
const THREADS = (process.env.BENCH_THREADS ?? '1 2').split(/\s+/).filter(Boolean).map(Number);
const NEW_TOKENS = Number(process.env.BENCH_NEW_TOKENS ?? 32);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const SHORT_PROMPT = 'Once upon a time';
// The opening the app's benchmark prefills per thread count, so that both prefill the same text.
const LONG_PROMPT = openingOf(300);

const browser = await launchChromium();
const results = [];
try {
  for (const threads of THREADS) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const problems = [];
    watch(page, problems);
    await page.goto(URL_);
    await page.waitForFunction(() => window.wllamaReady === true);
    if (!(await page.evaluate(() => window.crossOriginIsolated))) {
      throw new Error('the wllama page is not cross-origin isolated: no threads');
    }
    const run = (prompt, newTokens) =>
      page.evaluate((args) => window.benchWllama(args), { model: MODEL, threads, prompt, newTokens, repeats: REPEATS });
    const decode = await run(SHORT_PROMPT, NEW_TOKENS);
    const prefill = await run(LONG_PROMPT, 1);
    const result = {
      threads,
      multi_thread: decode.multiThread,
      load_s: decode.loadSeconds,
      decode_tokens: decode.timings[0]?.predicted_n,
      decode_tok_s: median(decode.timings.map((t) => t.predicted_per_second)),
      prefill_tokens: prefill.timings[0]?.prompt_n,
      prefill_tok_s: median(prefill.timings.map((t) => t.prompt_per_second)),
      problems,
    };
    console.log(
      `wllama, ${threads} thread(s)${result.multi_thread === false ? ' (single-threaded build)' : ''}: ` +
        `decode ${result.decode_tok_s.toFixed(1)} tok/s (${result.decode_tokens} tokens), ` +
        `prefill ${result.prefill_tok_s.toFixed(1)} tok/s (${result.prefill_tokens} tokens), load ${result.load_s.toFixed(1)} s`,
    );
    results.push(result);
    await context.close();
  }
} finally {
  await browser.close();
}
if (process.env.WLLAMA_OUT) writeFileSync(process.env.WLLAMA_OUT, `${JSON.stringify(results, null, 2)}\n`);
