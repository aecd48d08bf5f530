import { createCipheriv, createDecipheriv, createHmac } from 'node:crypto';
import type { Anonymizer, NodeIdentity, Store } from '@postern/core';
import { ConfigError } from '@postern/protocol';
import { createKeyPair, keyPairFromSeed, publicKeyKind, verifySignature, type KeyPair } from './keys.js';

/** Where the node key lives in the router's store. */
const NODE_KEY = 'node-key';

/**
 * The router's node key: `seed` when given (`--node-key FILE`), else the one kept in its store,
 * made at the first start. So the node id (its public key) survives restarts wherever the
 * store does.
 */
export async function loadNodeKey(store: Store, seed?: string): Promise<KeyPair> {
  if (seed !== undefined) {
    const kp = keyPairFromSeed(seed);
    if (kp.kind !== 'node') throw new ConfigError(`the node key must be a node seed (SN…), not a ${kp.kind} seed`);
    return kp;
  }
  const kept = await store.getValue(NODE_KEY);
  if (kept !== undefined) return keyPairFromSeed(new TextDecoder().decode(kept));
  const kp = createKeyPair('node');
  await store.setValue(NODE_KEY, new TextEncoder().encode(kp.seed));
  return kp;
}

/** The router's identity for core: its node id and signatures with its key. */
export function nodeIdentity(kp: KeyPair, proof = ''): NodeIdentity {
  return {
    node: kp.publicKey,
    proof,
    sign: (data) => Buffer.from(kp.sign(data)).toString('base64url'),
    verify: (node, data, signature) => {
      // Node ids are router keys (N…): an operator or domain key is no router.
      if (publicKeyKind(node) !== 'node') return false;
      try {
        return verifySignature(node, data, Buffer.from(signature, 'base64url'));
      } catch {
        return false;
      }
    },
  };
}

const B32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** Ids longer than this (in bytes) are hashed, not sealed: sealed they would not fit 255 bytes. */
const MAX_SEALED_ID = 150;

/**
 * Anonymity's keyed functions, with keys derived from the node key: handles and sealed ids
 * stay valid across restarts, and only this router can read them.
 */
export function createAnonymizer(kp: KeyPair): Anonymizer {
  const derive = (label: string): Buffer => createHmac('sha256', kp.seed).update(`postern-anonymity:${label}`).digest();
  const tokenKey = derive('handle');
  const sivKey = derive('id-iv');
  const encKey = derive('id-key');
  return {
    token(input) {
      const mac = createHmac('sha256', tokenKey).update(input).digest();
      let out = '';
      let bits = 0;
      let value = 0;
      for (let i = 0; out.length < 26; i++) {
        value = ((value << 8) | mac[i]!) & 0xffff;
        bits += 8;
        while (bits >= 5 && out.length < 26) {
          out += B32[(value >>> (bits - 5)) & 31];
          bits -= 5;
        }
      }
      return out;
    },
    sealId(id) {
      const plain = Buffer.from(id, 'utf8');
      if (plain.length > MAX_SEALED_ID) return `h${createHmac('sha256', sivKey).update(plain).digest('base64url')}`;
      // Deterministic (a retry gets the same id): the IV is a MAC of the id itself (SIV).
      const iv = createHmac('sha256', sivKey).update(plain).digest().subarray(0, 12);
      const c = createCipheriv('aes-256-gcm', encKey, iv);
      const ct = Buffer.concat([c.update(plain), c.final()]);
      return `a${Buffer.concat([iv, ct, c.getAuthTag()]).toString('base64url')}`;
    },
    openId(sealed) {
      if (!sealed.startsWith('a')) return undefined;
      try {
        const b = Buffer.from(sealed.slice(1), 'base64url');
        if (b.length < 28) return undefined;
        const d = createDecipheriv('aes-256-gcm', encKey, b.subarray(0, 12));
        d.setAuthTag(b.subarray(b.length - 16));
        return Buffer.concat([d.update(b.subarray(12, b.length - 16)), d.final()]).toString('utf8');
      } catch {
        return undefined;
      }
    },
  };
}

/** The node id of the router whose data directory is `dir` (stopped: the store is locked while it runs); undefined before its first start. */
export async function nodeIdOfDataDir(dir: string): Promise<string | undefined> {
  const sqlite = await import('@postern/store-sqlite');
  const path = await import('node:path');
  const fs = await import('node:fs');
  const file = path.join(dir, 'router.db');
  // Looking must not create: a typo would leave an empty store behind.
  if (!fs.existsSync(file)) return undefined;
  const store = new sqlite.SqliteStore(file);
  try {
    const seed = await store.getValue(NODE_KEY);
    return seed === undefined ? undefined : keyPairFromSeed(new TextDecoder().decode(seed)).publicKey;
  } finally {
    await store.close();
  }
}
