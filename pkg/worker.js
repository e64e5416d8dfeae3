// The package's model worker (a module worker that index.js starts): the wasm engine and the
// data functions of src/bin/pkg/, driven by messages {id, op, args}. It answers {id, value} or
// {id, error: {code, message}}, and streams {id, progress} while loading and {id, token} while
// generating; {op: 'abort', args: {id}} cancels request id. Model requests (load, the cache,
// tokenize, decode, generate) run one at a time, in order; the data functions run at once.
import init, * as wasm from './wasm/storywriter.js';

const ready = init({ module_or_path: new URL('./wasm/storywriter_bg.wasm', import.meta.url) });
/** Progress messages of a load are posted at most this often (milliseconds). */
const PROGRESS_INTERVAL_MS = 100;
let engine;
let modelQueue = Promise.resolve();
/** The AbortController of each request that can be cancelled. */
const controllers = new Map();

/** An error with a code, as index.js rebuilds it. */
function failure(code, message) {
  return Object.assign(new Error(message), { code });
}

const dataOps = {
  bundledTable: ({ vocabSize }) => wasm.bundledTable(vocabSize),
  checkTable: ({ table, origin, vocabSize }) => wasm.checkTable(table, origin, vocabSize),
  planRound: ({ options }) => wasm.planRound(options),
  newStory: ({ opening }) => wasm.newStory(opening),
  recordRound: ({ story, planned, result }) => wasm.recordRound(story, planned, result),
  choose: ({ story, recordId, by }) => wasm.choose(story, recordId, by),
  undo: ({ story }) => wasm.undo(story),
  storyFromRecords: ({ storyId, records }) => wasm.storyFromRecords(storyId, records),
  exportDataset: ({ records, hiddenStates }) => wasm.exportDataset(records, hiddenStates),
  parseRecords: ({ text, origin }) => wasm.parseRecords(text, origin),
};

const modelOps = {
  load: (args, id, signal) => load(args, signal, (progress) => postMessage({ id, progress })),
  listCached: async () => {
    const models = [];
    for await (const handle of (await navigator.storage.getDirectory()).values()) {
      if (handle.kind === 'file' && handle.name.endsWith('.gguf')) {
        models.push({ name: handle.name, bytes: (await handle.getFile()).size });
      }
    }
    return models.sort((a, b) => a.name.localeCompare(b.name));
  },
  deleteCached: async ({ name }) => (await navigator.storage.getDirectory()).removeEntry(name),
  tokenize: ({ text }) => engine.tokenize(text),
  decode: ({ ids }) => engine.decode(Uint32Array.from(ids)),
  generate: async ({ request }, id, signal) => {
    const stop = () => engine.stop();
    signal.addEventListener('abort', stop);
    try {
      const result = await engine.generate(request, (candidate, text) =>
        postMessage({ id, token: { candidate, text } }));
      if (signal.aborted) throw failure('aborted', 'the generation was aborted');
      return result;
    } finally {
      signal.removeEventListener('abort', stop);
    }
  },
};

/** The cached model `name` (a File), or null when the cache does not hold it. */
async function cachedFile(name) {
  try {
    return await (await (await navigator.storage.getDirectory()).getFileHandle(name)).getFile();
  } catch (e) {
    if (e.name === 'NotFoundError' || e.name === 'TypeError') return null;
    throw e;
  }
}

/** Loads the model (loadFile), then with `cache` keeps the file in the Origin Private File
 * System under its name (the app's model cache): `{...model, from_cache}`. */
async function load({ source, name, cached, cache }, signal, report) {
  if (cached) {
    const file = await cachedFile(cached);
    if (!file) throw failure('bad-params', `${cached} is not in the browser's model cache`);
    return { ...(await loadFile({ source: file, name: cached }, signal, report)), from_cache: true };
  }
  const { model, bytes } = await loadFile({ source, name }, signal, report, true);
  if (cache) {
    try {
      const handle = await (await navigator.storage.getDirectory()).getFileHandle(name, { create: true });
      const writable = await handle.createWritable();
      await writable.write(bytes);
      await writable.close();
    } catch (e) {
      throw failure('network', `${name} was loaded but could not be cached: ${e.message}`);
    }
  }
  return { ...model, from_cache: false };
}

/** Downloads (with progress, refusing a file too large for memory from its length) or reads
 * the model file, then builds it; with `keep`, returns the file's bytes too. */
async function loadFile({ source, name }, signal, report, keep = false) {
  let last = -Infinity;
  const progress = (phase, bytes, total, force = false) => {
    const now = performance.now();
    if (force || now - last >= PROGRESS_INTERVAL_MS) {
      last = now;
      report({ phase, bytes, total });
    }
  };
  let bytes;
  if (typeof source === 'string') {
    let response;
    try {
      response = await fetch(source, { signal });
    } catch (e) {
      if (signal.aborted) throw failure('aborted', `the download of ${source} was aborted`);
      throw failure('network', `could not download ${source}: ${e.message}`);
    }
    if (!response.ok) {
      throw failure('network', `could not download ${source}: the server answered ${response.status} ${response.statusText}`);
    }
    const total = Number(response.headers.get('content-length')) || null;
    if (total) wasm.Engine.checkSize(name, total);
    bytes = await readBody(response.body, total, signal, (done) => progress('download', done, total));
    progress('download', bytes.length, bytes.length, true);
  } else {
    wasm.Engine.checkSize(name, source.size);
    progress('read', 0, source.size, true);
    bytes = new Uint8Array(await source.arrayBuffer());
    progress('read', bytes.length, bytes.length, true);
  }
  if (signal.aborted) throw failure('aborted', `the load of ${name} was aborted`);
  progress('build', bytes.length, bytes.length, true);
  const model = engine.load(bytes, name);
  return keep ? { model, bytes } : model;
}

/** A response body's bytes (`total` of them when the length was announced). */
async function readBody(body, total, signal, onChunk) {
  const chunks = [];
  let received = 0;
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      received += value.length;
      onChunk(received);
    }
  } catch (e) {
    if (signal.aborted) throw failure('aborted', 'the download was aborted');
    throw failure('network', `the download was cut off: ${e.message}`);
  }
  if (total && received !== total) {
    throw failure('network', `the download was cut off at ${received} of ${total} bytes`);
  }
  const bytes = new Uint8Array(received);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return bytes;
}

/** The code and message of what `op` threw. A trap of the wasm (a panic, memory exhausted)
 * leaves the engine unusable: `crashed` (or `out-of-memory`), and index.js starts a new
 * worker for the next request. */
function describe(error) {
  if (error instanceof WebAssembly.RuntimeError || error instanceof RangeError) {
    const memory = /memory|allocat/i.test(String(error.message));
    return {
      code: memory ? 'out-of-memory' : 'crashed',
      message: `the model worker stopped working (${error.message}); the model must be loaded again`,
    };
  }
  return { code: error?.code ?? 'internal', message: String(error?.message ?? error) };
}

async function run(id, op, args, signal) {
  try {
    await ready;
    engine ??= new wasm.Engine();
    if (signal.aborted) throw failure('aborted', `${op.name} was aborted before it started`);
    postMessage({ id, value: await op(args, id, signal) });
  } catch (error) {
    postMessage({ id, error: describe(error) });
  } finally {
    controllers.delete(id);
  }
}

self.onmessage = ({ data: { id, op, args } }) => {
  if (op === 'abort') {
    controllers.get(args.id)?.abort();
    return;
  }
  const controller = new AbortController();
  controllers.set(id, controller);
  if (Object.hasOwn(modelOps, op)) {
    modelQueue = modelQueue.then(() => run(id, modelOps[op], args, controller.signal));
  } else if (Object.hasOwn(dataOps, op)) {
    run(id, dataOps[op], args, controller.signal);
  } else {
    postMessage({ id, error: { code: 'bad-params', message: `unknown operation ${op}` } });
  }
};

ready.catch((e) => postMessage({ fatal: { code: 'crashed', message: `the model worker could not start: ${e.message}` } }));
