import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { SessionTokens } from '@postern/core';
import { isValidId } from '@postern/protocol';

/**
 * Resume tokens of the form `<id>.<mac>`: the MAC (HMAC-SHA256 under the router's key,
 * truncated to 128 bits) makes them unforgeable without server-side state, so a router that
 * restarts with the same key and store still recognises its sessions.
 *
 * The MAC also covers the store's epoch (made when the store was created), so a router whose
 * store was lost or replaced takes no old token as a recovery: the agent gets a new session and
 * its client can tell that what the router held for it may be lost. And it covers the holder
 * (the credential that made the session), so a stolen token cannot take a named agent's place.
 */
export function createHmacSessionTokens(key: Uint8Array = randomBytes(32), scope = '', epoch = ''): SessionTokens {
  // The scope (the router's domain) keeps a token of one router from resuming on another that
  // shares the secret.
  const mac = (id: string, holder: string): Buffer => createHmac('sha256', key).update(`resume:${scope}:${epoch}:${id}:${holder}`).digest().subarray(0, 16);
  return {
    issue: (id, holder) => `${id}.${mac(id, holder).toString('base64url')}`,
    verify(token, holder) {
      const dot = token.indexOf('.');
      if (dot < 0) return undefined;
      const id = token.slice(0, dot);
      if (!isValidId(id)) return undefined;
      const given = Buffer.from(token.slice(dot + 1), 'base64url');
      const want = mac(id, holder);
      return given.length === want.length && timingSafeEqual(given, want) ? id : undefined;
    },
  };
}

/** A resume key derived from the router's secret, so that restarts keep sessions resumable. */
export function resumeKeyFromSecret(secret: string): Uint8Array {
  return new Uint8Array(createHmac('sha256', 'postern-resume-key').update(secret).digest());
}
