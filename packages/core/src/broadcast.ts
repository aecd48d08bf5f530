import { Pushable } from './pushable.js';

/** Fans events out to any number of `for await` readers and callbacks. */
export class Broadcast<T> {
  readonly #readers = new Set<Pushable<T>>();
  readonly #listeners = new Set<(e: T) => void>();
  #last: T | undefined;

  get last(): T | undefined {
    return this.#last;
  }

  emit(e: T): void {
    this.#last = e;
    for (const r of this.#readers) r.push(e);
    for (const l of this.#listeners) {
      try {
        l(e);
      } catch (err) {
        // A listener's bug must not break the connection it listens to.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  /** A reader that sees every event from now on, until `end()` or it stops iterating. */
  iterate(): AsyncIterable<T> {
    const r = new Pushable<T>();
    this.#readers.add(r);
    const readers = this.#readers;
    return {
      [Symbol.asyncIterator]() {
        const it = r[Symbol.asyncIterator]();
        return {
          next: () => it.next(),
          return: () => {
            readers.delete(r);
            return it.return?.() ?? Promise.resolve({ value: undefined, done: true });
          },
        };
      },
    };
  }

  /** Calls `fn` for each event; returns the function that unsubscribes. */
  on(fn: (e: T) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  end(): void {
    for (const r of this.#readers) r.end();
    this.#readers.clear();
    this.#listeners.clear();
  }
}
