import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { crashPoint, type NewMessage, type Recovered, type SeenKey, type Store, type StoredMessage } from '@postern/core';
import { ConfigError, PosternError } from '@postern/protocol';
import { Database, type Statement } from './driver.js';
import { decodeRow, decodeRowV2, encodeRow } from './row-codec.js';

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
  /**
   * Called once per group commit (not per message) with how long its transaction took, fsync
   * included, and whether it committed: the router's commit latency histogram.
   */
  onCommit?: (ms: number, ok: boolean) => void;
}

const SCHEMA_VERSION = 3;

/** SQLite result codes (and their extended forms) of a commit that may succeed when tried again. */
const TRANSIENT = ['SQLITE_FULL', 'SQLITE_IOERR', 'SQLITE_BUSY', 'SQLITE_LOCKED', 'SQLITE_NOMEM'];

/** Rows per multi-row statement: one call into SQLite for many rows. */
const CHUNK = 64;

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

/**
 * A Store in one SQLite file (WAL mode, locked to this process). Appends, retirements,
 * removals, repins and values set during one I/O phase are written in a single transaction: one
 * fsync for all of them (group commit). Table `messages`: a row is a message and its key
 * (`held` = 1) or, once retired, the key alone (`held` = 0), plus `via`, the router it is meant
 * for. No secondary index: lookups by key happen in memory. Table `kv`: named values.
 */
export class SqliteStore implements Store {
  readonly file: string;
  readonly #db: Database;
  readonly #insert1: Statement;
  readonly #insertN: Statement;
  readonly #delete1: Statement;
  readonly #readN: Statement;
  readonly #deleteN: Statement;
  readonly #retire1: Statement;
  readonly #retireN: Statement;
  readonly #saveSeq: Statement;
  readonly #repin: Statement;
  readonly #setValue: Statement;
  readonly #deleteValue: Statement;
  #next = 1;
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
  readonly #onCommit: ((ms: number, ok: boolean) => void) | undefined;

  constructor(file: string, options: SqliteStoreOptions = {}) {
    const sync = options.sync ?? 'full';
    if (sync !== 'full' && sync !== 'normal') throw new ConfigError(`sync must be "full" or "normal", got ${JSON.stringify(sync)}`);
    const interval = options.commitIntervalMs ?? 0;
    if (!(Number.isFinite(interval) && interval >= 0 && interval <= 1000)) throw new ConfigError(`commitIntervalMs must be 0-1000, got ${String(interval)}`);
    this.#interval = interval;
    this.#onCommit = options.onCommit;
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
    const list = (n: number, item: string): string => Array.from({ length: n }, () => item).join(', ');
    this.#insert1 = db.prepare('INSERT INTO messages (seq, held, data, via) VALUES (?, 1, ?, ?)');
    this.#insertN = db.prepare(`INSERT INTO messages (seq, held, data, via) VALUES ${list(CHUNK, '(?, 1, ?, ?)')}`);
    this.#delete1 = db.prepare('DELETE FROM messages WHERE seq = ?');
    this.#readN = db.prepare(`SELECT seq, data, via FROM messages WHERE held = 1 AND seq IN (${list(CHUNK, '?')})`);
    this.#deleteN = db.prepare(`DELETE FROM messages WHERE seq IN (${list(CHUNK, '?')})`);
    this.#retire1 = db.prepare('UPDATE messages SET held = 0 WHERE seq = ?');
    this.#retireN = db.prepare(`UPDATE messages SET held = 0 WHERE seq IN (${list(CHUNK, '?')})`);
    this.#saveSeq = db.prepare("INSERT OR REPLACE INTO kv (key, value) VALUES ('next-seq', ?)");
    this.#repin = db.prepare('UPDATE messages SET via = ? WHERE seq = ?');
    this.#setValue = db.prepare('INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)');
    this.#deleteValue = db.prepare('DELETE FROM kv WHERE key = ?');
    const saved = db.prepare("SELECT value FROM kv WHERE key = 'next-seq'").get() as { value: Buffer } | undefined;
    const max = (db.prepare('SELECT max(seq) AS m FROM messages').get() as { m: number | null }).m ?? 0;
    this.#next = Math.max(max + 1, saved === undefined ? 1 : Number(saved.value.toString('utf8')));
  }

  recover(options: { readonly bodyBudget?: number } = {}): Promise<Recovered> {
    this.#open();
    // Row by row: a store larger than the budget is never in memory at once.
    const rows = this.#db.prepare('SELECT seq, held, data, via FROM messages ORDER BY seq').iterate() as IterableIterator<{ seq: number; held: number; data: Buffer; via: string }>;
    const messages: StoredMessage[] = [];
    const seen: SeenKey[] = [];
    let budget = options.bodyBudget ?? Infinity;
    for (const r of rows) {
      const m = decodeRow(r.seq, r.data, r.via);
      seen.push({ from: m.from, id: m.id, seq: r.seq, at: m.storedAt, cameFrom: m.cameFrom });
      if (r.held !== 1) continue;
      budget -= m.body.length;
      // A body is a view of its row: one left out must not keep the row.
      messages.push(budget >= 0 ? m : { ...m, body: EMPTY, bodyOmitted: true });
    }
    return Promise.resolve({ messages, seen });
  }

  readBodies(seqs: readonly number[]): Promise<Array<Uint8Array | undefined>> {
    this.#open();
    const bySeq = new Map<number, Uint8Array>();
    for (let i = 0; i < seqs.length; i += CHUNK) {
      // Padded with a seq that is never used (they start at 1): one prepared statement.
      const part = seqs.slice(i, i + CHUNK);
      while (part.length < CHUNK) part.push(0);
      const rows = this.#readN.all(...part) as Array<{ seq: number; data: Buffer; via: string }>;
      for (const r of rows) bySeq.set(r.seq, decodeRow(r.seq, r.data, r.via).body);
    }
    return Promise.resolve(seqs.map((s) => bySeq.get(s)));
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
    const results: number[][] = [];
    const started = this.#lastCommit;
    try {
      this.#db.transaction(() => {
        let next = first;
        const rows: unknown[] = [];
        for (const a of appends) {
          const seqs: number[] = [];
          for (const m of a.messages) {
            seqs.push(next);
            rows.push(next++, encodeRow(m), m.via);
          }
          results.push(seqs);
        }
        chunked(rows, 3, this.#insert1, this.#insertN, () => crashPoint('store.mid-commit'));
        for (const r of repins) this.#repin.run(r.via, r.seq);
        chunked(retires, 1, this.#retire1, this.#retireN);
        chunked(removals, 1, this.#delete1, this.#deleteN);
        for (const [k, v] of values) {
          if (v === undefined) this.#deleteValue.run(k);
          else this.#setValue.run(k, v);
        }
        if (next !== first) this.#saveSeq.run(Buffer.from(String(next), 'utf8'));
        this.#next = next;
      })();
    } catch (cause) {
      this.#onCommit?.(performance.now() - started, false);
      this.#next = first;
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
      const err = new PosternError(transient ? 'ERR_STORE_UNAVAILABLE' : 'ERR_INTERNAL', `the store could not commit: ${(cause as Error).message}`, { cause });
      for (const a of appends) a.reject(err);
      for (const w of waiters) w.reject(err);
      return;
    }
    this.#onCommit?.(performance.now() - started, true);
    appends.forEach((a, i) => a.resolve(results[i] ?? []));
    for (const w of waiters) w.resolve();
  }

  #open(): void {
    if (this.#closed) throw new PosternError('ERR_CLOSED', `the store ${this.file} is closed`);
  }
}

/** Runs `one` per item and `many` per CHUNK items; `params` holds `width` values per item. */
function chunked(params: readonly unknown[], width: number, one: Statement, many: Statement, after?: () => void): void {
  const n = params.length / width;
  let i = 0;
  for (; i + CHUNK <= n; i += CHUNK) {
    many.run(params.slice(i * width, (i + CHUNK) * width));
    after?.();
  }
  for (; i < n; i++) {
    one.run(params.slice(i * width, (i + 1) * width));
    after?.();
  }
}

/** Brings a file of any earlier schema to this one, keeping the messages it holds. */
function migrate(db: Database, from: number): void {
  db.exec('CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)');
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
  db.pragma(`user_version = ${SCHEMA_VERSION}`);
}
