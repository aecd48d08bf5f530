import { PosternError } from '@postern/protocol';
import type { NewMessage, Recovered, SeenKey, Store, StoredMessage } from './store.js';

/**
 * A Store in memory: the same contract as a durable one while the process lives, nothing after.
 * Several routers in one test can share one instance to simulate a restart.
 */
export class MemoryStore implements Store {
  /** By seq; a retired message keeps its row without a body. */
  readonly #rows = new Map<number, { message: StoredMessage; held: boolean }>();
  readonly #values = new Map<string, Uint8Array>();
  #seq = 0;
  #closed = false;

  recover(options: { readonly bodyBudget?: number } = {}): Promise<Recovered> {
    this.#closed = false;
    const rows = [...this.#rows.values()].sort((a, b) => a.message.seq - b.message.seq);
    let budget = options.bodyBudget ?? Infinity;
    return Promise.resolve({
      messages: rows
        .filter((r) => r.held)
        .map((r) => {
          budget -= r.message.body.length;
          return budget >= 0 ? r.message : { ...r.message, body: new Uint8Array(0), bodyOmitted: true };
        }),
      seen: rows.map((r): SeenKey => ({ from: r.message.from, id: r.message.id, seq: r.message.seq, at: r.message.storedAt, cameFrom: r.message.cameFrom })),
    });
  }

  append(messages: readonly NewMessage[]): Promise<number[]> {
    this.#open();
    const seqs: number[] = [];
    for (const m of messages) {
      const seq = ++this.#seq;
      this.#rows.set(seq, { message: { ...m, seq, body: m.body.slice() }, held: true });
      seqs.push(seq);
    }
    return Promise.resolve(seqs);
  }

  readBodies(seqs: readonly number[]): Promise<Array<Uint8Array | undefined>> {
    this.#open();
    return Promise.resolve(
      seqs.map((seq) => {
        const r = this.#rows.get(seq);
        return r?.held === true ? r.message.body : undefined;
      }),
    );
  }

  retire(seqs: readonly number[]): Promise<void> {
    this.#open();
    for (const s of seqs) {
      const r = this.#rows.get(s);
      if (r !== undefined) r.held = false;
    }
    return Promise.resolve();
  }

  remove(seqs: readonly number[]): Promise<void> {
    this.#open();
    for (const s of seqs) this.#rows.delete(s);
    return Promise.resolve();
  }

  repin(changes: ReadonlyArray<{ readonly seq: number; readonly via: string }>): Promise<void> {
    this.#open();
    for (const c of changes) {
      const r = this.#rows.get(c.seq);
      if (r !== undefined) r.message = { ...r.message, via: c.via };
    }
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

  deleteValues(keys: readonly string[]): Promise<void> {
    this.#open();
    for (const k of keys) this.#values.delete(k);
    return Promise.resolve();
  }

  listValues(prefix: string): Promise<Array<[string, Uint8Array]>> {
    const out = [...this.#values].filter(([k]) => k.startsWith(prefix)).map(([k, v]): [string, Uint8Array] => [k, v.slice()]);
    out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return Promise.resolve(out);
  }

  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }

  #open(): void {
    if (this.#closed) throw new PosternError('ERR_CLOSED', 'the store is closed');
  }
}
