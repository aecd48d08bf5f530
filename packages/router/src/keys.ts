import { createPrivateKey, createPublicKey, randomBytes, sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto';
import { ConfigError } from '@postern/protocol';

/**
 * Ed25519 keys in the text form of NATS nkeys, so that operators of both can read them: a
 * public key is a prefix letter and 55 more base32 characters (the prefix byte, the 32-byte
 * key and a CRC-16 checksum that catches a mistyped key); a seed (the private key) starts
 * with `S` and the letter of its kind.
 *
 *   N… a router's node key (its node id)
 *   O… an operator key: signs grants for whole sets of domains (a trust anchor)
 *   A… a domain key: held by a domain's owner, signs grants for the routers of its domain
 */
export type KeyKind = 'node' | 'operator' | 'domain';

const PREFIX: Record<KeyKind, number> = { node: 13 << 3, operator: 14 << 3, domain: 0 };
const SEED = 18 << 3;
const KIND_OF = new Map<number, KeyKind>(Object.entries(PREFIX).map(([k, v]) => [v, k as KeyKind]));

export interface KeyPair {
  readonly kind: KeyKind;
  /** The public key, e.g. `NABC…` (56 characters). */
  readonly publicKey: string;
  /** The seed, `SN…`/`SO…`/`SA…` (58 characters): keep it secret. */
  readonly seed: string;
  sign(data: Uint8Array | string): Uint8Array;
}

/** A fresh key pair of `kind`. */
export function createKeyPair(kind: KeyKind): KeyPair {
  return fromRawSeed(kind, new Uint8Array(randomBytes(32)));
}

/** The key pair of a seed as `createKeyPair` writes it. Throws ConfigError for anything else. */
export function keyPairFromSeed(seed: string): KeyPair {
  const raw = decode(seed.trim(), 'seed');
  if (raw.length !== 34 || (raw[0]! & 0xf8) !== SEED) throw new ConfigError('not a Postern (nkey) seed: it must start with S and hold 32 bytes');
  const kind = KIND_OF.get(((raw[0]! & 7) << 5) | ((raw[1]! & 0xf8) >> 3));
  if (kind === undefined) throw new ConfigError('the seed is of a kind Postern does not use (node N, operator O or domain A)');
  return fromRawSeed(kind, raw.subarray(2));
}

/** The kind of a public key, or undefined when `key` is not a valid one (bad checksum, length, prefix). */
export function publicKeyKind(key: string): KeyKind | undefined {
  try {
    const raw = decode(key, 'public key');
    return raw.length === 33 ? KIND_OF.get(raw[0]!) : undefined;
  } catch {
    return undefined;
  }
}

/** True when `signature` is the signature of `data` by the public key `key`; false for anything malformed. */
export function verifySignature(key: string, data: Uint8Array | string, signature: Uint8Array): boolean {
  const k = publicKeyObject(key);
  if (k === undefined || signature.length !== 64) return false;
  try {
    return edVerify(null, typeof data === 'string' ? Buffer.from(data, 'utf8') : data, k, signature);
  } catch {
    return false;
  }
}

const keyCache = new Map<string, KeyObject | null>();

function publicKeyObject(key: string): KeyObject | undefined {
  let k = keyCache.get(key);
  if (k === undefined) {
    k = null;
    try {
      const raw = decode(key, 'public key');
      if (raw.length === 33 && KIND_OF.has(raw[0]!)) {
        k = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(raw.subarray(1)).toString('base64url') }, format: 'jwk' });
      }
    } catch {
      k = null;
    }
    if (keyCache.size > 10_000) keyCache.clear();
    keyCache.set(key, k);
  }
  return k ?? undefined;
}

function fromRawSeed(kind: KeyKind, seed: Uint8Array): KeyPair {
  // The seed wrapped as PKCS#8 (RFC 8410); Node derives the public half from it.
  const priv = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, seed]), format: 'der', type: 'pkcs8' });
  const x = Buffer.from(createPublicKey(priv).export({ format: 'jwk' }).x!, 'base64url');
  const p = PREFIX[kind];
  const publicKey = encode(Uint8Array.of(p, ...x));
  const seedText = encode(Uint8Array.of(SEED | (p >> 5), (p & 31) << 3, ...seed));
  return {
    kind,
    publicKey,
    seed: seedText,
    sign: (data) => new Uint8Array(edSign(null, typeof data === 'string' ? Buffer.from(data, 'utf8') : data, priv)),
  };
}

/** The DER prefix of an Ed25519 private key in PKCS#8, before its 32-byte seed. */
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** Payload + CRC-16 (XMODEM, little end first), base32 without padding. */
function encode(payload: Uint8Array): string {
  const crc = crc16(payload);
  const all = Uint8Array.of(...payload, crc & 0xff, crc >> 8);
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of all) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  return out;
}

function decode(text: string, what: string): Uint8Array {
  const bytes: number[] = [];
  let bits = 0;
  let value = 0;
  for (const c of text) {
    const v = B32.indexOf(c);
    if (v < 0) throw new ConfigError(`not a valid ${what}: "${c}" is not a base32 character`);
    value = ((value << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bytes.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  if (bytes.length < 3) throw new ConfigError(`not a valid ${what}: too short`);
  const payload = Uint8Array.from(bytes.slice(0, -2));
  const crc = bytes[bytes.length - 2]! | (bytes[bytes.length - 1]! << 8);
  if (crc16(payload) !== crc) throw new ConfigError(`not a valid ${what}: its checksum does not match (mistyped?)`);
  return payload;
}

function crc16(data: Uint8Array): number {
  let crc = 0;
  for (const b of data) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}
