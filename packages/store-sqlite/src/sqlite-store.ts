import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { crashPoint, type MessageKey, type NewMessage, type Recovered, type Store, type StoredMessage } from '@postern/core';
import { ConfigError, PosternError } from '@postern/protocol';
import Database from 'better-sqlite3';

export interface SqliteStoreOptions {
  /**
   * `full`: every commit is fsynced before `append()` resolves: accepted messages survive a
   * crash of the machine. `normal`: WAL without fsync per commit: they survive a crash of the
   * process (kill -9) but the last commits may be lost on power failure. @default 'full'
   */
  sync?: 'full' | 'normal';
}

const SCHEMA_VERSION = 1;

interface Row {
  seq: number;
  queue: string;
  sender: string;
  id: string;
  dest: string;
  flags: number;
  hops: number;
  body: Buffer;
  stored_at: number;
  expires_at: number;
}

interface Pending {
  messages: readonly NewMessage[];
  resolve(seqs: number[]): void;
  reject(err: unknown): void;
}

/**
 * A Store in one SQLite file (WAL mode). Appends and removals made during one I/O phase are
 * written in a single transaction: one fsync for all of them (group commit).
 */
export class SqliteStore implements Store {
  readonly file: string;
  readonly #db: Database.Database;
  readonly #insert: Database.Statement;
  readonly #seen: Database.Statement;
  readonly #delete: Database.Statement;
  readonly #unsee: Database.Statement;
  #appends: Pending[] = [];
  #removals: number[] = [];
  #forgets: MessageKey[] = [];
  #removalWaiters: Array<{ resolve(): void; reject(err: unknown): void }> = [];
  #scheduled = false;
  #closed = false;

  constructor(file: string, options: SqliteStoreOptions = {}) {
    const sync = options.sync ?? 'full';
    if (sync !== 'full' && sync !== 'normal') throw new ConfigError(`sync must be "full" or "normal", got ${JSON.stringify(sync)}`);
    this.file = file;
    try {
      if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
      this.#db = new Database(file);
    } catch (cause) {
      throw new ConfigError(`cannot open the store ${file}: ${(cause as Error).message}`, { cause });
    }
    const db = this.#db;
    // One router per file: a second process on the same data dir would hand out the same
    // messages twice. EXCLUSIVE holds the lock from the first write until close.
    db.pragma('locking_mode = EXCLUSIVE');
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${sync === 'full' ? 'FULL' : 'NORMAL'}`);
    db.pragma('foreign_keys = OFF');
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      db.close();
      throw new ConfigError(`the store ${file} was written by a newer Postern (schema ${version}, this one reads ${SCHEMA_VERSION})`);
    }
    db.exec(`
      CREATE TABLE IF NOT EXISTS messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL, sender TEXT NOT NULL, id TEXT NOT NULL, dest TEXT NOT NULL,
        flags INTEGER NOT NULL, hops INTEGER NOT NULL, body BLOB NOT NULL,
        stored_at INTEGER NOT NULL, expires_at INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS seen (
        sender TEXT NOT NULL, id TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (sender, id)
      ) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS seen_at ON seen (at);
      CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL);
      PRAGMA user_version = ${SCHEMA_VERSION};
    `);
    this.#insert = db.prepare(
      'INSERT INTO messages (queue, sender, id, dest, flags, hops, body, stored_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
    );
    this.#seen = db.prepare('INSERT OR REPLACE INTO seen (sender, id, at) VALUES (?, ?, ?)');
    this.#delete = db.prepare('DELETE FROM messages WHERE seq = ?');
    this.#unsee = db.prepare('DELETE FROM seen WHERE sender = ? AND id = ?');
    try {
      // Takes the exclusive lock now, so that a second router on this file fails at start.
      db.exec('BEGIN IMMEDIATE; COMMIT;');
    } catch (cause) {
      db.close();
      throw new ConfigError(`the store ${file} is in use by another process (is another router running with this data dir?)`, { cause });
    }
  }

  recover(seenSince: number): Promise<Recovered> {
    this.#open();
    const rows = this.#db.prepare('SELECT * FROM messages ORDER BY seq').all() as Row[];
    const messages: StoredMessage[] = rows.map((r) => ({
      seq: r.seq,
      queue: r.queue,
      from: r.sender,
      id: r.id,
      to: r.dest,
      flags: r.flags,
      hops: r.hops,
      body: new Uint8Array(r.body.buffer, r.body.byteOffset, r.body.byteLength),
      storedAt: r.stored_at,
      expiresAt: r.expires_at,
    }));
    const seen = (this.#db.prepare('SELECT sender, id, at FROM seen WHERE at >= ?').all(seenSince) as Array<{ sender: string; id: string; at: number }>).map(
      (k) => ({ from: k.sender, id: k.id, at: k.at }),
    );
    return Promise.resolve({ messages, seen });
  }

  append(messages: readonly NewMessage[]): Promise<number[]> {
    this.#open();
    return new Promise((resolve, reject) => {
      this.#appends.push({ messages, resolve, reject });
      this.#schedule();
    });
  }

  remove(seqs: readonly number[]): Promise<void> {
    this.#open();
    for (const s of seqs) this.#removals.push(s);
    return new Promise((resolve, reject) => {
      this.#removalWaiters.push({ resolve, reject });
      this.#schedule();
    });
  }

  forget(keys: readonly MessageKey[]): Promise<void> {
    this.#open();
    for (const k of keys) this.#forgets.push(k);
    return new Promise((resolve, reject) => {
      this.#removalWaiters.push({ resolve, reject });
      this.#schedule();
    });
  }

  pruneSeen(before: number): Promise<void> {
    this.#open();
    this.#db.prepare('DELETE FROM seen WHERE at < ?').run(before);
    return Promise.resolve();
  }

  getValue(key: string): Promise<Uint8Array | undefined> {
    this.#open();
    const row = this.#db.prepare('SELECT value FROM kv WHERE key = ?').get(key) as { value: Buffer } | undefined;
    return Promise.resolve(row === undefined ? undefined : new Uint8Array(row.value));
  }

  setValue(key: string, value: Uint8Array): Promise<void> {
    this.#open();
    this.#db.prepare('INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)').run(key, Buffer.from(value));
    return Promise.resolve();
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#commit();
    this.#closed = true;
    this.#db.close();
    return Promise.resolve();
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => this.#commit());
  }

  /** One transaction for everything queued since the last commit. */
  #commit(): void {
    this.#scheduled = false;
    if (this.#closed) return;
    const appends = this.#appends;
    const removals = this.#removals;
    const forgets = this.#forgets;
    const waiters = this.#removalWaiters;
    if (appends.length === 0 && removals.length === 0 && forgets.length === 0 && waiters.length === 0) return;
    this.#appends = [];
    this.#removals = [];
    this.#forgets = [];
    this.#removalWaiters = [];
    const results: number[][] = [];
    try {
      this.#db.transaction(() => {
        for (const a of appends) {
          const seqs: number[] = [];
          for (const m of a.messages) {
            const r = this.#insert.run(m.queue, m.from, m.id, m.to, m.flags, m.hops, Buffer.from(m.body), m.storedAt, m.expiresAt);
            this.#seen.run(m.from, m.id, m.storedAt);
            seqs.push(Number(r.lastInsertRowid));
            crashPoint('store.mid-commit');
          }
          results.push(seqs);
        }
        for (const s of removals) this.#delete.run(s);
        for (const k of forgets) this.#unsee.run(k.from, k.id);
      })();
    } catch (cause) {
      const err = new PosternError('ERR_INTERNAL', `the store could not commit: ${(cause as Error).message}`, { cause });
      for (const a of appends) a.reject(err);
      for (const w of waiters) w.reject(err);
      return;
    }
    appends.forEach((a, i) => a.resolve(results[i] ?? []));
    for (const w of waiters) w.resolve();
  }

  #open(): void {
    if (this.#closed) throw new PosternError('ERR_CLOSED', `the store ${this.file} is closed`);
  }
}
