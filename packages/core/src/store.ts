/**
 * Durable state of a router: messages it accepted and has not yet handed on, and the keys of
 * messages it accepted and must still recognise (to drop retries). A key lives in its
 * message's row: `retire` drops the message and keeps the key, `remove` drops both. Implementations: MemoryStore (tests, and
 * routers that may lose everything on restart), SqliteStore (@postern/store-sqlite, the default).
 * Every implementation passes `storeSuite()` from @postern/testing.
 *
 * Contract: when `append()` resolves, the messages and their keys survive a crash of the
 * process (and, for stores that say so, of the machine); so do removals and forgotten keys when
 * `retire()` and `remove()` resolve. Calls made in the same tick share one commit, atomically:
 * after a crash either all of them happened or none. Commits resolve in the order of the calls;
 * the order of `seq` follows the order of calls and of messages within a call.
 *
 * A failed commit: when a call rejects with a PosternError of code `ERR_STORE_UNAVAILABLE`
 * (see {@link isStoreUnavailable}), nothing of the commit it belonged to happened (its
 * transaction was rolled back, every call of it rejects alike) and the store stays usable: the
 * same calls may be made again and succeed once the cause is gone (disk full, I/O error, a lock
 * held for a while). Any other rejection means the store cannot go on (closed, corrupt), and the
 * router stops.
 */
export interface StoredMessage {
  /** Assigned by the store: increasing, never reused. */
  readonly seq: number;
  /** Where the message waits: e.g. `agent:alice` or `domain:acme`. Opaque to the store. */
  readonly queue: string;
  readonly from: string;
  readonly id: string;
  readonly to: string;
  readonly flags: number;
  readonly hops: number;
  readonly body: Uint8Array;
  /** Epoch ms when the store took it. */
  readonly storedAt: number;
  /** Epoch ms after which it is dropped and its sender told; 0 for never. */
  readonly expiresAt: number;
  /** Node id of the router it came from ('' from an agent, or made by this router). */
  readonly cameFrom: string;
  /**
   * Node id of the router it is meant for or was written to ('' for none). Set at append, changed
   * by `repin()`; a message recovered with one may be at that router already.
   */
  readonly via: string;
  /**
   * Set by `recover()` for a message whose body it left in the store (past the body budget it
   * was given): `body` is empty then; `readBodies()` reads it.
   */
  readonly bodyOmitted?: boolean;
}

export type NewMessage = Omit<StoredMessage, 'seq' | 'bodyOmitted'>;

/** Names a message at every hop: the sender's address and the sender-made id. */
export interface MessageKey {
  readonly from: string;
  readonly id: string;
}

/** A key kept for deduplication, with the row it belongs to. */
export interface SeenKey extends MessageKey {
  readonly seq: number;
  /** Node id of the router its message came from ('' from an agent): a copy from another router is a loop. */
  readonly cameFrom: string;
  /** Epoch ms when its message was stored. */
  readonly at: number;
}

export interface Recovered {
  /** Every message still held, in seq order. */
  messages: StoredMessage[];
  /** Every key kept: those of held messages and of retired ones, in seq order. */
  seen: SeenKey[];
}

export interface Store {
  /**
   * What survived the last run. Called once, before anything else. With `bodyBudget`, the bodies
   * of held messages are returned in seq order up to that many bytes; later ones are left in the
   * store (`bodyOmitted`), so that recovering a full store does not need its size in memory.
   */
  recover(options?: { readonly bodyBudget?: number }): Promise<Recovered>;
  /**
   * The bodies of held messages by seq (undefined for a seq not held). A router keeps at most
   * `maxBodyMemoryBytes` of bodies in memory and reads the others back here to send them.
   */
  readBodies(seqs: readonly number[]): Promise<Array<Uint8Array | undefined>>;
  /** Stores messages with their (from, id) keys, durably. Resolves with their seqs. */
  append(messages: readonly NewMessage[]): Promise<number[]>;
  /** These messages left the router; their keys stay (a retry of them must still be recognised). */
  retire(seqs: readonly number[]): Promise<void>;
  /** Forgets these messages and their keys. Unknown seqs are ignored. */
  remove(seqs: readonly number[]): Promise<void>;
  /** Changes where held messages are meant to go (their `via`). Unknown seqs are ignored. */
  repin(changes: ReadonlyArray<{ readonly seq: number; readonly via: string }>): Promise<void>;
  /** Small named values (the router's keys, reply handles). */
  getValue(key: string): Promise<Uint8Array | undefined>;
  /** Stores a value; durable when it resolves, in the same commit as the calls of its tick. */
  setValue(key: string, value: Uint8Array): Promise<void>;
  /** Forgets values; unknown keys are ignored. Same commit rules as setValue. */
  deleteValues(keys: readonly string[]): Promise<void>;
  /** Every value whose key starts with `prefix`, in key order. */
  listValues(prefix: string): Promise<Array<[string, Uint8Array]>>;
  close(): Promise<void>;
}

/** The rejection of a commit that did not happen and may succeed when tried again (see Store). */
export function isStoreUnavailable(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'ERR_STORE_UNAVAILABLE';
}
