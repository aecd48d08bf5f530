/**
 * Remembers the last `capacity` message keys, oldest forgotten first. A key is 'queued' until
 * the application takes the message, then 'taken'.
 */
export class DedupWindow {
  readonly #capacity: number;
  readonly #seen = new Map<string, 'queued' | 'taken'>();

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  get(key: string): 'queued' | 'taken' | undefined {
    return this.#seen.get(key);
  }

  set(key: string, state: 'queued' | 'taken'): void {
    this.#seen.set(key, state);
    if (this.#seen.size > this.#capacity) {
      const oldest = this.#seen.keys().next().value;
      if (oldest !== undefined) this.#seen.delete(oldest);
    }
  }
}
