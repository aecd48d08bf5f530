import type { NewMessage, StoredMessage } from '@postern/core';
import { PosternError } from '@postern/protocol';

/** What a row's BLOB holds: everything but `seq` and `via` (a column: it changes). */
export type RowMessage = Omit<NewMessage, 'via'>;

/**
 * A stored message as one BLOB: binding one value per row instead of ten is most of the cost
 * of an insert.
 *
 *   f64 storedAt, f64 expiresAt, u8 flags, u8 hops,
 *   u16 byte length of each of queue, from, id, to, cameFrom; then those five in UTF-8, back to
 *   back; then the body (the rest)
 *
 * Schema 2 rows had no cameFrom (four lengths, a 26-byte header): `decodeRowV2` reads them for
 * the migration.
 */
export function encodeRow(m: RowMessage): Buffer {
  // Addresses and most ids are ASCII: then one native call writes all five strings.
  const joined = m.queue + m.from + m.id + m.to + m.cameFrom;
  const ascii = Buffer.byteLength(joined, 'utf8') === joined.length;
  const fields = [m.queue, m.from, m.id, m.to, m.cameFrom];
  const lengths = fields.map((f) => (ascii ? f.length : Buffer.byteLength(f)));
  const total = lengths.reduce((a, b) => a + b, 0);
  const b = Buffer.allocUnsafe(HEADER + total + m.body.length);
  b.writeDoubleBE(m.storedAt, 0);
  b.writeDoubleBE(m.expiresAt, 8);
  b[16] = m.flags;
  b[17] = m.hops;
  for (let i = 0; i < 5; i++) b.writeUInt16BE(lengths[i]!, 18 + 2 * i);
  let at = HEADER;
  if (ascii) {
    b.write(joined, at, 'latin1');
    at += joined.length;
  } else {
    for (let i = 0; i < 5; i++) {
      b.write(fields[i]!, at, lengths[i]!, 'utf8');
      at += lengths[i]!;
    }
  }
  b.set(m.body, at);
  return b;
}

const HEADER = 28;

export function decodeRow(seq: number, b: Buffer, via: string): StoredMessage {
  return decodeWith(seq, b, via, 5);
}

/** A schema 2 row (no cameFrom). */
export function decodeRowV2(seq: number, b: Buffer): StoredMessage {
  return decodeWith(seq, b, '', 4);
}

function decodeWith(seq: number, b: Buffer, via: string, nStrings: 4 | 5): StoredMessage {
  const header = 18 + 2 * nStrings;
  if (b.length < header) throw corrupt(seq);
  const lengths: number[] = [];
  for (let i = 0; i < nStrings; i++) lengths.push(b.readUInt16BE(18 + 2 * i));
  let at = header;
  const strings = lengths.map((n) => {
    if (at + n > b.length) throw corrupt(seq);
    const s = b.toString('utf8', at, at + n);
    at += n;
    return s;
  });
  const [queue, from, id, to, cameFrom = ''] = strings as [string, string, string, string, string?];
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
    cameFrom,
    via,
  };
}

function corrupt(seq: number): PosternError {
  return new PosternError('ERR_INTERNAL', `the store row ${seq} is corrupt`);
}
