#!/usr/bin/env node
// Firefox ESR as playwright-core's WebDriver BiDi browser (tests/e2e/lib.mjs launches this file
// as the `executablePath` of `firefox.launch({ channel: 'moz-firefox-esr' })`).
//
// playwright-core 1.65 speaks the BiDi of current Firefox releases; Firefox ESR 153 does not
// know some of the emulation commands it sends to every new context, and answers them with
// "unknown command", which would fail `browser.newContext()`. This wrapper starts the real
// browser ($FIREFOX, default /usr/bin/firefox-esr) with the same arguments and puts a small
// WebSocket relay between the two: every message passes unchanged, except that an "unknown
// command" answer to one of IGNORABLE (overrides the tests do not ask for: colour scheme, screen
// size and orientation) becomes an empty success, noted once on stderr. Any other error reaches
// the tests as it is.
//
// Downloads: Firefox ESR 153 announces a download (browsingContext.downloadWillBegin and
// downloadEnd) with `navigation: null` and without the `download` id of newer BiDi, which
// playwright-core needs to see a download at all; the relay gives each one an id of its own (see
// DownloadIds).
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { once } from 'node:events';
import { dirname, join } from 'node:path';

// The `ws` package playwright-core bundles (not among its exported paths, so by file).
const require = createRequire(import.meta.url);
const core = dirname(require.resolve('playwright-core/package.json'));
const { ws: WebSocket, wsServer: WebSocketServer } = require(join(core, 'lib/utilsBundle.js'));

const IGNORABLE = new Set([
  'emulation.setMediaFeaturesOverride',
  'emulation.setScreenSettingsOverride',
  'emulation.setScreenOrientationOverride',
]);

const browser = spawn(process.env.FIREFOX ?? '/usr/bin/firefox-esr', process.argv.slice(2), {
  stdio: ['ignore', 'inherit', 'pipe'],
});
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
  process.on(signal, () => browser.kill(signal));
}
browser.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));

const noted = new Set();
let buffered = '';
let relaying = false;
browser.stderr.on('data', async (chunk) => {
  const text = chunk.toString();
  if (relaying) {
    process.stderr.write(text);
    return;
  }
  buffered += text;
  const match = buffered.match(/WebDriver BiDi listening on (ws:\/\/\S+)/);
  if (!match) return;
  relaying = true;
  const upstream = match[1];
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  server.on('connection', (client, request) => relay(client, `${upstream}${request.url}`));
  const { port } = server.address();
  process.stderr.write(buffered.replace(upstream, `ws://127.0.0.1:${port}`));
});

/**
 * The ids the relay gives Firefox's downloads (`firefox-download-N`), matched from the start of a
 * download to its end by its URL. (Firefox saves a download under a name no file of the folder
 * has, and suggests that name: "records(1).jsonl" while an earlier records.jsonl is there; the
 * tests delete each download once read.)
 */
class DownloadIds {
  #count = 0;
  /** url → the ids of the downloads of that URL under way, oldest first. */
  #started = new Map();

  /** Gives the event `params` of a Firefox download an id; returns whether it changed them. */
  complete(method, params) {
    if (params.download !== undefined || params.navigation) return false;
    const started = this.#started.get(params.url) ?? [];
    if (method === 'browsingContext.downloadWillBegin') {
      this.#count += 1;
      params.download = `firefox-download-${this.#count}`;
      this.#started.set(params.url, [...started, params.download]);
      return true;
    }
    if (method !== 'browsingContext.downloadEnd' || started.length === 0) return false;
    const [id, ...rest] = started;
    if (rest.length > 0) this.#started.set(params.url, rest);
    else this.#started.delete(params.url);
    params.download = id;
    return true;
  }
}

function relay(client, url) {
  const browserSide = new WebSocket(url, { perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 });
  const pending = [];
  const methods = new Map();
  const downloads = new DownloadIds();
  browserSide.on('open', () => {
    for (const message of pending.splice(0)) browserSide.send(message);
  });
  client.on('message', (data) => {
    const message = data.toString();
    try {
      const { id, method } = JSON.parse(message);
      if (IGNORABLE.has(method)) methods.set(id, method);
    } catch {}
    if (browserSide.readyState === WebSocket.OPEN) browserSide.send(message);
    else pending.push(message);
  });
  browserSide.on('message', (data) => {
    let message = data.toString();
    try {
      const parsed = JSON.parse(message);
      if (parsed.type === 'event' && downloads.complete(parsed.method, parsed.params)) {
        message = JSON.stringify(parsed);
      }
      const method = methods.get(parsed.id);
      if (method !== undefined) {
        methods.delete(parsed.id);
        if (parsed.type === 'error' && parsed.error === 'unknown command') {
          if (!noted.has(method)) {
            noted.add(method);
            process.stderr.write(`firefox_bidi: ${method} is unknown to this Firefox; ignored\n`);
          }
          message = JSON.stringify({ type: 'success', id: parsed.id, result: {} });
        }
      }
    } catch {}
    client.send(message);
  });
  const closeBoth = () => {
    client.close();
    browserSide.close();
  };
  client.on('close', closeBoth);
  browserSide.on('close', closeBoth);
  client.on('error', closeBoth);
  browserSide.on('error', closeBoth);
}
