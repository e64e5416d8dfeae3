// Type-checked by scripts/test.sh (`tsc --noEmit`, tests/pkg/tsconfig.json): uses every export
// of pkg/index.d.ts and pkg/story-writer.d.ts the way a page would. Never run.
import {
  BLOOM_VOCAB_SIZE,
  ERROR_CODES,
  StoryWriter,
  StoryWriterError,
  type CachedModel,
  type CandidateRecord,
  type Dataset,
  type ErrorCode,
  type GenerateResult,
  type ModelInfo,
  type PlannedCandidate,
  type Story,
  type TokenEvent,
} from '../../pkg/index.js';
import { StoryWriterElement } from '../../pkg/story-writer.js';

export async function useEveryExport(file: File): Promise<Dataset> {
  const writer = new StoryWriter();
  const model: ModelInfo = await writer.loadModel('models/demo.gguf', {
    onProgress: ({ phase, bytes, total }) => console.log(phase, bytes, total ?? 0),
    signal: AbortSignal.timeout(60_000),
  });
  await writer.loadModel(file, { name: file.name, cache: true });
  const cached: CachedModel[] = await writer.listCached();
  const again: ModelInfo = await writer.loadModel({ cached: cached[0].name });
  await writer.deleteCached(cached[0].name);
  console.log(again.from_cache);
  const ids: number[] = await writer.tokenize('Once upon a time');
  const text: string = await writer.decode(ids);
  const { table, warnings } = await writer.bundledTable({ vocabSize: model.vocab_size ?? BLOOM_VOCAB_SIZE });
  await writer.checkTable(table, { origin: 'mine' });
  await writer.loadTable('steps.json');
  const planned: PlannedCandidate[] = await writer.planRound({
    table, policies: ['step-mean', 'step-sample', 'coupled-random'], step: 1, seed: 3, shuffle: false,
  });
  let story: Story = await writer.newStory(text + warnings.join(''));
  const controller = new AbortController();
  const generation = writer.generate(
    { story, candidates: planned.map(({ params, seed }) => ({ params, seed })) },
    { signal: controller.signal },
  );
  for await (const token of generation) {
    const { candidate, text: piece }: TokenEvent = token;
    console.log(candidate, piece);
  }
  const result: GenerateResult = await generation.result;
  await writer.generate({ ids, candidates: [{ params: { max_new_tokens: 8 }, seed: 1 }] }).result;
  await writer.generate({ text: 'The sea', candidates: [{ params: {}, seed: 2 }] }).result;
  let records: CandidateRecord[];
  ({ story, records } = await writer.recordRound(story, planned, result));
  ({ story } = await writer.choose(story, records[0].record_id, { by: 'human' }));
  story = await writer.undo(story);
  const rebuilt: Story | null = await writer.storyFromRecords(story.id, story.records);
  const parsed = await writer.parseRecords('', { origin: 'empty.jsonl' });
  try {
    await writer.tokenize('x');
  } catch (error) {
    if (error instanceof StoryWriterError) {
      const code: ErrorCode = error.code;
      console.log(ERROR_CODES.includes(code), error.message);
    }
  }
  const element: StoryWriterElement | null = document.querySelector('story-writer');
  const created: StoryWriterElement = document.createElement('story-writer');
  console.log(element?.story?.text, created.writer, rebuilt?.text, parsed.errors);
  writer.terminate();
  return writer.exportDataset([...(rebuilt?.records ?? []), ...parsed.records], { hiddenStates: false });
}
