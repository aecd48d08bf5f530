import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import {
  DEFAULT_MAX_FRAME_BYTES,
  FrameDecoder,
  FrameType,
  FrameWriter,
  ProtocolError,
  Role,
  RouteOp,
  decodeBatch,
  encodeBatch,
  encodeFrame,
  HandleOp,
  HomeOp,
  WatchOp,
  PresenceState,
  PropsOp,
  type AckFrame,
  type AcksFrame,
  type CloseFrame,
  type Frame,
  type HelloFrame,
  type MsgFrame,
  type NackFrame,
  type PingFrame,
  type ReleaseFrame,
  type PongFrame,
  type RegisterFrame,
  type RegisteredFrame,
  type RouteFrame,
  type WelcomeFrame,
  type AuthFrame,
  type HandleFrame,
  type HandledFrame,
  type HeldFrame,
  type HomeFrame,
  type HomedFrame,
  type WatchFrame,
  type WatchedFrame,
  type PresenceFrame,
  type PropsFrame,
  type PropsetFrame,
} from '@postern/protocol';

// npm run fuzz raises it (scripts/fuzz.sh).
const RUNS = Number(process.env['POSTERN_FUZZ_RUNS'] ?? 200);
/** A failure found late must not shrink for minutes (frames can hold 64 KiB strings). */
const PARAMS = { numRuns: RUNS, interruptAfterTimeLimit: RUNS > 200 ? 600_000 : 20_000, markInterruptAsFailure: true };
const utf8 = new TextEncoder();
const byteLength = (s: string): number => utf8.encode(s).length;

// ---------------------------------------------------------------------------------------------
// Arbitraries: every frame type, every field within its wire size.

const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });

/** Any ASCII character, control characters included (fc's 'binary-ascii' goes up to 0xFF). */
const asciiChar = fc.integer({ min: 0, max: 0x7f }).map((c) => String.fromCharCode(c));

/** A string filling `max` bytes but for a little slack, made of one character of 1 to 4 UTF-8 bytes. */
function nearLimit(max: number): fc.Arbitrary<string> {
  return fc.tuple(fc.integer({ min: 0, max: 3 }), fc.constantFrom('a', 'é', '€', '😀')).map(([slack, ch]) => {
    return ch.repeat(Math.floor((max - slack) / byteLength(ch)));
  });
}

/** Strings whose UTF-8 form has at most `max` bytes: ASCII, any code point, graphemes, near the limit. */
function str(max: number): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.string({ unit: asciiChar, maxLength: Math.min(max, 300) }) },
    { weight: 3, arbitrary: fc.string({ unit: 'binary', maxLength: Math.min(Math.floor(max / 4), 80) }) },
    { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 30 }).filter((s) => byteLength(s) <= max) },
    { weight: 1, arbitrary: nearLimit(max) },
  );
}
const str8 = str(0xff);
const str16 = str(0xffff);

/** fc.record builds null-prototype objects; the decoder builds plain ones. */
function rec<T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> {
  return fc.record(model).map((r) => ({ ...r }));
}

// Version 2 trailers are written for version >= 2 only; below that they decode as their defaults.
const hello: fc.Arbitrary<HelloFrame> = rec({
  type: fc.constant(FrameType.HELLO),
  version: u8,
  role: fc.constantFrom(Role.AGENT, Role.ROUTER),
  token: str16,
  resume: str8,
  name: str8,
  node: str8,
  agent: str8,
  maxFrame: u32,
  features: u32,
  nonce: str8,
  link: u8,
}).map((f) => (f.version >= 2 ? f : { ...f, features: 0, nonce: '', link: 0 }));
const welcome: fc.Arbitrary<WelcomeFrame> = rec({
  type: fc.constant(FrameType.WELCOME),
  version: u8,
  id: str8,
  domain: str8,
  name: str8,
  resume: str8,
  node: str8,
  maxFrame: u32,
  pingMs: u32,
  features: u32,
  nonce: str8,
  proof: str8,
}).map((f) => (f.version >= 2 ? f : { ...f, features: 0, nonce: '', proof: '' }));
const auth: fc.Arbitrary<AuthFrame> = rec({ type: fc.constant(FrameType.AUTH), proof: str8 });
const handle: fc.Arbitrary<HandleFrame> = rec({
  type: fc.constant(FrameType.HANDLE),
  ref: u32,
  op: fc.constantFrom(HandleOp.PSEUDONYM, HandleOp.WRAP),
  ttl: u32,
  address: str8,
});
const home: fc.Arbitrary<HomeFrame> = rec({
  type: fc.constant(FrameType.HOME),
  op: fc.constantFrom(HomeOp.CLAIM, HomeOp.ONLINE, HomeOp.OFFLINE, HomeOp.SYNC, HomeOp.SYNCED, HomeOp.MOVED, HomeOp.DRAINED, HomeOp.HOLD, HomeOp.SETTLED),
  ref: u32,
  local: str8,
  id: str8,
  since: u32,
});
const props = fc.array(rec({ key: str8, value: str16 }), { maxLength: 5 });
const watch: fc.Arbitrary<WatchFrame> = rec({ type: fc.constant(FrameType.WATCH), op: fc.constantFrom(WatchOp.WATCH, WatchOp.UNWATCH), target: str8, watcher: str8 });
const watched: fc.Arbitrary<WatchedFrame> = rec({ type: fc.constant(FrameType.WATCHED), target: str8, watcher: str8, code: u16, reason: str16 });
const presence: fc.Arbitrary<PresenceFrame> = rec({
  type: fc.constant(FrameType.PRESENCE),
  target: str8,
  state: fc.constantFrom(PresenceState.ONLINE, PresenceState.OFFLINE, PresenceState.UNREACHABLE),
  since: u32,
  props,
});
const propsFrame: fc.Arbitrary<PropsFrame> = rec({ type: fc.constant(FrameType.PROPS), ref: u32, op: fc.constantFrom(PropsOp.SET, PropsOp.ALLOW), props });
const propset: fc.Arbitrary<PropsetFrame> = rec({ type: fc.constant(FrameType.PROPSET), ref: u32, code: u16, reason: str16 });
const homed: fc.Arbitrary<HomedFrame> = rec({ type: fc.constant(FrameType.HOMED), ref: u32, code: u16, reason: str16 });
const handled: fc.Arbitrary<HandledFrame> = rec({ type: fc.constant(FrameType.HANDLED), ref: u32, code: u16, address: str8, expires: u32, reason: str16 });
const register: fc.Arbitrary<RegisterFrame> = rec({ type: fc.constant(FrameType.REGISTER), ref: u32, name: str8 });
const registered: fc.Arbitrary<RegisteredFrame> = rec({
  type: fc.constant(FrameType.REGISTERED),
  ref: u32,
  code: u16,
  name: str8,
  reason: str16,
});
const route: fc.Arbitrary<RouteFrame> = rec({
  type: fc.constant(FrameType.ROUTE),
  op: fc.constantFrom(RouteOp.ADD, RouteOp.WITHDRAW),
  metric: u8,
  domain: str8,
  path: fc.oneof(
    { weight: 5, arbitrary: fc.array(str8, { maxLength: 8 }) },
    { weight: 1, arbitrary: fc.array(fc.string({ unit: asciiChar, maxLength: 4 }), { minLength: 250, maxLength: 255 }) },
  ),
  proof: str16,
});
const msg: fc.Arbitrary<MsgFrame> = rec({
  type: fc.constant(FrameType.MSG),
  flags: u8,
  hops: u8,
  id: str8,
  from: str8,
  to: str8,
  body: fc.uint8Array({ maxLength: 600 }),
});
const ack: fc.Arbitrary<AckFrame> = rec({ type: fc.constant(FrameType.ACK), id: str8, from: str8 });
const held: fc.Arbitrary<HeldFrame> = rec({ type: fc.constant(FrameType.HELD), id: str8, from: str8 });
const nack: fc.Arbitrary<NackFrame> = rec({ type: fc.constant(FrameType.NACK), code: u16, id: str8, from: str8, reason: str16 });
const release: fc.Arbitrary<ReleaseFrame> = rec({ type: fc.constant(FrameType.RELEASE), count: u32 });
const acks: fc.Arbitrary<AcksFrame> = fc
  .tuple(fc.integer({ min: 1, max: 0xffffffff }), fc.integer({ min: 1, max: 0xffffffff }))
  .map(([first, n]) => ({ type: FrameType.ACKS, first, count: Math.min(n, 0xffffffff - first + 1) }));
const ping: fc.Arbitrary<PingFrame> = rec({ type: fc.constant(FrameType.PING), nonce: u32 });
const pong: fc.Arbitrary<PongFrame> = rec({ type: fc.constant(FrameType.PONG), nonce: u32 });
const close: fc.Arbitrary<CloseFrame> = rec({ type: fc.constant(FrameType.CLOSE), code: u16, reason: str16 });

const anyFrame: fc.Arbitrary<Frame> = fc.oneof(hello, welcome, register, registered, route, auth, home, homed, watch, watched, presence, propsFrame, propset, handle, handled, msg, ack, held, acks, nack, release, ping, pong, close);

// ---------------------------------------------------------------------------------------------
// Helpers.

/** Decoded MSG bodies are views into the input: compare their bytes, not their buffers. */
function norm(f: Frame): Frame {
  return f.type === FrameType.MSG ? { ...f, body: f.body.slice() } : f;
}

function u32be(n: number): number[] {
  return [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** `bytes` cut at `cuts` (positions, any order, repeats make empty chunks), as views. */
function cutAt(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const points = cuts.map((c) => c % (bytes.length + 1)).sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let from = 0;
  for (const p of points) {
    chunks.push(bytes.subarray(from, p));
    from = p;
  }
  chunks.push(bytes.subarray(from));
  return chunks;
}

function header(length: number, type?: number): Uint8Array {
  const h = [length >>> 24, (length >>> 16) & 0xff, (length >>> 8) & 0xff, length & 0xff];
  if (type !== undefined) h.push(type);
  return Uint8Array.from(h);
}

/** A complete frame of `type` whose body is exactly `body` (the length header agrees with it). */
function rawFrame(type: number, body: ArrayLike<number>): Uint8Array {
  return concat([header(1 + body.length, type), Uint8Array.from(body)]);
}

function throwsCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ProtocolError, `expected a ProtocolError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

function decodeOne(bytes: Uint8Array): Frame {
  const frames = decodeBatch(bytes);
  assert.equal(frames.length, 1);
  return frames[0]!;
}

/** A frame of each type with every string empty: the shortest encoding of each. */
const minimal: Frame[] = [
  { type: FrameType.HELLO, version: 1, role: Role.AGENT, token: '', resume: '', name: '', node: '', agent: '', maxFrame: 1048576, features: 0, nonce: '', link: 0 },
  { type: FrameType.WELCOME, version: 1, id: '', domain: '', name: '', resume: '', node: '', maxFrame: 0, pingMs: 0, features: 0, nonce: '', proof: '' },
  { type: FrameType.REGISTER, ref: 0, name: '' },
  { type: FrameType.REGISTERED, ref: 0, code: 0, name: '', reason: '' },
  { type: FrameType.ROUTE, op: RouteOp.ADD, metric: 0, domain: '', path: [], proof: '' },
  { type: FrameType.AUTH, proof: '' },
  { type: FrameType.HOME, op: HomeOp.CLAIM, ref: 0, local: '', id: '', since: 0 },
  { type: FrameType.HOMED, ref: 0, code: 0, reason: '' },
  { type: FrameType.WATCH, op: WatchOp.WATCH, target: '', watcher: '' },
  { type: FrameType.WATCHED, target: '', watcher: '', code: 0, reason: '' },
  { type: FrameType.PRESENCE, target: '', state: PresenceState.ONLINE, since: 0, props: [] },
  { type: FrameType.PROPS, ref: 0, op: PropsOp.SET, props: [] },
  { type: FrameType.PROPSET, ref: 0, code: 0, reason: '' },
  { type: FrameType.HANDLE, ref: 0, op: HandleOp.PSEUDONYM, ttl: 0, address: '' },
  { type: FrameType.HANDLED, ref: 0, code: 0, address: '', expires: 0, reason: '' },
  { type: FrameType.MSG, flags: 0, hops: 0, id: '', from: '', to: '', body: new Uint8Array(0) },
  { type: FrameType.ACK, id: '', from: '' },
  { type: FrameType.HELD, id: '', from: '' },
  { type: FrameType.NACK, code: 0, id: '', from: '', reason: '' },
  { type: FrameType.RELEASE, count: 0 },
  { type: FrameType.ACKS, first: 1, count: 1 },
  { type: FrameType.PING, nonce: 0 },
  { type: FrameType.PONG, nonce: 0 },
  { type: FrameType.CLOSE, code: 0, reason: '' },
];

// ---------------------------------------------------------------------------------------------

describe('codec round trip', () => {
  test('the examples cover every frame type', () => {
    assert.deepEqual(minimal.map((f) => f.type).sort((a, b) => a - b), Object.values(FrameType).sort((a, b) => a - b));
  });

  test('ACKS (PROTOCOL.md 2.4, 6.1): first and count as two u32; no numbers, number 0 or a range past 2^32 - 1 is PROTOCOL', () => {
    const f = { type: FrameType.ACKS, first: 7, count: 3 } as const;
    assert.deepEqual([...encodeFrame(f)], [0, 0, 0, 9, 0x15, 0, 0, 0, 7, 0, 0, 0, 3]);
    assert.deepEqual(decodeOne(encodeFrame(f)), f);
    for (const [first, count] of [[0, 1], [1, 0], [0xffffffff, 2]] as const) {
      const bytes = new Uint8Array([0, 0, 0, 9, 0x15, ...u32be(first), ...u32be(count)]);
      assert.throws(() => decodeOne(bytes), (e: unknown) => (e as { code?: string }).code === 'ERR_PROTOCOL', `first ${first} count ${count}`);
    }
  });

  test('addresses decoded again are the same string objects; a different address in the same slot is read as itself', () => {
    const m = (from: string, to: string): MsgFrame => ({ type: FrameType.MSG, flags: 0, hops: 1, id: 'i', from, to, body: new Uint8Array(0) });
    const a = decodeOne(encodeFrame(m('alice@acme', 'bob@globex'))) as MsgFrame;
    const b = decodeOne(encodeFrame(m('alice@acme', 'bob@globex'))) as MsgFrame;
    assert.ok(Object.is(a.from, b.from) && Object.is(a.to, b.to));
    // Many addresses (more than the cache's slots) still decode exactly, also non-ASCII ones.
    for (let i = 0; i < 5000; i++) {
      const from = `s${i}@d${i % 7}`;
      const to = i % 3 === 0 ? `é${i}@x` : `r${(i * 7919) % 5000}@y`;
      const f = decodeOne(encodeFrame(m(from, to))) as MsgFrame;
      assert.deepEqual([f.from, f.to], [from, to]);
    }
  });

  test('ROUTE flags (PROTOCOL.md 2.4, 7.6): written after the proof only when not 0, read back; without them the bytes are as before', () => {
    const plain: RouteFrame = { type: FrameType.ROUTE, op: RouteOp.ADD, metric: 0, domain: 'acme', path: ['G'], proof: '' };
    const flagged = { ...plain, flags: 1 };
    const a = encodeFrame(plain);
    const b = encodeFrame(flagged);
    assert.deepEqual(decodeOne(a), plain, 'no flags field when none was written');
    assert.deepEqual(decodeOne(b), flagged);
    assert.deepEqual([...b.subarray(a.length)], [0, 0, 1], 'an empty proof (str16), then the flags byte');
    assert.deepEqual(encodeFrame({ ...plain, flags: 0 }), a, 'flags 0 is not written');
    assert.deepEqual(decodeOne(encodeFrame({ ...flagged, proof: 'P' })), { ...flagged, proof: 'P' });
  });

  test('decodeBatch(encodeFrame(f)) equals f, for every frame type', () => {
    fc.assert(
      fc.property(anyFrame, (f) => {
        const bytes = encodeFrame(f);
        assert.equal(bytes[4], f.type);
        assert.equal(new DataView(bytes.buffer, bytes.byteOffset).getUint32(0), bytes.length - 4);
        const back = decodeOne(bytes);
        assert.deepEqual(norm(back), norm(f));
        assert.deepEqual(encodeFrame(back), bytes);
      }),
      PARAMS,
    );
  });

  test('each frame type round trips on its own', () => {
    for (const arb of [hello, welcome, register, registered, route, msg, ack, nack, ping, pong, close] as fc.Arbitrary<Frame>[]) {
      fc.assert(
        fc.property(arb, (f) => {
          assert.deepEqual(norm(decodeOne(encodeFrame(f))), norm(f));
        }),
        { ...PARAMS, numRuns: 40 },
      );
    }
  });

  test('a batch cut into any chunks decodes to the same frames in order, with raw bytes of each', () => {
    const cuts = fc.oneof(
      fc.array(fc.nat(), { maxLength: 40 }),
      fc.constant<'bytewise'>('bytewise'),
    );
    fc.assert(
      fc.property(fc.array(anyFrame, { minLength: 1, maxLength: 25 }), cuts, fc.integer({ min: 1, max: 200 }), (frames, how, initial) => {
        const w = new FrameWriter(initial); // small initial sizes exercise growth
        for (const f of frames) w.frame(f);
        assert.equal(w.length, frames.reduce((n, f) => n + encodeFrame(f).length, 0));
        const batch = w.take();
        assert.equal(w.length, 0);
        const encoded = frames.map(encodeFrame);
        assert.deepEqual(batch, concat(encoded));
        assert.deepEqual(batch, encodeBatch(frames));

        const chunks =
          how === 'bytewise'
            ? Array.from({ length: batch.length }, (_, i) => batch.subarray(i, i + 1))
            : cutAt(batch, how);
        const d = new FrameDecoder();
        const got: Frame[] = [];
        for (const c of chunks) {
          d.push(c, (f, raw) => {
            assert.deepEqual(raw, encodeFrame(f));
            assert.deepEqual(raw, encoded[got.length]);
            got.push(norm(f));
          });
        }
        assert.equal(d.bufferedBytes, 0);
        assert.deepEqual(got, frames.map(norm));
        assert.deepEqual(decodeBatch(batch).map(norm), frames.map(norm));
      }),
      PARAMS,
    );
  });

  test('a decoder keeps working across many pushes and frames split at every offset', () => {
    const frames = minimal.concat(minimal);
    const batch = encodeBatch(frames);
    for (let cut = 0; cut <= batch.length; cut++) {
      const d = new FrameDecoder();
      const got: Frame[] = [];
      d.push(batch.slice(0, cut), (f) => got.push(norm(f)));
      d.push(new Uint8Array(0), (f) => got.push(norm(f)));
      d.push(batch.slice(cut), (f) => got.push(norm(f)));
      assert.deepEqual(got, frames.map(norm), `cut at ${cut}`);
      assert.equal(d.bufferedBytes, 0);
    }
  });

  test('FrameWriter.take() returns an independent copy', () => {
    fc.assert(
      fc.property(fc.array(anyFrame, { minLength: 1, maxLength: 5 }), fc.array(anyFrame, { minLength: 1, maxLength: 5 }), (a, b) => {
        const w = new FrameWriter(8);
        for (const f of a) w.frame(f);
        const first = w.take();
        const copy = first.slice();
        for (const f of b) w.frame(f);
        assert.deepEqual(first, copy, 'writing more changed what take() returned');
        first.fill(0xee);
        const second = w.take();
        assert.deepEqual(second, encodeBatch(b), 'changing a taken array changed the writer');
        assert.equal(w.take().length, 0);
      }),
      PARAMS,
    );
  });

  test('FrameWriter.release() drops an empty buffer only; the writer goes on', () => {
    const w = new FrameWriter(64);
    const ping: PingFrame = { type: FrameType.PING, nonce: 7 };
    w.frame(ping);
    w.release(); // bytes are waiting: kept
    assert.deepEqual(w.take(), encodeFrame(ping));
    w.release();
    w.frame(ping);
    w.frame(ping);
    assert.deepEqual(w.take(), encodeBatch([ping, ping]));
    assert.equal(w.take().length, 0);
  });

  test('a writer made with an initial size of 0 still grows', async () => {
    // Run in a worker: if growing from an empty buffer loops forever, fail in seconds instead
    // of hanging the whole file until the runner's timeout.
    const code = `
      const { workerData, parentPort } = require('node:worker_threads');
      import(workerData.url).then((p) => {
        const w = new p.FrameWriter(0);
        w.frame({ type: p.FrameType.PING, nonce: 1 });
        parentPort.postMessage(Array.from(w.take()));
      });`;
    const worker = new Worker(code, { eval: true, workerData: { url: import.meta.resolve('@postern/protocol') } });
    try {
      const result = await Promise.race([
        once(worker, 'message').then(([bytes]) => bytes as number[]),
        once(worker, 'error').then(([err]) => Promise.reject(err as Error)),
        delay(5000).then(() => 'hung' as const),
      ]);
      assert.notEqual(result, 'hung', 'new FrameWriter(0).frame() did not return within 5 s');
      assert.deepEqual(result, Array.from(encodeFrame({ type: FrameType.PING, nonce: 1 })));
    } finally {
      await worker.terminate();
    }
  });

  test('take() after a burst over 4 MiB still hands out the right bytes', () => {
    const w = new FrameWriter();
    const big: MsgFrame = { type: FrameType.MSG, flags: 0, hops: 1, id: 'i', from: 'a@b', to: 'c@d', body: new Uint8Array(5 * 1024 * 1024).fill(7) };
    w.frame(big);
    const first = w.take();
    assert.equal(first.length, encodeFrame(big).length);
    const small: PingFrame = { type: FrameType.PING, nonce: 42 };
    w.frame(small);
    const second = w.take();
    assert.deepEqual(second, encodeFrame(small));
    assert.deepEqual(norm(decodeBatch(first, 6 * 1024 * 1024)[0]!), norm(big));
  });

  test('FrameWriter.msg() writes the same bytes as frame() for a MSG', () => {
    fc.assert(
      fc.property(msg, (f) => {
        const a = new FrameWriter(16);
        a.msg(f.flags, f.hops, f.id, f.from, f.to, f.body);
        const b = new FrameWriter(16);
        b.frame(f);
        assert.deepEqual(a.take(), b.take());
      }),
      PARAMS,
    );
  });

  test('FrameWriter.raw() and patchFromEnd() rewrite the hop byte of a forwarded MSG', () => {
    const f: MsgFrame = { type: FrameType.MSG, flags: 1, hops: 9, id: 'x', from: 'a@b', to: 'c@d', body: Uint8Array.of(1, 2, 3) };
    const raw = encodeFrame(f);
    const w = new FrameWriter();
    w.frame({ type: FrameType.PING, nonce: 1 });
    w.raw(raw);
    w.patchFromEnd(raw.length - 6, 4);
    const frames = decodeBatch(w.take());
    assert.deepEqual(norm(frames[1]!), norm({ ...f, hops: 4 }));
    assert.equal(raw[6], 9, 'the source frame is not modified');
  });

  test('non-ASCII strings round trip in every string field', () => {
    const samples = [
      'é',
      'naïve café',
      '日本語のテキスト',
      '😀👍🏽',
      'e\u0301', // combining accent
      '\u0000nul',
      'a'.repeat(70) + 'é', // past the decoder's short-string fast path
      'é'.repeat(127), // 254 bytes
      '€'.repeat(85), // 255 bytes
    ];
    for (const s of samples) {
      const frames: Frame[] = [
        { type: FrameType.HELLO, version: 2, role: Role.ROUTER, token: s.repeat(3), resume: s, name: s, node: s, agent: s, maxFrame: 65536, features: 1, nonce: s, link: 2 },
        { type: FrameType.WELCOME, version: 2, id: s, domain: s, name: s, resume: s, node: s, maxFrame: 1, pingMs: 2, features: 1, nonce: s, proof: s },
        { type: FrameType.REGISTERED, ref: 1, code: 6, name: s, reason: s },
        { type: FrameType.ROUTE, op: RouteOp.WITHDRAW, metric: 3, domain: s, path: [s, s], proof: s },
        { type: FrameType.HANDLED, ref: 1, code: 0, address: s, expires: 9, reason: s },
        { type: FrameType.MSG, flags: 0, hops: 3, id: s, from: s, to: s, body: utf8.encode(s) },
        { type: FrameType.NACK, code: 9, id: s, from: s, reason: s },
        { type: FrameType.CLOSE, code: 12, reason: s },
      ];
      assert.deepEqual(decodeBatch(encodeBatch(frames)).map(norm), frames.map(norm), JSON.stringify(s));
    }
  });

  test('a string starting with U+FEFF (byte order mark) keeps it', () => {
    // A BOM is an ordinary character here; a decoder that strips it changes ids and addresses.
    for (const s of ['\uFEFF', '\uFEFFabc', '\uFEFF\uFEFFé', `\uFEFF${'x'.repeat(80)}`]) {
      const f: AckFrame = { type: FrameType.ACK, id: s, from: s };
      assert.deepEqual(decodeOne(encodeFrame(f)), f, JSON.stringify(s));
    }
  });

  test('strings at the exact size limits fit', () => {
    const s255 = 'a'.repeat(253) + 'é';
    assert.equal(byteLength(s255), 255);
    const s65535 = 'é'.repeat(32767) + 'a';
    assert.equal(byteLength(s65535), 65535);
    const f: HelloFrame = { type: FrameType.HELLO, version: 1, role: Role.AGENT, token: s65535, resume: s255, name: 'z'.repeat(255), node: '', agent: '', maxFrame: 1048576, features: 0, nonce: '', link: 0 };
    assert.deepEqual(decodeOne(encodeFrame(f)), f);
    const path = Array.from({ length: 255 }, (_, i) => `n${i}`);
    const r: RouteFrame = { type: FrameType.ROUTE, op: RouteOp.ADD, metric: 255, domain: 'acme', path, proof: '' };
    assert.deepEqual(decodeOne(encodeFrame(r)), r);
  });

  test('u32 fields keep values above 2^31', () => {
    for (const v of [0x7fffffff, 0x80000000, 0xffffffff]) {
      const f: WelcomeFrame = { type: FrameType.WELCOME, version: 2, id: '', domain: '', name: '', resume: '', node: '', maxFrame: v, pingMs: v, features: v, nonce: '', proof: '' };
      assert.deepEqual(decodeOne(encodeFrame(f)), f);
      assert.deepEqual(decodeOne(encodeFrame({ type: FrameType.PING, nonce: v })), { type: FrameType.PING, nonce: v });
    }
  });
});

describe('encoder refuses what does not fit, and leaves the writer unchanged', () => {
  const before: PingFrame = { type: FrameType.PING, nonce: 7 };
  const after: AckFrame = { type: FrameType.ACK, id: 'next', from: 'a@b' };
  const tooLong8 = [
    'a'.repeat(256), // ASCII, longer than 255 characters
    'é'.repeat(128), // 128 characters, 256 bytes
    'a'.repeat(254) + 'é', // ASCII fast path bails out after copying 254 bytes
    '😀'.repeat(64), // 256 bytes
  ];

  function refuses(write: (w: FrameWriter) => void): void {
    const w = new FrameWriter(8);
    w.frame(before);
    const length = w.length;
    throwsCode(() => write(w), 'ERR_PROTOCOL');
    assert.equal(w.length, length);
    w.frame(after);
    assert.deepEqual(w.take(), encodeBatch([before, after]));
  }

  test('a str8 over 255 bytes, in the first or the last field', () => {
    for (const s of tooLong8) {
      refuses((w) => w.frame({ type: FrameType.ACK, id: s, from: '' }));
      refuses((w) => w.frame({ type: FrameType.ACK, id: 'ok', from: s }));
      refuses((w) => w.frame({ type: FrameType.HELLO, version: 1, role: Role.AGENT, token: 't'.repeat(1000), resume: '', name: '', node: '', agent: s, maxFrame: 1, features: 0, nonce: '', link: 0 }));
      refuses((w) => w.frame({ type: FrameType.HELLO, version: 2, role: Role.AGENT, token: '', resume: '', name: '', node: '', agent: '', maxFrame: 1, features: 0, nonce: s, link: 0 }));
      refuses((w) => w.frame({ type: FrameType.ROUTE, op: RouteOp.ADD, metric: 0, domain: 'acme', path: ['a', s], proof: '' }));
      refuses((w) => w.msg(0, 1, 'id', 'from', s, new Uint8Array(10)));
      refuses((w) => w.msg(0, 1, s, 'from', 'to', new Uint8Array(10)));
      assert.throws(() => encodeFrame({ type: FrameType.REGISTER, ref: 1, name: s }), ProtocolError);
    }
  });

  test('a str16 over 65535 bytes', () => {
    for (const s of ['r'.repeat(65536), 'é'.repeat(32768)]) {
      refuses((w) => w.frame({ type: FrameType.CLOSE, code: 1, reason: s }));
      refuses((w) => w.frame({ type: FrameType.NACK, code: 1, id: 'i', from: 'f', reason: s }));
    }
  });

  test('a ROUTE path of more than 255 entries', () => {
    refuses((w) => w.frame({ type: FrameType.ROUTE, op: RouteOp.ADD, metric: 0, domain: 'acme', path: Array.from({ length: 256 }, () => 'n'), proof: '' }));
  });
});

describe('decoder errors', () => {
  test('an unknown HANDLE op is a protocol error', () => {
    for (const op of [0, 3, 0xff]) {
      throwsCode(() => decodeBatch(rawFrame(FrameType.HANDLE, [0, 0, 0, 1, op, 0, 0, 0, 0, 0])), 'ERR_PROTOCOL');
    }
  });

  test('a version 2 HELLO and WELCOME carry their trailers; a version 1 one decodes them as defaults', () => {
    const h: HelloFrame = { type: FrameType.HELLO, version: 2, role: Role.ROUTER, token: 't', resume: '', name: 'acme', node: 'N1', agent: 'a', maxFrame: 4096, features: 1, nonce: 'abc', link: 2 };
    assert.deepEqual(decodeOne(encodeFrame(h)), h);
    const v1 = encodeFrame({ ...h, version: 1 });
    assert.equal(v1.length, encodeFrame(h).length - 4 - 1 - 3 - 1, 'version 1 leaves out features, nonce and link');
    assert.deepEqual(decodeOne(v1), { ...h, version: 1, features: 0, nonce: '', link: 0 });
    const w: WelcomeFrame = { type: FrameType.WELCOME, version: 2, id: 'i', domain: 'd', name: '', resume: '', node: 'N2', maxFrame: 1, pingMs: 2, features: 1, nonce: 'n', proof: 'p' };
    assert.deepEqual(decodeOne(encodeFrame(w)), w);
    assert.deepEqual(decodeOne(encodeFrame({ ...w, version: 1 })), { ...w, version: 1, features: 0, nonce: '', proof: '' });
  });

  test('a ROUTE without a proof is byte-identical to version 1', () => {
    const r: RouteFrame = { type: FrameType.ROUTE, op: RouteOp.ADD, metric: 1, domain: 'acme', path: ['a'], proof: '' };
    assert.deepEqual([...encodeFrame(r)], [0, 0, 0, 11, 5, 1, 1, 4, 0x61, 0x63, 0x6d, 0x65, 1, 1, 0x61]);
    assert.deepEqual(decodeOne(encodeFrame({ ...r, proof: 'x.y.z' })), { ...r, proof: 'x.y.z' });
  });

  test('a length over maxFrameBytes is refused from the header alone', () => {
    const d = new FrameDecoder({ maxFrameBytes: 1024 });
    throwsCode(() => d.push(header(1025), () => assert.fail('no frame expected')), 'ERR_FRAME_TOO_LARGE');
    const dflt = new FrameDecoder();
    throwsCode(() => dflt.push(header(DEFAULT_MAX_FRAME_BYTES + 1), () => undefined), 'ERR_FRAME_TOO_LARGE');
    throwsCode(() => new FrameDecoder().push(header(0xffffffff), () => undefined), 'ERR_FRAME_TOO_LARGE');
    throwsCode(() => decodeBatch(header(2000, FrameType.MSG), 1024), 'ERR_FRAME_TOO_LARGE');
  });

  test('a header that arrives byte by byte is refused before any body byte', () => {
    const d = new FrameDecoder({ maxFrameBytes: 1024 });
    const bytes = header(5000, FrameType.MSG);
    let threw = false;
    for (let i = 0; i < bytes.length && !threw; i++) {
      try {
        d.push(bytes.subarray(i, i + 1), () => assert.fail('no frame expected'));
      } catch (err) {
        assert.ok(err instanceof ProtocolError);
        assert.equal(err.code, 'ERR_FRAME_TOO_LARGE');
        threw = true;
      }
    }
    assert.ok(threw, 'the oversized length was accepted');
  });

  test('a length of exactly maxFrameBytes is accepted', () => {
    const max = 2048;
    const body = new Uint8Array(max - 1 - 2 - 3);
    const f: MsgFrame = { type: FrameType.MSG, flags: 0, hops: 0, id: '', from: '', to: '', body };
    const bytes = encodeFrame(f);
    assert.equal(bytes.length - 4, max);
    assert.deepEqual(norm(decodeBatch(bytes, max)[0]!), norm(f));
    throwsCode(() => decodeBatch(bytes, max - 1), 'ERR_FRAME_TOO_LARGE');
  });

  test('a frame of length 0 is a protocol error', () => {
    throwsCode(() => new FrameDecoder().push(header(0), () => undefined), 'ERR_PROTOCOL');
    throwsCode(() => decodeBatch(concat([encodeFrame({ type: FrameType.PING, nonce: 1 }), header(0)])), 'ERR_PROTOCOL');
  });

  test('every unknown type byte is a protocol error', () => {
    const known = new Set<number>(Object.values(FrameType));
    for (let t = 0; t <= 0xff; t++) {
      if (known.has(t)) continue;
      throwsCode(() => decodeBatch(rawFrame(t, [0, 0, 0, 0])), 'ERR_PROTOCOL');
      throwsCode(() => decodeBatch(rawFrame(t, [])), 'ERR_PROTOCOL');
    }
  });

  test('a body shorter than its fields is a protocol error, for every frame type and every cut', () => {
    for (const f of minimal) {
      const body = encodeFrame(f).subarray(5);
      for (let n = 0; n < body.length; n++) {
        // HELLO's maxFrame is an optional trailing field: a HELLO that ends before it is whole.
        if (f.type === FrameType.HELLO && n === body.length - 4) continue;
        throwsCode(() => decodeBatch(rawFrame(f.type, body.subarray(0, n))), 'ERR_PROTOCOL');
      }
    }
  });

  test('a string whose length runs past the end of the frame is a protocol error', () => {
    throwsCode(() => decodeBatch(rawFrame(FrameType.ACK, [10, 0x61, 0x62])), 'ERR_PROTOCOL');
    throwsCode(() => decodeBatch(rawFrame(FrameType.CLOSE, [0, 1, 0x01, 0x00, 0x61])), 'ERR_PROTOCOL');
    throwsCode(() => decodeBatch(rawFrame(FrameType.ROUTE, [1, 0, 0, 3, 0])), 'ERR_PROTOCOL'); // 3 path entries, none there
  });

  test('invalid UTF-8 in a string is a protocol error', () => {
    const bad = [
      [0xff],
      [0xc3], // lead byte with no continuation
      [0x80], // lone continuation
      [0xc0, 0x80], // overlong NUL
      [0xed, 0xa0, 0x80], // UTF-16 surrogate
      [0xf4, 0x90, 0x80, 0x80], // beyond U+10FFFF
      [...new Array<number>(100).fill(0x61), 0xff], // long string, past the ASCII fast path
      [...new Array<number>(30).fill(0x61), 0xe2, 0x82], // ASCII prefix, then a cut sequence
    ];
    for (const s of bad) {
      throwsCode(() => decodeBatch(rawFrame(FrameType.ACK, [s.length, ...s, 0])), 'ERR_PROTOCOL');
      throwsCode(() => decodeBatch(rawFrame(FrameType.ACK, [0, s.length, ...s])), 'ERR_PROTOCOL');
      throwsCode(() => decodeBatch(rawFrame(FrameType.CLOSE, [0, 1, 0, s.length, ...s])), 'ERR_PROTOCOL');
    }
  });

  test('an unknown HELLO role is a protocol error', () => {
    const ok = encodeFrame(minimal[0]!).subarray(5);
    assert.equal(ok[1], Role.AGENT);
    for (const role of [0, 3, 0xff]) {
      const body = ok.slice();
      body[1] = role;
      throwsCode(() => decodeBatch(rawFrame(FrameType.HELLO, body)), 'ERR_PROTOCOL');
    }
  });

  test('an unknown ROUTE op is a protocol error', () => {
    for (const op of [0, 3, 0xff]) {
      throwsCode(() => decodeBatch(rawFrame(FrameType.ROUTE, [op, 0, 4, 0x61, 0x63, 0x6d, 0x65, 0])), 'ERR_PROTOCOL');
    }
  });

  test('a HELLO without its trailing maxFrame field (older dialers) means the default', () => {
    const full = encodeFrame({ type: FrameType.HELLO, version: 1, role: Role.AGENT, token: 't', resume: '', name: 'n', node: '', agent: 'a', maxFrame: 4096, features: 0, nonce: '', link: 0 });
    const old = full.subarray(5, full.length - 4);
    const f = decodeOne(rawFrame(FrameType.HELLO, [...old])) as HelloFrame;
    assert.equal(f.maxFrame, DEFAULT_MAX_FRAME_BYTES);
    assert.equal(f.name, 'n');
  });

  test('bytes after the last field of a frame are ignored', () => {
    // Documented in docs/PROTOCOL.md ("Forward compatibility"): a later version may append fields.
    const ping = encodeFrame({ type: FrameType.PING, nonce: 5 }).subarray(5);
    assert.deepEqual(decodeOne(rawFrame(FrameType.PING, [...ping, 1, 2, 3])), { type: FrameType.PING, nonce: 5 });
    const ackBody = encodeFrame({ type: FrameType.ACK, id: 'i', from: 'f' }).subarray(5);
    assert.deepEqual(decodeOne(rawFrame(FrameType.ACK, [...ackBody, 0xff])), { type: FrameType.ACK, id: 'i', from: 'f' });
  });

  test('decodeBatch throws when the batch ends inside a frame', () => {
    const batch = encodeBatch([minimal[5]!, { type: FrameType.PING, nonce: 9 }]);
    for (const cut of [1, 2, 3, 4, 5, 8]) {
      throwsCode(() => decodeBatch(batch.subarray(0, batch.length - cut)), 'ERR_PROTOCOL');
    }
    throwsCode(() => decodeBatch(Uint8Array.of(0, 0)), 'ERR_PROTOCOL');
    assert.deepEqual(decodeBatch(new Uint8Array(0)), []);
  });

  test('random garbage never throws anything but a ProtocolError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        try {
          decodeBatch(bytes, 4096);
        } catch (err) {
          assert.ok(err instanceof ProtocolError, String(err));
          assert.ok(err.code === 'ERR_PROTOCOL' || err.code === 'ERR_FRAME_TOO_LARGE');
        }
      }),
      PARAMS,
    );
  });
});
