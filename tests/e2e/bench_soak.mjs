// The soak benchmark (scripts/bench_soak.sh): for each target ({label, url, rounds, longStory,
// modelBytes} in SOAK_TARGETS), a fresh browser profile writes `rounds` rounds and prints the
// memory figures every 10 rounds as a Markdown table; with `longStory`, it then writes one round
// on a new story of ~2,000 tokens, then a pick, an edit of its first word and a round that
// recomputes the whole story, giving the worker's wasm memory against the model file after each;
// with `pickerStories` (S stories of N steps, [S, N]), the autopilot then writes those stories
// and the picker panel trains on all the rounds, timed from the click to the trained picker.
import { writeFileSync } from 'node:fs';
import { byTestId, candidatesReady, launchChromium, modelReady, startAutopilot, textMatching } from './lib.mjs';
import { GC_FLAGS, markdownTable, memoryFigures, writeRounds } from './soak.mjs';

const TIMEOUT = 600_000;
const targets = JSON.parse(process.env.SOAK_TARGETS ?? '[]');
const browser = await launchChromium(GC_FLAGS);
const results = [];
try {
  for (const target of targets) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    context.setDefaultTimeout(TIMEOUT);
    const page = await context.newPage();
    await page.goto(target.url);
    await modelReady(page, TIMEOUT);
    await page.locator(byTestId('prompt')).fill('The lighthouse keeper wrote in her log every night');
    console.log(`\n### ${target.label}: ${target.rounds} rounds\n`);
    const rows = await writeRounds(page, {
      rounds: target.rounds,
      timeout: TIMEOUT,
      onRow: (row) => console.error(JSON.stringify(row)),
    });
    console.log(markdownTable(rows));
    const result = { ...target, rows };
    if (target.longStory) {
      // ~2,000 tokens of varied words (BPE gives about one token per short word).
      const words = 'the keeper lit a lamp and the sea was dark while ships passed near rocks'.split(' ');
      const prompt = Array.from({ length: 1900 }, (_, i) => words[(i * 7) % words.length]).join(' ');
      await page.locator(byTestId('new-story')).click();
      await page.locator(byTestId('prompt')).fill(prompt);
      await page.locator(byTestId('write')).click();
      await candidatesReady(page, TIMEOUT);
      result.longStory = await memoryFigures(page);
      const report = (what, figures) =>
        console.log(
          `\n${what}: worker wasm memory ${(figures.workerWasmBytes / 1e6).toFixed(0)} MB, ` +
            `${(figures.workerWasmBytes / target.modelBytes).toFixed(2)}× the model file (${(target.modelBytes / 1e6).toFixed(0)} MB)`,
        );
      report('One round on a story of ~2,000 tokens', result.longStory);
      // A pick, then a hand edit of the story's first word: the next round recomputes it all.
      await page.locator(byTestId('candidate-1')).click();
      await page.waitForSelector(`${byTestId('candidate-1')}.empty`);
      await page.locator(byTestId('edit-story')).click();
      const editor = page.locator(byTestId('story-editor'));
      await editor.fill(`A${(await editor.inputValue()).slice(3)}`);
      await page.locator(byTestId('save-edit')).click();
      await page.locator(byTestId('write')).click();
      await candidatesReady(page, TIMEOUT);
      result.editedStory = await memoryFigures(page);
      report('Then a pick, an edit of the first word and a round that recomputes the story', result.editedStory);
    }
    if (target.pickerStories) {
      const [stories, steps] = target.pickerStories;
      for (let i = 0; i < stories; i += 1) {
        await page.locator(byTestId('new-story')).click();
        await page.locator(byTestId('prompt')).fill(`Tale ${i + 1}: the keeper`);
        await startAutopilot(page, steps, 'random');
        await textMatching(page, 'autopilot-status', new RegExp(`Autopilot wrote ${steps} steps`), TIMEOUT);
      }
      const start = Date.now();
      await page.locator(byTestId('picker-train')).click();
      const status = await textMatching(page, 'picker-status', /^(Trained|The picker was not)/, TIMEOUT);
      const seconds = (Date.now() - start) / 1000;
      const evaluation = await page.locator(byTestId('picker-eval')).textContent();
      result.picker = { seconds, status, evaluation };
      console.log(`\nPicker trained in the page in ${seconds.toFixed(1)} s (click to trained, records read from IndexedDB included): ${status}\n${evaluation}`);
    }
    results.push(result);
    await context.close();
  }
} finally {
  await browser.close();
}
if (process.env.SOAK_OUT) writeFileSync(process.env.SOAK_OUT, JSON.stringify(results, null, 2));
