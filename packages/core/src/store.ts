/**
 * Durable state of a router: messages it accepted and has not yet handed on, and the keys of
 * messages it accepted recently (to drop retries). Implementations: MemoryStore (tests, and
 * routers that may lose everything on restart), SqliteStore (@postern/store-sqlite, the default).
 * Every implementation passes `storeSuite()` from @postern/testing.
 *
 * Contract: when `append()` resolves, the messages and their keys survive a crash of the
 * process (and, for stores that say so, of the machine); so do removals and forgotten keys when
 * `remove()` and `forget()` resolve. Calls made in the same tick share one commit, atomically:
 * after a crash either all of them happened or none. Commits resolve in the order of the calls;
 * the order of `seq` follows the order of calls and of messages within a call.
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
}

export type NewMessage = Omit<StoredMessage, 'seq'>;

/** Names a message at every hop: the sender's address and the sender-made id. */
export interface MessageKey {
  readonly from: string;
  readonly id: string;
}

/** A message key seen recently, for deduplication. */
export interface SeenKey {
  readonly from: string;
  readonly id: string;
  /** Epoch ms when it was accepted. */
  readonly at: number;
}

export interface Recovered {
  /** Every stored message, in seq order. */
  messages: StoredMessage[];
  /** Every key accepted at or after the given time. */
  seen: SeenKey[];
}

export interface Store {
  /** What survived the last run. Called once, before anything else. */
  recover(seenSince: number): Promise<Recovered>;
  /** Stores messages and records their (from, id) keys, durably. Resolves with their seqs. */
  append(messages: readonly NewMessage[]): Promise<number[]>;
  /** Forgets messages that were handed on, or expired. Unknown seqs are ignored. */
  remove(seqs: readonly number[]): Promise<void>;
  /**
   * Forgets these keys: the hop that sent the messages has confirmed our acks (RELEASE), so it
   * will not retry them. Shares the next commit with appends and removals made in the same tick.
   */
  forget(keys: readonly MessageKey[]): Promise<void>;
  /** Forgets keys accepted before `before` (epoch ms). */
  pruneSeen(before: number): Promise<void>;
  /** Small named values (the router's keys). */
  getValue(key: string): Promise<Uint8Array | undefined>;
  setValue(key: string, value: Uint8Array): Promise<void>;
  close(): Promise<void>;
}
