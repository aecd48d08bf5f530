import { createHmac, randomBytes } from 'node:crypto';
import type { SessionTokens } from '@postern/core';

/** HMAC resume tokens for tests of the core (the router package has the production ones). */
export function testSessionTokens(key: Uint8Array = randomBytes(32)): SessionTokens {
  const mac = (id: string): string => createHmac('sha256', key).update(id).digest('base64url').slice(0, 22);
  return {
    issue: (id) => `${id}.${mac(id)}`,
    verify(token) {
      const [id, m] = token.split('.');
      return id !== undefined && m !== undefined && mac(id) === m ? id : undefined;
    },
  };
}
