/** Defaults for RouterOptions. docs/LIMITS.md lists each with its reason. */
export const ROUTER_DEFAULTS = Object.freeze({
  maxFrameBytes: 1024 * 1024,
  maxOutboundBytes: 8 * 1024 * 1024,
  batchBytes: 64 * 1024,
  handshakeTimeoutMs: 10_000,
  pingIntervalMs: 20_000,
  hopLimit: 16,
  maxConnections: 10_000,
  maxInFlightPerLink: 4096,
  maxInFlightBytesPerLink: 4 * 1024 * 1024,
  queueHighWater: 4096,
  maxStallMs: 10_000,
  maxQueueMessages: 100_000,
  maxQueueBytes: 64 * 1024 * 1024,
  maxStoredBytes: 256 * 1024 * 1024,
  maxMessageAgeMs: 24 * 3600_000,
  dedupWindowMs: 25 * 3600_000,
  maxUnreleasedPerLink: 65_536,
  maxSeenKeys: 1_000_000,
  maxDomainsPerLink: 1024,
  allowAnonymousAgents: true,
  allowAnonymous: true,
  handleTtlMs: 48 * 3600_000,
  stickyHandleTtlMs: 7 * 24 * 3600_000,
  pseudonymTtlMs: 7 * 24 * 3600_000,
  maxPseudonymTtlMs: 30 * 24 * 3600_000,
  maxHandles: 100_000,
  anonymousRate: 100,
  maxAnonymousBodyBytes: 64 * 1024,
});

/** Defaults for reconnecting dialers (uplinks and the client SDK). */
export const BACKOFF_DEFAULTS = Object.freeze({
  initialMs: 250,
  maxMs: 30_000,
  factor: 2,
});
