import type { NewMessage } from '@postern/core';
import { PosternError } from '@postern/protocol';
import { rowBound, writeRow } from './row-codec.js';

/**
 * A row of the log (schema 4): what one group commit changed, as one BLOB.
 *
 *   u8 format (1), f64 next, f64 first, u32 entries, u32 repins, u32 retires, u32 removes
 *   repins:   (f64 seq, u16 byte length, via in UTF-8) each
 *   retires:  f64 seq each
 *   removes:  f64 seq each
 *   entries:  (u8 flags, [f64 seq if MOVED], u16 via length, u32 data length, via, data) each,
 *             to the end of the BLOB; data is a message row (row-codec.ts), without its body for
 *             a key alone
 *
 * `next` is the store's next seq once this commit is durable: the newest row holds the durable
 * next-seq. An entry is a message and its key (HELD) or a key alone, with its `via`. Entries
 * without MOVED are the messages appended by the commit: their seqs are `first`, `first` + 1, ...
 * in order. MOVED entries (written first, in seq order) carry their seq: messages compaction
 * rewrote from an older row (sqlite-store.ts), or a migration. Replaying a row: its entries
 * (each sets the state of its seq), then repins, retires and removes, in that order (the order
 * of a commit); a record about a seq not present is ignored.
 */
export const FORMAT = 1;
export const LOG_HEADER = 33;
export const ENTRY_HELD = 1;
export const ENTRY_MOVED = 2;

export interface LogHeader {
  readonly next: number;
  readonly first: number;
  readonly entries: number;
  readonly repins: number;
  readonly retires: number;
  readonly removes: number;
}

export function corruptLog(id: number): PosternError {
  return new PosternError('ERR_INTERNAL', `the store row ${id} is corrupt`);
}

export function readHeader(b: Buffer, id: number): LogHeader {
  if (b.length < LOG_HEADER || b[0] !== FORMAT) throw corruptLog(id);
  return {
    next: b.readDoubleBE(1),
    first: b.readDoubleBE(9),
    entries: b.readUInt32BE(17),
    repins: b.readUInt32BE(21),
    retires: b.readUInt32BE(25),
    removes: b.readUInt32BE(29),
  };
}

/** One entry of a row, read at `at`. */
export interface Entry {
  flags: number;
  /** Its seq if MOVED, else 0 (the row's header gives it). */
  seq: number;
  via: string;
  dataStart: number;
  dataEnd: number;
}

/** Reads the entry at `at` of row `id` into `out`; returns where the next one starts. */
export function readEntry(b: Buffer, at: number, id: number, out: Entry): number {
  if (at + 7 > b.length) throw corruptLog(id);
  const flags = b[at]!;
  let p = at + 1;
  if ((flags & ENTRY_MOVED) !== 0) {
    if (p + 14 > b.length) throw corruptLog(id);
    out.seq = b.readDoubleBE(p);
    p += 8;
  } else {
    out.seq = 0;
  }
  const viaLength = b.readUInt16BE(p);
  const dataLength = b.readUInt32BE(p + 2);
  p += 6;
  if (p + viaLength + dataLength > b.length) throw corruptLog(id);
  out.flags = flags;
  out.via = viaLength === 0 ? '' : b.toString('utf8', p, p + viaLength);
  out.dataStart = p + viaLength;
  out.dataEnd = out.dataStart + dataLength;
  return out.dataEnd;
}

/** Where the records of row `b` (header `h`) start, and the entries. */
export function recordsAt(b: Buffer, h: LogHeader, id: number): { repins: number; retires: number; removes: number; entries: number } {
  let p = LOG_HEADER;
  for (let i = 0; i < h.repins; i++) {
    if (p + 10 > b.length) throw corruptLog(id);
    p += 10 + b.readUInt16BE(p + 8);
  }
  const retires = p;
  const removes = retires + 8 * h.retires;
  const entries = removes + 8 * h.removes;
  if (entries > b.length) throw corruptLog(id);
  return { repins: LOG_HEADER, retires, removes, entries };
}

/** A row written by LogWriter: where it is in the writer's buffer, and its entries. */
export interface WrittenRow {
  readonly start: number;
  readonly end: number;
  /** Seq of its first new entry (the store's next when the row began). */
  readonly first: number;
  /** Number of new (not MOVED) entries. */
  readonly fresh: number;
  /** Seqs of its MOVED entries, which come first, ascending. */
  readonly moved: number[];
  /** Where each entry starts, from the start of the row. */
  readonly offsets: number[];
  /** Flags of each entry. */
  readonly flags: number[];
}

/**
 * Encodes the rows of one commit into one reusable buffer (SQLite copies a bound BLOB, so the
 * buffer serves every commit). A row is closed once it passes `rowBytes`, so that reading one
 * body back (`readBodies`, which reads a whole row) or keeping a row for one live message
 * costs at most about that much.
 */
export class LogWriter {
  #b: Buffer = Buffer.allocUnsafe(64 * 1024);
  #at = 0;
  #row: { start: number; first: number; fresh: number; moved: number[]; offsets: number[]; flags: number[]; entries: number } | undefined;
  #rows: WrittenRow[] = [];
  #next = 0;
  #seq = 0;
  readonly #rowBytes: number;

  constructor(rowBytes: number) {
    this.#rowBytes = rowBytes;
  }

  get buffer(): Buffer {
    return this.#b;
  }

  /** Starts a commit whose new entries take seqs from `first`, and after which the store's next is `next`. */
  begin(first: number, next: number): void {
    if (this.#b.length > 8 * 1024 * 1024) this.#b = Buffer.allocUnsafe(64 * 1024);
    this.#at = 0;
    this.#rows = [];
    this.#row = undefined;
    this.#seq = first;
    this.#next = next;
  }

  /** The records of the commit: in its first row, before any entry. */
  records(repins: ReadonlyArray<{ seq: number; via: string }>, retires: readonly number[], removes: readonly number[]): void {
    this.#open();
    let size = 8 * (retires.length + removes.length);
    for (const r of repins) size += 10 + 3 * r.via.length;
    this.#ensure(size);
    const b = this.#b;
    let p = this.#at;
    for (const r of repins) {
      b.writeDoubleBE(r.seq, p);
      const n = b.write(r.via, p + 10, 'utf8');
      b.writeUInt16BE(n, p + 8);
      p += 10 + n;
    }
    for (const s of retires) p = b.writeDoubleBE(s, p);
    for (const s of removes) p = b.writeDoubleBE(s, p);
    this.#at = p;
    const h = this.#row!;
    const base = h.start;
    b.writeUInt32BE(repins.length, base + 21);
    b.writeUInt32BE(retires.length, base + 25);
    b.writeUInt32BE(removes.length, base + 29);
  }

  /** A rewritten entry: its seq, state, via and message row (`data`, without body for a key). */
  moved(seq: number, held: boolean, via: string, data: Uint8Array): void {
    this.#open();
    this.#ensure(15 + 3 * via.length + data.length);
    const r = this.#row!;
    const b = this.#b;
    const flags = ENTRY_MOVED | (held ? ENTRY_HELD : 0);
    r.offsets.push(this.#at - r.start);
    r.flags.push(flags);
    r.moved.push(seq);
    r.entries++;
    let p = this.#at;
    b[p] = flags;
    b.writeDoubleBE(seq, p + 1);
    p += 9;
    const v = via.length === 0 ? 0 : b.write(via, p + 6, 'utf8');
    b.writeUInt16BE(v, p);
    b.writeUInt32BE(data.length, p + 2);
    p += 6 + v;
    b.set(data, p);
    this.#at = p + data.length;
    this.#maybeClose();
  }

  /** A message appended by this commit (held); its seq is the next one. */
  fresh(m: NewMessage): void {
    this.#open();
    this.#ensure(7 + 3 * m.via.length + rowBound(m));
    const r = this.#row!;
    const b = this.#b;
    r.offsets.push(this.#at - r.start);
    r.flags.push(ENTRY_HELD);
    r.fresh++;
    r.entries++;
    this.#seq++;
    const p = this.#at;
    b[p] = ENTRY_HELD;
    const v = m.via.length === 0 ? 0 : b.write(m.via, p + 7, 'utf8');
    b.writeUInt16BE(v, p + 1);
    const dataStart = p + 7 + v;
    const end = writeRow(m, b, dataStart);
    b.writeUInt32BE(end - dataStart, p + 3);
    this.#at = end;
    this.#maybeClose();
  }

  /** Closes the commit: its rows, at least one. */
  end(): WrittenRow[] {
    this.#open();
    this.#close();
    return this.#rows;
  }

  #open(): void {
    if (this.#row !== undefined) return;
    this.#ensure(LOG_HEADER);
    const b = this.#b;
    const start = this.#at;
    b[start] = FORMAT;
    b.writeDoubleBE(this.#next, start + 1);
    b.writeDoubleBE(this.#seq, start + 9);
    b.fill(0, start + 17, start + LOG_HEADER);
    this.#row = { start, first: this.#seq, fresh: 0, moved: [], offsets: [], flags: [], entries: 0 };
    this.#at = start + LOG_HEADER;
  }

  #maybeClose(): void {
    if (this.#at - this.#row!.start >= this.#rowBytes) this.#close();
  }

  #close(): void {
    const r = this.#row;
    if (r === undefined) return;
    this.#b.writeUInt32BE(r.entries, r.start + 17);
    this.#rows.push({ start: r.start, end: this.#at, first: r.first, fresh: r.fresh, moved: r.moved, offsets: r.offsets, flags: r.flags });
    this.#row = undefined;
  }

  #ensure(n: number): void {
    if (this.#at + n <= this.#b.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.#b.length * 2, this.#at + n));
    this.#b.copy(grown, 0, 0, this.#at);
    this.#b = grown;
  }
}
