import { createHmac, randomBytes } from 'node:crypto';
import type { SessionTokens } from '@postern/core';

/** HMAC resume tokens for tests of the core (the router package has the production ones). */
export function testSessionTokens(key: Uint8Array = randomBytes(32)): SessionTokens {
  const mac = (id: string, holder: string): string => createHmac('sha256', key).update(`${id}\n${holder}`).digest('base64url').slice(0, 22);
  return {
    issue: (id, holder) => `${id}.${mac(id, holder)}`,
    verify(token, holder) {
      const [id, m] = token.split('.');
      return id !== undefined && m !== undefined && mac(id, holder) === m ? id : undefined;
    },
  };
}
