// Shared by the Router tests: a Peer that speaks raw frames over an in-memory connection, and
// setup() for a Router on a ManualClock with helpers to connect agents and linked routers.
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { Router, Uplink, type Authenticator, type Claims, type Dialer, type RouterOptions, type UplinkStatus } from '@postern/core';
import {
  FrameDecoder,
  FrameType,
  MsgFlag,
  PROTOCOL_VERSION,
  PosternError,
  Role,
  RouteOp,
  decodeReport,
  encodeBatch,
  encodeFrame,
  errorCodeOf,
  type CloseFrame,
  type Frame,
  type HelloFrame,
  type MsgFrame,
  type Report,
  type WelcomeFrame,
} from '@postern/protocol';
import { ManualClock, MemoryDuplex, memoryPair, testSessionTokens, waitFor } from '@postern/testing';

export type FrameOf<K extends Frame['type']> = Extract<Frame, { type: K }>;

export const enc = new TextEncoder();
export const dec = new TextDecoder();

/** The far end of one connection: sends encoded frames, collects decoded ones, never answers on its own. */
export class Peer {
  readonly duplex: MemoryDuplex;
  /** Every frame received, in order. */
  readonly received: Frame[] = [];
  readonly #unread: Frame[] = [];
  readonly #waiters = new Set<() => void>();
  #ended = false;
  #nonce = 0;

  constructor(duplex: MemoryDuplex) {
    this.duplex = duplex;
    const decoder = new FrameDecoder({ maxFrameBytes: 64 * 1024 * 1024 });
    duplex.start({
      message: (data) => {
        decoder.push(data, (f) => {
          this.received.push(f);
          this.#unread.push(f);
        });
        this.#wake();
      },
      close: () => {
        this.#ended = true;
        this.#wake();
      },
    });
  }

  get ended(): boolean {
    return this.#ended;
  }

  send(...frames: Frame[]): void {
    for (const f of frames) this.duplex.send(encodeFrame(f));
  }

  /** Frames in one transport message, so the router decodes them in one go. */
  sendBatch(...frames: Frame[]): void {
    this.duplex.send(encodeBatch(frames));
  }

  sendBytes(bytes: number[]): void {
    this.duplex.send(new Uint8Array(bytes));
  }

  /** The first unread frame of `type` matching `match`; fails fast when the connection ends without one. */
  async next<K extends Frame['type']>(type: K, match: (f: FrameOf<K>) => boolean = () => true, timeoutMs = 2000): Promise<FrameOf<K>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.#unread.findIndex((f) => f.type === type && match(f as FrameOf<K>));
      if (i >= 0) return this.#unread.splice(i, 1)[0] as FrameOf<K>;
      const left = deadline - Date.now();
      if (this.#ended || left <= 0) {
        throw new Error(`${this.#ended ? 'connection ended' : 'timed out'} waiting for frame 0x${type.toString(16)}; received ${this.#describe()}`);
      }
      await this.#wait(left);
    }
  }

  /** Resolves once the router has processed everything sent before (it answers our PING in order). */
  async sync(): Promise<void> {
    const nonce = ++this.#nonce;
    this.send({ type: FrameType.PING, nonce });
    await this.next(FrameType.PONG, (f) => f.nonce === nonce);
  }

  /** Waits for the transport to end and returns the CLOSE frame's code as `ERR_*` ('no CLOSE' if none came). */
  async closeCode(timeoutMs = 2000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#ended) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`connection still open; received ${this.#describe()}`);
      await this.#wait(left);
    }
    const c = this.received.find((f): f is CloseFrame => f.type === FrameType.CLOSE);
    return c === undefined ? 'no CLOSE' : errorCodeOf(c.code);
  }

  /** Frames of `type` received so far (read or not). */
  all<K extends Frame['type']>(type: K): FrameOf<K>[] {
    return this.received.filter((f): f is FrameOf<K> => f.type === type);
  }

  /** Ids of the MSG frames received so far, in order. */
  msgIds(): string[] {
    return this.all(FrameType.MSG).map((m) => m.id);
  }

  /** Acknowledges messages, as a recipient (or a next hop) that took them. */
  ack(...ms: Array<Pick<MsgFrame, 'id' | 'from'>>): void {
    this.send(...ms.map((m): Frame => ({ type: FrameType.ACK, id: m.id, from: m.from })));
  }

  /** The router's end of this connection (pausable: the router pauses it for backpressure). */
  get routerEnd(): MemoryDuplex {
    return this.duplex.peer;
  }

  #describe(): string {
    return JSON.stringify(this.received.map((f) => ({ ...f, ...(f.type === FrameType.MSG ? { body: dec.decode(f.body) } : {}) })));
  }

  #wait(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#waiters.add(done);
    });
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }
}

/** A transport whose sender claims a huge unsent backlog: a recipient that does not read. */
export class StuckMemoryDuplex extends MemoryDuplex {
  backlog = 0;
  override get bufferedAmount(): number {
    return super.bufferedAmount + this.backlog;
  }
}

/** Pure logic: a token is whatever this table says it is. */
export function fakeAuthenticator(table: Record<string, Claims>): Authenticator {
  return {
    async verify(token) {
      const c = table[token];
      if (c === undefined) throw new PosternError('ERR_AUTH_FAILED', 'unknown token');
      return c;
    },
  };
}

export const TOKENS: Record<string, Claims> = {
  'acme-domain': { domain: 'acme' },
  'alice-only': { domain: 'acme', name: 'alice' },
  'globex-domain': { domain: 'globex' },
  'globex-agent': { domain: 'globex', name: 'bot' },
  'any-domain': { domain: '*' },
};

export function hello(h: Partial<HelloFrame> = {}): HelloFrame {
  return { type: FrameType.HELLO, version: PROTOCOL_VERSION, role: Role.AGENT, token: '', resume: '', name: '', node: '', agent: 'router.test', maxFrame: 1024 * 1024, features: 0, nonce: '', link: 0, ...h };
}

/** A version 1 router's HELLO (a gateway not yet upgraded): its credential alone admits it, no node key. */
export function routerHello(domain: string, token: string, node = 'r2'): HelloFrame {
  return hello({ version: 1, role: Role.ROUTER, name: domain, token, node });
}

export function msg(to: string, id: string, m: Partial<MsgFrame> = {}): MsgFrame {
  return { type: FrameType.MSG, flags: 0, hops: 0, id, from: '', to, body: enc.encode(`body of ${id}`), ...m };
}

export function route(domain: string, path: string[], op: 1 | 2 = RouteOp.ADD, metric = 0, proof = ''): Frame {
  return { type: FrameType.ROUTE, op, metric, domain, path, proof };
}

/** The report a REPORT message carries; fails when `m` is no report. */
export function reportOf(m: MsgFrame): Report {
  assert.equal(m.flags & MsgFlag.REPORT, MsgFlag.REPORT, `message ${m.id} is not a report`);
  return decodeReport(m.body);
}

/** Lets timers, store commits and in-memory transports run (to assert that nothing more arrives). */
export function settle(ms = 30): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export interface Agent {
  peer: Peer;
  welcome: WelcomeFrame;
  /** The address the router writes into `from` for this agent. */
  address: string;
}

export interface Ctx {
  router: Router;
  clock: ManualClock;
  /** A new connection to the router, nothing sent yet. */
  connect(): Peer;
  /** Connects, sends HELLO, expects WELCOME. */
  agent(h?: Partial<HelloFrame>): Promise<Agent>;
  /** Connects, sends HELLO, expects the router to close: returns the CLOSE code as ERR_*. */
  refused(h: HelloFrame): Promise<string>;
  /** A linked router (downlink) that announced `domain` and whose announcement is in the table. */
  downlink(domain?: string, token?: string, node?: string): Promise<Peer>;
}

/** A Router for domain `acme`, node `r1`, closed after the test. Pass `clock` (and `store`) to share them with another Router. */
export function setup(t: TestContext, o: Partial<Omit<RouterOptions, 'clock'>> & { clock?: ManualClock } = {}): Ctx {
  const clock = o.clock ?? new ManualClock();
  // Most tests send to names before they connect: those wait (the default refuses unknown names; its tests say so).
  // settleDelayMs 0: removals commit in the tick they are decided, so tests see RELEASE without ticking the clock.
  const router = new Router({ domain: 'acme', ...(o.identity === undefined ? { node: 'r1' } : {}), sessionTokens: testSessionTokens(), unknownRecipients: 'queue', settleDelayMs: 0, ...o, clock });
  t.after(() => router.close());
  const connect = (): Peer => {
    const [dialer, acceptor] = memoryPair();
    router.accept(acceptor);
    return new Peer(dialer);
  };
  const welcomeOrClose = async (peer: Peer): Promise<WelcomeFrame | CloseFrame> => {
    await waitFor(() => peer.received.some((f) => f.type === FrameType.WELCOME || f.type === FrameType.CLOSE), 'WELCOME or CLOSE', 2000, 1);
    const f = peer.received.find((x) => x.type === FrameType.WELCOME || x.type === FrameType.CLOSE);
    return f as WelcomeFrame | CloseFrame;
  };
  return {
    router,
    clock,
    connect,
    async agent(h = {}) {
      const peer = connect();
      peer.send(hello(h));
      const f = await welcomeOrClose(peer);
      if (f.type === FrameType.CLOSE) throw new Error(`HELLO refused: ${errorCodeOf(f.code)} ${f.reason}`);
      await peer.next(FrameType.WELCOME);
      return { peer, welcome: f, address: `${f.name === '' ? f.id : f.name}@${f.domain}` };
    },
    async refused(h) {
      const peer = connect();
      peer.send(h);
      const f = await welcomeOrClose(peer);
      assert.equal(f.type, FrameType.CLOSE, `expected a refusal, got WELCOME ${JSON.stringify(f)}`);
      return peer.closeCode();
    },
    async downlink(domain = 'globex', token = 'globex-domain', node = 'r2') {
      const peer = connect();
      peer.send(routerHello(domain, token, node));
      const w = await peer.next(FrameType.WELCOME);
      assert.equal(w.domain, 'acme');
      peer.send(route(domain, [node]));
      await peer.sync();
      assert.deepEqual(router.routes().get(domain), [node]);
      return peer;
    },
  };
}

/** An Uplink from ctx.router whose dialer hands the far end to the test as `relays`. */
export function uplinkTo(t: TestContext, ctx: Ctx, token = 'relay-token'): { uplink: Uplink; relays: Peer[]; statuses: UplinkStatus[]; welcome(relay: Peer, helloRead?: boolean): Promise<void> } {
  const relays: Peer[] = [];
  const dial: Dialer = async (url, options) => {
    assert.equal(url, 'memory://relay');
    assert.ok(options.signal instanceof AbortSignal);
    const [dialer, acceptor] = memoryPair();
    relays.push(new Peer(acceptor));
    return dialer;
  };
  const uplink = new Uplink(ctx.router, { url: 'memory://relay', dial, token, backoff: { initialMs: 100, maxMs: 1000 } });
  const statuses: UplinkStatus[] = [];
  uplink.onStatus((s) => statuses.push(s));
  t.after(() => uplink.close());
  uplink.start();
  return {
    uplink,
    relays,
    statuses,
    async welcome(relay, helloRead = false) {
      if (!helloRead) {
        const h = await relay.next(FrameType.HELLO);
        assert.equal(h.role, Role.ROUTER);
        assert.equal(h.name, 'acme', 'a router claims its own domain in HELLO');
        assert.equal(h.node, 'r1');
        assert.equal(h.token, token);
      }
      // A version 1 relay: no proof of its key (ctx.router has no identity either).
      relay.send({
        type: FrameType.WELCOME,
        version: 1,
        id: '_relaylink1',
        domain: 'relay',
        name: '',
        resume: '',
        node: 'relay1',
        maxFrame: 1024 * 1024,
        pingMs: 20_000,
        features: 0,
        nonce: '',
        proof: '',
      });
      const r = await relay.next(FrameType.ROUTE, (f) => f.domain === 'acme');
      assert.deepEqual({ op: r.op, metric: r.metric, path: r.path }, { op: RouteOp.ADD, metric: 0, path: ['r1'] });
      await waitFor(() => statuses.some((s) => s.type === 'up'), 'uplink up', 2000, 1);
    },
  };
}

export const ID = /^_[a-z0-9]+$/;
