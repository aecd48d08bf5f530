// The long-poll transport over real loopback sockets: the shared transport contract, the HTTP
// API's answers and limits, lost answers and retries, expiry, and backpressure.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type net from 'node:net';
import { after, describe, it } from 'node:test';
import type { Duplex } from '@postern/core';
import { TransportError } from '@postern/protocol';
import { transportSuite, waitFor } from '@postern/testing';
import { createFetchHttpDialer, createLongPollServer, createNodeHttpDialer, encodeEnvelopes, type LongPollServer, type LongPollServerOptions } from '@postern/transport-http/node';
import { Middlebox } from './middlebox.js';

interface Listener {
  url: string;
  port: number;
  lp: LongPollServer;
  /** Server-side duplexes in order of arrival. */
  accepted(): Promise<Duplex>;
  close(): Promise<void>;
}

/** A node:http server on 127.0.0.1:0 serving only the long-poll API. */
async function listen(options: LongPollServerOptions = {}): Promise<Listener> {
  const queue: Duplex[] = [];
  const waiting: Array<(d: Duplex) => void> = [];
  const all: Duplex[] = [];
  const lp = createLongPollServer(
    (d) => {
      all.push(d);
      const w = waiting.shift();
      if (w !== undefined) w(d);
      else queue.push(d);
    },
    { maxBodyBytes: 4 * 1024 * 1024, ...options },
  );
  const server = http.createServer((req, res) => {
    if (!lp.handle(req, res)) res.writeHead(404).end('not here\n');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    lp,
    accepted: () => {
      const d = queue.shift();
      return d !== undefined ? Promise.resolve(d) : new Promise<Duplex>((r) => waiting.push(r));
    },
    async close() {
      lp.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

interface Raw {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One plain HTTP request, for checking the API without the client. */
function raw(port: number, method: string, path: string, body?: Uint8Array, timeoutMs = 5000, headers: Record<string, string> = {}): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port, method, path, agent: false, timeout: timeoutMs, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    r.on('timeout', () => r.destroy(new Error('timeout')));
    r.on('error', reject);
    r.end(body);
  });
}

async function openRaw(port: number): Promise<{ session: string; maxBodyBytes: number; pollTimeoutMs: number; sessionTimeoutMs: number; version: number }> {
  const r = await raw(port, 'POST', '/postern/http/sessions');
  assert.equal(r.status, 201, r.body.toString());
  return JSON.parse(r.body.toString()) as { session: string; maxBodyBytes: number; pollTimeoutMs: number; sessionTimeoutMs: number; version: number };
}

function collect(d: Duplex): { messages: Uint8Array[]; closed: Promise<Error | undefined> } {
  const messages: Uint8Array[] = [];
  let done!: (e: Error | undefined) => void;
  const closed = new Promise<Error | undefined>((r) => (done = r));
  d.start({ message: (m) => messages.push(m), close: (e) => done(e) });
  return { messages, closed };
}

const bytes = (...xs: number[]): Uint8Array => new Uint8Array(xs);
const dial = createNodeHttpDialer({ proxy: false });

let shared: Promise<Listener> | undefined;
transportSuite('http long-poll', {
  async pair() {
    shared ??= listen();
    const l = await shared;
    const accepted = l.accepted();
    const a = await dial(l.url, { timeoutMs: 3000 });
    return [a, await accepted];
  },
  async close() {
    if (shared !== undefined) await (await shared).close();
  },
});

// The browser's client half (fetch), against the same server: Node has fetch too.
let sharedFetch: Promise<Listener> | undefined;
const fetchDial = createFetchHttpDialer();
transportSuite('http long-poll over fetch', {
  async pair() {
    sharedFetch ??= listen();
    const l = await sharedFetch;
    const accepted = l.accepted();
    const a = await fetchDial(l.url, { timeoutMs: 3000 });
    return [a, await accepted];
  },
  async close() {
    if (sharedFetch !== undefined) await (await sharedFetch).close();
  },
});

describe('long-poll HTTP API', () => {
  const cleanups: Array<() => Promise<void>> = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });
  const start = async (o: LongPollServerOptions = {}): Promise<Listener> => {
    const l = await listen(o);
    cleanups.push(() => l.close());
    return l;
  };

  it('opens a session with its limits, and answers unknown paths, methods and sessions clearly', async () => {
    const l = await start({ pollTimeoutMs: 1000, sessionTimeoutMs: 4000 });
    const s = await openRaw(l.port);
    assert.equal(s.version, 1);
    assert.match(s.session, /^[A-Za-z0-9_-]{32}$/);
    assert.deepEqual([s.maxBodyBytes, s.pollTimeoutMs, s.sessionTimeoutMs], [4 * 1024 * 1024, 1000, 4000]);
    const server = await l.accepted();
    assert.equal(server.kind, 'http');
    assert.match(server.remote, /^127\.0\.0\.1:\d+$/);
    assert.equal(l.lp.sessions, 1);

    assert.equal((await raw(l.port, 'GET', '/postern/http/sessions')).status, 405);
    assert.equal((await raw(l.port, 'GET', '/postern/http/nope')).status, 404);
    assert.equal((await raw(l.port, 'GET', '/elsewhere')).status, 404); // not ours: the owner answers
    const unknown = await raw(l.port, 'GET', '/postern/http/sessions/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/poll?ack=0');
    assert.equal(unknown.status, 404);
    assert.match(unknown.body.toString(), /no such session/);
    assert.equal((await raw(l.port, 'GET', `/postern/http/sessions/${s.session}/poll`)).status, 400);
    assert.equal((await raw(l.port, 'POST', `/postern/http/sessions/${s.session}/send?seq=x`, bytes())).status, 400);
    assert.equal((await raw(l.port, 'PUT', `/postern/http/sessions/${s.session}`)).status, 405);
    const pre = await raw(l.port, 'OPTIONS', `/postern/http/sessions/${s.session}/send?seq=0`);
    assert.equal(pre.status, 204);
    assert.equal(pre.headers['access-control-allow-origin'], undefined, 'no Origin, no CORS headers');

    // seq must be the next one; a gap is refused, a repeat is accepted and dropped.
    assert.equal((await raw(l.port, 'POST', `/postern/http/sessions/${s.session}/send?seq=1`, encodeEnvelopes([bytes(1)]))).status, 409);
    const rs = collect(server);
    assert.equal((await raw(l.port, 'POST', `/postern/http/sessions/${s.session}/send?seq=0`, encodeEnvelopes([bytes(1), bytes(2, 3)]))).status, 204);
    assert.equal((await raw(l.port, 'POST', `/postern/http/sessions/${s.session}/send?seq=0`, encodeEnvelopes([bytes(1), bytes(2, 3)]))).status, 204);
    assert.deepEqual(rs.messages.map((m) => [...m]), [[1], [2, 3]]);

    // Outbound bytes stay until a poll's ack confirms them.
    server.send(bytes(7));
    server.send(bytes(8, 9));
    // max bounds an answer to whole messages (at least one); max=0 only confirms.
    const none = await raw(l.port, 'GET', `/postern/http/sessions/${s.session}/poll?ack=0&max=0`);
    assert.deepEqual([none.status, none.body.length, none.headers['postern-offset']], [200, 0, '0']);
    assert.deepEqual([...(await raw(l.port, 'GET', `/postern/http/sessions/${s.session}/poll?ack=0&max=1`)).body], [0, 0, 0, 1, 7]);
    assert.deepEqual([...(await raw(l.port, 'GET', `/postern/http/sessions/${s.session}/poll?ack=0&max=10`)).body], [0, 0, 0, 1, 7]);
    const p1 = await raw(l.port, 'GET', `/postern/http/sessions/${s.session}/poll?ack=0`);
    assert.equal(p1.status, 200);
    assert.equal(p1.headers['postern-offset'], '0');
    assert.deepEqual([...p1.body], [0, 0, 0, 1, 7, 0, 0, 0, 2, 8, 9]);
    const again = await raw(l.port, 'GET', `/postern/http/sessions/${s.session}/poll?ack=5`);
    assert.equal(again.headers['postern-offset'], '5');
    assert.deepEqual([...again.body], [0, 0, 0, 2, 8, 9]);
    assert.equal((await raw(l.port, 'GET', `/postern/http/sessions/${s.session}/poll?ack=7`)).status, 400); // not a message boundary
    server.send(bytes(3));
    // Past one boundary but not at the next: refused, and nothing is confirmed by it.
    assert.equal((await raw(l.port, 'GET', `/postern/http/sessions/${s.session}/poll?ack=13`)).status, 400);
    assert.deepEqual([...(await raw(l.port, 'GET', `/postern/http/sessions/${s.session}/poll?ack=5`)).body], [0, 0, 0, 2, 8, 9, 0, 0, 0, 1, 3]);
    assert.equal((await raw(l.port, 'GET', `/postern/http/sessions/${s.session}/poll?ack=3`)).status, 409); // already confirmed
    assert.equal((await raw(l.port, 'GET', `/postern/http/sessions/${s.session}/poll?ack=99`)).status, 409); // never sent

    // DELETE ends it: the router hears a clean close.
    assert.equal((await raw(l.port, 'DELETE', `/postern/http/sessions/${s.session}`)).status, 204);
    assert.equal(await rs.closed, undefined);
    assert.equal(l.lp.sessions, 0);
    assert.equal((await raw(l.port, 'GET', `/postern/http/sessions/${s.session}/poll?ack=11`)).status, 404);
  });

  it('lets web pages of allowed origins only: any other Origin gets 403, no Origin is not affected, CORS names the origin', async () => {
    const l = await listen({ allowOrigins: ['https://App.example.com:443', 'http://localhost:8080'] });
    after(() => l.close());
    const open = '/postern/http/sessions';
    const evil = await raw(l.port, 'POST', open, undefined, 5000, { origin: 'https://evil.example' });
    assert.equal(evil.status, 403);
    assert.match(evil.body.toString(), /--allow-origin/);
    assert.equal(evil.headers['access-control-allow-origin'], undefined, 'a refused page may not even read why');
    assert.equal(l.lp.sessions, 0);
    const preflight = await raw(l.port, 'OPTIONS', open, undefined, 5000, { origin: 'https://evil.example', 'access-control-request-method': 'POST' });
    assert.equal(preflight.status, 403);
    assert.equal((await raw(l.port, 'POST', open, undefined, 5000, { origin: 'null' })).status, 403, 'a sandboxed page or a file');
    for (const origin of ['https://app.example.com', 'http://localhost:8080']) {
      const ok = await raw(l.port, 'POST', open, undefined, 5000, { origin });
      assert.equal(ok.status, 201, origin);
      assert.equal(ok.headers['access-control-allow-origin'], origin);
      assert.match(String(ok.headers['access-control-expose-headers']), /postern-offset/i);
      assert.match(String(ok.headers.vary), /origin/i);
      const s = JSON.parse(ok.body.toString()) as { session: string };
      // Every request of the session is checked, not only the open.
      assert.equal((await raw(l.port, 'GET', `/postern/http/sessions/${s.session}/poll?ack=0&max=0`, undefined, 5000, { origin: 'https://evil.example' })).status, 403);
    }
    assert.equal((await raw(l.port, 'POST', open)).status, 201, 'no Origin: a program, not a page');
    assert.equal(l.lp.sessions, 3);
    // '*' lets every page; the default lets none.
    const any = await listen({ allowOrigins: ['*'] });
    after(() => any.close());
    assert.equal((await raw(any.port, 'POST', open, undefined, 5000, { origin: 'https://whoever.example' })).headers['access-control-allow-origin'], 'https://whoever.example');
    const none = await listen();
    after(() => none.close());
    assert.equal((await raw(none.port, 'POST', open, undefined, 5000, { origin: 'http://localhost:8080' })).status, 403);
    assert.throws(() => createLongPollServer(() => undefined, { allowOrigins: ['https://a.example/path'] }), /an allowed origin is a scheme, a host and an optional port/);
  });

  it('refuses a body over maxBodyBytes with 413, and sessions over maxSessions with 503', async () => {
    const l = await start({ maxBodyBytes: 1024, maxSessions: 1 });
    const s = await openRaw(l.port);
    const big = await raw(l.port, 'POST', `/postern/http/sessions/${s.session}/send?seq=0`, new Uint8Array(2000));
    assert.equal(big.status, 413);
    assert.match(big.body.toString(), /larger than 1024 bytes/);
    const full = await raw(l.port, 'POST', '/postern/http/sessions');
    assert.equal(full.status, 503);
    assert.equal(full.headers['retry-after'], '5');
    assert.match(full.body.toString(), /limit of 1 long-poll sessions/);
  });

  it('ends a waiting poll with an empty answer when a second one arrives, and an idle poll after pollTimeoutMs', async () => {
    const l = await start({ pollTimeoutMs: 300 });
    const s = await openRaw(l.port);
    await l.accepted();
    const t0 = Date.now();
    const first = raw(l.port, 'GET', `/postern/http/sessions/${s.session}/poll?ack=0`);
    await new Promise((r) => setTimeout(r, 50));
    const second = raw(l.port, 'GET', `/postern/http/sessions/${s.session}/poll?ack=0`);
    const f = await first;
    assert.equal(f.status, 200);
    assert.equal(f.body.length, 0);
    assert.ok(Date.now() - t0 < 250, 'the first poll ended when the second came');
    const g = await second;
    assert.equal(g.status, 200);
    assert.equal(g.body.length, 0);
    assert.ok(Date.now() - t0 >= 300, 'the second waited its pollTimeoutMs');
  });

  it('expires a session that sees no poll within sessionTimeoutMs', async () => {
    const l = await start({ sessionTimeoutMs: 200 });
    const s = await openRaw(l.port);
    const server = collect(await l.accepted());
    const err = await server.closed;
    assert.ok(err instanceof TransportError);
    assert.match(err.message, /expired: no poll for 200 ms/);
    assert.equal(l.lp.sessions, 0);
    assert.equal((await raw(l.port, 'GET', `/postern/http/sessions/${s.session}/poll?ack=0`)).status, 404);
  });

  it('closes the client with an error when the router has dropped its session', async () => {
    const l = await start();
    const accepted = l.accepted();
    const client = await dial(l.url, { timeoutMs: 3000 });
    const rc = collect(client);
    (await accepted).start({ message: () => {}, close: () => {} });
    l.lp.close(); // ends every session at once, as a router restart would
    const err = await rc.closed;
    assert.ok(err instanceof TransportError);
    assert.match(err.message, /ended the long-poll session|refused/);
  });

  it('deletes its session when the router refuses a send (413): the session does not wait out its expiry', async () => {
    const l = await start({ maxBodyBytes: 1024, sessionTimeoutMs: 60_000 });
    const accepted = l.accepted();
    const client = await dial(l.url, { timeoutMs: 3000 });
    const rs = collect(await accepted);
    const rc = collect(client);
    assert.equal(l.lp.sessions, 1);
    client.send(new Uint8Array(2000));
    const err = await rc.closed;
    assert.ok(err instanceof TransportError);
    assert.match(err.message, /refused a long-poll send: 413/);
    await waitFor(() => l.lp.sessions === 0, 'the session deleted', 3000);
    await rs.closed;
  });

  it('rejects a dial where no long-poll API answers, naming the status', async () => {
    const l = await start({ path: '/elsewhere' });
    await assert.rejects(dial(l.url, { timeoutMs: 3000 }), (e: unknown) => {
      assert.ok(e instanceof TransportError);
      assert.match(e.message, /404/);
      return true;
    });
  });

  it('serves the API after any path prefix, as a router takes WebSocket upgrades on any path', async () => {
    const l = await start();
    const accepted = l.accepted();
    const client = await dial(`${l.url}/some/prefix`, { timeoutMs: 3000 });
    const rs = collect(await accepted);
    const rc = collect(client);
    client.send(bytes(1, 2));
    await waitFor(() => rs.messages.length === 1, 'the message at the server', 3000);
    assert.deepEqual([...rs.messages[0]!], [1, 2]);
    assert.equal((await raw(l.port, 'POST', '/postern/httpx/sessions')).status, 404, 'a longer segment is not the API');
    client.close();
    await Promise.all([rc.closed, rs.closed]);
  });

  it('applies a send whose answer was lost once, and sends a lost poll answer again: nothing lost or doubled', async () => {
    const l = await start();
    const mb = await Middlebox.start({ host: '127.0.0.1', port: l.port });
    cleanups.push(() => mb.close());
    const accepted = l.accepted();
    const client = await dial(mb.url, { timeoutMs: 3000 });
    const server = await accepted;
    const rc = collect(client);
    const rs = collect(server);

    mb.dropAnswer((m, u) => m === 'POST' && u.includes('/send?seq=0'));
    client.send(bytes(1));
    client.send(bytes(2));
    client.send(bytes(3));
    await waitFor(() => rs.messages.length >= 3, 'three messages at the server', 5000);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(rs.messages.map((m) => [...m]), [[1], [2], [3]]);
    const sends = mb.seen.filter((x) => x.url.includes('/send?seq=0'));
    assert.ok(sends.length >= 2, 'send 0 was retried after its answer was lost');
    assert.equal(sends[0]!.status, 204);
    assert.equal(client.bufferedAmount, 0);

    // The poll waiting now passed the middlebox already; the next one loses its answer (which carries 12).
    mb.dropAnswer((m, u) => m === 'GET' && u.includes('/poll'));
    server.send(bytes(10));
    server.send(bytes(11));
    await waitFor(() => rc.messages.length >= 2, 'two messages at the client', 5000);
    server.send(bytes(12));
    await waitFor(() => rc.messages.length >= 3, 'three messages at the client', 5000);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(rc.messages.map((m) => [...m]), [[10], [11], [12]]);
    assert.ok(mb.seen.some((x) => x.method === 'GET' && x.dropped && x.status === 200), 'a poll answer carrying data was lost');
    client.close();
    await Promise.all([rc.closed, rs.closed]);
  });

  it('holds sends while the server is paused: the client buffers, and everything arrives after resume', async () => {
    const l = await start({ pollTimeoutMs: 400 });
    const accepted = l.accepted();
    const client = await dial(l.url, { timeoutMs: 3000 });
    const server = await accepted;
    const rs = collect(server);
    collect(client);
    server.pause?.();
    client.send(bytes(1));
    await new Promise((r) => setTimeout(r, 50));
    client.send(new Uint8Array(1000));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(rs.messages.length, 0);
    assert.ok(client.bufferedAmount >= 1000, `bufferedAmount ${client.bufferedAmount}`);
    // Held past pollTimeoutMs: answered 503, retried by the client, still not applied.
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(rs.messages.length, 0);
    server.resume?.();
    await waitFor(() => rs.messages.length === 2, 'both messages after resume', 5000);
    assert.deepEqual([...rs.messages[0]!], [1]);
    assert.equal(rs.messages[1]!.length, 1000);
    await waitFor(() => client.bufferedAmount === 0, 'the client buffer to drain', 5000);
    client.close();
  });

  it('a paused client takes nothing more but keeps its session alive, and gets everything after resume', async () => {
    const l = await start({ sessionTimeoutMs: 300, pollTimeoutMs: 200 });
    const accepted = l.accepted();
    const client = await dial(l.url, { timeoutMs: 3000 });
    const server = await accepted;
    const rc = collect(client);
    collect(server);
    client.pause?.();
    server.send(bytes(1)); // answers the poll that was already waiting
    await waitFor(() => rc.messages.length === 1, 'the first message', 3000);
    server.send(bytes(2));
    server.send(bytes(3));
    await new Promise((r) => setTimeout(r, 800));
    assert.equal(rc.messages.length, 1);
    assert.equal(server.bufferedAmount, 10, 'the router holds what the paused client did not take');
    assert.equal(l.lp.sessions, 1, 'the session outlived sessionTimeoutMs');
    client.resume?.();
    await waitFor(() => rc.messages.length === 3, 'the held messages', 3000);
    assert.deepEqual(rc.messages.map((m) => [...m]), [[1], [2], [3]]);
    client.close();
  });

  it('reports a server close to the client after the last bytes, and the client close to the server', async () => {
    const l = await start();
    const accepted = l.accepted();
    const client = await dial(l.url, { timeoutMs: 3000 });
    const server = await accepted;
    const rc = collect(client);
    const rs = collect(server);
    server.send(bytes(1, 2, 3));
    server.close();
    assert.equal(await rc.closed, undefined);
    assert.deepEqual(rc.messages.map((m) => [...m]), [[1, 2, 3]]);
    assert.equal(await rs.closed, undefined);
    await Promise.all([client.done, server.done]);
    assert.equal(l.lp.sessions, 0);
  });
});
