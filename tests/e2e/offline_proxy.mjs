// The network between the browser and `storywriter serve`, for page.test.mjs's offline test: a
// TCP relay on a port of its own that the test switches off. On, it passes every byte both ways
// unchanged (the server's COOP/COEP and other headers included). Off, it cuts the connections
// under way and resets every new one once its first request arrives, noting that request's line:
// the page, its workers and the service worker, and the browser's own update checks of the
// service worker's script, all find the network down.
//
// It stands in for the browsers' offline emulation, which differs between them: Chromium's
// reaches the service worker's requests, WebDriver BiDi's in Firefox only the page's. The page is
// loaded through it from the start, so that its origin (the service worker's scope, its storage)
// is the proxy's.

import { connect, createServer } from 'node:net';

import { listenInFrontOf } from './lib.mjs';

/**
 * Starts a proxy in front of the server of `target` (a URL) on a free port of 127.0.0.1. Returns
 * `url` (`target` on the proxy's origin), `goOffline()`, `refused` (the request lines of the
 * connections refused since, "(no request)" for one closed before it sent any), `relayed(line)`
 * (whether a line of the server's log is a request this proxy passed on) and `close()`.
 */
export async function startOfflineProxy(target) {
  const upstream = new URL(target);
  const sockets = new Set();
  const refused = [];
  // The local ports of the proxy's connections to the server: the server logs them as the
  // requests' remote addresses, which tells the proxy's requests from other pages' (another
  // test's page still open in the same browser checks its service worker for updates too).
  const upstreamPorts = new Set();
  let online = true;

  const track = (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    // A reset from either side only ends that connection.
    socket.on('error', () => socket.destroy());
  };

  const refuse = (client) => {
    let noted = false;
    const note = (request) => {
      if (!noted) refused.push(request);
      noted = true;
    };
    client.once('data', (chunk) => {
      note(chunk.toString('latin1').split('\r\n', 1)[0]);
      client.resetAndDestroy();
    });
    client.once('close', () => note('(no request)'));
  };

  const relay = (client) => {
    const server = connect(Number(upstream.port), upstream.hostname);
    server.once('connect', () => upstreamPorts.add(server.localPort));
    track(server);
    client.on('close', () => server.destroy());
    server.on('close', () => client.destroy());
    client.pipe(server).pipe(client);
  };

  const proxy = createServer((client) => {
    track(client);
    if (online) relay(client);
    else refuse(client);
  });
  const url = await listenInFrontOf(proxy, target);
  return {
    url,
    refused,
    /** Whether the server's log line `line` ("host:port METHOD path status") came through here. */
    relayed: (line) => upstreamPorts.has(Number(line.split(' ', 1)[0].split(':').pop())),
    /** Cuts the connections under way; every later one is refused. */
    goOffline() {
      online = false;
      for (const socket of sockets) socket.destroy();
    },
    /** Stops listening and closes every connection. */
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => proxy.close(resolve));
    },
  };
}
