// A TCP proxy for tests that sits between a client and a target and injects network faults:
// latency, tiny writes, resets, refused connections and blackholes. Loopback only in practice.
//
// Contract:
// - Every accepted connection gets its own connection to `target`; bytes are forwarded in order,
//   unchanged, both ways, and a half-close (FIN) is forwarded after the bytes before it.
// - Backpressure holds end to end: a direction stops reading when its writer's write() returns
//   false (until 'drain') or when it holds QUEUE_LIMIT bytes waiting out a delay, so a slow reader
//   slows the sender instead of growing the proxy's memory (with a delay D, a direction carries at
//   most QUEUE_LIMIT per D). Delay and slicing keep byte order; a delay counts from when the proxy
//   read the chunk.
// - A socket error or an abrupt close on either side resets the other side; nothing throws.
// - Faults are global and apply at once to every open pair: setDelay/setSlice to data not yet
//   written, cut/blackhole/resetAll to the pairs open at the call.
// - Timers are setTimeout/setImmediate only, all cleared when a pair ends; after close() resolves
//   the proxy holds no handles.
import net from 'node:net';

/** Bytes one direction may hold while they wait out a delay before it stops reading. */
const QUEUE_LIMIT = 1024 * 1024;

export interface FaultProxyOptions {
  /** Where each accepted connection is forwarded. */
  target: { host: string; port: number };
  /** @default '127.0.0.1' */
  listenHost?: string;
  /** @default 0 (a free port) */
  port?: number;
}

/** Settings shared by every pipe of one proxy. */
interface Knobs {
  delay: number;
  slice: number;
  /** Blackholed: no pipe reads or writes. */
  frozen: boolean;
}

interface Chunk {
  buf: Buffer;
  off: number;
  /** performance.now() when read. */
  at: number;
}

function noop(): void {}

/** Ends `s` with a TCP RST where it can (an established socket), else plainly destroys it. */
function reset(s: net.Socket): void {
  if (s.destroyed) return;
  try {
    if (!s.connecting && typeof s.resetAndDestroy === 'function') s.resetAndDestroy();
    else s.destroy();
  } catch {
    s.destroy();
  }
}

/** One direction of a pair: reads `src` and writes `dst` in order, honouring the knobs. */
class Pipe {
  readonly #q: Chunk[] = [];
  #head = 0;
  #queued = 0;
  #ended = false;
  #endSent = false;
  #stopped = false;
  #wait: 'delay' | 'slice' | 'drain' | undefined;
  #timer: NodeJS.Timeout | undefined;
  #immediate: NodeJS.Immediate | undefined;

  constructor(
    readonly src: net.Socket,
    readonly dst: net.Socket,
    readonly knobs: Knobs,
    readonly count: (n: number) => void,
  ) {
    src.on('data', (buf: Buffer) => {
      if (this.#stopped) return;
      this.#q.push({ buf, off: 0, at: performance.now() });
      this.#queued += buf.length;
      this.pump();
    });
    src.on('end', () => {
      this.#ended = true;
      this.pump();
    });
  }

  /** The source sent FIN (a later close of it is clean). */
  get ended(): boolean {
    return this.#ended;
  }

  /** Writes what is due; arms one timer, immediate or 'drain' wait when it must stop. */
  pump(): void {
    while (this.#wait === undefined && !this.#stopped && !this.knobs.frozen) {
      const c = this.#q[this.#head];
      if (c === undefined) {
        if (this.#ended && !this.#endSent && !this.dst.destroyed) {
          this.#endSent = true;
          this.dst.end();
        }
        break;
      }
      if (this.dst.destroyed) break; // its 'close' ends the pair
      const due = c.at + this.knobs.delay - performance.now();
      if (due > 0) {
        this.#wait = 'delay';
        this.#timer = setTimeout(this.#wake, Math.ceil(due));
        break;
      }
      const end = this.knobs.slice > 0 ? Math.min(c.buf.length, c.off + this.knobs.slice) : c.buf.length;
      const piece = c.buf.subarray(c.off, end);
      c.off = end;
      if (end === c.buf.length) this.#shift();
      this.count(piece.length);
      if (!this.dst.write(piece)) {
        this.#wait = 'drain';
        this.dst.once('drain', this.#wake);
      } else if (this.knobs.slice > 0 && this.#head < this.#q.length) {
        this.#wait = 'slice';
        this.#immediate = setImmediate(this.#wake);
      }
    }
    this.flow();
  }

  /** Pauses the source while it must not be read, resumes it otherwise. */
  flow(): void {
    if (this.#stopped) return;
    if (this.knobs.frozen || this.#wait === 'drain' || this.#queued >= QUEUE_LIMIT) this.src.pause();
    else if (this.src.isPaused()) this.src.resume();
  }

  /** Re-times a pending delay (after setDelay). */
  retime(): void {
    if (this.#wait !== 'delay') return;
    clearTimeout(this.#timer);
    this.#wake();
  }

  /** Drops queued bytes and cancels every pending wait. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    if (this.#immediate !== undefined) clearImmediate(this.#immediate);
    this.dst.off('drain', this.#wake);
    this.#q.length = 0;
    this.#head = 0;
    this.#queued = 0;
  }

  readonly #wake = (): void => {
    this.#wait = undefined;
    this.#timer = undefined;
    this.#immediate = undefined;
    this.pump();
  };

  #shift(): void {
    const c = this.#q[this.#head++]!;
    this.#queued -= c.buf.length;
    if (this.#head === this.#q.length) {
      this.#q.length = 0;
      this.#head = 0;
    } else if (this.#head >= 1024) {
      this.#q.splice(0, this.#head);
      this.#head = 0;
    }
  }
}

/** A client connection and its connection to the target. */
class Pair {
  readonly up: Pipe;
  readonly down: Pipe;
  #open = 2;
  #done = false;

  constructor(
    readonly client: net.Socket,
    readonly upstream: net.Socket,
    readonly knobs: Knobs,
    stats: { bytesUp: number; bytesDown: number },
    readonly onGone: (p: Pair) => void,
  ) {
    this.up = new Pipe(client, upstream, knobs, (n) => (stats.bytesUp += n));
    this.down = new Pipe(upstream, client, knobs, (n) => (stats.bytesDown += n));
    for (const [s, from] of [
      [client, this.up],
      [upstream, this.down],
    ] as const) {
      s.on('error', noop); // reported through 'close'
      s.on('close', (hadError: boolean) => this.#onClose(!hadError && from.ended));
    }
  }

  /** Resets both sockets and forgets the pair. */
  kill(): void {
    if (this.#done) return;
    reset(this.client);
    reset(this.upstream);
    this.#finish();
  }

  #onClose(clean: boolean): void {
    if (--this.#open === 0) this.#finish();
    // In a blackhole even a reset does not cross; restore() resets the survivor.
    else if (!clean && !this.knobs.frozen) this.kill();
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.up.stop();
    this.down.stop();
    this.onGone(this);
  }
}

/**
 * A fault-injecting TCP proxy for tests. Faults apply to every connection at once; see the file
 * comment for the forwarding contract.
 */
export class FaultProxy {
  readonly port: number;
  readonly host: string;
  /** `ws://host:port` of the listener. */
  readonly url: string;
  readonly #server: net.Server;
  readonly #target: { host: string; port: number };
  readonly #knobs: Knobs = { delay: 0, slice: 0, frozen: false };
  readonly #pairs = new Set<Pair>();
  /** Client sockets accepted during a blackhole: paused, not yet dialled through. */
  readonly #held = new Set<net.Socket>();
  readonly #stats = { accepted: 0, resets: 0, bytesUp: 0, bytesDown: 0 };
  #mode: 'open' | 'cut' | 'blackhole' | 'closed' = 'open';
  #closing: Promise<void> | undefined;

  private constructor(server: net.Server, host: string, port: number, target: { host: string; port: number }) {
    this.#server = server;
    this.host = host;
    this.port = port;
    this.url = `ws://${host.includes(':') ? `[${host}]` : host}:${port}`;
    this.#target = { host: target.host, port: target.port };
    server.on('error', noop); // accept errors (e.g. EMFILE) must not crash the test process
    server.on('connection', (s) => this.#accept(s));
  }

  /** Listens on `listenHost:port`; rejects if it cannot. */
  static async start(o: FaultProxyOptions): Promise<FaultProxy> {
    const host = o.listenHost ?? '127.0.0.1';
    const server = net.createServer({ allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port ?? 0, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new FaultProxy(server, host, (server.address() as net.AddressInfo).port, o.target);
  }

  /** Each chunk waits this long in each direction before it is written (preserving order). 0 = none. */
  setDelay(ms: number): void {
    if (!(ms >= 0 && Number.isFinite(ms))) throw new RangeError(`delay must be a finite number >= 0, got ${ms}`);
    this.#knobs.delay = ms;
    for (const p of this.#pairs) {
      p.up.retime();
      p.down.retime();
    }
  }

  /** Chunks are written in pieces of at most `bytes` bytes with a setImmediate between pieces (tiny writes). 0 = off. */
  setSlice(bytes: number): void {
    if (!(Number.isInteger(bytes) && bytes >= 0)) throw new RangeError(`slice must be an integer >= 0, got ${bytes}`);
    this.#knobs.slice = bytes;
  }

  /** Destroys every open connection pair with a TCP RST (socket.resetAndDestroy() where available, else destroy()). New connections are still accepted. */
  resetAll(): void {
    for (const p of [...this.#pairs]) {
      this.#stats.resets++;
      p.kill();
    }
    for (const s of [...this.#held]) {
      this.#stats.resets++;
      reset(s);
    }
    this.#held.clear();
  }

  /** While cut: open pairs are reset and new connections are accepted then immediately reset (the peer sees ECONNRESET). */
  cut(): void {
    if (this.#mode === 'closed') return;
    this.#mode = 'cut';
    this.#knobs.frozen = false;
    this.resetAll();
  }

  /** Ends a cut or a blackhole (see blackhole()); no-op otherwise. */
  restore(): void {
    if (this.#mode === 'closed') return;
    const wasBlackhole = this.#mode === 'blackhole';
    this.#mode = 'open';
    this.#knobs.frozen = false;
    if (wasBlackhole) this.resetAll();
  }

  /**
   * Silently stop forwarding (blackhole) both ways without closing: bytes are held/dropped, sockets
   * stay open, like a dropped route. restore() ends it (held bytes are discarded, and the pairs are
   * reset so the endpoints notice). Held bytes wait unread in the kernel, so senders eventually
   * block; a close or reset by one endpoint is not passed on. Connections accepted meanwhile are
   * held without dialling the target, and reset by restore().
   */
  blackhole(): void {
    if (this.#mode === 'closed' || this.#mode === 'blackhole') return;
    this.#mode = 'blackhole';
    this.#knobs.frozen = true;
    for (const p of this.#pairs) {
      p.up.flow();
      p.down.flow();
    }
  }

  /** Open connections: pairs, plus client connections held by a blackhole. */
  get connections(): number {
    return this.#pairs.size + this.#held.size;
  }

  /**
   * A snapshot. accepted: connections accepted (refused ones included); resets: connections the
   * proxy reset on purpose (resetAll, cut, restore after a blackhole, close); bytesUp/bytesDown:
   * bytes written to the target / to clients.
   */
  get stats(): { accepted: number; resets: number; bytesUp: number; bytesDown: number } {
    return { ...this.#stats };
  }

  /** Resets everything, stops listening, and resolves once every socket and the listener are closed. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#mode = 'closed';
      this.#knobs.frozen = false;
      const sockets = [...this.#held];
      for (const p of this.#pairs) sockets.push(p.client, p.upstream);
      this.resetAll();
      const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
      const gone = sockets.filter((s) => !s.closed).map((s) => new Promise((resolve) => s.once('close', resolve)));
      await Promise.all([closed, ...gone]);
    })();
    return this.#closing;
  }

  #accept(client: net.Socket): void {
    this.#stats.accepted++;
    client.on('error', noop); // reported through 'close'
    if (this.#mode === 'cut' || this.#mode === 'closed') {
      this.#stats.resets++;
      reset(client);
      return;
    }
    client.setNoDelay(true); // tiny writes must leave as tiny segments
    if (this.#mode === 'blackhole') {
      client.pause();
      this.#held.add(client);
      client.once('close', () => this.#held.delete(client));
      return;
    }
    const upstream = net.connect({ host: this.#target.host, port: this.#target.port, allowHalfOpen: true, noDelay: true });
    this.#pairs.add(new Pair(client, upstream, this.#knobs, this.#stats, (p) => this.#pairs.delete(p)));
  }
}
