import { createHash } from 'node:crypto';
import type { Authenticator, Claims } from '@postern/core';
import { ConfigError, PosternError, isValidDomain, isValidName } from '@postern/protocol';
import { SignJWT, jwtVerify, errors as joseErrors } from 'jose';

const ISSUER = 'postern';
const ALG = 'HS256';

export interface TokenRequest {
  /** Domain the token belongs to; `*` for a trusted router that may announce any domain. */
  domain: string;
  /** The one name an agent may claim; omit for a domain-wide (gateway) token. */
  name?: string;
  /** Lifetime in seconds; omit for a token that does not expire. */
  ttlSeconds?: number;
}

function keyOf(secret: string): Uint8Array {
  if (secret.length === 0) throw new ConfigError('the secret must not be empty');
  // HS256 wants a 256-bit key; hashing also lets any passphrase length work.
  return new Uint8Array(createHash('sha256').update(`postern-token:${secret}`).digest());
}

/** Signs a credential (JWT, HS256) with the router's secret. */
export async function issueToken(secret: string, req: TokenRequest): Promise<string> {
  const domain = req.domain.toLowerCase();
  if (domain !== '*' && !isValidDomain(domain)) throw new ConfigError(`invalid domain "${req.domain}"`);
  const claims: Record<string, string> = { dom: domain };
  if (req.name !== undefined) {
    const name = req.name.toLowerCase();
    if (!isValidName(name)) throw new ConfigError(`invalid name "${req.name}"`);
    claims.name = name;
  }
  let jwt = new SignJWT(claims).setProtectedHeader({ alg: ALG, typ: 'JWT' }).setIssuer(ISSUER).setIssuedAt();
  if (req.ttlSeconds !== undefined) {
    if (!(req.ttlSeconds > 0)) throw new ConfigError('ttl must be positive');
    jwt = jwt.setExpirationTime(Math.floor(Date.now() / 1000) + Math.floor(req.ttlSeconds));
  }
  return jwt.sign(keyOf(secret));
}

/** Checks signature, issuer and expiry of every credential presented in HELLO. */
export function createTokenAuthenticator(secret: string): Authenticator {
  const key = keyOf(secret);
  return {
    async verify(token: string): Promise<Claims> {
      try {
        const { payload } = await jwtVerify(token, key, { issuer: ISSUER, algorithms: [ALG] });
        const dom = payload.dom;
        if (typeof dom !== 'string' || (dom !== '*' && !isValidDomain(dom))) throw new Error('no valid dom claim');
        const name = payload.name;
        if (name !== undefined && (typeof name !== 'string' || !isValidName(name))) throw new Error('invalid name claim');
        const claims: Claims = { domain: dom };
        if (name !== undefined) claims.name = name;
        if (typeof payload.exp === 'number') claims.expiresAt = payload.exp * 1000;
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
