// A stand-in for the Hugging Face hub that answers as huggingface.co does, for hub.test.mjs:
// two servers of their own origins, other than the page's. The hub
// (http://127.0.0.1:PORT/{owner}/{name}/resolve/main/{file}) answers a small file (config.json)
// itself, and a large one (tokenizer.json, model.safetensors: files kept in LFS on the real
// hub) with a 302 to a signed URL of the content server (http://localhost:PORT2/repos/…/{sha256}
// ?X-Amz-…), which serves the bytes with single byte ranges (206 and Content-Range, 416),
// `Accept-Ranges: bytes`, an ETag, and CORS headers exposing Content-Range, ETag and
// Content-Length. A repository it does not hold answers 401 with `X-Error-Code: RepoNotFound`,
// a file it does not hold 404 (`EntryNotFound`), as the real hub does for anonymous requests.
// Both answer CORS preflights.
//
// It is a test's own server rather than a mode of `storywriter serve`: the faults a test plays
// (a 429, a connection cut part way) are per test, set and checked from the test, and have no
// place in the product's file server.

import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';

/** The files the real hub keeps in LFS and redirects to its content servers. */
const LFS = new Set(['tokenizer.json', 'model.safetensors']);

const CORS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Expose-Headers':
    'Content-Range, ETag, Content-Length, Accept-Ranges, Retry-After, X-Error-Code, X-Error-Message, X-Repo-Commit, X-Linked-Size, X-Linked-Etag',
};

const PREFLIGHT = {
  ...CORS,
  'Access-Control-Allow-Methods': 'GET, HEAD',
  'Access-Control-Allow-Headers': 'Range, If-Range, Content-Type',
  'Access-Control-Max-Age': '600',
};

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

/** `Range: bytes=a-b` (or `a-`, `-n`) of a file of `size` bytes: [first, last], or null when
 * unsatisfiable; undefined without a (single, byte) range. */
function byteRange(header, size) {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header ?? '');
  if (!match || (match[1] === '' && match[2] === '')) return undefined;
  let first;
  let last;
  if (match[1] === '') {
    first = Math.max(0, size - Number(match[2]));
    last = size - 1;
  } else {
    first = Number(match[1]);
    last = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  }
  return first <= last && first < size ? [first, last] : null;
}

function listen(handler) {
  const server = createServer(handler);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/**
 * Starts the stand-in serving, for each repository of `repos`, the files of directory `files`.
 * Returns `{ hub, cdn, requests, play, close }`: the hub's base URL and the content server's
 * origin; `requests`, every request as `{ server, method, file, range, status, sent, at }`;
 * `play(fault, { acceptRanges = true })` plays `fault` from now on: null, or a function of
 * `{ server, file, range, count }` (`count`: the how-manieth request of that server for that
 * file since `play`) returning what to answer instead: nothing (the normal answer),
 * `{ status, headers }`, or `{ cutAfter: n }` (the normal answer's headers and first n bytes,
 * then the connection closed); `acceptRanges`: whether the content server sends
 * `Accept-Ranges: bytes`; `close()`.
 */
export async function startHubStandIn(files, repos) {
  const byName = new Map();
  const bySha = new Map();
  for (const name of readdirSync(files)) {
    const bytes = readFileSync(join(files, name));
    const sha = sha256(bytes);
    byName.set(name, { bytes, sha });
    bySha.set(sha, { name, bytes, sha });
  }
  const counts = new Map();
  let playing = null;
  let acceptRanges = true;
  const standIn = {
    requests: [],
    play(newFault, options = {}) {
      playing = newFault;
      acceptRanges = options.acceptRanges ?? true;
      counts.clear();
    },
  };

  /** Logs the request and returns the fault to play, if any. */
  function arrived(server, req, file) {
    const key = `${server} ${file}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
    const entry = { server, method: req.method, file, range: req.headers.range ?? null, at: Date.now() };
    standIn.requests.push(entry);
    return { entry, fault: playing?.({ server, file, range: entry.range, count: counts.get(key) }) };
  }

  function answer(res, entry, status, headers, body = '') {
    entry.status = status;
    entry.sent = body.length;
    res.writeHead(status, { ...CORS, ...headers });
    res.end(body);
  }

  /** The bytes of `file` as a static server with ranges answers them (or the fault's way). */
  function serveBytes(req, res, entry, fault, { bytes, sha }, ranges) {
    const headers = { ETag: `"${sha}"`, 'Content-Type': 'application/octet-stream' };
    if (ranges) headers['Accept-Ranges'] = 'bytes';
    const range = byteRange(req.headers.range, bytes.length);
    if (range === null) {
      return answer(res, entry, 416, { ...headers, 'Content-Range': `bytes */${bytes.length}` });
    }
    let status = 200;
    let body = bytes;
    if (range) {
      status = 206;
      body = bytes.subarray(range[0], range[1] + 1);
      headers['Content-Range'] = `bytes ${range[0]}-${range[1]}/${bytes.length}`;
    }
    headers['Content-Length'] = String(body.length);
    if (req.method === 'HEAD') body = Buffer.alloc(0);
    if (fault?.cutAfter === undefined) return answer(res, entry, status, headers, body);
    entry.status = status;
    entry.sent = Math.min(fault.cutAfter, body.length);
    res.writeHead(status, { ...CORS, ...headers });
    res.write(body.subarray(0, entry.sent));
    // The headers promised more: the browser sees the connection end in the middle. Ended a
    // moment later: a connection ended at once may reach the page before the bytes sent on it.
    setTimeout(() => res.socket.end(), 300);
  }

  let cdnOrigin;
  const hub = await listen((req, res) => {
    if (req.method === 'OPTIONS') return res.writeHead(204, PREFLIGHT).end();
    const match = /^\/([^/]+\/[^/]+)\/resolve\/main\/([^/?]+)$/.exec(new URL(req.url, 'http://x').pathname);
    const { entry, fault } = arrived('hub', req, match?.[2] ?? req.url);
    if (fault?.status) return answer(res, entry, fault.status, fault.headers ?? {}, 'stand-in fault');
    const json = { 'Content-Type': 'application/json' };
    if (!match || !repos.includes(match[1])) {
      return answer(res, entry, 401, { ...json, 'X-Error-Code': 'RepoNotFound', 'X-Error-Message': 'Repository not found' },
        JSON.stringify({ error: 'Repository not found' }));
    }
    const file = byName.get(match[2]);
    if (!file) {
      return answer(res, entry, 404, { ...json, 'X-Error-Code': 'EntryNotFound', 'X-Error-Message': 'Entry not found' },
        JSON.stringify({ error: 'Entry not found' }));
    }
    if (!LFS.has(match[2])) return serveBytes(req, res, entry, fault, file, true);
    const location = `${cdnOrigin}/repos/${file.sha.slice(0, 2)}/${file.sha.slice(2, 4)}/${file.sha}` +
      `?X-Amz-Expires=3600&X-Amz-Signature=stand-in&response-content-disposition=attachment`;
    return answer(res, entry, 302, {
      Location: location,
      'X-Linked-Size': String(file.bytes.length),
      'X-Linked-Etag': `"${file.sha}"`,
      'X-Repo-Commit': 'b'.repeat(40),
    }, `Found. Redirecting to ${location}`);
  });
  const cdn = await listen((req, res) => {
    if (req.method === 'OPTIONS') return res.writeHead(204, PREFLIGHT).end();
    const sha = /^\/repos\/[0-9a-f]{2}\/[0-9a-f]{2}\/([0-9a-f]{64})$/.exec(new URL(req.url, 'http://x').pathname)?.[1];
    const file = bySha.get(sha);
    const { entry, fault } = arrived('cdn', req, file?.name ?? req.url);
    if (fault?.status) return answer(res, entry, fault.status, fault.headers ?? {}, 'stand-in fault');
    if (!file) return answer(res, entry, 403, { 'Content-Type': 'text/plain' }, 'AccessDenied');
    return serveBytes(req, res, entry, fault, file, acceptRanges);
  });
  cdnOrigin = `http://localhost:${cdn.address().port}`;
  standIn.hub = `http://127.0.0.1:${hub.address().port}`;
  standIn.cdn = cdnOrigin;
  standIn.close = () => {
    hub.closeAllConnections();
    cdn.closeAllConnections();
    hub.close();
    cdn.close();
  };
  return standIn;
}
