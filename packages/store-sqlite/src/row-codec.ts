import type { NewMessage, StoredMessage } from '@postern/core';
import { PosternError } from '@postern/protocol';

/**
 * A stored message as one BLOB: binding one value per row instead of ten is most of the cost
 * of an insert.
 *
 *   f64 storedAt, f64 expiresAt, u8 flags, u8 hops,
 *   u16 byte length of each of queue, from, id, to; then those four in UTF-8, back to back;
 *   then the body (the rest)
 */
export function encodeRow(m: NewMessage): Buffer {
  // Addresses and most ids are ASCII: then one native call writes all four strings.
  const joined = m.queue + m.from + m.id + m.to;
  const ascii = Buffer.byteLength(joined, 'utf8') === joined.length;
  const q = ascii ? m.queue.length : Buffer.byteLength(m.queue);
  const f = ascii ? m.from.length : Buffer.byteLength(m.from);
  const i = ascii ? m.id.length : Buffer.byteLength(m.id);
  const t = ascii ? m.to.length : Buffer.byteLength(m.to);
  const b = Buffer.allocUnsafe(26 + q + f + i + t + m.body.length);
  b.writeDoubleBE(m.storedAt, 0);
  b.writeDoubleBE(m.expiresAt, 8);
  b[16] = m.flags;
  b[17] = m.hops;
  let at = 18;
  b.writeUInt16BE(q, at);
  if (ascii) {
    // Lengths first, then the strings back to back behind them.
    b.writeUInt16BE(f, at + 2);
    b.writeUInt16BE(i, at + 4);
    b.writeUInt16BE(t, at + 6);
    b.write(joined, at + 8, 'latin1');
    at += 8 + joined.length;
  } else {
    b.writeUInt16BE(f, at + 2);
    b.writeUInt16BE(i, at + 4);
    b.writeUInt16BE(t, at + 6);
    at += 8;
    for (const [s, n] of [
      [m.queue, q],
      [m.from, f],
      [m.id, i],
      [m.to, t],
    ] as const) {
      b.write(s, at, n, 'utf8');
      at += n;
    }
  }
  b.set(m.body, at);
  return b;
}

export function decodeRow(seq: number, b: Buffer): StoredMessage {
  if (b.length < 26) throw corrupt(seq);
  const lengths = [b.readUInt16BE(18), b.readUInt16BE(20), b.readUInt16BE(22), b.readUInt16BE(24)];
  let at = 26;
  const [queue, from, id, to] = lengths.map((n) => {
    if (at + n > b.length) throw corrupt(seq);
    const s = b.toString('utf8', at, at + n);
    at += n;
    return s;
  }) as [string, string, string, string];
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
