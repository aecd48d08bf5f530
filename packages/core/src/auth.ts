/** What a verified credential grants. */
export interface Claims {
  /** Domain the credential belongs to; `*` for a trusted router that may announce any domain. */
  domain: string;
  /**
   * Every domain a router holding it may serve, announce and send from (each covers the
   * domains below it; `*` covers all). Absent: just `domain`.
   */
  domains?: readonly string[];
  /** The one name an agent may claim; absent on domain-wide credentials. */
  name?: string;
  /** Epoch ms when the credential expires; the router closes links that still use it then. */
  expiresAt?: number;
  /** The holder may link as a peer: a symmetric link that may carry other domains, each with its proof. */
  peer?: boolean;
  /** The holder is a hub of `domain`: a router of that domain where agents are homed, linking to its bridgeheads. */
  hub?: boolean;
  /** The credential's id (SHA-256 of the token): a revoked one closes the links that used it. */
  tokenId?: string;
}

/**
 * Verifies the shared-secret credential (a token signed with this router's secret) among the
 * comma-separated credentials of a HELLO. Resolves undefined when there is none (only grants,
 * which the TrustPolicy reads); rejects with a PosternError coded ERR_AUTH_FAILED when it is
 * invalid.
 */
export interface Authenticator {
  verify(token: string): Promise<Claims | undefined>;
}

/** What grants give a router: see TrustPolicy.grants. */
export interface Granted {
  readonly domains: readonly string[];
  readonly peer: boolean;
  readonly expiresAt: number | undefined;
}

/**
 * This router's operator's decisions about other routers, named by node id (their public key),
 * as WireGuard peers are: `--trust KEY=DOMAINS`. Also verifies route proofs: grants signed by
 * keys the operator trusts, showing that a route's origin may serve its domain.
 */
export interface TrustPolicy {
  /**
   * The domains router `node` may speak for on its own word, and so may link as a peer; or
   * undefined when the operator named no such router.
   */
  trusted(node: string): readonly string[] | undefined;
  /**
   * What the grants among `token` (comma-separated credentials) give router `node`, through
   * chains that start at a key the operator trusts; undefined when none holds. The router
   * checks that the dialer holds `node`'s key (AUTH) before it uses the link.
   */
  grants(token: string, node: string): Granted | undefined;
  /** True when `proof` (grants, comma-separated) shows that router `origin` may serve `domain`. */
  verifyOrigin(proof: string, origin: string, domain: string): boolean;
}

/**
 * A router's key pair. Its public key is its node id, unique by construction; links between
 * routers prove it both ways (WELCOME and AUTH sign the other side's nonce).
 */
export interface NodeIdentity {
  readonly node: string;
  /** Signs `data` (UTF-8) with the node key; base64url. */
  sign(data: string): string;
  /** True when `signature` is node `node`'s signature of `data`; false for anything malformed. */
  verify(node: string, data: string, signature: string): boolean;
  /**
   * This router's credentials (grants, comma-separated) that prove it may serve its own domain,
   * sent with the announcement of that domain so that peers further away can check it; '' for none.
   */
  readonly proof?: string;
}

/**
 * The keyed functions behind anonymous sending (PROTOCOL.md section 5.4). Deterministic in their
 * input, so that a retried message gets the same handle and id, and unlinkable without this
 * router's key.
 */
export interface Anonymizer {
  /** A reply-handle token: 26 of a-z 2-7 (130 bits). */
  token(input: string): string;
  /** Replaces a message id by one that does not reveal it; at most 255 bytes. */
  sealId(id: string): string;
  /** The id `sealId` sealed, or undefined when `sealed` is not one of ours. */
  openId(sealed: string): string | undefined;
}

/**
 * Issues and checks the private resume tokens handed out in WELCOME. A token must be
 * unforgeable, and must name the session id it was issued for.
 */
/**
 * Resume tokens. `holder` names the credential the session was made with ('' without one): a
 * token resumes only for the same credential, so a stolen one cannot take a named agent's place.
 */
export interface SessionTokens {
  issue(id: string, holder: string): string;
  /**
   * The id a token was issued for, or undefined when it is not one of ours (for this holder),
   * or was issued before this router's store was lost or replaced (a session not recovered).
   */
  verify(token: string, holder: string): string | undefined;
}

/** The credential a session is bound to: its domain and name ('' without a credential). */
export function holderOf(claims: Claims | undefined): string {
  return claims === undefined ? '' : `${claims.domain}/${claims.name ?? ''}`;
}

/** True when `domain` is `pattern` or below it, or `pattern` is `*`. */
export function domainCovers(pattern: string, domain: string): boolean {
  return pattern === '*' || domain === pattern || (domain.length > pattern.length && domain.endsWith(pattern) && domain.charCodeAt(domain.length - pattern.length - 1) === 0x2e);
}

/** True when one of `patterns` covers `domain`. */
export function anyCovers(patterns: readonly string[], domain: string): boolean {
  for (const p of patterns) if (domainCovers(p, domain)) return true;
  return false;
}

/** Every domain `claims` grant. */
export function claimedDomains(claims: Claims): readonly string[] {
  return claims.domains ?? [claims.domain];
}

/** True when `claims` allow announcing `domain`: the domain itself or one below it. */
export function claimsCoverDomain(claims: Claims, domain: string): boolean {
  return anyCovers(claimedDomains(claims), domain);
}
