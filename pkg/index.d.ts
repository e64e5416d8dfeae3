// Types of the storywriter package (index.js). Data objects keep the library's own field names
// (snake_case): records are `storywriter.record/2`, tables `storywriter.step-params/1`.

/** What kind of failure a StoryWriterError is. */
export type ErrorCode =
  | 'bad-model' | 'bad-params' | 'no-model' | 'network' | 'aborted' | 'out-of-memory' | 'crashed' | 'internal';

/** Every ErrorCode. */
export const ERROR_CODES: readonly ErrorCode[];

/** The vocabulary size tables are checked against before a model is loaded (BLOOM's). */
export const BLOOM_VOCAB_SIZE: number;

/** A failure of the package. */
export class StoryWriterError extends Error {
  constructor(code: ErrorCode, message: string);
  readonly code: ErrorCode;
}

/** How a candidate is sampled (transformers' generate(do_sample=True)); missing fields take
 * the defaults: temperature 1, top_k 50, top_p 1, min_p 0, typical_p 1, repetition_penalty 1,
 * max_new_tokens 64. */
export interface SamplingParams {
  greedy: boolean;
  temperature: number;
  top_k: number;
  top_p: number;
  min_p: number;
  typical_p: number;
  repetition_penalty: number;
  max_new_tokens: number;
  stop_at_sentence_end: boolean;
}

/** One candidate to generate: its parameters and seed (below 2^53). */
export interface CandidateSpec {
  params: Partial<SamplingParams>;
  seed: number;
}

/** What a model is (recorded with every candidate). */
export interface ModelIdentity {
  name: string;
  format: string;
  quantization: string;
  content_hash: string;
}

/** A loaded model. */
export interface ModelInfo {
  identity: ModelIdentity;
  name: string;
  vocab_size: number;
  context_length: number;
  /** The worker's WebAssembly memory once the model is loaded, in bytes: it holds the weights
   * and, claimed at load, what a session of rounds of up to three candidates needs at its peak,
   * so it stays flat as the story grows. */
  wasm_memory_bytes: number;
  /** Whether it came from the browser's model cache. */
  from_cache: boolean;
}

/** A model in the browser's model cache. */
export interface CachedModel {
  name: string;
  bytes: number;
}

/** Loading progress: downloading, reading a File or Blob, building the model. */
export interface LoadProgress {
  phase: 'download' | 'read' | 'build';
  bytes: number;
  total: number | null;
}

export interface LoadOptions {
  /** The model's name (default: the URL's or the File's name). */
  name?: string;
  onProgress?: (progress: LoadProgress) => void;
  signal?: AbortSignal;
  /** Keep the file in the browser's model cache once it has built (default false). */
  cache?: boolean;
}

/** A token of candidate `candidate` (0-based) as it is generated; `text` may be empty. */
export interface TokenEvent {
  candidate: number;
  text: string;
}

export type FinishReason = 'eos' | 'length' | 'sentence_end' | 'stopped';

/** A generated candidate. */
export interface Candidate {
  ids: number[];
  text: string;
  logprobs: number[];
  params: SamplingParams;
  seed: number;
  finish_reason: FinishReason;
  hidden_mean?: number[];
}

export interface GenerationStats {
  prompt_tokens: number;
  reused_tokens: number;
  prefill_s: number;
  generated_tokens: number;
  decode_steps: number;
  decode_s: number;
  spans?: { name: string; calls: number; seconds: number }[];
}

/** A finished generation. */
export interface GenerateResult {
  /** The ids the model read (the input's last tokens when it is longer than the context). */
  input_ids: number[];
  candidates: Candidate[];
  stats: GenerationStats;
  model: ModelIdentity;
  /** The worker's WebAssembly memory after the round, in bytes. */
  wasm_memory_bytes: number;
}

/** What to continue: exactly one of text, ids and story. */
export type GenerateRequest = { candidates: CandidateSpec[] } & (
  | { text: string; ids?: undefined; story?: undefined }
  | { ids: ArrayLike<number>; text?: undefined; story?: undefined }
  | { story: Story; text?: undefined; ids?: undefined }
);

/** A generation in progress: its tokens as they come, then its result. */
export interface Generation extends AsyncIterable<TokenEvent> {
  readonly result: Promise<GenerateResult>;
}

/** One tabulated parameter of a step. */
export interface ParamSummary {
  mean: number;
  std: number;
  p10: number;
  p50: number;
  p90: number;
}

export interface StepParams {
  step: number;
  count: number;
  temperature: ParamSummary;
  top_k: ParamSummary;
  top_p: ParamSummary;
  typical_p: ParamSummary;
  repetition_penalty: ParamSummary;
  max_new_tokens: ParamSummary;
}

/** The per-step parameter table (`storywriter.step-params/1`). */
export interface StepTable {
  schema: string;
  source: {
    kind: string;
    description: string;
    stories: number;
    records: number;
    chosen: number;
    created: string;
    generator: string;
    shrinkage: string;
  };
  global: StepParams;
  steps: StepParams[];
}

/** A checked table and what checking changed (clamped values, …). */
export interface CheckedTable {
  table: StepTable;
  warnings: string[];
}

export type Policy = 'step-mean' | 'step-sample' | 'coupled-random' | 'fixed';

export interface PlanOptions {
  table: StepTable;
  /** Recorded with the candidates whose policy read the table (default "bundled"). */
  table_name?: string;
  /** One per candidate. */
  policies: Policy[];
  /** The story's step (1 for the first continuation). */
  step: number;
  /** Default: a random one. */
  seed?: number;
  /** Shuffle the policies over the display positions (default true). */
  shuffle?: boolean;
  /** The parameters of `fixed`, and min_p, greedy and stop_at_sentence_end of every candidate. */
  fixed?: Partial<SamplingParams>;
}

export interface CandidateDesign {
  display_position: number;
  mix_slot: number;
  order_seed: number;
  log_propensity: number | null;
}

/** A candidate to generate, with where its parameters came from. */
export interface PlannedCandidate {
  params: SamplingParams;
  policy: string;
  param_table: string | null;
  seed: number;
  design: CandidateDesign | null;
}

/** A candidate as recorded (`storywriter.record/2`). */
export interface CandidateRecord {
  schema: string;
  record_id: string;
  story_id: string;
  step: number;
  candidate: number;
  parent_record_id: string | null;
  input_text: string;
  input_ids: number[];
  params: SamplingParams;
  policy: string;
  param_table: string | null;
  seed: number;
  output_text: string;
  output_ids: number[];
  logprobs: number[];
  finish_reason: FinishReason;
  chosen: boolean;
  chosen_by: string | null;
  created_at: string;
  chosen_at: string | null;
  model: ModelIdentity;
  app_version: string;
  display_position: number | null;
  mix_slot: number | null;
  order_seed: number | null;
  log_propensity: number | null;
  decision_ms: number | null;
  rejected_all_at: string | null;
  edited_at: string | null;
  edited_text: string | null;
  hidden_mean?: string;
  rerolled_from?: string;
}

/** A story: its text, the chosen records along its path, the waiting ones, every record. */
export interface Story {
  id: string;
  text: string;
  path: string[];
  pending: string[];
  records: CandidateRecord[];
}

/** A story and the records an operation made or changed. */
export interface Recorded {
  story: Story;
  records: CandidateRecord[];
}

/** The Hugging Face dataset of a set of records. */
export interface Dataset {
  files: {
    'records.jsonl': string;
    'preferences.jsonl': string;
    'unpaired.jsonl': string;
    'README.md': string;
  };
  /** Preference pairs (chosen, rejected). */
  pairs: number;
}

/** The records of a JSON Lines text and one error (`origin:line: reason`) per bad line. */
export interface ParsedRecords {
  records: CandidateRecord[];
  errors: string[];
}

/** The engine and the data functions, in a Web Worker the instance starts itself. */
export class StoryWriter {
  constructor();
  /** The loaded model, or null. */
  model: ModelInfo | null;
  loadModel(source: string | URL | Blob | { cached: string }, options?: LoadOptions): Promise<ModelInfo>;
  listCached(): Promise<CachedModel[]>;
  deleteCached(name: string): Promise<void>;
  tokenize(text: string): Promise<number[]>;
  decode(ids: ArrayLike<number>): Promise<string>;
  generate(request: GenerateRequest, options?: { signal?: AbortSignal }): Generation;
  bundledTable(options?: { vocabSize?: number }): Promise<CheckedTable>;
  checkTable(table: unknown, options?: { origin?: string; vocabSize?: number }): Promise<CheckedTable>;
  loadTable(url: string | URL, options?: { signal?: AbortSignal; vocabSize?: number }): Promise<CheckedTable>;
  planRound(options: PlanOptions): Promise<PlannedCandidate[]>;
  newStory(opening: string): Promise<Story>;
  recordRound(story: Story, planned: PlannedCandidate[], result: GenerateResult): Promise<Recorded>;
  choose(story: Story, recordId: string, options?: { by?: string }): Promise<Recorded>;
  undo(story: Story): Promise<Story>;
  storyFromRecords(storyId: string, records: CandidateRecord[]): Promise<Story | null>;
  exportDataset(records: CandidateRecord[], options?: { hiddenStates?: boolean }): Promise<Dataset>;
  parseRecords(text: string, options?: { origin?: string }): Promise<ParsedRecords>;
  terminate(): void;
}
