import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect as tcpConnect, createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { connect, type Client, type Message } from '@postern/client';
import { issueToken, startRouter, type RouterServer } from '@postern/router';
import type { Logger } from '@postern/core';
import { CHROMIUM_ARGS, findChromium, TEST_GUESTS, waitFor, within } from '@postern/testing';

// The browser SDK in a real browser: the minified bundle (dist/browser/postern.min.js) loaded by a
// plain HTML page with <script type="module">, no bundler, no import map, in the system's
// Chromium driven by playwright-core (no browser download). The page's agent connects to a relay
// and talks with a Node agent behind a gateway (relay <- gateway <- agent), over WebSocket; over
// HTTP long-poll where a proxy in front of the relay refuses upgrades, and back to WebSocket once
// it lets them through; and a page of an origin the relay does not allow is refused (403).

const pkg = fileURLToPath(new URL('../../', import.meta.url));
const bundlePath = `${pkg}dist/browser/postern.min.js`;
const secret = 'browser-test-secret';
/** Every wait of this file ends by then. */
const STEP_MS = 15_000;

const chromiumFound = findChromium();
const skip = 'missing' in chromiumFound && process.env['CI'] === undefined ? chromiumFound.missing : false;
if (skip !== false) console.log(`# ${skip}`);

/** The bundle as it would ship: built by `npm run build`; built here when absent or older than the entry it bundles. */
function bundle(): Buffer {
  const entry = `${pkg}dist/src/index.browser.js`;
  let stale: boolean;
  try {
    stale = statSync(bundlePath).mtimeMs < statSync(entry).mtimeMs;
  } catch {
    stale = true;
  }
  if (stale) {
    const r = spawnSync(process.execPath, [`${pkg}scripts/build-browser.mjs`], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, `building the browser bundle failed:\n${r.stdout}\n${r.stderr}`);
  }
  return readFileSync(bundlePath);
}

/**
 * The page: loads the bundle as a module and offers the test a few calls (window.postern), each
 * returning plain data; what goes wrong is written on the page as well (#log).
 */
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>Postern in a browser</title></head>
<body><pre id="log"></pre>
<script type="module">
import { connect } from './postern.min.js';
const log = (line) => { document.getElementById('log').textContent += line + '\\n'; };
const clients = new Map();
const within = (p, ms, what) => Promise.race([p, new Promise((_, reject) => setTimeout(() => reject(new Error('timed out: ' + what)), ms))]);
window.postern = {
  async connect(id, options) {
    try {
      const client = await connect(options);
      const statuses = [];
      client.onStatus((s) => { statuses.push(s.type + (s.type === 'connected' && s.resumed ? ' resumed' : '')); log(id + ': ' + s.type); });
      clients.set(id, { client, statuses, messages: client[Symbol.asyncIterator]() });
      log(id + ': connected as ' + client.address);
      return { ok: true, address: client.address };
    } catch (err) {
      log(id + ': error ' + err.code + ': ' + err.message);
      return { ok: false, code: err.code, message: err.message };
    }
  },
  async send(id, to, text) {
    const r = await within(clients.get(id).client.send(to, text), ${STEP_MS}, 'send');
    return r.id;
  },
  async next(id) {
    const r = await within(clients.get(id).messages.next(), ${STEP_MS}, 'a message');
    return r.done ? null : { from: r.value.from, to: r.value.to, text: r.value.text() };
  },
  statuses(id) { return clients.get(id).statuses; },
  async close(id) { await clients.get(id)?.client.close(); clients.delete(id); },
};
log('ready');
</script></body></html>`;

/** A page server on 127.0.0.1: `/` is the page, `/postern.min.js` the bundle. Its origin is what the relay allows or not. */
async function servePage(code: Buffer): Promise<{ server: HttpServer; origin: string }> {
  const server = createHttpServer((req, res) => {
    if (req.url === '/') res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
    else if (req.url === '/postern.min.js') res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(code);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

interface Seen {
  upgrade: boolean;
  origin: string | undefined;
  /** The first status line of the answer, or 'refused' when the proxy refused the upgrade. */
  answer: string | undefined;
}

/**
 * A TCP proxy in front of the relay that, while `blockUpgrades` is set, answers WebSocket
 * upgrades 403 itself, as a middlebox that refuses WebSocket would; it notes the first request
 * of each connection (a browser opens each WebSocket on its own connection) and its answer.
 */
async function startProxy(target: number): Promise<{ server: TcpServer; url: string; seen: Seen[]; blockUpgrades: boolean; close(): void }> {
  const sockets = new Set<Socket>();
  const proxy = {
    server: createTcpServer(),
    url: '',
    seen: [] as Seen[],
    blockUpgrades: false,
    close(): void {
      for (const s of sockets) s.destroy();
      proxy.server.close();
    },
  };
  proxy.server.on('connection', (sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    sock.once('data', (first: Buffer) => {
      // A browser on loopback sends the request head in one segment.
      const head = first.toString('latin1');
      const seen: Seen = { upgrade: /\r\nupgrade:\s*websocket/i.test(head), origin: /\r\norigin:\s*([^\r]*)/i.exec(head)?.[1], answer: undefined };
      proxy.seen.push(seen);
      if (seen.upgrade && proxy.blockUpgrades) {
        seen.answer = 'refused';
        sock.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
        return;
      }
      const up = tcpConnect(target, '127.0.0.1');
      sockets.add(up);
      up.on('close', () => {
        sockets.delete(up);
        sock.destroy();
      });
      up.on('error', () => up.destroy());
      sock.on('close', () => up.destroy());
      up.once('data', (d: Buffer) => (seen.answer = d.toString('latin1').split('\r\n')[0]));
      up.write(first);
      sock.pipe(up);
      up.pipe(sock);
    });
  });
  await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
  proxy.url = `http://127.0.0.1:${(proxy.server.address() as AddressInfo).port}`;
  return proxy;
}

async function nextOf(client: Client): Promise<Message> {
  const r = await within(client[Symbol.asyncIterator]().next(), 'a message to the inside agent');
  assert.equal(r.done, false);
  return r.value;
}

interface PageMessage {
  from: string;
  to: string;
  text: string;
}

describe('the browser SDK in Chromium (minified bundle, plain page)', { skip }, () => {
  let browser: Browser | undefined;
  let relay: RouterServer;
  let gateway: RouterServer;
  let alice: Client;
  let page: { server: HttpServer; origin: string };
  let foreign: { server: HttpServer; origin: string };
  let proxy: Awaited<ReturnType<typeof startProxy>>;
  const refusedOrigins: string[] = [];
  const cleanup: Array<() => unknown> = [];

  before(async () => {
    assert.ok('path' in chromiumFound, 'missing' in chromiumFound ? chromiumFound.missing : '');
    const code = bundle();
    page = await servePage(code);
    foreign = await servePage(code);
    cleanup.push(
      () => new Promise((r) => page.server.close(r)),
      () => new Promise((r) => foreign.server.close(r)),
    );
    const logger: Logger = {
      debug() {},
      info() {},
      warn(event, _msg, fields) {
        if (event === 'origin.refused') refusedOrigins.push(String(fields?.['origin']));
      },
      error() {},
    };
    relay = await startRouter({ domain: 'relay', listen: ['127.0.0.1:0'], secret, allowOrigins: [page.origin], logger, ...TEST_GUESTS });
    cleanup.push(() => relay.close());
    gateway = await startRouter({
      domain: 'acme',
      listen: ['127.0.0.1:0'],
      uplinks: [{ url: relay.url, token: await issueToken(secret, { domain: 'acme' }) }],
      backoff: { initialMs: 50, maxMs: 500 },
    });
    cleanup.push(() => gateway.close());
    await waitFor(() => relay.router.routes().has('acme'), 'the gateway to claim acme at the relay');
    alice = await connect({ url: gateway.url, name: 'alice' });
    cleanup.push(() => alice.close());
    proxy = await startProxy(relay.addresses[0]!.port);
    cleanup.push(() => proxy.close());
    browser = await within(
      chromium.launch({
        executablePath: chromiumFound.path,
        headless: true,
        args: CHROMIUM_ARGS,
        timeout: STEP_MS,
      }),
      'Chromium to start',
    );
    cleanup.push(() => browser?.close());
  });

  after(async () => {
    for (const c of cleanup.reverse()) {
      try {
        await within(Promise.resolve(c()), 'a cleanup', 10_000);
      } catch {
        // the rest still closes
      }
    }
  });

  async function openPage(origin: string): Promise<Page> {
    const p = await browser!.newPage();
    p.setDefaultTimeout(STEP_MS);
    await p.goto(`${origin}/`);
    await p.waitForFunction(() => 'postern' in window);
    return p;
  }

  async function pageConnect(p: Page, id: string, options: Record<string, unknown>): Promise<{ ok: boolean; address?: string; code?: string; message?: string }> {
    return within(
      p.evaluate(([i, o]) => (window as unknown as { postern: { connect(i: string, o: unknown): Promise<{ ok: boolean }> } }).postern.connect(i, o), [id, options] as const),
      `the page's agent ${id} to connect`,
    );
  }
  const pageSend = (p: Page, id: string, to: string, text: string): Promise<string> =>
    p.evaluate(([i, t, x]) => (window as unknown as { postern: { send(i: string, t: string, x: string): Promise<string> } }).postern.send(i, t, x), [id, to, text] as const);
  const pageNext = (p: Page, id: string): Promise<PageMessage | null> =>
    p.evaluate((i) => (window as unknown as { postern: { next(i: string): Promise<PageMessage | null> } }).postern.next(i), id);
  const pageStatuses = (p: Page, id: string): Promise<string[]> =>
    p.evaluate((i) => (window as unknown as { postern: { statuses(i: string): string[] } }).postern.statuses(i), id);
  const pageLog = (p: Page): Promise<string> => p.evaluate(() => document.getElementById('log')!.textContent ?? '');

  /** The transport of the relay's link to the agent at `address`: 'ws' or 'http'. */
  const transportOf = (address: string): string | undefined => relay.router.links().find((l) => l.kind === 'agent' && l.address === address)?.transport;

  /** The page's agent `id` (bob@relay) and alice@acme, behind the gateway, write to each other both ways. */
  async function bothWays(p: Page, id: string, tag: string): Promise<void> {
    const incoming = nextOf(alice);
    await within(pageSend(p, id, 'alice@acme', `ping ${tag}`), 'the page to send');
    const m = await incoming;
    assert.equal(m.text(), `ping ${tag}`);
    assert.equal(m.from, 'bob@relay');
    const reply = pageNext(p, id);
    await within(alice.send(m.from, `pong ${tag}`), 'alice to reply');
    assert.deepEqual(await within(reply, 'the reply in the page'), { from: 'alice@acme', to: 'bob@relay', text: `pong ${tag}` });
    // And a message the inside agent starts.
    const unasked = pageNext(p, id);
    await within(alice.send('bob@relay', `hello ${tag}`), 'alice to write first');
    assert.deepEqual(await within(unasked, 'the unasked message in the page'), { from: 'alice@acme', to: 'bob@relay', text: `hello ${tag}` });
  }

  it('a page loads the bundle as a module and talks with an agent behind a gateway, over WebSocket', async () => {
    const p = await openPage(page.origin);
    cleanup.push(() => p.close());
    const token = await issueToken(secret, { domain: 'relay', name: 'bob' });
    const r = await pageConnect(p, 'ws', { url: relay.url, name: 'bob', token });
    assert.deepEqual(r, { ok: true, address: 'bob@relay' }, await pageLog(p));
    assert.equal(transportOf('bob@relay'), 'ws');
    await bothWays(p, 'ws', 'over WebSocket');
    await p.evaluate(() => (window as unknown as { postern: { close(i: string): Promise<void> } }).postern.close('ws'));
    await waitFor(() => transportOf('bob@relay') === undefined, 'the relay to see the page agent go', STEP_MS);
  });

  it('falls back to HTTP long-poll where upgrades are refused, and moves back to WebSocket once they pass', async () => {
    proxy.blockUpgrades = true;
    const p = await openPage(page.origin);
    cleanup.push(() => p.close());
    const token = await issueToken(secret, { domain: 'relay', name: 'bob' });
    const started = proxy.seen.length;
    // Probes while on long-poll every 500 ms (doubling after each refusal, ±20%).
    const r = await pageConnect(p, 'lp', { url: proxy.url, name: 'bob', token, wsProbeIntervalMs: 500 });
    assert.deepEqual(r, { ok: true, address: 'bob@relay' }, await pageLog(p));
    assert.equal(transportOf('bob@relay'), 'http');
    const refused = proxy.seen.slice(started).filter((s) => s.upgrade);
    assert.ok(refused.length >= 1 && refused.every((s) => s.answer === 'refused' && s.origin === page.origin), JSON.stringify(refused));
    assert.ok(
      proxy.seen.slice(started).some((s) => !s.upgrade && s.origin === page.origin),
      `long-poll requests from the page: ${JSON.stringify(proxy.seen.slice(started))}`,
    );
    await bothWays(p, 'lp', 'over long-poll');

    // The middlebox goes away: the next probe opens a WebSocket, the client reconnects over it.
    proxy.blockUpgrades = false;
    await waitFor(() => transportOf('bob@relay') === 'ws', 'the page agent to move back to WebSocket', 30_000, 50);
    assert.ok(proxy.seen.slice(started).some((s) => s.upgrade && s.answer?.startsWith('HTTP/1.1 101')), JSON.stringify(proxy.seen.slice(started)));
    const statuses = await pageStatuses(p, 'lp');
    assert.ok(statuses.includes('connected resumed'), `statuses: ${statuses.join(', ')}`);
    await bothWays(p, 'lp', 'back on WebSocket');
    await p.evaluate(() => (window as unknown as { postern: { close(i: string): Promise<void> } }).postern.close('lp'));
  });

  it('refuses a page of an origin the relay does not allow (403), and the page says so', async () => {
    const p = await openPage(foreign.origin);
    cleanup.push(() => p.close());
    const started = proxy.seen.length;
    const r = await pageConnect(p, 'foreign', { url: proxy.url, reconnect: false, connectTimeoutMs: 5000 });
    assert.equal(r.ok, false);
    assert.equal(r.code, 'ERR_TRANSPORT', r.message);
    // auto tried both, and the router refused both for the Origin.
    assert.match(r.message!, /HTTP long-poll failed too/);
    const seen = proxy.seen.slice(started);
    const upgrades = seen.filter((s) => s.upgrade);
    assert.ok(upgrades.length >= 1 && upgrades.every((s) => s.origin === foreign.origin && s.answer === 'HTTP/1.1 403 Forbidden'), JSON.stringify(seen));
    assert.ok(seen.some((s) => !s.upgrade && s.origin === foreign.origin && s.answer === 'HTTP/1.1 403 Forbidden'), JSON.stringify(seen));
    assert.ok(refusedOrigins.includes(foreign.origin), `logged: ${refusedOrigins.join(', ')}`);
    assert.match(await pageLog(p), /foreign: error ERR_TRANSPORT: /);
  });
});
