// Fuzzing the router's doors with generated inputs (fast-check, property-based): what an
// unauthenticated client can send before and during the handshake over a real WebSocket, and
// requests of any shape to the HTTP long-poll API over real HTTP. The properties: the router
// answers every input with a clear refusal (a CLOSE code, an HTTP status of the documented set),
// never with INTERNAL or 500, never logs an internal error, and keeps serving other agents.
// Bounded in `npm test` (POSTERN_FUZZ_RUNS cases per property, default 300); `npm run fuzz`
// runs many more (scripts/fuzz.sh). A failure prints the seed and the shrunk input to replay.
import { TEST_GUESTS } from '@postern/testing';
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { WebSocket } from 'ws';
import { connect } from '@postern/client';
import type { Logger } from '@postern/core';
import { FrameDecoder, FrameType, HomeOp, WatchOp, WireCode, encodeFrame, type Frame } from '@postern/protocol';
import { startRouter, type RouterServer } from '@postern/router';
import { encodeEnvelopes } from '@postern/transport-http/node';

const RUNS = Number(process.env['POSTERN_FUZZ_RUNS'] ?? 300);
const SEED = process.env['POSTERN_FUZZ_SEED'] === undefined ? undefined : Number(process.env['POSTERN_FUZZ_SEED']);
const PARAMS = { numRuns: RUNS, ...(SEED === undefined ? {} : { seed: SEED }) };

const str = (max: number): fc.Arbitrary<string> => fc.string({ maxLength: max, unit: fc.oneof(fc.constantFrom('a', 'b', '_', '@', '.', '~', '-', '*'), fc.string({ minLength: 1, maxLength: 1, unit: 'binary' })) });

/** Frames an attacker might try, before or after HELLO: well formed, with hostile field values. */
const frame: fc.Arbitrary<Frame> = fc.oneof(
  fc.record({
    type: fc.constant(FrameType.HELLO),
    version: fc.integer({ min: 0, max: 5 }),
    role: fc.integer({ min: 0, max: 4 }),
    token: str(60),
    resume: str(60),
    name: str(70),
    node: str(60),
    agent: str(20),
    maxFrame: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
    features: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
    nonce: str(40),
    link: fc.integer({ min: 0, max: 255 }),
  }) as fc.Arbitrary<Frame>,
  fc.record({ type: fc.constant(FrameType.MSG), flags: fc.integer({ min: 0, max: 255 }), hops: fc.integer({ min: 0, max: 255 }), id: str(40), from: str(60), to: str(60), body: fc.uint8Array({ maxLength: 64 }) }) as fc.Arbitrary<Frame>,
  fc.record({ type: fc.constant(FrameType.ACK), id: str(40), from: str(60) }) as fc.Arbitrary<Frame>,
  fc.record({ type: fc.constant(FrameType.RELEASE), count: fc.integer({ min: 0, max: 2 ** 32 - 1 }) }) as fc.Arbitrary<Frame>,
  fc.record({ type: fc.constant(FrameType.WATCH), op: fc.constantFrom(WatchOp.WATCH, WatchOp.UNWATCH), target: str(60), watcher: str(60) }) as fc.Arbitrary<Frame>,
  fc.record({ type: fc.constant(FrameType.HOME), op: fc.integer({ min: HomeOp.CLAIM, max: HomeOp.SETTLED }), ref: fc.nat(), local: str(60), id: str(40), since: fc.nat() }) as fc.Arbitrary<Frame>,
  fc.record({ type: fc.constant(FrameType.PING), nonce: fc.nat() }) as fc.Arbitrary<Frame>,
);

/** What one connection sends: frames (some cut or with a byte flipped), or bytes of no meaning. */
const attempt = fc.array(
  fc.oneof(
    { weight: 4, arbitrary: frame.map((f) => encodeFrame(f)) },
    { weight: 1, arbitrary: fc.tuple(frame, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([f, at, b]) => flip(encodeFrame(f), at, b)) },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 200 }) },
  ),
  { minLength: 1, maxLength: 4 },
);

function flip(bytes: Uint8Array, at: number, b: number): Uint8Array {
  const c = bytes.slice();
  c[at % c.length] = b;
  return c;
}

/** The router's logger, failing the run on any error it logs (an internal error is a bug). */
function watchingLogger(): { logger: Logger; errors: string[] } {
  const errors: string[] = [];
  const logger: Logger = { debug: () => {}, info: () => {}, warn: () => {}, error: (_e: string, m: string, f?: object) => errors.push(`${m} ${JSON.stringify(f)}`) };
  return { logger, errors };
}

/** Sends `messages` on a fresh WebSocket; resolves with the CLOSE the router sent, if any, once it closed or 150 ms passed. */
function poke(url: string, messages: Uint8Array[]): Promise<Frame | undefined> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const dec = new FrameDecoder({ maxFrameBytes: 1 << 20 });
    let close: Frame | undefined;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      ws.terminate();
      resolve(close);
    };
    const timer = setTimeout(finish, 150);
    ws.on('open', () => {
      for (const m of messages) ws.send(m);
    });
    ws.on('message', (d: Buffer) => {
      try {
        dec.push(new Uint8Array(d), (f) => {
          if (f.type === FrameType.CLOSE) close = f;
        });
      } catch (err) {
        reject(new Error(`the router sent bytes that do not decode: ${String(err)}`));
      }
    });
    ws.on('close', finish);
    ws.on('error', () => finish());
  });
}

function request(port: number, method: string, path: string, body: Uint8Array | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port, method, path, agent: false, timeout: 3000, headers: body === undefined ? {} : { 'content-type': 'application/octet-stream' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    // A poll that waits for data is answered empty after pollTimeoutMs; no answer at all is a failure.
    r.on('timeout', () => r.destroy(new Error(`no answer to ${method} ${path}`)));
    r.on('error', reject);
    r.end(body);
  });
}

describe('fuzz: the router against generated inputs', () => {
  let r: RouterServer;
  let errors: string[];
  before(async () => {
    const w = watchingLogger();
    errors = w.errors;
    r = await startRouter({ domain: 'acme', listen: ['127.0.0.1:0'], secret: 'fuzz-secret', ...TEST_GUESTS, logger: w.logger, longPoll: { pollTimeoutMs: 300 } });
  });
  after(() => r.close());

  async function stillServes(): Promise<void> {
    const a = await connect({ url: r.url });
    const b = await connect({ url: r.url });
    try {
      const it = b[Symbol.asyncIterator]();
      await a.send(b.address, 'still here');
      const got = await it.next();
      assert.equal(got.done, false);
      assert.equal(got.value?.text(), 'still here');
    } finally {
      await a.close();
      await b.close();
    }
  }

  it(`answers ${RUNS} generated handshakes (frames, cut and flipped frames, noise) with a refusal or a session, never an internal error`, async () => {
    const codes = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(attempt, async (messages) => {
        const close = await poke(r.url, messages);
        if (close !== undefined && close.type === FrameType.CLOSE) {
          assert.notEqual(close.code, WireCode.INTERNAL, `INTERNAL: ${close.reason}`);
          codes.set(String(close.code), (codes.get(String(close.code)) ?? 0) + 1);
        }
        assert.deepEqual(errors, []);
      }),
      PARAMS,
    );
    console.log(`fuzz handshakes: ${RUNS} connections; CLOSE codes seen ${JSON.stringify(Object.fromEntries(codes))}`);
    assert.ok(codes.size > 0, 'nothing was refused: the generator proves nothing');
    await stillServes();
  });

  it(`answers ${RUNS} generated long-poll requests with a documented status, never 500`, async () => {
    const port = r.addresses[0]!.port;
    const allowed = new Set([200, 201, 204, 400, 404, 405, 409, 413, 503]);
    // A real session, so that generated requests reach its send and poll handlers too.
    const open = await fetch(`http://127.0.0.1:${port}/postern/http/sessions`, { method: 'POST' });
    const session = ((await open.json()) as { session: string }).session;
    const path = fc.oneof(
      fc.constantFrom('/postern/http/sessions', `/postern/http/sessions/${session}`, `/postern/http/sessions/${session}/send`, `/postern/http/sessions/${session}/poll`, '/postern/http/sessions/AAAAAAAAAAAAAAAAAAAAAAAA/poll', '/postern/http'),
      fc.webPath().map((p) => `/postern/http${p}`),
    );
    const query = fc.oneof(fc.constant(''), fc.tuple(fc.constantFrom('seq', 'ack', 'max', 'x'), fc.oneof(fc.nat().map(String), fc.string({ maxLength: 8 }))).map(([k, v]) => `?${k}=${encodeURIComponent(v)}`));
    const body = fc.option(fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 4 }).map((m) => encodeEnvelopes(m))), { nil: undefined });
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('GET', 'POST', 'DELETE', 'PUT', 'OPTIONS', 'PATCH'), path, query, body, async (method, p, q, b) => {
        const status = await request(port, method, `${p}${q}`, method === 'GET' || method === 'OPTIONS' ? undefined : b);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        assert.ok(allowed.has(status), `${method} ${p}${q} answered ${status}`);
        assert.deepEqual(errors, []);
      }),
      PARAMS,
    );
    console.log(`fuzz long-poll: ${RUNS} requests; statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
    await stillServes();
  });
});
