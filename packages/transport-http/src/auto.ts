import type { Dialer, DialOptions, Duplex, DuplexHandlers } from '@postern/core';
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

/** Forwards to `inner`, and lets its owner see and choose how it ends. */
class WatchedDuplex implements Duplex {
  readonly #inner: Duplex;
  readonly #onClose: (err: Error | undefined) => Error | undefined;
  pause?: () => void;
  resume?: () => void;

  constructor(inner: Duplex, onClose: (err: Error | undefined) => Error | undefined) {
    this.#inner = inner;
    this.#onClose = onClose;
    if (inner.pause !== undefined) this.pause = () => inner.pause?.();
    if (inner.resume !== undefined) this.resume = () => inner.resume?.();
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
    this.#inner.start({ message: handlers.message.bind(handlers), close: (err) => handlers.close(this.#onClose(err)) });
  }

  send(data: Uint8Array): void {
    this.#inner.send(data);
  }

  close(): void {
    this.#inner.close();
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
  const d = AUTO_DIALER_DEFAULTS;
  const wsTimeoutMs = positive('wsTimeoutMs', options.wsTimeoutMs, d.wsTimeoutMs);
  const probeMs = positive('wsProbeIntervalMs', options.wsProbeIntervalMs, d.probeIntervalMs);
  const maxProbeMs = Math.max(probeMs, positive('maxWsProbeIntervalMs', options.maxWsProbeIntervalMs, d.maxProbeIntervalMs));
  const wsFailures = positive('wsFailures', options.wsFailures, d.wsFailures);
  const wsStableMs = positive('wsStableMs', options.wsStableMs, d.wsStableMs);
  const emit = (e: AutoDialerEvent): void => options.onEvent?.(e);

  let mode: 'ws' | 'http' = 'ws';
  let quickFailures = 0;
  let probeDelay = probeMs;
  /** On WebSocket because a probe opened, and no link has lasted wsStableMs since. */
  let upgradedByProbe = false;

  const fallback = (reason: string): void => {
    if (mode === 'http') return;
    mode = 'http';
    emit({ type: 'fallback', reason });
  };

  const watchWs = (inner: Duplex): Duplex => {
    let stable = false;
    const timer = unref(
      setTimeout(() => {
        stable = true;
        quickFailures = 0;
        probeDelay = probeMs;
        upgradedByProbe = false;
      }, wsStableMs),
    );
    return new WatchedDuplex(inner, (err) => {
      clearTimeout(timer);
      if (err !== undefined && !stable && ++quickFailures >= wsFailures) {
        quickFailures = 0;
        // A probe only sees the handshake: where WebSocket opens and is then cut, the upgrade
        // it led to was a failed probe, or the dialer would flap every probe interval.
        if (upgradedByProbe) probeDelay = Math.min(maxProbeMs, probeDelay * 2);
        fallback(`${wsFailures} WebSocket links in a row broke within ${wsStableMs} ms of opening (last: ${err.message})`);
      }
      return err;
    });
  };

  const watchHttp = (inner: Duplex, url: string): Duplex => {
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
      timer = unref(setTimeout(() => void probe(), probeDelay * (0.8 + 0.4 * Math.random())));
    };
    const probe = async (): Promise<void> => {
      if (ended) return;
      let ws: Duplex;
      try {
        ws = await options.ws(url, { signal: probes.signal, timeoutMs: wsTimeoutMs });
      } catch (err) {
        if (ended) return;
        probeDelay = Math.min(maxProbeMs, probeDelay * 2);
        emit({ type: 'probe-failed', reason: (err as Error).message, nextInMs: probeDelay });
        schedule();
        return;
      }
      ws.start({ message: () => {}, close: () => {} });
      ws.close();
      if (ended) return;
      mode = 'ws';
      upgraded = true;
      upgradedByProbe = true;
      emit({ type: 'upgrade' });
      inner.close();
    };
    schedule();
    return new WatchedDuplex(inner, (err) => {
      stop();
      return upgraded ? new TransportError(UPGRADE_REASON, err === undefined ? undefined : { cause: err }) : err;
    });
  };

  const dialWs = async (url: string, o: DialOptions): Promise<Duplex> => {
    const budget = o.timeoutMs === undefined ? wsTimeoutMs : Math.max(1, Math.min(wsTimeoutMs, Math.floor(o.timeoutMs / 2)));
    return watchWs(await options.ws(url, { ...o, timeoutMs: budget }));
  };

  const dialHttp = async (url: string, o: DialOptions, started: number): Promise<Duplex> => {
    const left = o.timeoutMs === undefined ? undefined : Math.max(1, o.timeoutMs - (Date.now() - started));
    return watchHttp(await options.http(url, { ...o, ...(left === undefined ? {} : { timeoutMs: left }) }), url);
  };

  return async (url: string, o: DialOptions): Promise<Duplex> => {
    const started = Date.now();
    const first = mode;
    try {
      return first === 'ws' ? await dialWs(url, o) : await dialHttp(url, o, started);
    } catch (firstErr) {
      if (o.signal?.aborted) throw firstErr;
      // A proxy refusing us, or a certificate we do not trust, is in the way of either transport.
      if (firstErr instanceof TransportError && firstErr.permanent) throw firstErr;
      // WebSocket blocked, or the router down: long-poll tells which. On long-poll, a failed
      // dial tries WebSocket in case the network changed.
      try {
        const duplex = first === 'ws' ? await dialHttp(url, o, started) : await dialWs(url, o);
        if (first === 'ws') fallback(`WebSocket could not be opened: ${(firstErr as Error).message}`);
        else mode = 'ws';
        return duplex;
      } catch (secondErr) {
        const [wsErr, httpErr] = (first === 'ws' ? [firstErr, secondErr] : [secondErr, firstErr]) as [Error, Error];
        // A permanent second failure (the proxy or the certificate) is what the user must fix.
        const permanent = secondErr instanceof TransportError && secondErr.permanent;
        throw new TransportError(`${wsErr.message}; HTTP long-poll failed too: ${httpErr.message}`, { cause: firstErr, permanent });
      }
    }
  };
}
