import type { NewMessage, StoredMessage } from '@postern/core';
import { PosternError } from '@postern/protocol';

/**
 * A stored message as one BLOB: binding one value per row instead of ten is most of the cost
 * of an insert.
 *
 *   f64 storedAt, f64 expiresAt, u8 flags, u8 hops,
 *   u16 length + UTF-8 for each of queue, from, id, to; then the body (the rest)
 */
export function encodeRow(m: NewMessage): Buffer {
  const q = Buffer.byteLength(m.queue);
  const f = Buffer.byteLength(m.from);
  const i = Buffer.byteLength(m.id);
  const t = Buffer.byteLength(m.to);
  const b = Buffer.allocUnsafe(18 + 8 + q + f + i + t + m.body.length);
  b.writeDoubleBE(m.storedAt, 0);
  b.writeDoubleBE(m.expiresAt, 8);
  b[16] = m.flags;
  b[17] = m.hops;
  let at = 18;
  for (const [s, n] of [
    [m.queue, q],
    [m.from, f],
    [m.id, i],
    [m.to, t],
  ] as const) {
    b.writeUInt16BE(n, at);
    b.write(s, at + 2, n, 'utf8');
    at += 2 + n;
  }
  b.set(m.body, at);
  return b;
}

export function decodeRow(seq: number, b: Buffer): StoredMessage {
  if (b.length < 26) throw corrupt(seq);
  let at = 18;
  const str = (): string => {
    if (at + 2 > b.length) throw corrupt(seq);
    const n = b.readUInt16BE(at);
    if (at + 2 + n > b.length) throw corrupt(seq);
    const s = b.toString('utf8', at + 2, at + 2 + n);
    at += 2 + n;
    return s;
  };
  const queue = str();
  const from = str();
  const id = str();
  const to = str();
  return {
    seq,
    queue,
    from,
    id,
    to,
    flags: b[16]!,
    hops: b[17]!,
    body: new Uint8Array(b.buffer, b.byteOffset + at, b.length - at),
    storedAt: b.readDoubleBE(0),
    expiresAt: b.readDoubleBE(8),
  };
}

function corrupt(seq: number): PosternError {
  return new PosternError('ERR_INTERNAL', `the store row ${seq} is corrupt`);
}
