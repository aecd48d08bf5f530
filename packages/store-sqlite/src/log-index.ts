import { ENTRY_HELD, type WrittenRow } from './log-codec.js';

/** State of an entry of a log row in memory. */
export const DEAD = 0;
export const HELD = 1;
/** A key alone: the message was retired. */
export const KEY = 2;

/**
 * A row of the log as the store keeps it in memory: where each entry is and what it is now.
 * A row whose commit held one message costs about 130 bytes (measured with V8), a large one
 * about 4 bytes per entry (12 for a MOVED one), besides its object.
 */
export interface LogRow {
  readonly id: number;
  /** Length of its BLOB. */
  readonly bytes: number;
  /** Seq of its first new entry; new entries follow the MOVED ones. */
  readonly first: number;
  /** Number of its new entries. */
  readonly fresh: number;
  /** Seqs of its MOVED entries (entries 0 .. moved.length - 1), ascending; empty for most rows. */
  readonly moved: Float64Array;
  /**
   * Per entry: where it starts in the BLOB times 4, plus its state (DEAD, HELD, KEY). A plain
   * array for a few entries (smaller than a typed array's object), a Uint32Array for more.
   */
  readonly entries: number[] | Uint32Array;
  /** Entries not DEAD. */
  live: number;
  /** Bytes of those entries: what rewriting them would cost. */
  liveBytes: number;
}

const NO_MOVED = new Float64Array(0);
/** Up to this many entries, a row keeps them in a plain array. */
const SMALL = 32;

export function makeRow(id: number, bytes: number, w: Pick<WrittenRow, 'first' | 'fresh' | 'moved' | 'offsets' | 'flags'>): LogRow {
  const n = w.offsets.length;
  const entries = n <= SMALL ? (new Array(n).fill(0) as number[]) : new Uint32Array(n);
  // Offsets of a row are below 2^30: a BLOB is at most 1e9 bytes (SQLITE_MAX_LENGTH).
  for (let i = 0; i < n; i++) entries[i] = w.offsets[i]! * 4 + ((w.flags[i]! & ENTRY_HELD) !== 0 ? HELD : KEY);
  return {
    id,
    bytes,
    first: w.first,
    fresh: w.fresh,
    moved: w.moved.length === 0 ? NO_MOVED : Float64Array.from(w.moved),
    entries,
    live: n,
    liveBytes: n === 0 ? 0 : bytes - w.offsets[0]!,
  };
}

export function stateAt(r: LogRow, i: number): number {
  return r.entries[i]! & 3;
}

export function offsetAt(r: LogRow, i: number): number {
  return r.entries[i]! >>> 2;
}

function setState(r: LogRow, i: number, state: number): void {
  r.entries[i] = (r.entries[i]! & ~3) + state;
}

export function entryBytes(r: LogRow, i: number): number {
  return (i + 1 < r.entries.length ? offsetAt(r, i + 1) : r.bytes) - offsetAt(r, i);
}

export function seqOf(r: LogRow, i: number): number {
  return i < r.moved.length ? r.moved[i]! : r.first + (i - r.moved.length);
}

/**
 * The rows of the log, oldest first, and where each live seq is. Rows only ever leave from the
 * head (the oldest) and join at the tail, so the rows are a queue; their new entries have
 * ascending, contiguous seqs along it (`first` never decreases), so a seq that was never moved is
 * found by binary search on `first`, with no per-message entry. A moved seq (rewritten by
 * compaction, or migrated) is in `movedAt`: only messages that outlived the row they were
 * written in.
 */
export class LogIndex {
  #rows: LogRow[] = [];
  #head = 0;
  /** Row of each live seq whose entry is MOVED. */
  readonly movedAt = new Map<number, LogRow>();
  /** `via` of a live seq changed by a repin since its entry was written. */
  readonly via = new Map<number, string>();
  /** Bytes of all rows. */
  logBytes = 0;
  /** Bytes of the live entries of all rows. */
  liveBytes = 0;
  /** Index in its row of the entry `find()` found last. */
  foundIndex = 0;

  get count(): number {
    return this.#rows.length - this.#head;
  }

  /** The k-th row from the head. */
  at(k: number): LogRow {
    return this.#rows[this.#head + k]!;
  }

  push(r: LogRow): void {
    this.#rows.push(r);
    this.logBytes += r.bytes;
    this.liveBytes += r.liveBytes;
    for (let i = 0; i < r.moved.length; i++) {
      const seq = r.moved[i]!;
      this.movedAt.set(seq, r);
      // Its entry carries its current via.
      if (this.via.size > 0) this.via.delete(seq);
    }
  }

  /**
   * Drops the head row. Its live entries must have been written to a newer row (pushed, which
   * points `movedAt` there) or be about to be.
   */
  shift(): LogRow {
    const r = this.#rows[this.#head]!;
    this.#rows[this.#head++] = undefined as unknown as LogRow;
    this.logBytes -= r.bytes;
    this.liveBytes -= r.liveBytes;
    if (this.#head > 1024 && this.#head * 2 > this.#rows.length) {
      this.#rows.splice(0, this.#head);
      this.#head = 0;
    }
    return r;
  }

  /** The row holding the live or dead entry of `seq` (its index in `foundIndex`), if that row is still in the log. */
  find(seq: number): LogRow | undefined {
    const m = this.movedAt.size === 0 ? undefined : this.movedAt.get(seq);
    if (m !== undefined) {
      const mv = m.moved;
      let lo = 0;
      let hi = mv.length - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >>> 1;
        const v = mv[mid]!;
        if (v === seq) {
          this.foundIndex = mid;
          return m;
        }
        if (v < seq) lo = mid + 1;
        else hi = mid - 1;
      }
      return undefined;
    }
    const rows = this.#rows;
    let lo = this.#head;
    let hi = rows.length - 1;
    let hit = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (rows[mid]!.first <= seq) {
        hit = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    if (hit < 0) return undefined;
    const r = rows[hit]!;
    if (seq >= r.first + r.fresh) return undefined;
    this.foundIndex = r.moved.length + (seq - r.first);
    return r;
  }

  /** The state of `seq`: DEAD when unknown. */
  stateOf(seq: number): number {
    const r = this.find(seq);
    return r === undefined ? DEAD : stateAt(r, this.foundIndex);
  }

  retire(seq: number): void {
    const r = this.find(seq);
    if (r !== undefined && stateAt(r, this.foundIndex) === HELD) setState(r, this.foundIndex, KEY);
  }

  remove(seq: number): void {
    const r = this.find(seq);
    if (r === undefined) return;
    const i = this.foundIndex;
    if (stateAt(r, i) === DEAD) return;
    setState(r, i, DEAD);
    r.live--;
    const n = entryBytes(r, i);
    r.liveBytes -= n;
    this.liveBytes -= n;
    if (i < r.moved.length) this.movedAt.delete(seq);
    if (this.via.size > 0) this.via.delete(seq);
  }

  repin(seq: number, via: string): void {
    const r = this.find(seq);
    if (r !== undefined && stateAt(r, this.foundIndex) !== DEAD) this.via.set(seq, via);
  }
}
