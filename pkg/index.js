// storywriter as a JavaScript package: BLOOM in a Web Worker this module starts itself, so the
// page never blocks. Every method sends one request to the worker (pkg/worker.js) and
// resolves with plain objects in the library's own shapes; see index.d.ts and README.md.

/** Every `code` a StoryWriterError may have. */
export const ERROR_CODES = Object.freeze([
  'bad-model', 'bad-params', 'no-model', 'network', 'aborted', 'out-of-memory', 'crashed', 'internal',
]);

/** The vocabulary size tables are checked against before a model is loaded (BLOOM's). */
export const BLOOM_VOCAB_SIZE = 250880;

/** A failure of the package: `code` says what kind (one of ERROR_CODES). */
export class StoryWriterError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'StoryWriterError';
    this.code = code;
  }
}

const aborted = (what) => new StoryWriterError('aborted', `${what} was aborted`);

/** A generation in progress: an async iterable of its tokens ({candidate, text}) as they come,
 * and `result`, the candidates once it is over. */
class Generation {
  #tokens = [];
  #wake = null;
  #over = false;
  #error = null;

  constructor(result) {
    this.result = result.then(
      (value) => { this.#end(null); return value; },
      (error) => { this.#end(error); throw error; },
    );
    this.result.catch(() => {}); // the iterator reports it too
  }

  /** Called by StoryWriter for every token. */
  push(token) {
    this.#tokens.push(token);
    this.#wake?.();
  }

  #end(error) {
    this.#over = true;
    this.#error = error;
    this.#wake?.();
  }

  async *[Symbol.asyncIterator]() {
    for (;;) {
      if (this.#tokens.length > 0) {
        yield this.#tokens.shift();
      } else if (this.#over) {
        if (this.#error) throw this.#error;
        return;
      } else {
        await new Promise((resolve) => { this.#wake = resolve; });
        this.#wake = null;
      }
    }
  }
}

/** The engine and the data functions, in a worker of their own. */
export class StoryWriter {
  #worker = null;
  #next = 1;
  #pending = new Map();
  /** The loaded model ({identity, name, vocab_size, context_length}), or null. */
  model = null;

  /** Starts the worker (its wasm loads in the background). */
  constructor() {
    this.#start();
  }

  #start() {
    this.#worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    this.#worker.onmessage = ({ data }) => this.#receive(data);
    this.#worker.onerror = (event) => {
      event.preventDefault();
      this.#crashed(`the model worker failed: ${event.message || 'it could not start'}`);
    };
  }

  #crashed(message) {
    this.#worker?.terminate();
    this.#worker = null;
    this.model = null;
    for (const { reject } of this.#pending.values()) reject(new StoryWriterError('crashed', message));
    this.#pending.clear();
  }

  #receive(data) {
    if (data.fatal) return this.#crashed(data.fatal.message);
    const request = this.#pending.get(data.id);
    if (!request) return;
    if (data.progress) request.onProgress?.(data.progress);
    else if (data.token) request.onToken?.(data.token);
    else {
      this.#pending.delete(data.id);
      if (data.error) {
        request.reject(new StoryWriterError(data.error.code, data.error.message));
        // A trapped wasm is not used again: the next request starts a new worker.
        if (['crashed', 'out-of-memory'].includes(data.error.code)) this.#crashed(data.error.message);
      } else {
        request.resolve(data.value);
      }
    }
  }

  /** Sends `op` to the worker; `signal` cancels it. */
  #call(op, args, { signal, onProgress, onToken } = {}) {
    if (signal?.aborted) return Promise.reject(aborted(op));
    if (!this.#worker) this.#start();
    const id = this.#next++;
    const worker = this.#worker;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, onProgress, onToken });
      signal?.addEventListener('abort', () => worker.postMessage({ op: 'abort', args: { id } }), { once: true });
      worker.postMessage({ id, op, args });
    });
  }

  /** Loads a GGUF model from a URL (relative to the page), a File, a Blob or the browser's
   * model cache ({cached: name}), replacing any loaded one; `onProgress({phase, bytes, total})`
   * reports the download and the build; with `cache`, the file is kept in the cache. */
  async loadModel(source, { name, onProgress, signal, cache = false } = {}) {
    let args;
    if (source instanceof Blob) {
      args = { source, name: name ?? source.name ?? 'model.gguf', cache };
    } else if (typeof source === 'string' || source instanceof URL) {
      const url = new URL(source, document.baseURI);
      args = { source: url.href, name: name ?? (url.pathname.split('/').pop() || 'model.gguf'), cache };
    } else if (typeof source?.cached === 'string') {
      args = { cached: source.cached };
    } else {
      throw new StoryWriterError('bad-params', 'loadModel takes a URL, a File, a Blob or {cached: name}');
    }
    this.model = null;
    this.model = await this.#call('load', args, { signal, onProgress });
    return this.model;
  }

  /** The models in the browser's model cache (the Origin Private File System): [{name, bytes}]. */
  listCached() {
    return this.#call('listCached', {});
  }

  /** Removes a model from the cache. */
  deleteCached(name) {
    return this.#call('deleteCached', { name });
  }

  /** The token ids of `text` in the loaded model's vocabulary. */
  tokenize(text) {
    return this.#call('tokenize', { text });
  }

  /** The text of token ids. */
  decode(ids) {
    return this.#call('decode', { ids });
  }

  /** Generates candidates continuing `text`, token `ids` or a `story`, one per entry of
   * `candidates` ({params, seed}); iterate the result for the tokens as they come and await
   * its `result` for the candidates. `signal` stops it (the iterator and `result` then fail
   * with code `aborted`). */
  generate({ text, ids, story, candidates }, { signal } = {}) {
    const request = { candidates };
    if (text !== undefined) request.text = text;
    if (ids !== undefined) request.ids = Array.from(ids);
    if (story !== undefined) request.story = story;
    let generation;
    const result = this.#call('generate', { request }, { signal, onToken: (token) => generation.push(token) });
    generation = new Generation(result);
    return generation;
  }

  /** The table bundled with the package: {table, warnings}. */
  bundledTable({ vocabSize } = {}) {
    return this.#call('bundledTable', { vocabSize: vocabSize ?? this.#vocabSize() });
  }

  /** A table object checked as the library reads table files: {table, warnings}. */
  checkTable(table, { origin = 'table', vocabSize } = {}) {
    return this.#call('checkTable', { table, origin, vocabSize: vocabSize ?? this.#vocabSize() });
  }

  /** Fetches a table (a `storywriter.step-params/1` JSON file) and checks it. */
  async loadTable(url, { signal, vocabSize } = {}) {
    const href = new URL(url, document.baseURI).href;
    let table;
    try {
      const response = await fetch(href, { signal });
      if (!response.ok) throw new Error(`the server answered ${response.status} ${response.statusText}`);
      table = await response.json();
    } catch (e) {
      if (signal?.aborted) throw aborted(`loading ${href}`);
      throw new StoryWriterError('network', `could not load the table ${href}: ${e.message}`);
    }
    return this.checkTable(table, { origin: href, vocabSize });
  }

  /** The planned candidates of a round: one per policy, in display order. */
  planRound(options) {
    return this.#call('planRound', { options });
  }

  /** A new story opening with `opening`. */
  newStory(opening) {
    return this.#call('newStory', { opening });
  }

  /** Records a generation's candidates (`result`) of the `planned` ones as the story's next
   * round: {story, records}. */
  recordRound(story, planned, result) {
    return this.#call('recordRound', { story, planned, result });
  }

  /** Takes the waiting candidate `recordId`: {story, records} (the chosen record). */
  choose(story, recordId, { by = 'human' } = {}) {
    return this.#call('choose', { story, recordId, by });
  }

  /** The story one step back. */
  undo(story) {
    return this.#call('undo', { story });
  }

  /** The story `storyId` rebuilt from its records, or null. */
  storyFromRecords(storyId, records) {
    return this.#call('storyFromRecords', { storyId, records });
  }

  /** The Hugging Face dataset of `records`: {files: {name: text}, pairs}. */
  exportDataset(records, { hiddenStates = false } = {}) {
    return this.#call('exportDataset', { records, hiddenStates });
  }

  /** The records of a JSON Lines text: {records, errors}. */
  parseRecords(text, { origin = 'records' } = {}) {
    return this.#call('parseRecords', { text, origin });
  }

  /** Stops the worker; pending requests fail with code `crashed`. A later call starts a new one. */
  terminate() {
    this.#crashed('the StoryWriter was terminated');
  }

  #vocabSize() {
    return this.model?.vocab_size ?? BLOOM_VOCAB_SIZE;
  }
}
