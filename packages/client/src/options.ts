import { BACKOFF_DEFAULTS, type BackoffOptions, type Dialer } from '@postern/core';
import { ConfigError, DEFAULT_MAX_FRAME_BYTES, MAX_TIMER_MS, isValidName } from '@postern/protocol';

export interface ClientOptions {
  /** Router to connect to: `ws://`, `wss://`, `http(s)://` or `host:port`. */
  url: string;
  /** Name to claim (`name@domain`); the credential must allow it where the router checks. */
  name?: string;
  /** Signed credential from `postern token`. */
  token?: string;
  /** Resume token from an earlier session, to get the same id back. */
  resume?: string;
  /** Reconnect after a lost connection, resuming the session. @default true */
  reconnect?: boolean;
  backoff?: BackoffOptions;
  /** One connection attempt (connect + handshake) gives up after this long. @default 10000 */
  connectTimeoutMs?: number;
  /**
   * Acknowledge each reliable message when the application takes it from the iterator. Set
   * false to acknowledge with `message.ack()` once it is safe (until then the router keeps it
   * and resends it after a reconnect). @default true
   */
  autoAck?: boolean;
  /** A reliable send fails with ERR_TIMEOUT when not accepted (or, with receipt 'delivered', not delivered) in this time. @default 60000 */
  sendTimeoutMs?: number;
  /** Reliable sends awaiting their ack at once; further sends wait. @default 4096 */
  maxInFlight?: number;
  /** Body bytes of reliable sends awaiting their ack; further sends wait (one always may go). @default 4 MiB */
  maxInFlightBytes?: number;
  /**
   * Received messages the application has not taken yet. Past it, reliable ones are refused with
   * QUEUE_FULL (the sender hears it) and volatile ones are dropped. @default 65536
   */
  maxQueued?: number;
  /** Received message ids remembered to drop duplicates; at least maxQueued and 4096. @default 65536 */
  dedupWindow?: number;
  /** Ping after this much inbound silence; close after twice as much. @default 20000 */
  pingIntervalMs?: number;
  /** @default 1 MiB */
  maxFrameBytes?: number;
  /** Past this many bytes waiting to leave, the connection is dropped and resumed. @default 8 MiB */
  maxOutboundBytes?: number;
  /** Opens connections; the Node and browser entries supply one. */
  dialer?: Dialer;
  /** Software identifier sent in HELLO, for the router's logs. */
  agent?: string;
}

/**
 * What both entries' `connect()` take besides ClientOptions: which transport to reach the router
 * by. (The entries build the dialer from these; a custom `dialer` replaces them.)
 */
export interface TransportOptions {
  /**
   * How to reach the router: 'ws' (WebSocket only), 'http' (HTTP long-poll only), or 'auto':
   * WebSocket, falling back to long-poll where WebSocket is blocked (a middlebox refusing the
   * upgrade) and reconnecting over WebSocket once a probe gets through. @default 'auto'
   */
  transport?: 'auto' | 'ws' | 'http';
  /** With transport 'auto', while on long-poll: how often to try WebSocket again (doubling after each failure). @default 30000 */
  wsProbeIntervalMs?: number;
}

/**
 * What the browser entry's `connect()` takes. The browser decides proxies and TLS trust itself
 * (its settings and CAs); WebSocket and long-poll requests carry the page's Origin, which the
 * router must allow (`--allow-origin`).
 */
export interface BrowserClientOptions extends ClientOptions, TransportOptions {}

/**
 * What the Node entry's `connect()` takes besides ClientOptions: how to reach and trust the
 * router. A browser decides these itself (system proxy and CAs).
 */
export interface NodeClientOptions extends ClientOptions, TransportOptions {
  /** PEM CA certificate(s) trusted for wss:// instead of the system CAs. @default the system CAs */
  ca?: string | string[];
  /**
   * SHA-256 of the router's leaf certificate (DER), 64 hex digits, colons optional, any case.
   * Pinned, the chain need not verify (self-signed is fine) but the leaf must match exactly.
   */
  fingerprint?: string;
  /**
   * HTTP CONNECT proxy, `http://[user:password@]host:port`; `false`: connect directly whatever
   * the environment says. @default from HTTPS_PROXY / HTTP_PROXY / NO_PROXY, read at connect()
   */
  proxy?: string | false;
}

export type ResolvedClientOptions = Readonly<
  Required<Omit<ClientOptions, 'name' | 'token' | 'resume' | 'backoff' | 'dialer'>> & {
    name: string;
    token: string;
    resume: string;
    backoff: Required<BackoffOptions>;
    dialer: Dialer;
  }
>;

function int(name: string, v: number | undefined, dflt: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const x = v ?? dflt;
  if (!Number.isInteger(x) || x < min || x > max) throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got ${String(v)}`);
  return x;
}

/** The router's default maxInFlightPerLink: what it may resend after a lost connection. */
const MIN_DEDUP_WINDOW = 4096;

export function resolveClientOptions(o: ClientOptions, dialer: Dialer | undefined): ResolvedClientOptions {
  if (typeof o.url !== 'string' || o.url.length === 0) throw new ConfigError('url is required');
  const name = (o.name ?? '').toLowerCase();
  if (name !== '' && !isValidName(name)) {
    throw new ConfigError(`"${o.name}" is not a valid name: 1-64 of a-z 0-9 . _ -, starting with a letter or digit`);
  }
  const d = o.dialer ?? dialer;
  if (d === undefined) throw new ConfigError('no dialer: use the Node or browser entry of @postern/client, or pass one');
  const maxQueued = int('maxQueued', o.maxQueued, 65_536, 1);
  const dedupWindow = int('dedupWindow', o.dedupWindow, 65_536, 1);
  // Every key of a message not yet taken must still be in the window when a router resends it,
  // and so must the last router window's worth (4,096 by default) of those taken.
  if (dedupWindow < Math.max(MIN_DEDUP_WINDOW, maxQueued)) {
    throw new ConfigError(`dedupWindow (${dedupWindow}) must be at least maxQueued (${maxQueued}) and at least ${MIN_DEDUP_WINDOW}, the router's default maxInFlightPerLink`);
  }
  return Object.freeze({
    url: o.url,
    name,
    token: o.token ?? '',
    resume: o.resume ?? '',
    reconnect: o.reconnect ?? true,
    autoAck: o.autoAck ?? true,
    backoff: Object.freeze({
      initialMs: int('backoff.initialMs', o.backoff?.initialMs, BACKOFF_DEFAULTS.initialMs, 1),
      maxMs: int('backoff.maxMs', o.backoff?.maxMs, BACKOFF_DEFAULTS.maxMs, 1),
      factor: o.backoff?.factor ?? BACKOFF_DEFAULTS.factor,
    }),
    connectTimeoutMs: int('connectTimeoutMs', o.connectTimeoutMs, 10_000, 1, MAX_TIMER_MS),
    sendTimeoutMs: int('sendTimeoutMs', o.sendTimeoutMs, 60_000, 1, MAX_TIMER_MS),
    maxInFlight: int('maxInFlight', o.maxInFlight, 4096, 1),
    maxInFlightBytes: int('maxInFlightBytes', o.maxInFlightBytes, 4 * 1024 * 1024, 1),
    maxQueued,
    dedupWindow,
    pingIntervalMs: int('pingIntervalMs', o.pingIntervalMs, 20_000, 0, Math.floor(MAX_TIMER_MS / 2)),
    maxFrameBytes: int('maxFrameBytes', o.maxFrameBytes, DEFAULT_MAX_FRAME_BYTES, 1024),
    maxOutboundBytes: int('maxOutboundBytes', o.maxOutboundBytes, 8 * 1024 * 1024, 1024),
    dialer: d,
    agent: o.agent ?? 'postern-client/0.1',
  });
}
