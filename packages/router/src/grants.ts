import { randomBytes } from 'node:crypto';
import { domainCovers, type TrustPolicy } from '@postern/core';
import { ConfigError, isValidDomain } from '@postern/protocol';
import { publicKeyKind, verifySignature, type KeyPair } from './keys.js';

/**
 * Grants: signed statements that let routers trust each other without a shared secret (the
 * shape of NATS's operator / account / user JWT chain). A grant is a JWT signed with EdDSA
 * (Ed25519) by its issuer's key, saying of a subject key:
 *
 *   { iss: ISSUER KEY, sub: SUBJECT KEY, dom: [DOMAINS], peer?: true, signer?: true, iat, exp?, jti }
 *
 * - subject a router's node key (N…): that router may serve, announce and send from DOMAINS (each
 *   covers the domains below it); with `peer`, it may link as a peer (a transit).
 * - subject a domain or operator key (A…/O…) with `signer`: that key may issue grants itself,
 *   within DOMAINS.
 *
 * A verifier accepts a chain of grants that starts at a key it trusts (`--trust KEY[=DOMAINS]`),
 * each link within the one before, and ends at the router that proved its node key on the link
 * (or that originated a route). What a chain grants is the intersection of all the scopes on it.
 */
export interface GrantRequest {
  /** The subject's public key: a router's node key, or a key that may sign further grants. */
  subject: string;
  /** Domains granted (each covers those below it; `*` any). */
  domains: readonly string[];
  /** A router subject may link as a peer. */
  peer?: boolean;
  /** The subject key may issue grants within `domains` (a domain owner's key under an operator). */
  signer?: boolean;
  /** Lifetime in seconds; omit for a grant that does not expire. */
  ttlSeconds?: number;
}

export interface Grant {
  readonly iss: string;
  readonly sub: string;
  readonly dom: readonly string[];
  readonly peer: boolean;
  readonly signer: boolean;
  /** Epoch ms, or undefined for none. */
  readonly exp: number | undefined;
}

/** A key this router trusts, and for which domains (`--trust KEY[=DOMAINS]`). */
export interface TrustAnchor {
  readonly key: string;
  readonly domains: readonly string[];
}

/** What a verified chain grants its subject. */
export interface Granted {
  readonly domains: readonly string[];
  readonly peer: boolean;
  readonly expiresAt: number | undefined;
}

const MAX_DEPTH = 4;

/** Signs a grant with `issuer`'s key. */
export function issueGrant(issuer: KeyPair, req: GrantRequest): string {
  const kind = publicKeyKind(req.subject);
  if (kind === undefined) throw new ConfigError(`"${req.subject}" is not a public key (N… for a router, A… or O… for a key that signs)`);
  if (req.signer === true && kind === 'node') throw new ConfigError('a router node key cannot sign grants: give a domain (A…) or operator (O…) key');
  if (req.signer !== true && kind !== 'node') throw new ConfigError(`grants for ${kind} key ${req.subject} delegate signing: say so (signer)`);
  if (issuer.kind === 'node') throw new ConfigError('a router node key does not sign grants: use an operator or domain key');
  if (req.domains.length === 0) throw new ConfigError('a grant names at least one domain');
  for (const d of req.domains) if (d !== '*' && !isValidDomain(d)) throw new ConfigError(`invalid domain "${d}"`);
  const now = Math.floor(Date.now() / 1000);
  const payload: Record<string, unknown> = { iss: issuer.publicKey, sub: req.subject, dom: req.domains.map((d) => d.toLowerCase()), iat: now, jti: randomBytes(9).toString('base64url') };
  if (req.peer === true) payload['peer'] = true;
  if (req.signer === true) payload['signer'] = true;
  if (req.ttlSeconds !== undefined) {
    if (!(req.ttlSeconds > 0)) throw new ConfigError('ttl must be positive');
    payload['exp'] = now + Math.floor(req.ttlSeconds);
  }
  const head = b64(JSON.stringify({ alg: 'EdDSA', typ: 'JWT' }));
  const body = b64(JSON.stringify(payload));
  return `${head}.${body}.${Buffer.from(issuer.sign(`${head}.${body}`)).toString('base64url')}`;
}

/** True when `jwt` is a grant (an EdDSA JWT), whatever its validity. */
export function isGrant(jwt: string): boolean {
  const head = parseJson(jwt.split('.')[0] ?? '');
  return head !== undefined && head['alg'] === 'EdDSA';
}

/** A grant whose signature is its issuer's and that has not expired; undefined otherwise. */
export function readGrant(jwt: string, now = Date.now()): Grant | undefined {
  const parts = jwt.split('.');
  if (parts.length !== 3) return undefined;
  const [h, p, s] = parts as [string, string, string];
  const head = parseJson(h);
  const body = parseJson(p);
  if (head?.['alg'] !== 'EdDSA' || body === undefined) return undefined;
  const { iss, sub, dom, exp } = body;
  if (typeof iss !== 'string' || typeof sub !== 'string') return undefined;
  // Issued by an operator or a domain key; a router's node key signs no grants.
  const issuer = publicKeyKind(iss);
  if (issuer !== 'operator' && issuer !== 'domain') return undefined;
  const domains = typeof dom === 'string' ? [dom] : Array.isArray(dom) && dom.every((d) => typeof d === 'string') ? dom : undefined;
  if (domains === undefined || domains.length === 0 || !domains.every((d) => d === '*' || isValidDomain(d))) return undefined;
  if (exp !== undefined && (typeof exp !== 'number' || exp * 1000 <= now)) return undefined;
  if (!verifySignature(iss, `${h}.${p}`, Buffer.from(s, 'base64url'))) return undefined;
  return { iss, sub, dom: domains, peer: body['peer'] === true, signer: body['signer'] === true, exp: typeof exp === 'number' ? exp * 1000 : undefined };
}

/**
 * What the grants among `jwts` grant `subject`, through chains anchored at `anchors`; undefined
 * when no chain holds. Grants that do not verify are ignored.
 */
export function verifyGrants(jwts: readonly string[], subject: string, allAnchors: readonly TrustAnchor[], now = Date.now()): Granted | undefined {
  // Only operator and domain keys sign grants: a router's node key is trusted for itself alone.
  const anchors = allAnchors.filter((a) => publicKeyKind(a.key) !== 'node');
  const grants = jwts.map((j) => readGrant(j, now)).filter((g): g is Grant => g !== undefined);
  const bySub = new Map<string, Grant[]>();
  for (const g of grants) bySub.set(g.sub, [...(bySub.get(g.sub) ?? []), g]);
  // The scope a key may sign within, and when that ends: as an anchor, or through a signer grant.
  const authority = (key: string, depth: number): { domains: string[]; exp: number | undefined } | undefined => {
    const own = anchors.filter((a) => a.key === key).flatMap((a) => a.domains);
    if (own.length > 0) return { domains: own, exp: undefined };
    if (depth >= MAX_DEPTH) return undefined;
    let best: { domains: string[]; exp: number | undefined } | undefined;
    for (const g of bySub.get(key) ?? []) {
      if (!g.signer) continue;
      const up = authority(g.iss, depth + 1);
      if (up === undefined) continue;
      const domains = intersect(g.dom, up.domains);
      if (domains.length === 0) continue;
      best = { domains: [...(best?.domains ?? []), ...domains], exp: minExp(minExp(g.exp, up.exp), best?.exp) };
    }
    return best;
  };
  let domains: string[] = [];
  let peer = false;
  let expiresAt: number | undefined;
  let any = false;
  for (const g of bySub.get(subject) ?? []) {
    if (g.signer) continue;
    const up = authority(g.iss, 1);
    if (up === undefined) continue;
    const d = intersect(g.dom, up.domains);
    if (d.length === 0) continue;
    any = true;
    domains = [...domains, ...d];
    if (g.peer) peer = true;
    expiresAt = minExp(expiresAt, minExp(g.exp, up.exp));
  }
  return any ? { domains: [...new Set(domains)], peer, expiresAt } : undefined;
}

/** Reads `KEY` or `KEY=DOMAIN,DOMAIN` (`--trust`). A node key must name its domains; other keys default to `*`. */
export function parseTrustAnchor(text: string): TrustAnchor {
  const eq = text.indexOf('=');
  const key = (eq < 0 ? text : text.slice(0, eq)).trim();
  const kind = publicKeyKind(key);
  if (kind === undefined) throw new ConfigError(`--trust ${text}: "${key}" is not a public key (N… for a router, O… or A… for a key that signs grants); check for a typo`);
  const list = eq < 0 ? [] : text.slice(eq + 1).split(',').map((d) => d.trim().toLowerCase()).filter((d) => d !== '');
  if (kind === 'node' && list.length === 0) throw new ConfigError(`--trust ${key}: name the domains this router may speak for, as ${key}=DOMAIN[,DOMAIN]`);
  for (const d of list) if (d !== '*' && !isValidDomain(d)) throw new ConfigError(`--trust ${text}: invalid domain "${d}"`);
  return { key, domains: list.length === 0 ? ['*'] : list };
}

/** The operator's trust as core needs it: peers' node keys, and route proofs checked against the anchors. */
export function createTrustPolicy(anchors: readonly TrustAnchor[]): TrustPolicy {
  const cache = new Map<string, { ok: boolean; until: number }>();
  return {
    trusted(node) {
      // A router's own key only: an operator or domain key signs grants, it is no router.
      if (publicKeyKind(node) !== 'node') return undefined;
      const domains = anchors.filter((a) => a.key === node).flatMap((a) => a.domains);
      return domains.length === 0 ? undefined : domains;
    },
    grants(token, node) {
      const jwts = token.split(',').map((t) => t.trim()).filter(isGrant);
      return jwts.length === 0 ? undefined : verifyGrants(jwts, node, anchors);
    },
    verifyOrigin(proof, origin, domain) {
      const key = `${origin} ${domain} ${proof}`;
      const now = Date.now();
      const hit = cache.get(key);
      if (hit !== undefined && hit.until > now) return hit.ok;
      const g = verifyGrants(proof.split(','), origin, anchors, now);
      const ok = g !== undefined && g.domains.some((d) => domainCovers(d, domain));
      if (cache.size > 10_000) cache.clear();
      cache.set(key, { ok, until: Math.min(g?.expiresAt ?? Infinity, now + 60_000) });
      return ok;
    },
  };
}

/** Domains both sets cover: the narrower pattern of each pair that overlaps. */
function intersect(a: readonly string[], b: readonly string[]): string[] {
  const out: string[] = [];
  for (const x of a) {
    for (const y of b) {
      if (domainCovers(y, x)) out.push(x);
      else if (domainCovers(x, y)) out.push(y);
    }
  }
  return [...new Set(out)];
}

function minExp(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined ? b : b === undefined ? a : Math.min(a, b);
}

function b64(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64url');
}

function parseJson(part: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
