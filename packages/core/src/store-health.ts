import type { Clock } from './clock.js';
import type { Logger } from './logger.js';

/** What `/healthz` shows of the store: `ok`, or since when and why its commits fail. */
export interface StoreState {
  readonly ok: boolean;
  /** The last commit error (while not ok). */
  readonly error?: string;
  /** Epoch ms of the first failed commit of this spell (while not ok). */
  readonly since?: number;
}

/**
 * Whether the store commits. A commit that fails with ERR_STORE_UNAVAILABLE (disk full, I/O
 * error) puts the router in the failing state: it refuses what it would have to store and keeps
 * serving the rest; the next commit that succeeds ends it. Logged once each way, not per commit.
 */
export class StoreHealth {
  readonly #logger: Logger;
  readonly #clock: Clock;
  #error: string | undefined;
  #since = 0;
  /** Commits that failed (every failed call counts once). */
  failures = 0;
  /** Reliable messages refused with STORE_UNAVAILABLE. */
  refused = 0;

  constructor(logger: Logger, clock: Clock) {
    this.#logger = logger;
    this.#clock = clock;
  }

  get failing(): boolean {
    return this.#error !== undefined;
  }

  failed(err: unknown): void {
    this.failures++;
    const message = err instanceof Error ? err.message : String(err);
    if (this.#error === undefined) {
      this.#since = this.#clock.now();
      this.#logger.error('store.failing', 'the store cannot commit: reliable messages are refused (STORE_UNAVAILABLE) until it can; the router keeps serving', { err: message });
    }
    this.#error = message;
  }

  succeeded(): void {
    if (this.#error === undefined) return;
    this.#logger.info('store.recovered', 'the store commits again: reliable messages are accepted', { failed_ms: this.#clock.now() - this.#since, failures: this.failures });
    this.#error = undefined;
  }

  state(): StoreState {
    return this.#error === undefined ? { ok: true } : { ok: false, error: this.#error, since: this.#since };
  }
}
