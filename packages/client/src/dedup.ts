/** Slots of the ring at the first key: an idle client reserves none, not the whole window. */
const INITIAL_SLOTS = 16;

/**
 * Remembers the last `capacity` message keys, oldest forgotten first. A key is 'queued' until
 * the application takes the message, then 'taken'. Eviction follows a ring of keys: deleting
 * the oldest entry of a Map through its iterator walks past every deleted slot V8 has not yet
 * compacted, which made each insert cost tens of microseconds once the window was full.
 *
 * The ring grows with use: it is empty until the first key, then 16 slots, and doubles (oldest key first in the copy)
 * whenever it is full and smaller than `capacity`, so nothing is forgotten before `capacity`
 * keys are held, and a client that receives little never reserves the whole window (65,536
 * slots, 512 KiB of pointers, by default).
 */
export class DedupWindow {
  readonly #capacity: number;
  /** Made with the first key. */
  #seen: Map<string, 'queued' | 'taken'> | undefined;
  #ring: Array<string | undefined>;
  /** Where the next key goes; once the ring is full, also the oldest key. */
  #head = 0;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`dedup capacity must be a positive integer, not ${capacity}`);
    this.#capacity = capacity;
    this.#ring = [];
  }

  get size(): number {
    return this.#seen?.size ?? 0;
  }

  /** The window's size: keys remembered before the oldest is forgotten. */
  get capacity(): number {
    return this.#capacity;
  }

  /** Slots allocated in the ring now (grows towards `capacity`). */
  get slots(): number {
    return this.#ring.length;
  }

  get(key: string): 'queued' | 'taken' | undefined {
    return this.#seen?.get(key);
  }

  set(key: string, state: 'queued' | 'taken'): void {
    const seen = (this.#seen ??= new Map());
    if (seen.has(key)) {
      seen.set(key, state);
      return;
    }
    if (seen.size === this.#ring.length && this.#ring.length < this.#capacity) this.#grow();
    const old = this.#ring[this.#head];
    if (old !== undefined) seen.delete(old);
    this.#ring[this.#head] = key;
    this.#head = (this.#head + 1) % this.#ring.length;
    seen.set(key, state);
  }

  /** Doubles the ring (up to capacity), keys in age order from slot 0; the next key goes after them. */
  #grow(): void {
    const n = this.#ring.length;
    const next = new Array<string | undefined>(Math.min(this.#capacity, Math.max(INITIAL_SLOTS, n * 2))).fill(undefined);
    for (let i = 0; i < n; i++) next[i] = this.#ring[(this.#head + i) % n];
    this.#ring = next;
    this.#head = n % next.length;
  }
}
