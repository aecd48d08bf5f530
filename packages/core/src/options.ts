import { ConfigError, isValidDomain } from '@postern/protocol';
import type { Authenticator, SessionTokens } from './auth.js';
import { defaultScheduler, systemClock, type Clock, type Scheduler } from './clock.js';
import { ROUTER_DEFAULTS } from './constants.js';
import { silentLogger, type Logger } from './logger.js';

export interface RouterOptions {
  /** The domain this router serves: its agents are `name@domain`. */
  domain: string;
  /** Issues and checks resume tokens. */
  sessionTokens: SessionTokens;
  /** Verifies credentials. Without one the router is open: any agent, any free name, no router links. */
  authenticator?: Authenticator;
  /** Node id, unique among linked routers; random when absent. */
  node?: string;
  /** Agents without a token may connect (id only, no name) when an authenticator is set. @default true */
  allowAnonymousAgents?: boolean;
  /** @default 1 MiB */
  maxFrameBytes?: number;
  /** Per connection; past it the peer is disconnected as a slow consumer. @default 8 MiB */
  maxOutboundBytes?: number;
  /** A batch this large is sent without waiting for the end of the I/O phase. @default 64 KiB */
  batchBytes?: number;
  /** HELLO must arrive within this time. @default 10000 */
  handshakeTimeoutMs?: number;
  /** Ping after this much inbound silence; a link silent for twice as long is closed. @default 20000 */
  pingIntervalMs?: number;
  /** Hop limit stamped on messages from agents; caps what routers accept. @default 16 */
  hopLimit?: number;
  /** Connections of all kinds at once. @default 10000 */
  maxConnections?: number;
  /** Forwarded messages awaiting the next hop's ack, per connection. @default 65536 */
  maxPendingPerLink?: number;
  /** Messages from one agent awaiting acks at once, so one agent cannot fill a shared link. @default 8192 */
  maxPendingPerAgent?: number;
  /** A forwarded message not acked within this time is nacked back with ERR_TIMEOUT. @default 30000 */
  ackTimeoutMs?: number;
  /** Domains one linked router may announce. @default 1024 */
  maxDomainsPerLink?: number;
  clock?: Clock;
  scheduler?: Scheduler;
  logger?: Logger;
}

export type ResolvedRouterOptions = Readonly<
  Required<Omit<RouterOptions, 'authenticator'>> & { authenticator: Authenticator | undefined }
>;

function positive(name: string, v: number | undefined, dflt: number, min = 1): number {
  const x = v ?? dflt;
  if (!Number.isInteger(x) || x < min) throw new ConfigError(`${name} must be an integer >= ${min}, got ${String(v)}`);
  return x;
}

function randomNode(): string {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/** Fills defaults, checks every field, and freezes: bad config fails here, never mid-traffic. */
export function resolveRouterOptions(o: RouterOptions): ResolvedRouterOptions {
  if (typeof o.domain !== 'string' || !isValidDomain(o.domain.toLowerCase())) {
    throw new ConfigError(`domain must be a DNS-style name like "acme" or "eu.acme.com", got ${JSON.stringify(o.domain)}`);
  }
  if (o.sessionTokens === undefined) throw new ConfigError('sessionTokens is required');
  const node = o.node ?? randomNode();
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(node)) throw new ConfigError(`node must be 1-64 of [A-Za-z0-9._-], got ${JSON.stringify(node)}`);
  const d = ROUTER_DEFAULTS;
  const hopLimit = positive('hopLimit', o.hopLimit, d.hopLimit);
  if (hopLimit > 255) throw new ConfigError('hopLimit must be at most 255');
  return Object.freeze({
    domain: o.domain.toLowerCase(),
    sessionTokens: o.sessionTokens,
    authenticator: o.authenticator,
    node,
    allowAnonymousAgents: o.allowAnonymousAgents ?? d.allowAnonymousAgents,
    maxFrameBytes: positive('maxFrameBytes', o.maxFrameBytes, d.maxFrameBytes, 1024),
    maxOutboundBytes: positive('maxOutboundBytes', o.maxOutboundBytes, d.maxOutboundBytes, 1024),
    batchBytes: positive('batchBytes', o.batchBytes, d.batchBytes, 512),
    handshakeTimeoutMs: positive('handshakeTimeoutMs', o.handshakeTimeoutMs, d.handshakeTimeoutMs),
    pingIntervalMs: positive('pingIntervalMs', o.pingIntervalMs, d.pingIntervalMs, 0),
    hopLimit,
    maxConnections: positive('maxConnections', o.maxConnections, d.maxConnections),
    maxPendingPerLink: positive('maxPendingPerLink', o.maxPendingPerLink, d.maxPendingPerLink),
    maxPendingPerAgent: positive('maxPendingPerAgent', o.maxPendingPerAgent, d.maxPendingPerAgent),
    ackTimeoutMs: positive('ackTimeoutMs', o.ackTimeoutMs, d.ackTimeoutMs),
    maxDomainsPerLink: positive('maxDomainsPerLink', o.maxDomainsPerLink, d.maxDomainsPerLink),
    clock: o.clock ?? systemClock,
    scheduler: o.scheduler ?? defaultScheduler,
    logger: o.logger ?? silentLogger,
  });
}
