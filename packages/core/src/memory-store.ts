import { PosternError } from '@postern/protocol';
import type { MessageKey, NewMessage, Recovered, SeenKey, Store, StoredMessage } from './store.js';

/**
 * A Store in memory: the same contract as a durable one while the process lives, nothing after.
 * Several routers in one test can share one instance to simulate a restart.
 */
export class MemoryStore implements Store {
  readonly #messages = new Map<number, StoredMessage>();
  readonly #seen = new Map<string, SeenKey>();
  readonly #values = new Map<string, Uint8Array>();
  #seq = 0;
  #closed = false;

  recover(seenSince: number): Promise<Recovered> {
    this.#closed = false;
    return Promise.resolve({
      messages: [...this.#messages.values()].sort((a, b) => a.seq - b.seq),
      seen: [...this.#seen.values()].filter((k) => k.at >= seenSince),
    });
  }

  append(messages: readonly NewMessage[]): Promise<number[]> {
    this.#open();
    const seqs: number[] = [];
    for (const m of messages) {
      const seq = ++this.#seq;
      this.#messages.set(seq, { ...m, seq, body: m.body.slice() });
      this.#seen.set(`${m.from} ${m.id}`, { from: m.from, id: m.id, at: m.storedAt });
      seqs.push(seq);
    }
    return Promise.resolve(seqs);
  }

  remove(seqs: readonly number[]): Promise<void> {
    this.#open();
    for (const s of seqs) this.#messages.delete(s);
    return Promise.resolve();
  }

  forget(keys: readonly MessageKey[]): Promise<void> {
    this.#open();
    for (const k of keys) this.#seen.delete(`${k.from} ${k.id}`);
    return Promise.resolve();
  }

  pruneSeen(before: number): Promise<void> {
    this.#open();
    for (const [k, v] of this.#seen) if (v.at < before) this.#seen.delete(k);
    return Promise.resolve();
  }

  getValue(key: string): Promise<Uint8Array | undefined> {
    return Promise.resolve(this.#values.get(key)?.slice());
  }

  setValue(key: string, value: Uint8Array): Promise<void> {
    this.#open();
    this.#values.set(key, value.slice());
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }

  #open(): void {
    if (this.#closed) throw new PosternError('ERR_CLOSED', 'the store is closed');
  }
}
