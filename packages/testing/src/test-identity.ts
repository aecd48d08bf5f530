import { createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import type { NodeIdentity } from '@postern/core';

/**
 * A node key for core tests, without the router package's key format: the node id is `T` and
 * the raw public key in base64url. Signatures are real Ed25519.
 */
export function testIdentity(proof = ''): NodeIdentity {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const x = publicKey.export({ format: 'jwk' }).x!;
  return {
    node: `T${x}`,
    proof,
    sign: (data) => sign(null, Buffer.from(data, 'utf8'), privateKey).toString('base64url'),
    verify: (node, data, signature) => {
      try {
        if (!node.startsWith('T')) return false;
        const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: node.slice(1) }, format: 'jwk' });
        return verify(null, Buffer.from(data, 'utf8'), key, Buffer.from(signature, 'base64url'));
      } catch {
        return false;
      }
    },
  };
}
