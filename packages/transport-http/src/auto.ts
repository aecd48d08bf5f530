import { Deadlines, systemClock, type Dialer, type DialOptions, type Duplex, type DuplexHandlers, type Timed } from '@postern/core';
import { ConfigError, TransportError } from '@postern/protocol';
import { AUTO_DIALER_DEFAULTS } from './constants.js';

export interface AutoDialerOptions {
  /** Opens WebSockets. */
  ws: Dialer;
  /** Opens long-poll sessions. */
  http: Dialer;
  /**
   * A WebSocket that has not opened by then counts as blocked, and long-poll is tried in the time
   * left; at most half of a dial's own timeoutMs. @default 5000
   */
  wsTimeoutMs?: number;
  /** While on long-poll, try a WebSocket handshake this often (with ±20% jitter). @default 30000 */
  wsProbeIntervalMs?: number;
  /** Each failed probe doubles the interval, up to this. @default 600000 */
  maxWsProbeIntervalMs?: number;
  /** WebSocket links that break this many times in a row, each within wsStableMs of opening, switch to long-poll. @default 3 */
  wsFailures?: number;
  /** A WebSocket link that lasts this long proves WebSocket works (and resets the probe interval). @default 10000 */
  wsStableMs?: number;
  /** Hears each switch and failed probe, for logs. */
  onEvent?: (e: AutoDialerEvent) => void;
}

export type AutoDialerEvent =
  /** Dials now use long-poll. */
  | { type: 'fallback'; reason: string }
  /** A probe opened a WebSocket: the long-poll link is being closed so that the caller reconnects over WebSocket. */
  | { type: 'upgrade' }
  | { type: 'probe-failed'; reason: string; nextInMs: number };

/** The message a long-poll duplex closes with when WebSocket works again. */
export const UPGRADE_REASON = 'WebSocket works again: reconnecting over it';

function unref<T>(t: T): T {
  (t as { unref?: () => void }).unref?.();
  return t;
}

/** Hears how a watched duplex ends, and may put another error in its place. */
interface Watcher {
  ended(err: Error | undefined): Error | undefined;
}

/**
 * Forwards to `inner`, and lets its watcher see and choose how it ends. Made per connection, so
 * it holds no closures: an idle client is a few objects (issue 12).
 */
class WatchedDuplex implements Duplex {
  readonly #inner: Duplex;
  readonly #watcher: Watcher;
  #handlers: DuplexHandlers | undefined;

  constructor(inner: Duplex, watcher: Watcher) {
    this.#inner = inner;
    this.#watcher = watcher;
  }

  /** `inner` watched by `watcher`: with pause() and resume() exactly when `inner` has them. */
  static of(inner: Duplex, watcher: Watcher): Duplex {
    return inner.pause !== undefined || inner.resume !== undefined ? new PausableWatchedDuplex(inner, watcher) : new WatchedDuplex(inner, watcher);
  }

  get inner(): Duplex {
    return this.#inner;
  }
  get bufferedAmount(): number {
    return this.#inner.bufferedAmount;
  }
  get done(): Promise<void> {
    return this.#inner.done;
  }
  get remote(): string {
    return this.#inner.remote;
  }
  get kind(): string {
    return this.#inner.kind;
  }

  start(handlers: DuplexHandlers): void {
    this.#handlers = handlers;
    this.#inner.start(new Relay(this));
  }

  /** For Relay: what `inner` delivers goes to the handlers, its end through the watcher. */
  deliver(data: Uint8Array): void {
    this.#handlers?.message(data);
  }

  end(err: Error | undefined): void {
    this.#handlers?.close(this.#watcher.ended(err));
  }

  send(data: Uint8Array): void {
    this.#inner.send(data);
  }

  close(): void {
    this.#inner.close();
  }
}

class PausableWatchedDuplex extends WatchedDuplex {
  pause(): void {
    this.inner.pause?.();
  }
  resume(): void {
    this.inner.resume?.();
  }
}

/** The handlers a WatchedDuplex gives its inner duplex. */
class Relay implements DuplexHandlers {
  readonly #to: WatchedDuplex;
  constructor(to: WatchedDuplex) {
    this.#to = to;
  }
  message(data: Uint8Array): void {
    this.#to.deliver(data);
  }
  close(err?: Error): void {
    this.#to.end(err);
  }
}

function positive(name: string, v: number | undefined, dflt: number): number {
  const x = v ?? dflt;
  if (!Number.isSafeInteger(x) || x < 1) throw new ConfigError(`${name} must be a positive integer, got ${String(v)}`);
  return x;
}

/**
 * A Dialer that prefers WebSocket and falls back to HTTP long-poll where WebSocket does not
 * work, then goes back to WebSocket once it does.
 *
 * - WebSocket first. When it cannot be opened (upgrade refused with a non-101 answer, reset,
 *   no answer within wsTimeoutMs) the same dial opens a long-poll session instead; when that
 *   fails too, the dial fails with both reasons. A permanent TransportError (a proxy's 4xx to
 *   CONNECT, an untrusted certificate) would stop long-poll just the same: it fails the dial as is. WebSocket links that keep breaking soon after
 *   opening (wsFailures in a row) switch later dials to long-poll as well.
 * - On long-poll, later dials go straight to long-poll, and a WebSocket handshake is tried every
 *   wsProbeIntervalMs (doubling after each failure). When one succeeds, the probe is closed, and
 *   the long-poll duplex is closed with an error saying so (UPGRADE_REASON): its owner reconnects
 *   as after any lost connection (SDK and uplinks resume the session and resend what was not
 *   acknowledged), and that dial uses WebSocket.
 *
 * State is per dialer: give each client or uplink its own.
 */
export function createAutoDialer(options: AutoDialerOptions): Dialer {
  const auto = new AutoDialer(options);
  return (url, o) => auto.dial(url, o);
}

/** The state of one auto dialer (see createAutoDialer). */
class AutoDialer {
  readonly #o: AutoDialerOptions;
  readonly #wsTimeoutMs: number;
  readonly #probeMs: number;
  readonly #maxProbeMs: number;
  readonly #wsFailures: number;
  readonly wsStableMs: number;
  #mode: 'ws' | 'http' = 'ws';
  #quickFailures = 0;
  #probeDelay: number;
  /** On WebSocket because a probe opened, and no link has lasted wsStableMs since. */
  #upgradedByProbe = false;

  constructor(options: AutoDialerOptions) {
    const d = AUTO_DIALER_DEFAULTS;
    this.#o = options;
    this.#wsTimeoutMs = positive('wsTimeoutMs', options.wsTimeoutMs, d.wsTimeoutMs);
    this.#probeMs = positive('wsProbeIntervalMs', options.wsProbeIntervalMs, d.probeIntervalMs);
    this.#maxProbeMs = Math.max(this.#probeMs, positive('maxWsProbeIntervalMs', options.maxWsProbeIntervalMs, d.maxProbeIntervalMs));
    this.#wsFailures = positive('wsFailures', options.wsFailures, d.wsFailures);
    this.wsStableMs = positive('wsStableMs', options.wsStableMs, d.wsStableMs);
    this.#probeDelay = this.#probeMs;
  }

  #emit(e: AutoDialerEvent): void {
    this.#o.onEvent?.(e);
  }

  #fallback(reason: string): void {
    if (this.#mode === 'http') return;
    this.#mode = 'http';
    this.#emit({ type: 'fallback', reason });
  }

  /** A WebSocket link lasted wsStableMs: WebSocket works. */
  wsStable(): void {
    this.#quickFailures = 0;
    this.#probeDelay = this.#probeMs;
    this.#upgradedByProbe = false;
  }

  /** A WebSocket link ended; `stable`: it had lasted wsStableMs. */
  wsEnded(err: Error | undefined, stable: boolean): void {
    if (err !== undefined && !stable && ++this.#quickFailures >= this.#wsFailures) {
      this.#quickFailures = 0;
      // A probe only sees the handshake: where WebSocket opens and is then cut, the upgrade
      // it led to was a failed probe, or the dialer would flap every probe interval.
      if (this.#upgradedByProbe) this.#probeDelay = Math.min(this.#maxProbeMs, this.#probeDelay * 2);
      this.#fallback(`${this.#wsFailures} WebSocket links in a row broke within ${this.wsStableMs} ms of opening (last: ${err.message})`);
    }
  }

  #watchHttp(inner: Duplex, url: string): Duplex {
    let ended = false;
    let upgraded = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const probes = new AbortController();
    const stop = (): void => {
      ended = true;
      clearTimeout(timer);
      probes.abort();
    };
    // However it ends (closed by its owner before start(), too), its probes end with it.
    void inner.done.then(stop, stop);
    const schedule = (): void => {
      if (ended) return;
      timer = unref(setTimeout(() => void probe(), this.#probeDelay * (0.8 + 0.4 * Math.random())));
    };
    const probe = async (): Promise<void> => {
      if (ended) return;
      let ws: Duplex;
      try {
        ws = await this.#o.ws(url, { signal: probes.signal, timeoutMs: this.#wsTimeoutMs });
      } catch (err) {
        if (ended) return;
        this.#probeDelay = Math.min(this.#maxProbeMs, this.#probeDelay * 2);
        this.#emit({ type: 'probe-failed', reason: (err as Error).message, nextInMs: this.#probeDelay });
        schedule();
        return;
      }
      ws.start({ message: () => {}, close: () => {} });
      ws.close();
      if (ended) return;
      this.#mode = 'ws';
      upgraded = true;
      this.#upgradedByProbe = true;
      this.#emit({ type: 'upgrade' });
      inner.close();
    };
    schedule();
    return WatchedDuplex.of(inner, {
      ended: (err) => {
        stop();
        return upgraded ? new TransportError(UPGRADE_REASON, err === undefined ? undefined : { cause: err }) : err;
      },
    });
  }

  async #dialWs(url: string, o: DialOptions): Promise<Duplex> {
    const budget = o.timeoutMs === undefined ? this.#wsTimeoutMs : Math.max(1, Math.min(this.#wsTimeoutMs, Math.floor(o.timeoutMs / 2)));
    const inner = await this.#o.ws(url, { ...o, timeoutMs: budget });
    return WatchedDuplex.of(inner, new WsWatch(this));
  }

  async #dialHttp(url: string, o: DialOptions, started: number): Promise<Duplex> {
    const left = o.timeoutMs === undefined ? undefined : Math.max(1, o.timeoutMs - (Date.now() - started));
    return this.#watchHttp(await this.#o.http(url, { ...o, ...(left === undefined ? {} : { timeoutMs: left }) }), url);
  }

  async dial(url: string, o: DialOptions): Promise<Duplex> {
    const started = Date.now();
    const first = this.#mode;
    try {
      return first === 'ws' ? await this.#dialWs(url, o) : await this.#dialHttp(url, o, started);
    } catch (firstErr) {
      if (o.signal?.aborted) throw firstErr;
      // A proxy refusing us, or a certificate we do not trust, is in the way of either transport.
      if (firstErr instanceof TransportError && firstErr.permanent) throw firstErr;
      // WebSocket blocked, or the router down: long-poll tells which. On long-poll, a failed
      // dial tries WebSocket in case the network changed.
      try {
        const duplex = first === 'ws' ? await this.#dialHttp(url, o, started) : await this.#dialWs(url, o);
        if (first === 'ws') this.#fallback(`WebSocket could not be opened: ${(firstErr as Error).message}`);
        else this.#mode = 'ws';
        return duplex;
      } catch (secondErr) {
        const [wsErr, httpErr] = (first === 'ws' ? [firstErr, secondErr] : [secondErr, firstErr]) as [Error, Error];
        // A permanent second failure (the proxy or the certificate) is what the user must fix.
        const permanent = secondErr instanceof TransportError && secondErr.permanent;
        // The router down fails both the same way: the cause is said once.
        const sameCause = errnoOf(wsErr) !== undefined && errnoOf(wsErr) === errnoOf(httpErr);
        const message = sameCause ? `${wsErr.message} (by WebSocket and by HTTP long-poll)` : `${wsErr.message}; HTTP long-poll failed too: ${httpErr.message}`;
        throw new TransportError(message, { cause: firstErr, permanent });
      }
    }
  }
}

/**
 * A WebSocket link of an auto dialer: stable once it lasted wsStableMs (a deadline in the shared
 * queue, not a timer of its own); how it ends tells the dialer whether WebSocket keeps breaking.
 */
class WsWatch implements Watcher, Timed {
  readonly #auto: AutoDialer;
  #stable = false;
  deadlineSlot = -1;

  constructor(auto: AutoDialer) {
    this.#auto = auto;
    Deadlines.of(systemClock).schedule(this, systemClock.now() + auto.wsStableMs);
  }

  onDeadline(): void {
    this.#stable = true;
    this.#auto.wsStable();
  }

  ended(err: Error | undefined): Error | undefined {
    Deadlines.of(systemClock).cancel(this);
    this.#auto.wsEnded(err, this.#stable);
    return err;
  }
}

/** The system error code (ECONNREFUSED, ENOTFOUND, ...) under a dial error, if any. */
function errnoOf(err: unknown): string | undefined {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0; e !== undefined && e !== null && depth < 5; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string' && /^E[A-Z]+$/.test(e.code)) return e.code;
  }
  // Our wrappers keep the system error's words, not always the error itself.
  return /\b(E(?:CONNREFUSED|NOTFOUND|AI_AGAIN|HOSTUNREACH|NETUNREACH|TIMEDOUT|CONNRESET|ADDRNOTAVAIL))\b/.exec((err as Error | undefined)?.message ?? '')?.[1];
}
