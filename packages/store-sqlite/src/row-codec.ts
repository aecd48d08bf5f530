import type { NewMessage, StoredMessage } from '@postern/core';
import { PosternError } from '@postern/protocol';

/** What a row's BLOB holds: everything but `seq` and `via` (kept beside it: it changes). */
export type RowMessage = Omit<NewMessage, 'via'>;

/**
 * A stored message as one BLOB (a message row of schema 3, and the data of a log entry in
 * schema 4):
 *
 *   f64 storedAt, f64 expiresAt, u8 flags, u8 hops,
 *   u16 byte length of each of queue, from, id, to, cameFrom; then those five in UTF-8, back to
 *   back; then the body (the rest)
 *
 * Schema 2 rows had no cameFrom (four lengths, a 26-byte header): `decodeRowV2` reads them for
 * the migration.
 */
export function encodeRow(m: RowMessage): Buffer {
  const b = Buffer.allocUnsafe(rowBound(m));
  return b.subarray(0, writeRow(m, b, 0));
}

const HEADER = 28;

/** The most bytes `writeRow(m)` writes (UTF-8 takes at most 3 bytes per UTF-16 unit). */
export function rowBound(m: RowMessage): number {
  return HEADER + 3 * (m.queue.length + m.from.length + m.id.length + m.to.length + m.cameFrom.length) + m.body.length;
}

/** Writes the row of `m` into `b` at `at` (room for `rowBound(m)` bytes); returns where it ends. */
export function writeRow(m: RowMessage, b: Buffer, at: number): number {
  // Addresses and most ids are ASCII: then one native call writes all five strings.
  const joined = m.queue + m.from + m.id + m.to + m.cameFrom;
  const ascii = Buffer.byteLength(joined, 'utf8') === joined.length;
  b.writeDoubleBE(m.storedAt, at);
  b.writeDoubleBE(m.expiresAt, at + 8);
  b[at + 16] = m.flags;
  b[at + 17] = m.hops;
  let p = at + HEADER;
  if (ascii) {
    b.writeUInt16BE(m.queue.length, at + 18);
    b.writeUInt16BE(m.from.length, at + 20);
    b.writeUInt16BE(m.id.length, at + 22);
    b.writeUInt16BE(m.to.length, at + 24);
    b.writeUInt16BE(m.cameFrom.length, at + 26);
    p += b.write(joined, p, 'latin1');
  } else {
    const fields = [m.queue, m.from, m.id, m.to, m.cameFrom];
    for (let i = 0; i < 5; i++) {
      const n = b.write(fields[i]!, p, 'utf8');
      b.writeUInt16BE(n, at + 18 + 2 * i);
      p += n;
    }
  }
  b.set(m.body, p);
  return p + m.body.length;
}

/** Where the body starts in the row at `start`..`end` of `b` (the row without it is the key alone). */
export function rowBodyStart(b: Buffer, start: number, end: number, seq: number): number {
  if (end - start < HEADER) throw corrupt(seq);
  let at = start + HEADER;
  for (let i = 0; i < 5; i++) at += b.readUInt16BE(start + 18 + 2 * i);
  if (at > end) throw corrupt(seq);
  return at;
}

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

export function corrupt(seq: number): PosternError {
  return new PosternError('ERR_INTERNAL', `the store row ${seq} is corrupt`);
}
