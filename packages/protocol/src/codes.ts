/**
 * Numeric error codes carried in NACK and CLOSE frames, and the stable string codes the
 * TypeScript API exposes for them. Both columns are part of the contract: never renumber.
 * docs/ERRORS.md lists every entry; a test keeps it complete.
 */
export const WireCode = {
  OK: 0,
  PROTOCOL: 1,
  VERSION: 2,
  FRAME_TOO_LARGE: 3,
  HANDSHAKE_TIMEOUT: 4,
  AUTH_FAILED: 5,
  NAME_TAKEN: 6,
  NAME_NOT_ALLOWED: 7,
  DOMAIN_NOT_ALLOWED: 8,
  NO_ROUTE: 9,
  HOP_LIMIT: 10,
  SLOW_CONSUMER: 11,
  SHUTDOWN: 12,
  BAD_ADDRESS: 13,
  REPLACED: 14,
  LINK_LOST: 15,
  IDLE_TIMEOUT: 16,
  LOOP: 17,
  INTERNAL: 18,
  TOO_MANY_CONNECTIONS: 19,
  QUEUE_FULL: 20,
  EXPIRED: 21,
  TIMEOUT: 22,
  UNAVAILABLE: 23,
  FORBIDDEN: 24,
  /** A reply handle or pseudonym that this router does not know, or that expired. */
  UNKNOWN_RECIPIENT: 25,
  /** The sender went over a rate it is allowed (anonymous traffic). Retry later. */
  RATE_LIMITED: 26,
  /** A limit on watches or properties (count or size) would be passed: the request is refused, nothing changed. */
  LIMIT_EXCEEDED: 27,
  /**
   * The router's store could not commit (disk full, I/O error): the message was not stored and
   * not accepted. The router keeps serving and takes messages again once its store commits. Retry later.
   */
  STORE_UNAVAILABLE: 28,
  /**
   * A router announced a domain that another router (another node id) already serves alone at
   * the receiving router: the newer one is fenced (its link closed) until the first one goes.
   */
  DOMAIN_TAKEN: 29,
} as const;
export type WireCodeValue = (typeof WireCode)[keyof typeof WireCode];
export type WireCodeName = keyof typeof WireCode;

const nameByCode = new Map<number, WireCodeName>(
  Object.entries(WireCode).map(([k, v]) => [v, k as WireCodeName]),
);

/** `ERR_` string code for a wire code; unknown numbers map to `ERR_UNKNOWN`. */
export function errorCodeOf(code: number): `ERR_${WireCodeName}` | 'ERR_UNKNOWN' {
  const name = nameByCode.get(code);
  return name === undefined ? 'ERR_UNKNOWN' : `ERR_${name}`;
}

/** Wire code for an `ERR_` string code, or undefined when it has none. */
export function wireCodeOf(code: string): number | undefined {
  if (!code.startsWith('ERR_')) return undefined;
  const name = code.slice(4);
  return Object.hasOwn(WireCode, name) ? (WireCode as Record<string, number>)[name] : undefined;
}
