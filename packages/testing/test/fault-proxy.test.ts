// FaultProxy over real loopback sockets, with an echo server as the target: forwarding, slicing,
// delay, backpressure, and each fault as a client sees it.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterEach, describe, it } from 'node:test';
import { FaultProxy, waitFor } from '@postern/testing';

interface Target {
  port: number;
  /** Connections the target accepted. */
  accepted: number;
  /** 'data' events the target saw. */
  reads: number;
  /** When set, new connections are paused (not read) instead of echoed. */
  stall: boolean;
  sockets: Set<net.Socket>;
  close(): Promise<void>;
}

/** An echo server on 127.0.0.1:0 that forwards a half-close back. */
async function echoServer(): Promise<Target> {
  const sockets = new Set<net.Socket>();
  const t: Target = {
    port: 0,
    accepted: 0,
    reads: 0,
    stall: false,
    sockets,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    t.accepted++;
    sockets.add(s);
    s.setNoDelay(true);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.on('data', () => t.reads++);
    if (t.stall) s.pause();
    else s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.port = (server.address() as net.AddressInfo).port;
  return t;
}

interface Client {
  socket: net.Socket;
  received: Buffer[];
  /** Bytes received since the last reset(). */
  bytes(): number;
  /** Forgets what was received. */
  reset(): void;
  /** Resolves with the error 'close' reported (undefined for a clean close). */
  closed: Promise<NodeJS.ErrnoException | undefined>;
  ended: boolean;
}

/** Every client socket, destroyed after each test. */
const clients = new Set<net.Socket>();

function connect(port: number): Client {
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  clients.add(socket);
  let n = 0;
  const c: Client = {
    socket,
    received: [],
    bytes: () => n,
    reset: () => {
      c.received.length = 0;
      n = 0;
    },
    ended: false,
    closed: new Promise((resolve) => {
      let err: NodeJS.ErrnoException | undefined;
      socket.on('error', (e) => (err = e));
      socket.on('close', () => resolve(err));
    }),
  };
  socket.on('data', (b: Buffer) => {
    c.received.push(b);
    n += b.length;
  });
  socket.on('end', () => (c.ended = true));
  return c;
}

async function echoed(c: Client, n: number, timeoutMs = 10_000): Promise<Buffer> {
  await waitFor(() => c.bytes() >= n, `${n} echoed bytes (have ${c.bytes()})`, timeoutMs, 5);
  return Buffer.concat(c.received);
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Asserts the connection was ended by a reset, not a clean close. */
async function assertReset(c: Client): Promise<void> {
  const err = await c.closed;
  assert.ok(err !== undefined, 'closed without an error');
  assert.ok(['ECONNRESET', 'EPIPE'].includes(err.code ?? ''), `unexpected error ${err.code} ${err.message}`);
}

describe('FaultProxy', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const s of clients) s.destroy();
    clients.clear();
    for (const f of cleanups.splice(0).reverse()) await f();
  });

  async function setup(): Promise<{ target: Target; proxy: FaultProxy }> {
    const target = await echoServer();
    const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port: target.port } });
    cleanups.push(() => target.close(), () => proxy.close());
    return { target, proxy };
  }

  it('listens on 127.0.0.1 and forwards bytes and a half-close unchanged both ways', async () => {
    const { proxy } = await setup();
    assert.equal(proxy.host, '127.0.0.1');
    assert.equal(proxy.url, `ws://127.0.0.1:${proxy.port}`);
    const c = connect(proxy.port);
    const data = randomBytes(200_000);
    c.socket.write(data.subarray(0, 1000));
    c.socket.end(data.subarray(1000));
    assert.equal(sha(await echoed(c, data.length)), sha(data));
    assert.equal(await c.closed, undefined);
    assert.equal(c.ended, true);
    await waitFor(() => proxy.connections === 0, 'pair gone');
    assert.deepEqual(proxy.stats, { accepted: 1, resets: 0, bytesUp: data.length, bytesDown: data.length });
  });

  it('passes 128 KiB through 7-byte slices unchanged', async () => {
    const { target, proxy } = await setup();
    proxy.setSlice(7);
    const c = connect(proxy.port);
    const data = randomBytes(128 * 1024);
    c.socket.write(data);
    assert.equal(sha(await echoed(c, data.length, 60_000)), sha(data));
    assert.ok(target.reads > 1000, `target saw only ${target.reads} reads`);
    c.socket.destroy();
  });

  it('delays each direction by at least the delay, keeping order with slicing on', async () => {
    const { proxy } = await setup();
    proxy.setDelay(100);
    const c = connect(proxy.port);
    await new Promise((r) => c.socket.once('connect', r));
    let t0 = performance.now();
    c.socket.write('ping');
    await echoed(c, 4);
    assert.ok(performance.now() - t0 >= 200, `round trip took ${performance.now() - t0} ms`);

    proxy.setDelay(20);
    proxy.setSlice(3);
    c.reset();
    const parts = Array.from({ length: 20 }, (_, i) => randomBytes(50 + i * 37));
    t0 = performance.now();
    for (const p of parts) {
      c.socket.write(p);
      await sleep(2);
    }
    const all = Buffer.concat(parts);
    assert.equal(sha(await echoed(c, all.length)), sha(all));
    assert.ok(performance.now() - t0 >= 40);

    proxy.setDelay(60_000); // a pending long delay is re-timed when the delay drops
    c.reset();
    c.socket.write('late');
    await sleep(50);
    assert.equal(c.bytes(), 0);
    proxy.setDelay(0);
    assert.equal((await echoed(c, 4)).toString(), 'late');
    c.socket.destroy();
  });

  for (const delay of [0, 10]) {
    it(`holds back the sender when the target does not read (delay ${delay} ms)`, async () => {
      const { target, proxy } = await setup();
      target.stall = true;
      proxy.setDelay(delay);
      const c = connect(proxy.port);
      const chunk = randomBytes(64 * 1024);
      const hash = createHash('sha256');
      let written = 0;
      let stalled = false;
      // Without backpressure the proxy would buffer it all; bounded at 256 MiB.
      while (written < 256 * 1024 * 1024) {
        hash.update(chunk);
        written += chunk.length;
        if (!c.socket.write(chunk)) {
          const drained = await Promise.race([new Promise((r) => c.socket.once('drain', () => r(true))), sleep(500).then(() => false)]);
          if (!drained) {
            stalled = true;
            break;
          }
        }
      }
      assert.ok(stalled, `sender never blocked after ${written} bytes`);
      // Let the target read: everything arrives, in order.
      const [s] = [...target.sockets];
      const got = createHash('sha256');
      let n = 0;
      s!.on('data', (b: Buffer) => {
        got.update(b);
        n += b.length;
      });
      s!.resume();
      await waitFor(() => n === written, `all ${written} bytes at the target (have ${n})`, 60_000);
      assert.equal(got.digest('hex'), hash.digest('hex'));
      c.socket.destroy();
    });
  }

  it('resetAll resets open pairs with ECONNRESET and keeps accepting', async () => {
    const { proxy } = await setup();
    const c = connect(proxy.port);
    c.socket.write('hi');
    await echoed(c, 2);
    assert.equal(proxy.connections, 1);
    proxy.resetAll();
    assert.equal(proxy.connections, 0);
    await assertReset(c);
    assert.equal(proxy.stats.resets, 1);

    const d = connect(proxy.port);
    d.socket.write('again');
    assert.equal((await echoed(d, 5)).toString(), 'again');
    d.socket.destroy();
  });

  it('cut resets open pairs and refuses new connections until restore', async () => {
    const { target, proxy } = await setup();
    const c = connect(proxy.port);
    c.socket.write('hi');
    await echoed(c, 2);
    proxy.cut();
    await assertReset(c);
    const before = target.accepted;
    for (let i = 0; i < 3; i++) await assertReset(connect(proxy.port));
    assert.equal(target.accepted, before, 'the target saw a connection while cut');
    assert.equal(proxy.connections, 0);
    proxy.restore();
    const d = connect(proxy.port);
    d.socket.write('back');
    assert.equal((await echoed(d, 4)).toString(), 'back');
    assert.equal(proxy.stats.accepted, 5);
    assert.equal(proxy.stats.resets, 4);
    d.socket.destroy();
  });

  it('blackhole holds traffic silently; restore resets the pairs', async () => {
    const { target, proxy } = await setup();
    const c = connect(proxy.port);
    c.socket.write('hi');
    await echoed(c, 2);
    proxy.blackhole();
    c.socket.write('lost');
    const during = connect(proxy.port); // accepted but held, not dialled through
    during.socket.write('x');
    await sleep(300);
    assert.equal(c.bytes(), 2, 'echo crossed the blackhole');
    assert.equal(during.bytes(), 0);
    assert.equal(c.socket.destroyed, false);
    assert.equal(during.socket.destroyed, false);
    assert.equal(target.accepted, 1);
    assert.equal(proxy.connections, 2);
    proxy.restore();
    await assertReset(c);
    await assertReset(during);
    assert.equal(proxy.connections, 0);
    const d = connect(proxy.port);
    d.socket.write('ok');
    assert.equal((await echoed(d, 2)).toString(), 'ok');
    d.socket.destroy();
  });

  it('resets the client when the target refuses, without throwing', async () => {
    const gone = await echoServer();
    await gone.close();
    const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port: gone.port } });
    cleanups.push(() => proxy.close());
    const c = connect(proxy.port);
    c.socket.write('anyone?');
    assert.notEqual(await c.closed, undefined);
    await waitFor(() => proxy.connections === 0, 'pair gone');
  });

  it('close() resets everything and leaves no open handles', async () => {
    // Sockets and servers closed by earlier tests may still be tearing down: wait for none.
    const handles = (): string =>
      process
        .getActiveResourcesInfo()
        .filter((r) => ['TCPSocketWrap', 'TCPServerWrap', 'Timeout', 'Immediate'].includes(r))
        .join(',');
    await waitFor(() => handles() === '', `no handles before the test (have ${handles()})`, 5_000);
    const target = await echoServer();
    const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port: target.port } });
    const cs = [connect(proxy.port), connect(proxy.port)];
    for (const c of cs) c.socket.write(randomBytes(100));
    await Promise.all(cs.map((c) => echoed(c, 100)));
    proxy.setDelay(5_000); // leaves timers pending
    proxy.setSlice(1);
    for (const c of cs) c.socket.write(randomBytes(100));
    await sleep(20);
    await proxy.close();
    await proxy.close(); // idempotent
    assert.equal(proxy.connections, 0);
    for (const c of cs) await assertReset(c);
    assert.equal((await connect(proxy.port).closed)?.code, 'ECONNREFUSED'); // nobody listens any more
    await target.close();
    await waitFor(() => handles() === '', `no handles left (have ${handles()})`, 5_000);
  });
});
