/**
 * Remembers the last `capacity` message keys, oldest forgotten first. A key is 'queued' until
 * the application takes the message, then 'taken'. Eviction follows a ring of keys: deleting
 * the oldest entry of a Map through its iterator walks past every deleted slot V8 has not yet
 * compacted, which made each insert cost tens of microseconds once the window was full.
 */
export class DedupWindow {
  readonly #capacity: number;
  readonly #seen = new Map<string, 'queued' | 'taken'>();
  readonly #ring: Array<string | undefined>;
  #head = 0;

  constructor(capacity: number) {
    this.#capacity = capacity;
    this.#ring = new Array<string | undefined>(capacity);
  }

  get size(): number {
    return this.#seen.size;
  }

  get(key: string): 'queued' | 'taken' | undefined {
    return this.#seen.get(key);
  }

  set(key: string, state: 'queued' | 'taken'): void {
    if (this.#seen.has(key)) {
      this.#seen.set(key, state);
      return;
    }
    const old = this.#ring[this.#head];
    if (old !== undefined) this.#seen.delete(old);
    this.#ring[this.#head] = key;
    this.#head = (this.#head + 1) % this.#capacity;
    this.#seen.set(key, state);
  }
}
