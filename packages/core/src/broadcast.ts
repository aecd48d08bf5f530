import { Pushable } from './pushable.js';

/** Fans events out to any number of `for await` readers and callbacks. */
export class Broadcast<T> {
  // Made with the first reader or listener: most broadcasts of an idle client have none (issue 12).
  #readers: Set<Pushable<T>> | undefined;
  #listeners: Set<(e: T) => void> | undefined;
  #last: T | undefined;

  get last(): T | undefined {
    return this.#last;
  }

  emit(e: T): void {
    this.#last = e;
    if (this.#readers !== undefined) for (const r of this.#readers) r.push(e);
    if (this.#listeners !== undefined) for (const l of this.#listeners) {
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
    const readers = (this.#readers ??= new Set());
    readers.add(r);
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
    const listeners = (this.#listeners ??= new Set());
    listeners.add(fn);
    return () => listeners.delete(fn);
  }

  end(): void {
    if (this.#readers !== undefined) for (const r of this.#readers) r.end();
    this.#readers?.clear();
    this.#listeners?.clear();
  }
}
