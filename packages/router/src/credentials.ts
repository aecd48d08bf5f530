import { createHash } from 'node:crypto';
import type { Authenticator, Claims } from '@postern/core';
import { ConfigError, PosternError, isValidDomain, isValidName } from '@postern/protocol';
import { SignJWT, decodeProtectedHeader, jwtVerify, errors as joseErrors } from 'jose';
import { isGrant } from './grants.js';

const ISSUER = 'postern';
const ALG = 'HS256';

export interface TokenRequest {
  /** Domain the token belongs to; `*` for a trusted router that may announce any domain. */
  domain: string;
  /** The one name an agent may claim; omit for a domain-wide (gateway) token. */
  name?: string;
  /** The holding router may link as a peer (`postern relay --peer`) of the router with this secret. */
  peer?: boolean;
  /** The holding router is a hub of `domain` (`postern hub`): it links to the router with this secret, a bridgehead of that domain. */
  hub?: boolean;
  /** Lifetime in seconds; omit for a token that does not expire. */
  ttlSeconds?: number;
}

function keyOf(secret: string): Uint8Array {
  if (secret.length === 0) throw new ConfigError('the secret must not be empty');
  // HS256 wants a 256-bit key; hashing also lets any passphrase length work.
  return new Uint8Array(createHash('sha256').update(`postern-token:${secret}`).digest());
}

/**
 * The key id of a secret, written in the tokens it signs (`kid`): a router holding several
 * secrets (a rotation) picks the right one, and says which one a token needs when it has none.
 * Derived one-way: it names the secret without revealing it.
 */
export function secretKeyId(secret: string): string {
  return createHash('sha256').update(`postern-kid:${secret}`).digest('base64url').slice(0, 8);
}

/** The id of a token in revocation lists: its SHA-256, hex. */
export function tokenId(token: string): string {
  return createHash('sha256').update(token.trim()).digest('hex');
}

/** Signs a credential (JWT, HS256) with the router's secret. */
export async function issueToken(secret: string, req: TokenRequest): Promise<string> {
  const domain = req.domain.toLowerCase();
  if (domain !== '*' && !isValidDomain(domain)) throw new ConfigError(`invalid domain "${req.domain}"`);
  const claims: Record<string, string | boolean> = { dom: domain };
  if (req.peer === true) {
    if (req.name !== undefined) throw new ConfigError('a peer token is for a router: it names no agent');
    claims.peer = true;
  }
  if (req.hub === true) {
    if (req.name !== undefined || req.peer === true || domain === '*') throw new ConfigError('a hub token is for a router of one domain: no --name, no --peer, no "*"');
    claims.hub = true;
  }
  if (req.name !== undefined) {
    const name = req.name.toLowerCase();
    if (!isValidName(name)) throw new ConfigError(`invalid name "${req.name}"`);
    claims.name = name;
  }
  let jwt = new SignJWT(claims).setProtectedHeader({ alg: ALG, typ: 'JWT', kid: secretKeyId(secret) }).setIssuer(ISSUER).setIssuedAt();
  if (req.ttlSeconds !== undefined) {
    if (!(req.ttlSeconds > 0)) throw new ConfigError('ttl must be positive');
    jwt = jwt.setExpirationTime(Math.floor(Date.now() / 1000) + Math.floor(req.ttlSeconds));
  }
  return jwt.sign(keyOf(secret));
}

export interface TokenAuthenticatorOptions {
  /** Secrets being rotated out: tokens they signed are still accepted until they are removed. */
  previous?: readonly string[];
  /** Token ids (tokenId) refused although validly signed; read at each check, so it may change. */
  revoked?: () => ReadonlySet<string>;
}

/**
 * Checks signature, issuer, expiry and revocation of the token signed with one of this router's
 * secrets among the comma-separated credentials of a HELLO; grants (EdDSA) among them are the
 * TrustPolicy's.
 */
export function createTokenAuthenticator(secret: string, o: TokenAuthenticatorOptions = {}): Authenticator {
  const keys = new Map<string, Uint8Array>();
  for (const s of [secret, ...(o.previous ?? [])]) keys.set(secretKeyId(s), keyOf(s));
  return {
    async verify(credentials: string): Promise<Claims | undefined> {
      const tokens = credentials.split(',').map((t) => t.trim()).filter((t) => t !== '' && !isGrant(t));
      if (tokens.length === 0) return undefined;
      if (tokens.length > 1) throw new PosternError('ERR_AUTH_FAILED', 'more than one token signed with a secret: give one');
      const token = tokens[0]!;
      if (o.revoked?.().has(tokenId(token)) === true) throw new PosternError('ERR_AUTH_FAILED', 'the token was revoked');
      let kid: string | undefined;
      try {
        const h = decodeProtectedHeader(token);
        kid = typeof h.kid === 'string' ? h.kid : undefined;
      } catch (cause) {
        throw new PosternError('ERR_AUTH_FAILED', 'the token is malformed or invalid', { cause });
      }
      // A token names its secret; one from before key ids is tried against each.
      const candidates = kid === undefined ? [...keys.values()] : [keys.get(kid)].filter((k) => k !== undefined);
      if (candidates.length === 0) throw new PosternError('ERR_AUTH_FAILED', `the token was signed with a secret this router does not hold (key id ${kid})`);
      try {
        const payload = await verifyWithAny(token, candidates);
        const dom = payload.dom;
        if (typeof dom !== 'string' || (dom !== '*' && !isValidDomain(dom))) throw new Error('no valid dom claim');
        const name = payload.name;
        if (name !== undefined && (typeof name !== 'string' || !isValidName(name))) throw new Error('invalid name claim');
        const claims: Claims = { domain: dom };
        if (name !== undefined) claims.name = name;
        if (payload.peer === true) claims.peer = true;
        if (payload.hub === true) claims.hub = true;
        if (typeof payload.exp === 'number') claims.expiresAt = payload.exp * 1000;
        claims.tokenId = tokenId(token);
        return claims;
      } catch (cause) {
        const why =
          cause instanceof joseErrors.JWTExpired
            ? 'the token has expired'
            : cause instanceof joseErrors.JWSSignatureVerificationFailed
              ? 'the token was not signed with this router\'s secret'
              : 'the token is malformed or invalid';
        throw new PosternError('ERR_AUTH_FAILED', why, { cause });
      }
    },
  };
}

async function verifyWithAny(token: string, keys: readonly Uint8Array[]): Promise<Record<string, unknown>> {
  let last: unknown;
  for (const key of keys) {
    try {
      return (await jwtVerify(token, key, { issuer: ISSUER, algorithms: [ALG] })).payload;
    } catch (err) {
      last = err;
      if (!(err instanceof joseErrors.JWSSignatureVerificationFailed)) throw err;
    }
  }
  throw last;
}
