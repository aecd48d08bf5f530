/** What a verified credential grants. */
export interface Claims {
  /** Domain the credential belongs to; `*` for a trusted router that may announce any domain. */
  domain: string;
  /** The one name an agent may claim; absent on domain-wide credentials. */
  name?: string;
  /** Epoch ms when the credential expires; the router closes links that still use it then. */
  expiresAt?: number;
}

/** Verifies credentials (signed tokens). Rejects with a PosternError coded ERR_AUTH_FAILED. */
export interface Authenticator {
  verify(token: string): Promise<Claims>;
}

/**
 * Issues and checks the private resume tokens handed out in WELCOME. A token must be
 * unforgeable, and must name the session id it was issued for.
 */
export interface SessionTokens {
  issue(id: string): string;
  /** The id a token was issued for, or undefined when it is not one of ours. */
  verify(token: string): string | undefined;
}

/** True when `claims` allow announcing `domain`: the domain itself or one below it. */
export function claimsCoverDomain(claims: Claims, domain: string): boolean {
  return claims.domain === '*' || domain === claims.domain || domain.endsWith(`.${claims.domain}`);
}
