// A static host for page.test.mjs: an HTTP relay in front of `storywriter serve` that drops the
// cross-origin isolation headers (COOP, COEP, CORP) from every answer, as a host that cannot set
// headers would serve the app. The service worker then adds them (www/sw.js) to the answers it
// hands the pages it controls.

import { createServer, request } from 'node:http';

import { listenInFrontOf } from './lib.mjs';

/** The headers the relay drops. */
const ISOLATION = ['cross-origin-opener-policy', 'cross-origin-embedder-policy', 'cross-origin-resource-policy'];

/**
 * Starts the relay for the server of `target` (a URL) on a free port of 127.0.0.1. Returns `url`
 * (`target` on the relay's origin) and `close()`.
 */
export async function startStaticHost(target) {
  const upstream = new URL(target);
  const relay = createServer((incoming, answer) => {
    const forwarded = request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: incoming.method,
        path: incoming.url,
        headers: incoming.headers,
      },
      (response) => {
        const headers = { ...response.headers };
        for (const name of ISOLATION) delete headers[name];
        answer.writeHead(response.statusCode ?? 502, headers);
        response.pipe(answer);
      },
    );
    forwarded.on('error', () => answer.destroy());
    incoming.pipe(forwarded);
  });
  const url = await listenInFrontOf(relay, target);
  return {
    url,
    close: () => {
      relay.closeAllConnections();
      return new Promise((resolve) => relay.close(resolve));
    },
  };
}
