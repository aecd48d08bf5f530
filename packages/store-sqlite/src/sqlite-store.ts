import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { crashPoint, type NewMessage, type Recovered, type SeenKey, type Store, type StoredMessage } from '@postern/core';
import { ConfigError, PosternError } from '@postern/protocol';
import { Database, type Statement } from './driver.js';
import { corruptLog, ENTRY_HELD, ENTRY_MOVED, type Entry, LogWriter, readEntry, readHeader, recordsAt } from './log-codec.js';
import { DEAD, HELD, LogIndex, type LogRow, makeRow, offsetAt, seqOf, stateAt } from './log-index.js';
import { decodeRow, decodeRowV2, encodeRow, rowBodyStart } from './row-codec.js';

export interface SqliteStoreOptions {
  /**
   * `full`: every commit is fsynced before `append()` resolves: accepted messages survive a
   * crash of the machine. `normal`: WAL without fsync per commit: they survive a crash of the
   * process (kill -9) but the last commits may be lost on power failure. @default 'full'
   */
  sync?: 'full' | 'normal';
  /**
   * Least time between the starts of two commits. 0: one commit per I/O phase (at
   * `setImmediate`), carrying everything that arrived in it: a commit never waits for more
   * traffic. More: while calls arrive faster than that, each commit carries all of them (fewer
   * fsyncs per message, for at most this much added latency). @default 0
   */
  commitIntervalMs?: number;
}

const SCHEMA_VERSION = 4;

/** SQLite result codes (and their extended forms) of a commit that may succeed when tried again. */
const TRANSIENT = ['SQLITE_FULL', 'SQLITE_IOERR', 'SQLITE_BUSY', 'SQLITE_LOCKED', 'SQLITE_NOMEM'];

/** A log row is closed once it passes this many bytes; a larger commit writes several. */
const ROW_BYTES = 64 * 1024;
/** Dead bytes the log may hold beyond as many as it holds live before compaction rewrites. */
const COMPACT_SLACK = 1024 * 1024;
/** Bytes a commit may rewrite at least (and twice its new bytes, if more). */
const REWRITE_MIN = 256 * 1024;
/** Rows a commit deletes at most. */
const MAX_FREED = 64;
/** Dead rows at the head wait to be deleted together, this many (or REWRITE_MIN bytes of them). */
const FREE_BATCH = 16;

const EMPTY = new Uint8Array(0);

interface Pending {
  messages: readonly NewMessage[];
  resolve(seqs: number[]): void;
  reject(err: unknown): void;
}

interface Waiter {
  resolve(): void;
  reject(err: unknown): void;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** A live seq while the log is replayed by `recover()`. */
interface Replayed {
  m: Mutable<StoredMessage>;
  held: boolean;
  /** Its body, copied while the copies fit the budget. */
  body: Uint8Array | undefined;
  bodyLength: number;
}

/** A live entry compaction writes again in a newer row. */
interface Rewrite {
  seq: number;
  held: boolean;
  via: string;
  data: Uint8Array;
}

/**
 * A Store in one SQLite file (WAL mode, locked to this process). Appends, retirements,
 * removals, repins and values set during one I/O phase are written in a single transaction: one
 * fsync for all of them (group commit).
 *
 * Schema 4. Table `log`: one row per commit (`id` ascending, a BLOB: log-codec.ts) holding
 * everything the commit did to messages: the messages it appended (each with its key and `via`),
 * the seqs it retired (the key stays), removed (message and key go) and repinned (a new `via`).
 * A commit is one INSERT, however many messages it holds, instead of an INSERT, an UPDATE and a
 * DELETE per message. Table `kv`: named values. Replaying the rows in id order gives the state
 * (`recover()`); a LogIndex in memory says where each live seq's entry is (`readBodies()`).
 *
 * Compaction (in the commits themselves, bounded per commit): a row is deleted only from the
 * head of the log (the oldest row), and only when none of its entries is live any more, or when
 * the same transaction writes its live entries again, in their current state (held or key
 * alone, current `via`), into the commit's own row. Why this is safe, at any crash:
 *
 * - Every live seq has exactly one entry in the log: the one written last for it. Moving an
 *   entry and deleting the row it leaves are one transaction.
 * - Deleting the head cannot bring anything back: the retires, removes and repins it records
 *   are about entries in older rows, and those rows are gone already (only heads are deleted); a
 *   later record about a seq whose entry it held finds nothing and is ignored, since that seq is
 *   either gone or rewritten, later, in its current state.
 * - The newest row is never deleted: compaction runs only in a commit that writes a row, and
 *   every row holds the store's next seq after its commit (a seq is never reused).
 *
 * When: heads without live entries go FREE_BATCH (or REWRITE_MIN bytes) or more at a time; a
 * head with live ones is rewritten only while the log holds more dead bytes than
 * max(COMPACT_SLACK, its live bytes): a queue that drains costs no rewrite, a long-lived message
 * pins at most about COMPACT_SLACK of dead rows, and the file stays below about twice what is
 * live plus that slack. Each commit deletes at most MAX_FREED rows and rewrites at most
 * max(REWRITE_MIN, twice its new bytes), at least one row when rewriting is due: compaction
 * keeps ahead of the appends.
 *
 * Records about seqs that are not live are not written (they would change nothing), and memory
 * (the index) follows a commit only once it is durable: a commit that fails leaves both as they
 * were, and the same calls can be made again.
 */
export class SqliteStore implements Store {
  readonly file: string;
  readonly #db: Database;
  readonly #insert: Statement;
  readonly #deleteTo: Statement;
  readonly #readRow: Statement;
  readonly #setValue: Statement;
  readonly #deleteValue: Statement;
  /** One group commit, in one transaction; returns what brings the index up to date once it is durable. */
  readonly #transaction: (appends: Pending[], retires: number[], removals: number[], repins: Array<{ seq: number; via: string }>, values: Map<string, Buffer | undefined>, results: number[][]) => (() => void) | undefined;
  readonly #writer = new LogWriter(ROW_BYTES);
  #next = 1;
  #rowId = 1;
  /** Where every live seq is; loaded by recover() or the first commit that needs it. */
  #index: LogIndex | undefined;
  #appends: Pending[] = [];
  #retires: number[] = [];
  #removals: number[] = [];
  #repins: Array<{ seq: number; via: string }> = [];
  /** Values to write (a Buffer) or delete (undefined), last word per key. */
  #values = new Map<string, Buffer | undefined>();
  #waiters: Waiter[] = [];
  #scheduled = false;
  #closed = false;
  #lastCommit = -Infinity;
  readonly #interval: number;

  constructor(file: string, options: SqliteStoreOptions = {}) {
    const sync = options.sync ?? 'full';
    if (sync !== 'full' && sync !== 'normal') throw new ConfigError(`sync must be "full" or "normal", got ${JSON.stringify(sync)}`);
    const interval = options.commitIntervalMs ?? 0;
    if (!(Number.isFinite(interval) && interval >= 0 && interval <= 1000)) throw new ConfigError(`commitIntervalMs must be 0-1000, got ${String(interval)}`);
    this.#interval = interval;
    this.file = file;
    try {
      if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
      // A second opener waits this long for the lock: enough for a dying predecessor to go.
      this.#db = new Database(file, { timeout: 1000 });
    } catch (cause) {
      throw new ConfigError(`cannot open the store ${file}: ${(cause as Error).message}`, { cause });
    }
    const db = this.#db;
    try {
      // One router per file: a second process on the same data dir would hand out the same
      // messages twice. EXCLUSIVE holds the lock from the first access until close.
      db.pragma('locking_mode = EXCLUSIVE');
      // Before anything is written to it: a newer Postern's file is left as it was.
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version > SCHEMA_VERSION) {
        throw new ConfigError(`the store ${file} was written by a newer Postern (schema ${version}, this one reads ${SCHEMA_VERSION})`);
      }
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${sync === 'full' ? 'FULL' : 'NORMAL'}`);
      db.pragma('foreign_keys = OFF');
      // Takes the write lock now, so that a second router on this file fails at start.
      db.exec('BEGIN IMMEDIATE; COMMIT;');
      db.transaction(() => migrate(db, version))();
    } catch (cause) {
      db.close();
      if (cause instanceof ConfigError) throw cause;
      const code = (cause as { code?: string }).code ?? '';
      const busy = code.startsWith('SQLITE_BUSY');
      const denied = code.startsWith('SQLITE_READONLY') || code.startsWith('SQLITE_CANTOPEN') || code.startsWith('SQLITE_IOERR') || code.startsWith('SQLITE_PERM');
      throw new ConfigError(
        busy
          ? `the store ${file} is in use by another process (is another router running with this data dir?)`
          : denied
            ? `cannot write the store ${file} (${(cause as Error).message}): check that the data dir and its files are writable by this user`
            : `cannot open the store ${file}: ${(cause as Error).message}`,
        { cause },
      );
    }
    // Made once: better-sqlite3 builds four wrappers each time transaction() is called.
    this.#transaction = db.transaction((appends: Pending[], retires: number[], removals: number[], repins: Array<{ seq: number; via: string }>, values: Map<string, Buffer | undefined>, results: number[][]) => {
      const applied = this.#writeLog(appends, retires, removals, repins, results);
      for (const [k, v] of values) {
        if (v === undefined) this.#deleteValue.run(k);
        else this.#setValue.run(k, v);
      }
      return applied;
    });
    this.#insert = db.prepare('INSERT INTO log (id, data) VALUES (?, ?)');
    this.#deleteTo = db.prepare('DELETE FROM log WHERE id <= ?');
    this.#readRow = db.prepare('SELECT data FROM log WHERE id = ?').pluck();
    this.#setValue = db.prepare('INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)');
    this.#deleteValue = db.prepare('DELETE FROM kv WHERE key = ?');
    // Written by schema 3 and before; a floor under the newest row's.
    const saved = db.prepare("SELECT value FROM kv WHERE key = 'next-seq'").get() as { value: Buffer } | undefined;
    this.#next = saved === undefined ? 1 : Number(saved.value.toString('utf8'));
    const newest = db.prepare('SELECT id, data FROM log ORDER BY id DESC LIMIT 1').get() as { id: number; data: Buffer } | undefined;
    if (newest !== undefined) {
      this.#rowId = newest.id + 1;
      // A corrupt row is reported by recover(), with the rest.
      if (newest.data.length >= 9) this.#next = Math.max(this.#next, newest.data.readDoubleBE(1));
    }
  }

  recover(options: { readonly bodyBudget?: number } = {}): Promise<Recovered> {
    this.#open();
    return Promise.resolve(this.#load(options.bodyBudget ?? Infinity));
  }

  readBodies(seqs: readonly number[]): Promise<Array<Uint8Array | undefined>> {
    this.#open();
    const index = this.#loaded();
    const out: Array<Uint8Array | undefined> = seqs.map(() => undefined);
    const byRow = new Map<LogRow, number[]>();
    for (let k = 0; k < seqs.length; k++) {
      const r = index.find(seqs[k]!);
      if (r === undefined || stateAt(r, index.foundIndex) !== HELD) continue;
      let list = byRow.get(r);
      if (list === undefined) byRow.set(r, (list = []));
      list.push(k, index.foundIndex);
    }
    // One read per row, however many of its bodies are asked for.
    const e = newEntry();
    for (const [r, list] of byRow) {
      const data = this.#readRow.get(r.id) as Buffer;
      for (let j = 0; j < list.length; j += 2) {
        const k = list[j]!;
        out[k] = bodyOf(data, r, list[j + 1]!, e, seqs[k]!);
      }
    }
    return Promise.resolve(out);
  }

  append(messages: readonly NewMessage[]): Promise<number[]> {
    this.#open();
    return new Promise((resolve, reject) => {
      this.#appends.push({ messages, resolve, reject });
      this.#schedule();
    });
  }

  retire(seqs: readonly number[]): Promise<void> {
    return this.#later(this.#retires, seqs);
  }

  remove(seqs: readonly number[]): Promise<void> {
    return this.#later(this.#removals, seqs);
  }

  repin(changes: ReadonlyArray<{ readonly seq: number; readonly via: string }>): Promise<void> {
    this.#open();
    for (const c of changes) this.#repins.push({ seq: c.seq, via: c.via });
    return this.#waitCommit();
  }

  getValue(key: string): Promise<Uint8Array | undefined> {
    this.#open();
    // A value set in this tick and not yet committed reads back as set.
    if (this.#values.has(key)) {
      const v = this.#values.get(key);
      return Promise.resolve(v === undefined ? undefined : new Uint8Array(v));
    }
    const row = this.#db.prepare('SELECT value FROM kv WHERE key = ?').get(key) as { value: Buffer } | undefined;
    return Promise.resolve(row === undefined ? undefined : new Uint8Array(row.value));
  }

  setValue(key: string, value: Uint8Array): Promise<void> {
    this.#open();
    this.#values.set(key, Buffer.from(value));
    return this.#waitCommit();
  }

  deleteValues(keys: readonly string[]): Promise<void> {
    this.#open();
    for (const k of keys) this.#values.set(k, undefined);
    return this.#waitCommit();
  }

  listValues(prefix: string): Promise<Array<[string, Uint8Array]>> {
    this.#open();
    // Keys from prefix up to prefix + U+FFFF: a range, so the primary key index serves it.
    const rows = this.#db.prepare('SELECT key, value FROM kv WHERE key >= ? AND key < ? ORDER BY key').all(prefix, `${prefix}\uffff`) as Array<{ key: string; value: Buffer }>;
    const out = new Map<string, Uint8Array>(rows.map((r) => [r.key, new Uint8Array(r.value)]));
    for (const [k, v] of this.#values) {
      if (!k.startsWith(prefix)) continue;
      if (v === undefined) out.delete(k);
      else out.set(k, new Uint8Array(v));
    }
    return Promise.resolve([...out].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)));
  }

  #waitCommit(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
      this.#schedule();
    });
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#commit();
    this.#closed = true;
    this.#db.close();
    return Promise.resolve();
  }

  #later(into: number[], seqs: readonly number[]): Promise<void> {
    this.#open();
    for (const s of seqs) into.push(s);
    return new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    const wait = this.#lastCommit + this.#interval - performance.now();
    if (wait > 0) setTimeout(() => this.#commit(), wait);
    else setImmediate(() => this.#commit());
  }

  /** One transaction for everything queued since the last commit. */
  #commit(): void {
    this.#scheduled = false;
    if (this.#closed) return;
    this.#lastCommit = performance.now();
    const appends = this.#appends;
    const retires = this.#retires;
    const removals = this.#removals;
    const repins = this.#repins;
    const values = this.#values;
    const waiters = this.#waiters;
    if (appends.length === 0 && waiters.length === 0) return;
    this.#appends = [];
    this.#retires = [];
    this.#removals = [];
    this.#repins = [];
    this.#values = new Map();
    this.#waiters = [];
    const first = this.#next;
    const firstRowId = this.#rowId;
    const results: number[][] = [];
    let applied: (() => void) | undefined;
    try {
      applied = this.#transaction(appends, retires, removals, repins, values, results);
    } catch (cause) {
      this.#next = first;
      this.#rowId = firstRowId;
      // Values not written must still read back as set for a retry of the caller.
      for (const [k, v] of values) if (!this.#values.has(k)) this.#values.set(k, v);
      // The transaction was rolled back (better-sqlite3 rolls back when its body or COMMIT
      // throws), so the database is as before the commit and usable: a full disk or an I/O
      // error may pass. Other failures (corrupt file, closed) leave nothing to retry.
      if (this.#db.inTransaction) {
        try {
          this.#db.exec('ROLLBACK');
        } catch {
          // Still in the transaction: checked below, and then fatal.
        }
      }
      const raw = (cause as { code?: unknown }).code;
      const code = typeof raw === 'string' ? raw : '';
      const transient = TRANSIENT.some((c) => code.startsWith(c)) && !this.#db.inTransaction;
      const err = cause instanceof PosternError && !transient ? cause : new PosternError(transient ? 'ERR_STORE_UNAVAILABLE' : 'ERR_INTERNAL', `the store could not commit: ${(cause as Error).message}`, { cause });
      for (const a of appends) a.reject(err);
      for (const w of waiters) w.reject(err);
      return;
    }
    // Durable: only now does memory follow (a failed commit left it as it was).
    applied?.();
    appends.forEach((a, i) => a.resolve(results[i] ?? []));
    for (const w of waiters) w.resolve();
  }

  /**
   * Writes the commit's log row(s) and compaction, inside the transaction; returns what brings
   * the index in memory up to date once the transaction is durable (undefined: nothing to write).
   */
  #writeLog(appends: Pending[], retires: number[], removals: number[], repins: Array<{ seq: number; via: string }>, results: number[][]): (() => void) | undefined {
    if (appends.length === 0 && retires.length === 0 && removals.length === 0 && repins.length === 0) return undefined;
    const index = this.#loaded();
    // Records about seqs that are not live change nothing: not written.
    const rp = repins.filter((r) => index.stateOf(r.seq) !== DEAD);
    const rt = retires.filter((s) => index.stateOf(s) === HELD);
    const rm = removals.filter((s) => index.stateOf(s) !== DEAD);
    let fresh = 0;
    let freshBytes = 0;
    for (const a of appends) {
      fresh += a.messages.length;
      for (const m of a.messages) freshBytes += 64 + m.body.length;
    }
    if (fresh === 0 && rp.length === 0 && rt.length === 0 && rm.length === 0) return undefined;
    const { freed, rewrites } = this.#compaction(index, freshBytes, rp, rt, rm);
    const w = this.#writer;
    const first = this.#next;
    const next = first + fresh;
    w.begin(first, next);
    w.records(rp, rt, rm);
    for (const r of rewrites) w.moved(r.seq, r.held, r.via, r.data);
    let seq = first;
    for (const a of appends) {
      const seqs: number[] = [];
      for (const m of a.messages) {
        seqs.push(seq++);
        w.fresh(m);
      }
      results.push(seqs);
    }
    const rows = w.end();
    const buffer = w.buffer;
    let id = this.#rowId;
    for (const r of rows) {
      this.#insert.run(id++, buffer.subarray(r.start, r.end));
      // Nothing of the commit is visible after a crash here: the transaction is not committed.
      if (fresh > 0) crashPoint('store.mid-commit');
    }
    if (freed > 0) this.#deleteTo.run(index.at(freed - 1).id);
    const firstId = this.#rowId;
    this.#rowId = id;
    this.#next = next;
    return () => {
      for (const r of rp) index.repin(r.seq, r.via);
      for (const s of rt) index.retire(s);
      for (const s of rm) index.remove(s);
      for (let k = 0; k < freed; k++) index.shift();
      rows.forEach((r, k) => index.push(makeRow(firstId + k, r.end - r.start, r)));
    };
  }

  /**
   * Which head rows this commit deletes (the first `freed`), and the live entries among them to
   * write again, in their state after this commit's records (see the class comment).
   */
  #compaction(index: LogIndex, freshBytes: number, repins: Array<{ seq: number; via: string }>, retires: number[], removals: number[]): { freed: number; rewrites: Rewrite[] } {
    const rewrites: Rewrite[] = [];
    let freed = 0;
    let freedBytes = 0;
    let rewritten = 0;
    let dead = index.logBytes - index.liveBytes;
    const budget = Math.max(REWRITE_MIN, 2 * freshBytes);
    let removed: Set<number> | undefined;
    let retired: Set<number> | undefined;
    let repinned: Map<number, string> | undefined;
    const e = newEntry();
    while (freed < MAX_FREED && freed < index.count) {
      const r = index.at(freed);
      if (r.live > 0) {
        if (dead <= Math.max(COMPACT_SLACK, index.liveBytes)) break;
        if (rewritten > 0 && rewritten + r.liveBytes > budget) break;
        removed ??= new Set(removals);
        retired ??= new Set(retires);
        repinned ??= new Map(repins.map((x) => [x.seq, x.via]));
        const data = this.#readRow.get(r.id) as Buffer;
        for (let i = 0; i < r.entries.length; i++) {
          const state = stateAt(r, i);
          if (state === DEAD) continue;
          const seq = seqOf(r, i);
          if (removed.has(seq)) continue;
          readEntry(data, offsetAt(r, i), r.id, e);
          const held = state === HELD && !retired.has(seq);
          const via = repinned.get(seq) ?? index.via.get(seq) ?? e.via;
          // A key alone is written without its body.
          const end = held ? e.dataEnd : rowBodyStart(data, e.dataStart, e.dataEnd, seq);
          rewrites.push({ seq, held, via, data: data.subarray(e.dataStart, end) });
        }
        rewritten += r.liveBytes;
      }
      dead -= r.bytes - r.liveBytes;
      freedBytes += r.bytes;
      freed++;
    }
    // Dead heads alone wait until there are a few: deleting them touches the pages at the far
    // end of the table (and often the free list), which a commit that only inserts does not.
    if (rewritten === 0 && freed < FREE_BATCH && freedBytes < REWRITE_MIN) freed = 0;
    // MOVED entries of a row are in seq order (LogIndex finds them by binary search).
    if (rewrites.length > 1) rewrites.sort((a, b) => a.seq - b.seq);
    return { freed, rewrites };
  }

  #loaded(): LogIndex {
    if (this.#index === undefined) this.#load(undefined);
    return this.#index!;
  }

  /**
   * Replays the log into a new index (and, with a budget, what survived: the Recovered). Bodies
   * are copied out of the rows (a view would keep a whole row in memory for one body) while the
   * copies fit the budget; those the budget wants that were not copied are read again after.
   */
  #load(bodyBudget: number | undefined): Recovered {
    const collect = bodyBudget !== undefined;
    const index = new LogIndex();
    const live = new Map<number, Replayed>();
    let copied = 0;
    let next = this.#next;
    let lastId = 0;
    const e = newEntry();
    const rows = this.#db.prepare('SELECT id, data FROM log ORDER BY id').iterate() as IterableIterator<{ id: number; data: Buffer }>;
    for (const { id, data } of rows) {
      const h = readHeader(data, id);
      const at = recordsAt(data, h, id);
      const offsets: number[] = [];
      const flags: number[] = [];
      const moved: number[] = [];
      let p = at.entries;
      for (let k = 0; k < h.entries; k++) {
        offsets.push(p);
        p = readEntry(data, p, id, e);
        flags.push(e.flags);
        if ((e.flags & ENTRY_MOVED) !== 0) {
          if (moved.length !== k || (k > 0 && e.seq <= moved[k - 1]!)) throw corruptLog(id);
          moved.push(e.seq);
        }
      }
      if (p !== data.length) throw corruptLog(id);
      const row = makeRow(id, data.length, { first: h.first, fresh: h.entries - moved.length, moved, offsets, flags });
      // A seq has one entry (moving it deletes the row it leaves): an older one would be stale.
      for (const s of moved) if (index.stateOf(s) !== DEAD) index.remove(s);
      index.push(row);
      if (collect) {
        for (let k = 0; k < h.entries; k++) {
          readEntry(data, offsets[k]!, id, e);
          const seq = seqOf(row, k);
          const held = (e.flags & ENTRY_HELD) !== 0;
          const m = decodeRow(seq, data.subarray(e.dataStart, e.dataEnd), e.via) as Mutable<StoredMessage>;
          const bodyLength = m.body.length;
          let body: Uint8Array | undefined;
          if (held && copied + bodyLength <= bodyBudget) {
            body = new Uint8Array(m.body);
            copied += bodyLength;
          }
          m.body = EMPTY;
          const before = live.get(seq);
          if (before?.body !== undefined) copied -= before.bodyLength;
          live.set(seq, { m, held, body, bodyLength });
        }
      }
      let q = at.repins;
      for (let k = 0; k < h.repins; k++) {
        const seq = data.readDoubleBE(q);
        const n = data.readUInt16BE(q + 8);
        const via = data.toString('utf8', q + 10, q + 10 + n);
        q += 10 + n;
        index.repin(seq, via);
        const x = live.get(seq);
        if (x !== undefined) x.m.via = via;
      }
      for (let k = 0; k < h.retires; k++) {
        const seq = data.readDoubleBE(at.retires + 8 * k);
        index.retire(seq);
        const x = live.get(seq);
        if (x?.held === true) {
          x.held = false;
          if (x.body !== undefined) copied -= x.bodyLength;
          x.body = undefined;
        }
      }
      for (let k = 0; k < h.removes; k++) {
        const seq = data.readDoubleBE(at.removes + 8 * k);
        index.remove(seq);
        const x = live.get(seq);
        if (x === undefined) continue;
        if (x.body !== undefined) copied -= x.bodyLength;
        live.delete(seq);
      }
      next = Math.max(next, h.next, h.first + row.fresh);
      lastId = id;
    }
    this.#index = index;
    this.#next = next;
    this.#rowId = Math.max(this.#rowId, lastId + 1);
    if (!collect) return { messages: [], seen: [] };
    // In seq order: moved entries make the log's order differ from it.
    const seqs = [...live.keys()].sort((a, b) => a - b);
    const messages: StoredMessage[] = [];
    const seen: SeenKey[] = [];
    const missing = new Map<LogRow, number[]>();
    let budget = bodyBudget;
    for (const seq of seqs) {
      const x = live.get(seq)!;
      const m = x.m;
      seen.push({ from: m.from, id: m.id, seq, at: m.storedAt, cameFrom: m.cameFrom });
      if (!x.held) continue;
      budget -= x.bodyLength;
      if (budget < 0) {
        m.bodyOmitted = true;
      } else if (x.body !== undefined) {
        m.body = x.body;
      } else {
        const r = index.find(seq)!;
        let list = missing.get(r);
        if (list === undefined) missing.set(r, (list = []));
        list.push(messages.length, index.foundIndex);
      }
      messages.push(m);
    }
    for (const [r, list] of missing) {
      const data = this.#readRow.get(r.id) as Buffer;
      for (let j = 0; j < list.length; j += 2) {
        const m = messages[list[j]!] as Mutable<StoredMessage>;
        m.body = bodyOf(data, r, list[j + 1]!, e, m.seq);
      }
    }
    return { messages, seen };
  }

  #open(): void {
    if (this.#closed) throw new PosternError('ERR_CLOSED', `the store ${this.file} is closed`);
  }
}

function newEntry(): Entry {
  return { flags: 0, seq: 0, via: '', dataStart: 0, dataEnd: 0 };
}

/** A copy of the body of entry `i` of row `r` (its BLOB `data`). */
function bodyOf(data: Buffer, r: LogRow, i: number, e: Entry, seq: number): Uint8Array {
  readEntry(data, offsetAt(r, i), r.id, e);
  return new Uint8Array(data.subarray(rowBodyStart(data, e.dataStart, e.dataEnd, seq), e.dataEnd));
}

/** Brings a file of any earlier schema to this one, keeping every message, key and via. */
function migrate(db: Database, from: number): void {
  db.exec('CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)');
  db.exec('CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, data BLOB NOT NULL)');
  if (from >= 1 && from <= 3) {
    toSchema3(db, from);
    toSchema4(db);
  }
  db.pragma(`user_version = ${SCHEMA_VERSION}`);
}

/** Schemas 1 and 2 to 3: table `messages`, one row per message. */
function toSchema3(db: Database, from: number): void {
  if (from === 1) db.exec('ALTER TABLE messages RENAME TO messages_v1; DROP TABLE IF EXISTS seen;');
  if (from === 2) {
    // Schema 3: `via` (where a message is meant to go) and cameFrom in the row.
    db.exec("ALTER TABLE messages ADD COLUMN via TEXT NOT NULL DEFAULT ''");
    const rows = db.prepare('SELECT seq, data FROM messages ORDER BY seq').all() as Array<{ seq: number; data: Buffer }>;
    const update = db.prepare('UPDATE messages SET data = ? WHERE seq = ?');
    for (const r of rows) update.run(encodeRow(decodeRowV2(r.seq, r.data)), r.seq);
  }
  db.exec("CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY, held INTEGER NOT NULL, data BLOB NOT NULL, via TEXT NOT NULL DEFAULT '')");
  if (from === 1) {
    const old = db.prepare('SELECT * FROM messages_v1 ORDER BY seq').all() as Array<{
      seq: number; queue: string; sender: string; id: string; dest: string; flags: number; hops: number; body: Buffer; stored_at: number; expires_at: number;
    }>;
    const insert = db.prepare('INSERT INTO messages (seq, held, data) VALUES (?, 1, ?)');
    for (const r of old) {
      insert.run(r.seq, encodeRow({ queue: r.queue, from: r.sender, id: r.id, to: r.dest, flags: r.flags, hops: r.hops, body: r.body, storedAt: r.stored_at, expiresAt: r.expires_at, cameFrom: '' }));
    }
    db.exec('DROP TABLE messages_v1');
  }
}

/**
 * Schema 3 to 4: every row of `messages` becomes a MOVED entry of the log (held, or a key
 * alone without its body), with its via, in seq order; `next-seq` stays in kv as a floor.
 */
function toSchema4(db: Database): void {
  const saved = db.prepare("SELECT value FROM kv WHERE key = 'next-seq'").get() as { value: Buffer } | undefined;
  const max = (db.prepare('SELECT max(seq) AS m FROM messages').get() as { m: number | null }).m ?? 0;
  const next = Math.max(max + 1, saved === undefined ? 1 : Number(saved.value.toString('utf8')));
  const page = db.prepare('SELECT seq, held, data, via FROM messages WHERE seq > ? ORDER BY seq LIMIT 1000');
  const insert = db.prepare('INSERT INTO log (id, data) VALUES (?, ?)');
  const w = new LogWriter(ROW_BYTES);
  let id = 1;
  let after = 0;
  // A page of messages at a time, so that a large store is never in memory at once. The
  // newest row holds next-seq: one row is written even for no message.
  for (;;) {
    const rows = page.all(after) as Array<{ seq: number; held: number; data: Buffer; via: string }>;
    if (rows.length === 0 && id > 1) break;
    w.begin(next, next);
    for (const r of rows) {
      const held = r.held === 1;
      const end = held ? r.data.length : rowBodyStart(r.data, 0, r.data.length, r.seq);
      w.moved(r.seq, held, r.via, r.data.subarray(0, end));
    }
    for (const r of w.end()) insert.run(id++, w.buffer.subarray(r.start, r.end));
    if (rows.length === 0) break;
    after = rows[rows.length - 1]!.seq;
  }
  db.exec('DROP TABLE messages');
  db.prepare("INSERT OR REPLACE INTO kv (key, value) VALUES ('next-seq', ?)").run(Buffer.from(String(next), 'utf8'));
}
