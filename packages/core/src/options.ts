import { ConfigError, MAX_TIMER_MS, isValidDomain, isValidName, isValidNodeId } from '@postern/protocol';
import type { Anonymizer, Authenticator, NodeIdentity, SessionTokens, TrustPolicy } from './auth.js';
import { defaultScheduler, systemClock, type Clock, type Scheduler } from './clock.js';
import { ROUTER_DEFAULTS } from './constants.js';
import { silentLogger, type Logger } from './logger.js';
import { MemoryStore } from './memory-store.js';
import type { Store } from './store.js';

export interface RouterOptions {
  /** The domain this router serves: its agents are `name@domain`. */
  domain: string;
  /** Issues and checks resume tokens. */
  sessionTokens: SessionTokens;
  /** Verifies credentials. Without one the router is open: any agent, any free name, no router links. */
  authenticator?: Authenticator;
  /**
   * The router's key pair; its public key is its node id. Needed for version 2 router links
   * (both ends prove their key). Without one the router has a random node id per start and
   * takes no version 2 router links.
   */
  identity?: NodeIdentity;
  /** Node id when there is no identity (tests, version 1 only); random when absent. */
  node?: string;
  /** The operator's trust in other routers' keys (peers) and in the signers of route proofs. */
  trust?: TrustPolicy;
  /** Keyed functions for anonymous messages; without it anonymous messages are refused (FORBIDDEN). */
  anonymizer?: Anonymizer;
  /** Agents may send anonymously and hold pseudonyms (needs `anonymizer`). @default true */
  allowAnonymous?: boolean;
  /** How long the reply handle of one anonymous message lives; at least maxMessageAgeMs (its reports come back through it). @default 48 h */
  handleTtlMs?: number;
  /** How long a sender's sticky handle lives after its last use. @default 7 days */
  stickyHandleTtlMs?: number;
  /** A pseudonym's life when the agent asks for none. @default 7 days */
  pseudonymTtlMs?: number;
  /** The longest life of a pseudonym. @default 30 days */
  maxPseudonymTtlMs?: number;
  /** Reply handles held at once; past it anonymous messages are refused (RATE_LIMITED). @default 100000 */
  maxHandles?: number;
  /** Anonymous messages (and pseudonym requests) per second per agent connection; bursts of twice that. @default 100 */
  anonymousRate?: number;
  /** Largest body of an anonymous message. @default 64 KiB */
  maxAnonymousBodyBytes?: number;
  /**
   * A message to a name or id of this domain that nobody ever held (not in the directory, not
   * provisioned): 'refuse' it at once with UNKNOWN_RECIPIENT, or 'queue' it until the name comes.
   * @default 'refuse'
   */
  unknownRecipients?: 'refuse' | 'queue';
  /** Names known before they are first claimed (provisioned): messages to them wait. @default none */
  knownNames?: readonly string[];
  /** How long an id stays known after its session went offline. Names stay. @default 30 days */
  directoryTtlMs?: number;
  /** Directory entries at most; past it the longest offline are forgotten. @default 1000000 */
  maxDirectoryEntries?: number;
  /**
   * This router is a hub: agents are homed here, and its uplinks lead to the bridgeheads of its
   * own domain (the domain's gateways), which keep the directory and carry everything else.
   * @default false
   */
  hub?: boolean;
  /** Hub: how long a name claim waits for the bridgeheads' answer before it holds anyway. @default 5000 */
  claimTimeoutMs?: number;
  /**
   * Bridgehead: how long messages for a name that moved between hubs wait for the old hub to hand
   * back what it held (after that they go on, and order is no longer promised). @default 60000
   */
  moveDrainTimeoutMs?: number;
  /** Addresses one agent may watch at once. @default 1000 */
  maxWatchesPerAgent?: number;
  /** Addresses watched through this router at once (by its agents and the routers behind it). @default 100000 */
  maxWatched?: number;
  /**
   * Keep message traces (the events of each message at this router, for the dashboard's path
   * view) and the recent undeliverable reports. Off, the message path pays nothing for them;
   * the router process turns it on when it has an admin listener. @default false
   */
  trace?: boolean;
  /** Messages whose traces are kept at once (with `trace`); the oldest traced are forgotten first. @default 10000 */
  traceCapacity?: number;
  /** Properties one agent may publish. @default 32 */
  maxProperties?: number;
  /** Bytes of one agent's properties, keys and values together. @default 8192 */
  maxPropertyBytes?: number;
  /** Addresses (or `*@domain`) one agent may allow to watch it besides its own domain. @default 1000 */
  maxAllowedWatchers?: number;
  /**
   * Agents without a token (guests) may connect, with an id and no name, although an authenticator
   * is set; they get the guest quotas. Without an authenticator every agent connects without a
   * token (an open router) and this does not apply. @default false
   */
  allowGuests?: boolean;
  /**
   * Connections from one source address (IPv4, or an IPv6 /64) that present no token, counting
   * those still in their handshake. Connections with a token count against their credential. @default 256
   */
  maxConnectionsPerAddress?: number;
  /** New connections (WebSocket upgrades, long-poll opens) one source address may make a second, in bursts of twice that. @default 100 */
  connectRatePerAddress?: number;
  /** Connections made with one credential (token or grant) at once. @default 1000 */
  maxConnectionsPerCredential?: number;
  /**
   * Messages a second one sender may send (a credential; an address on an open router); reading
   * from its connections pauses while it is over. 0 for no limit. Routers of the mesh (uplinks,
   * peers, hubs) are not limited. @default 0
   */
  senderMsgRate?: number;
  /** Body bytes a second one sender may send, as senderMsgRate. 0 for no limit. @default 0 */
  senderByteRate?: number;
  /** Bytes of reliable messages from one sender this router may hold; more are refused to that sender with QUEUE_FULL. @default maxStoredBytes / 4 */
  maxStoredBytesPerSender?: number;
  /** Messages a second from the guests of one source address. 0 for no limit. @default 50 */
  guestMsgRate?: number;
  /** Body bytes a second from the guests of one source address. 0 for no limit. @default 256 KiB */
  guestByteRate?: number;
  /** Bytes of reliable messages from the guests of one source address that this router may hold. @default 1 MiB */
  guestStoredBytes?: number;
  /** Bytes of reliable messages from all guests together that this router may hold. @default maxStoredBytes / 16 */
  maxGuestStoredBytes?: number;
  /** @default 1 MiB */
  maxFrameBytes?: number;
  /** Per connection; past it the peer is disconnected as a slow consumer. @default 8 MiB */
  maxOutboundBytes?: number;
  /** A batch this large is sent without waiting for the end of the I/O phase. @default 64 KiB */
  batchBytes?: number;
  /**
   * HELLO must arrive within this time (like NATS's auth timeout: a socket that says nothing
   * must not hold a connection slot for long). @default 5000
   */
  handshakeTimeoutMs?: number;
  /**
   * A frame begun must be complete within this time: peers never split a frame across transport
   * messages, so one that stays partial is a peer holding buffers and a slot. @default 10000
   */
  partialFrameTimeoutMs?: number;
  /** Ping after this much inbound silence; a link silent for twice as long is closed. @default 20000 */
  pingIntervalMs?: number;
  /** Hop limit stamped on messages from agents; caps what routers accept. @default 16 */
  hopLimit?: number;
  /** Connections of all kinds at once. @default 10000 */
  maxConnections?: number;
  /** Where reliable messages wait until the next hop has them. @default a new MemoryStore (lost on restart) */
  store?: Store;
  /** Reliable messages sent on one link (to an agent or a router) and not yet acked. @default 4096 */
  maxInFlightPerLink?: number;
  /** Their bytes; one message may always go. @default 4 MiB */
  maxInFlightBytesPerLink?: number;
  /** Messages waiting in one queue while its next hop is connected, past which the senders feeding it are paused. @default 4096 */
  queueHighWater?: number;
  /**
   * A queue that pauses its senders and whose next hop then acknowledges nothing for this long
   * (a hung recipient) lets them go: from then on it fills up to its limits (QUEUE_FULL) until
   * its next hop acknowledges again. Bounds how long one stuck recipient can hold up a sender,
   * and a router link with everyone behind it. @default 10000
   */
  maxStallMs?: number;
  /** Messages one queue (a recipient, or a domain) may hold; more are refused with QUEUE_FULL. @default 100000 */
  maxQueueMessages?: number;
  /** Bytes one queue may hold. @default 64 MiB */
  maxQueueBytes?: number;
  /** Bytes of messages the router may hold in all (held in memory as well as in the store). @default 256 MiB */
  maxStoredBytes?: number;
  /**
   * Bytes of message bodies the router keeps in memory. Past it, the bodies of stored messages
   * stay in the store only and are read back when they are sent; with the SQLite store that
   * bounds memory (what is held beyond it is on disk). The in-memory store keeps one copy of each
   * body whatever this says. Each held message costs about 300 bytes more (its key, addresses
   * and entry). @default 32 MiB
   */
  maxBodyMemoryBytes?: number;
  /**
   * Messages the router may hold in all; more are refused with QUEUE_FULL. With
   * maxBodyMemoryBytes it bounds memory: each held message costs about 2.5 KB besides its body
   * (bench/src/held.ts measures it). @default 1000000
   */
  maxStoredMessages?: number;
  /** A message not delivered to the next hop within this time is dropped and reported EXPIRED to its sender. @default 24 h */
  maxMessageAgeMs?: number;
  /**
   * How long a key we acked on a lost link is kept to drop a retry of it; at least
   * maxMessageAgeMs, so it outlives the longest retry (a hop retries until the message expires). @default 25 h
   */
  dedupWindowMs?: number;
  /** Keys acked on one link and not yet released by its peer; older ones fall to the dedup window. @default 65536 */
  maxUnreleasedPerLink?: number;
  /**
   * Longest wait before removals and retirements (copies the next hop took, keys the hop before
   * released) are committed when no new message is being stored: they ride along with the next
   * commit of new messages, so that they never cost an fsync of their own under load nor hold
   * up the commit a sender waits for. Only the RELEASE to the hop before waits for them. 0: they
   * are committed at once. @default 20
   */
  settleDelayMs?: number;
  /** Keys kept for deduplication in all; past it the oldest keys of lost links are dropped early. @default 1000000 */
  maxSeenKeys?: number;
  /** Domains one linked router may announce. @default 1024 */
  maxDomainsPerLink?: number;
  /** Called after the store failed and the router closed itself. @default nothing more */
  onFatal?: (err: unknown) => void;
  clock?: Clock;
  scheduler?: Scheduler;
  logger?: Logger;
}

export type ResolvedRouterOptions = Readonly<
  Required<Omit<RouterOptions, 'authenticator' | 'identity' | 'trust' | 'anonymizer'>> & {
    authenticator: Authenticator | undefined;
    identity: NodeIdentity | undefined;
    trust: TrustPolicy | undefined;
    anonymizer: Anonymizer | undefined;
  }
>;

function positive(name: string, v: number | undefined, dflt: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  const x = v ?? dflt;
  if (!Number.isInteger(x) || x < min || x > max) throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got ${String(v)}`);
  return x;
}

function randomNode(): string {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function unknownRecipients(v: 'refuse' | 'queue' | undefined): 'refuse' | 'queue' {
  if (v === undefined || v === 'refuse' || v === 'queue') return v ?? ROUTER_DEFAULTS.unknownRecipients;
  throw new ConfigError(`unknownRecipients must be "refuse" or "queue", got ${JSON.stringify(v)}`);
}

function knownNames(v: readonly string[] | undefined): readonly string[] {
  const names = (v ?? []).map((n) => String(n).toLowerCase());
  for (const n of names) if (!isValidName(n)) throw new ConfigError(`knownNames: "${n}" is not a valid name`);
  return Object.freeze(names);
}

/** Fills defaults, checks every field, and freezes: bad config fails here, never mid-traffic. */
export function resolveRouterOptions(o: RouterOptions): ResolvedRouterOptions {
  if (typeof o.domain !== 'string' || !isValidDomain(o.domain.toLowerCase())) {
    throw new ConfigError(`domain must be a DNS-style name like "acme" or "eu.acme.com", got ${JSON.stringify(o.domain)}`);
  }
  if (o.sessionTokens === undefined) throw new ConfigError('sessionTokens is required');
  const node = o.identity?.node ?? o.node ?? randomNode();
  if (!isValidNodeId(node)) throw new ConfigError(`node must be 1-64 of [A-Za-z0-9._-], got ${JSON.stringify(node)}`);
  if (o.identity !== undefined && o.node !== undefined && o.node !== o.identity.node) throw new ConfigError('node must be left out with an identity: the node id is its public key');
  const d = ROUTER_DEFAULTS;
  const hopLimit = positive('hopLimit', o.hopLimit, d.hopLimit);
  if (hopLimit > 255) throw new ConfigError('hopLimit must be at most 255');
  const maxStoredBytes = positive('maxStoredBytes', o.maxStoredBytes, d.maxStoredBytes);
  const maxMessageAgeMs = positive('maxMessageAgeMs', o.maxMessageAgeMs, d.maxMessageAgeMs);
  const dedupWindowMs = positive('dedupWindowMs', o.dedupWindowMs, Math.max(d.dedupWindowMs, maxMessageAgeMs));
  if (dedupWindowMs < maxMessageAgeMs) {
    throw new ConfigError(`dedupWindowMs (${dedupWindowMs}) must be at least maxMessageAgeMs (${maxMessageAgeMs}): a hop retries a message until it expires, and the window must cover the longest retry`);
  }
  const maxOutboundBytes = positive('maxOutboundBytes', o.maxOutboundBytes, d.maxOutboundBytes, 1024);
  const maxInFlightBytesPerLink = positive('maxInFlightBytesPerLink', o.maxInFlightBytesPerLink, Math.min(d.maxInFlightBytesPerLink, Math.floor(maxOutboundBytes / 2)));
  if (maxInFlightBytesPerLink > maxOutboundBytes / 2) {
    // Reliable traffic alone must never reach the slow-consumer cap of a router link.
    throw new ConfigError(`maxInFlightBytesPerLink (${maxInFlightBytesPerLink}) must be at most half of maxOutboundBytes (${maxOutboundBytes})`);
  }
  const handleTtlMs = positive('handleTtlMs', o.handleTtlMs, d.handleTtlMs, 1000, MAX_TIMER_MS);
  if (handleTtlMs < maxMessageAgeMs) {
    // A report about an anonymous message may come back as late as a message may wait: the
    // handle it goes to must still be there.
    throw new ConfigError(`handleTtlMs (${handleTtlMs}) must be at least maxMessageAgeMs (${maxMessageAgeMs}): a report about an anonymous message comes back through its handle up to that late`);
  }
  return Object.freeze({
    domain: o.domain.toLowerCase(),
    sessionTokens: o.sessionTokens,
    authenticator: o.authenticator,
    identity: o.identity,
    trust: o.trust,
    anonymizer: o.anonymizer,
    allowAnonymous: o.allowAnonymous ?? d.allowAnonymous,
    handleTtlMs,
    stickyHandleTtlMs: positive('stickyHandleTtlMs', o.stickyHandleTtlMs, d.stickyHandleTtlMs, 1000),
    pseudonymTtlMs: positive('pseudonymTtlMs', o.pseudonymTtlMs, d.pseudonymTtlMs, 1000),
    maxPseudonymTtlMs: positive('maxPseudonymTtlMs', o.maxPseudonymTtlMs, d.maxPseudonymTtlMs, 1000),
    maxHandles: positive('maxHandles', o.maxHandles, d.maxHandles),
    anonymousRate: positive('anonymousRate', o.anonymousRate, d.anonymousRate),
    maxAnonymousBodyBytes: positive('maxAnonymousBodyBytes', o.maxAnonymousBodyBytes, d.maxAnonymousBodyBytes, 0),
    unknownRecipients: unknownRecipients(o.unknownRecipients),
    knownNames: knownNames(o.knownNames),
    directoryTtlMs: positive('directoryTtlMs', o.directoryTtlMs, d.directoryTtlMs, 1000),
    maxDirectoryEntries: positive('maxDirectoryEntries', o.maxDirectoryEntries, d.maxDirectoryEntries, 16),
    hub: o.hub ?? false,
    trace: o.trace ?? false,
    traceCapacity: positive('traceCapacity', o.traceCapacity, d.traceCapacity, 1, 10_000_000),
    maxWatchesPerAgent: positive('maxWatchesPerAgent', o.maxWatchesPerAgent, d.maxWatchesPerAgent),
    maxWatched: positive('maxWatched', o.maxWatched, d.maxWatched),
    maxProperties: positive('maxProperties', o.maxProperties, d.maxProperties, 0, 65_535),
    maxPropertyBytes: positive('maxPropertyBytes', o.maxPropertyBytes, d.maxPropertyBytes, 0),
    maxAllowedWatchers: positive('maxAllowedWatchers', o.maxAllowedWatchers, d.maxAllowedWatchers, 0, 65_535),
    claimTimeoutMs: positive('claimTimeoutMs', o.claimTimeoutMs, d.claimTimeoutMs, 1, MAX_TIMER_MS),
    moveDrainTimeoutMs: positive('moveDrainTimeoutMs', o.moveDrainTimeoutMs, d.moveDrainTimeoutMs, 1, MAX_TIMER_MS),
    node,
    allowGuests: o.allowGuests ?? d.allowGuests,
    maxConnectionsPerAddress: positive('maxConnectionsPerAddress', o.maxConnectionsPerAddress, d.maxConnectionsPerAddress),
    connectRatePerAddress: positive('connectRatePerAddress', o.connectRatePerAddress, d.connectRatePerAddress),
    maxConnectionsPerCredential: positive('maxConnectionsPerCredential', o.maxConnectionsPerCredential, d.maxConnectionsPerCredential),
    senderMsgRate: positive('senderMsgRate', o.senderMsgRate, d.senderMsgRate, 0),
    senderByteRate: positive('senderByteRate', o.senderByteRate, d.senderByteRate, 0),
    maxStoredBytesPerSender: positive('maxStoredBytesPerSender', o.maxStoredBytesPerSender, Math.max(1, Math.floor(maxStoredBytes / 4))),
    guestMsgRate: positive('guestMsgRate', o.guestMsgRate, d.guestMsgRate, 0),
    guestByteRate: positive('guestByteRate', o.guestByteRate, d.guestByteRate, 0),
    guestStoredBytes: positive('guestStoredBytes', o.guestStoredBytes, d.guestStoredBytes),
    maxGuestStoredBytes: positive('maxGuestStoredBytes', o.maxGuestStoredBytes, Math.max(1, Math.floor(maxStoredBytes / 16))),
    maxFrameBytes: positive('maxFrameBytes', o.maxFrameBytes, d.maxFrameBytes, 1024),
    maxOutboundBytes,
    batchBytes: positive('batchBytes', o.batchBytes, d.batchBytes, 512),
    handshakeTimeoutMs: positive('handshakeTimeoutMs', o.handshakeTimeoutMs, d.handshakeTimeoutMs, 1, MAX_TIMER_MS),
    partialFrameTimeoutMs: positive('partialFrameTimeoutMs', o.partialFrameTimeoutMs, d.partialFrameTimeoutMs, 1, MAX_TIMER_MS),
    pingIntervalMs: positive('pingIntervalMs', o.pingIntervalMs, d.pingIntervalMs, 0, Math.floor(MAX_TIMER_MS / 2)),
    hopLimit,
    maxConnections: positive('maxConnections', o.maxConnections, d.maxConnections),
    store: o.store ?? new MemoryStore(),
    maxInFlightPerLink: positive('maxInFlightPerLink', o.maxInFlightPerLink, d.maxInFlightPerLink),
    maxInFlightBytesPerLink,
    queueHighWater: positive('queueHighWater', o.queueHighWater, d.queueHighWater),
    maxStallMs: positive('maxStallMs', o.maxStallMs, d.maxStallMs),
    maxQueueMessages: positive('maxQueueMessages', o.maxQueueMessages, d.maxQueueMessages),
    maxQueueBytes: positive('maxQueueBytes', o.maxQueueBytes, d.maxQueueBytes),
    maxStoredBytes,
    maxBodyMemoryBytes: positive('maxBodyMemoryBytes', o.maxBodyMemoryBytes, d.maxBodyMemoryBytes, 0),
    maxStoredMessages: positive('maxStoredMessages', o.maxStoredMessages, d.maxStoredMessages),
    maxMessageAgeMs,
    dedupWindowMs,
    maxUnreleasedPerLink: positive('maxUnreleasedPerLink', o.maxUnreleasedPerLink, d.maxUnreleasedPerLink),
    settleDelayMs: positive('settleDelayMs', o.settleDelayMs, d.settleDelayMs, 0, 10_000),
    maxSeenKeys: positive('maxSeenKeys', o.maxSeenKeys, d.maxSeenKeys),
    maxDomainsPerLink: positive('maxDomainsPerLink', o.maxDomainsPerLink, d.maxDomainsPerLink),
    onFatal: o.onFatal ?? ((): void => undefined),
    clock: o.clock ?? systemClock,
    scheduler: o.scheduler ?? defaultScheduler,
    logger: o.logger ?? silentLogger,
  });
}
