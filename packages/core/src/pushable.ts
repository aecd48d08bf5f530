/**
 * A queue read with `for await`: producers push, one consumer iterates. Ending it lets the
 * consumer drain what is queued; failing it throws after the drain.
 */
export class Pushable<T> implements AsyncIterable<T> {
  #items: T[] = [];
  #head = 0;
  #waiter: ((r: IteratorResult<T>) => void) | undefined;
  #failer: ((e: unknown) => void) | undefined;
  #ended = false;
  #error: unknown;
  readonly #onTake: ((item: T) => void) | undefined;

  /** `onTake` runs as each item is handed to the consumer. */
  constructor(onTake?: (item: T) => void) {
    this.#onTake = onTake;
  }

  get length(): number {
    return this.#items.length - this.#head;
  }

  get ended(): boolean {
    return this.#ended;
  }

  push(item: T): void {
    if (this.#ended) return;
    const w = this.#waiter;
    if (w !== undefined) {
      this.#waiter = undefined;
      this.#failer = undefined;
      this.#onTake?.(item);
      w({ value: item, done: false });
      return;
    }
    this.#items.push(item);
  }

  end(error?: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#error = error;
    const w = this.#waiter;
    const f = this.#failer;
    this.#waiter = undefined;
    this.#failer = undefined;
    if (error !== undefined && f !== undefined) f(error);
    else w?.({ value: undefined, done: true });
  }

  next(): Promise<IteratorResult<T>> {
    if (this.#head < this.#items.length) {
      const item = this.#items[this.#head++] as T;
      if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
        this.#items = this.#items.slice(this.#head);
        this.#head = 0;
      }
      this.#onTake?.(item);
      return Promise.resolve({ value: item, done: false });
    }
    if (this.#ended) {
      if (this.#error !== undefined) {
        const e = this.#error;
        this.#error = undefined;
        return Promise.reject(e instanceof Error ? e : new Error("iteration failed", { cause: e }));
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => {
      this.#waiter = resolve;
      this.#failer = reject;
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => this.next(),
      return: () => {
        this.end();
        this.#items = [];
        this.#head = 0;
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
