import { openChannel, newId, type Channel, type Duplex, type DuplexHandlers, type Router } from '@postern/core';
import { FrameType, MsgFlag, PROTOCOL_VERSION, PosternError, Role, WireCode, decodeReport, errorCodeOf, type Frame } from '@postern/protocol';
import type { SendResult } from './api-types.js';

/**
 * The name of the router's own agent, which sends the dashboard's test messages. A name, not
 * an id: ids (`_…`) are the router's to assign, and names start with a letter or digit.
 */
export const DASHBOARD_AGENT = 'postern-dashboard';

/** Test messages waiting for their outcome at once; past it POST /api/send answers 503. */
export const MAX_PENDING_SENDS = 64;

/** One end of an in-process connection: each message reaches the other end on a later macrotask, as from a socket. */
class LocalDuplex implements Duplex {
  readonly kind = 'memory';
  peer!: LocalDuplex;
  #handlers: DuplexHandlers | undefined;
  #inbox: Uint8Array[] = [];
  #ended = false;
  #resolveDone!: () => void;
  readonly done = new Promise<void>((r) => (this.#resolveDone = r));
  readonly bufferedAmount = 0;

  constructor(readonly remote: string) {}

  start(handlers: DuplexHandlers): void {
    this.#handlers = handlers;
    for (const m of this.#inbox) handlers.message(m);
    this.#inbox = [];
    if (this.#ended) handlers.close();
  }

  send(data: Uint8Array): void {
    if (this.#ended) return;
    const copy = data.slice();
    setImmediate(() => this.peer.#receive(copy));
  }

  close(): void {
    setImmediate(() => {
      this.#end();
      this.peer.#end();
    });
  }

  #receive(data: Uint8Array): void {
    if (this.#ended) return;
    if (this.#handlers !== undefined) this.#handlers.message(data);
    else this.#inbox.push(data);
  }

  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#resolveDone();
    this.#handlers?.close();
  }
}

interface Pending {
  to: string;
  started: number;
  acceptedMs: number | null;
  finish(r: SendResult): void;
}

/**
 * The router's own agent `postern-dashboard@<domain>`, connected in-process (no socket) the
 * first time it sends. It sends reliable messages asking for a delivery receipt, ACKs what it
 * receives (the reports), and settles each send with its receipt, the NACK that refused it, or
 * nothing when `timeoutMs` passed first.
 */
export class DashboardAgent {
  readonly #router: Router;
  readonly #token: () => Promise<string>;
  #channel: Promise<{ channel: Channel; address: string }> | undefined;
  readonly #pending = new Map<string, Pending>();
  #acksIn = 0;

  constructor(router: Router, token: () => Promise<string>) {
    this.#router = router;
    this.#token = token;
  }

  async send(to: string, text: string, timeoutMs: number): Promise<SendResult> {
    if (this.#pending.size >= MAX_PENDING_SENDS) throw new PosternError('ERR_UNAVAILABLE', `${MAX_PENDING_SENDS} test messages are waiting for their receipts already`);
    const { channel, address } = await (this.#channel ??= this.#connect());
    const id = newId();
    const started = performance.now();
    return new Promise<SendResult>((resolve) => {
      const timer = setTimeout(() => finish({ id, from: address, to, acceptedMs: p.acceptedMs, receipt: null }), timeoutMs);
      const finish = (r: SendResult): void => {
        clearTimeout(timer);
        this.#pending.delete(id);
        resolve(r);
      };
      const p: Pending = { to, started, acceptedMs: null, finish };
      this.#pending.set(id, p);
      channel.msg(MsgFlag.RECEIPT, 0, id, address, to, new TextEncoder().encode(text));
    });
  }

  close(): void {
    void this.#channel?.then(({ channel }) => channel.close(WireCode.SHUTDOWN, 'closing'), () => undefined);
    this.#channel = undefined;
  }

  async #connect(): Promise<{ channel: Channel; address: string }> {
    const a = new LocalDuplex('dashboard');
    const b = new LocalDuplex('in-process');
    a.peer = b;
    b.peer = a;
    this.#router.accept(b);
    try {
      const est = await openChannel(
        a,
        this.#router.channelOptions,
        { type: FrameType.HELLO, version: PROTOCOL_VERSION, role: Role.AGENT, token: await this.#token(), resume: '', name: DASHBOARD_AGENT, node: '', agent: 'postern-dashboard', maxFrame: this.#router.options.maxFrameBytes, features: 0, nonce: '', link: 0 },
        5000,
      );
      const address = `${est.welcome.name === '' ? est.welcome.id : est.welcome.name}@${est.welcome.domain}`;
      const channel = est.channel;
      est.attach({
        frame: (f) => this.#onFrame(channel, f),
        closed: () => {
          this.#channel = undefined;
        },
      });
      return { channel, address };
    } catch (err) {
      this.#channel = undefined;
      throw err;
    }
  }

  #onFrame(channel: Channel, f: Frame): void {
    const ms = (p: Pending): number => Math.round(performance.now() - p.started);
    switch (f.type) {
      case FrameType.ACK: {
        channel.send({ type: FrameType.RELEASE, count: ++this.#acksIn });
        const p = this.#pending.get(f.id);
        if (p !== undefined) p.acceptedMs = ms(p);
        return;
      }
      case FrameType.NACK: {
        const p = this.#pending.get(f.id);
        if (p !== undefined) p.finish({ id: f.id, from: f.from, to: p.to, acceptedMs: p.acceptedMs, receipt: { code: errorCodeOf(f.code), ms: ms(p) } });
        return;
      }
      case FrameType.MSG: {
        if ((f.flags & MsgFlag.VOLATILE) === 0) channel.send({ type: FrameType.ACK, id: f.id, from: f.from });
        if ((f.flags & MsgFlag.REPORT) === 0) return;
        try {
          const r = decodeReport(f.body);
          const p = this.#pending.get(r.ref);
          if (p !== undefined) p.finish({ id: r.ref, from: f.to, to: p.to, acceptedMs: p.acceptedMs, receipt: { code: r.code === WireCode.OK ? 'OK' : errorCodeOf(r.code), ms: ms(p) } });
        } catch {
          // A report we cannot read settles nothing.
        }
        return;
      }
      default:
        return;
    }
  }
}
