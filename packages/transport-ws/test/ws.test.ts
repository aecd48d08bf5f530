// The WebSocket transport over real loopback sockets: the shared transport contract, the
// dialer's failure modes, and a Router handshake across it.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import type { Duplex as NetDuplex } from 'node:stream';
import { after, describe, it } from 'node:test';
import { Router, defaultScheduler, openChannel, systemClock, type Duplex } from '@postern/core';
import { FrameType, PROTOCOL_VERSION, Role, TransportError } from '@postern/protocol';
import { testSessionTokens, transportSuite } from '@postern/testing';
import { attachWsServer, createNodeWsDialer, toWebSocketUrl, type WsServer } from '@postern/transport-ws/node';

interface Listener {
  url: string;
  port: number;
  server: http.Server;
  ws: WsServer;
  /** Raw sockets of the upgrades seen, to reset them. */
  sockets: NetDuplex[];
  /** The next server-side duplex, in order of arrival. */
  accepted(): Promise<Duplex>;
  close(): Promise<void>;
}

/** A node:http server on 127.0.0.1:0 with the WebSocket transport attached. */
async function listen(match?: (req: http.IncomingMessage) => boolean, onDuplex?: (d: Duplex) => void): Promise<Listener> {
  const server = http.createServer((_req, res) => {
    res.statusCode = 426;
    res.end('upgrade required');
  });
  const queue: Duplex[] = [];
  const waiting: Array<(d: Duplex) => void> = [];
  const all: Duplex[] = [];
  const ws = attachWsServer(
    server,
    (d) => {
      all.push(d);
      if (onDuplex !== undefined) return onDuplex(d);
      const w = waiting.shift();
      if (w !== undefined) w(d);
      else queue.push(d);
    },
    { maxPayload: 4 * 1024 * 1024, ...(match !== undefined ? { match } : {}) },
  );
  const sockets: NetDuplex[] = [];
  server.on('upgrade', (_req: http.IncomingMessage, socket: NetDuplex) => sockets.push(socket));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `ws://127.0.0.1:${port}`,
    port,
    server,
    ws,
    sockets,
    accepted: () => {
      const d = queue.shift();
      return d !== undefined ? Promise.resolve(d) : new Promise<Duplex>((r) => waiting.push(r));
    },
    async close() {
      for (const d of all) d.close();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(all.map((d) => d.done)), new Promise((r) => (timer = setTimeout(r, 3000)))]);
      clearTimeout(timer);
      ws.close();
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A TCP server that accepts and never answers: a black hole for the WebSocket handshake. */
async function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A port nothing listens on (just released by the OS). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function isTransportError(re: RegExp): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof TransportError, `expected TransportError, got ${String(e)}`);
    assert.equal(e.code, 'ERR_TRANSPORT');
    assert.match(e.message, re);
    return true;
  };
}

// proxy: false: these dials go straight to loopback whatever proxy the environment names.
const dial = createNodeWsDialer({ proxy: false });

let shared: Promise<Listener> | undefined;
transportSuite('ws', {
  async pair() {
    shared ??= listen();
    const l = await shared;
    const accepted = l.accepted();
    const a = await dial(`${l.url}/`, { timeoutMs: 3000 });
    return [a, await accepted];
  },
  async close() {
    if (shared !== undefined) await (await shared).close();
  },
});

describe('toWebSocketUrl', () => {
  it('maps http(s) to ws(s), keeps ws(s), and reads a bare host:port as ws', () => {
    assert.equal(toWebSocketUrl('ws://relay:8080/x'), 'ws://relay:8080/x');
    assert.equal(toWebSocketUrl('wss://relay.example.com'), 'wss://relay.example.com');
    assert.equal(toWebSocketUrl('WSS://Relay'), 'WSS://Relay');
    assert.equal(toWebSocketUrl('http://relay:8080/path?q=1'), 'ws://relay:8080/path?q=1');
    assert.equal(toWebSocketUrl('https://relay.example.com'), 'wss://relay.example.com');
    assert.equal(new URL(toWebSocketUrl('HTTPS://relay')).protocol, 'wss:');
    assert.equal(toWebSocketUrl('relay.example.com:443'), 'ws://relay.example.com:443');
    assert.equal(toWebSocketUrl('127.0.0.1:9000'), 'ws://127.0.0.1:9000');
  });

  it('refuses other schemes with TransportError', () => {
    assert.throws(() => toWebSocketUrl('ftp://relay'), isTransportError(/unsupported URL scheme/));
    assert.throws(() => toWebSocketUrl('mqtt://relay:1883'), TransportError);
  });
});

describe('WebSocket dialer', () => {
  const cleanups: Array<() => Promise<void>> = [];
  after(async () => {
    for (const c of cleanups) await c();
  });

  it('rejects quickly with ERR_TRANSPORT when nothing listens', async () => {
    const port = await closedPort();
    const t0 = Date.now();
    await assert.rejects(dial(`ws://127.0.0.1:${port}`, { timeoutMs: 5000 }), isTransportError(/127\.0\.0\.1/));
    assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`);
  });

  it('gives up after timeoutMs on a server that never answers the upgrade', async () => {
    const s = await silentServer();
    cleanups.push(() => s.close());
    const t0 = Date.now();
    await assert.rejects(dial(`ws://127.0.0.1:${s.port}`, { timeoutMs: 150 }), isTransportError(/150 ms/));
    const took = Date.now() - t0;
    assert.ok(took >= 140 && took < 2000, `took ${took} ms`);
  });

  it('stops when its signal aborts, or at once when already aborted', async () => {
    const s = await silentServer();
    cleanups.push(() => s.close());
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    const t0 = Date.now();
    await assert.rejects(dial(`ws://127.0.0.1:${s.port}`, { signal: ac.signal, timeoutMs: 10_000 }), isTransportError(/aborted/));
    assert.ok(Date.now() - t0 < 2000);
    await assert.rejects(dial(`ws://127.0.0.1:${s.port}`, { signal: AbortSignal.abort() }), isTransportError(/aborted/));
  });

  it('rejects when the server refuses the upgrade, and dials http:// URLs as ws://', async () => {
    const l = await listen((req) => req.url === '/postern');
    cleanups.push(() => l.close());
    await assert.rejects(dial(`${l.url}/elsewhere`, { timeoutMs: 3000 }), isTransportError(/404|cannot connect/));
    const accepted = l.accepted();
    const d = await dial(`http://127.0.0.1:${l.port}/postern`, { timeoutMs: 3000 });
    assert.equal(d.kind, 'ws');
    assert.equal(d.remote, `ws://127.0.0.1:${l.port}/postern`);
    const server = await accepted;
    assert.match(server.remote, /^127\.0\.0\.1:\d+$/);
    assert.equal(l.ws.clients, 1);
    d.close();
    await Promise.all([d.done, server.done]);
  });

  it('reports an abruptly reset connection as a close with an error, once, on the client', async () => {
    const l = await listen();
    cleanups.push(() => l.close());
    const accepted = l.accepted();
    const d = await dial(l.url, { timeoutMs: 3000 });
    const server = await accepted;
    let closes = 0;
    const ended = new Promise<Error | undefined>((r) =>
      d.start({
        message: () => {},
        close: (e) => {
          closes++;
          r(e);
        },
      }),
    );
    server.start({ message: () => {}, close: () => {} });
    assert.equal(l.sockets.length, 1);
    l.sockets[0]!.destroy();
    const err = await ended;
    assert.ok(err instanceof Error, 'an abnormal end carries an error');
    assert.match(err.message, /1006/);
    await Promise.all([d.done, server.done]);
    d.send(new Uint8Array([1]));
    d.close();
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(closes, 1);
  });
});

describe('Router over WebSocket', () => {
  it('completes an agent handshake and routes a message between two WebSocket agents', async (t) => {
    const router = new Router({ domain: 'acme', node: 'ws-r1', sessionTokens: testSessionTokens() });
    t.after(() => router.close());
    const l = await listen(undefined, (d) => router.accept(d));
    t.after(() => l.close());
    const opts = { ...router.channelOptions, pingMs: 0, clock: systemClock, scheduler: defaultScheduler };
    const open = async (name: string): Promise<Awaited<ReturnType<typeof openChannel>>> =>
      openChannel(
        await dial(l.url, { timeoutMs: 3000 }),
        opts,
        { type: FrameType.HELLO, version: PROTOCOL_VERSION, role: Role.AGENT, token: '', resume: '', name, node: '', agent: 'ws.test', maxFrame: 1024 * 1024, features: 0, nonce: '', link: 0 },
        3000,
      );
    const alice = await open('alice');
    const bob = await open('bob');
    assert.equal(alice.welcome.name, 'alice');
    assert.equal(alice.welcome.domain, 'acme');
    assert.equal(alice.welcome.node, 'ws-r1');
    assert.match(bob.welcome.id, /^_[a-z0-9]+$/);
    alice.attach({ frame: () => {}, closed: () => {} });
    const got = new Promise<{ from: string; body: string }>((resolve) =>
      bob.attach({
        frame: (f) => {
          if (f.type === FrameType.MSG) resolve({ from: f.from, body: new TextDecoder().decode(f.body) });
        },
        closed: () => {},
      }),
    );
    alice.channel.msg(0, 0, 'ws-1', '', 'bob', new TextEncoder().encode('over the wire'));
    assert.deepEqual(await got, { from: 'alice@acme', body: 'over the wire' });
    assert.equal(router.stats().agents, 2);
    assert.deepEqual(
      router.links().map((x) => x.transport),
      ['ws', 'ws'],
    );
  });
});
