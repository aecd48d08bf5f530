export interface BackoffOptions {
  /** @default 250 */
  initialMs?: number;
  /** @default 30000 */
  maxMs?: number;
  /** @default 2 */
  factor?: number;
}

/**
 * Exponential backoff with full jitter (each delay uniform in [0, cap)), so that many gateways
 * cut off together do not come back together. `reset()` after a connection proved healthy.
 */
export class Backoff {
  readonly #initial: number;
  readonly #max: number;
  readonly #factor: number;
  readonly #random: () => number;
  #attempt = 0;

  constructor(options: BackoffOptions = {}, random: () => number = Math.random) {
    this.#initial = options.initialMs ?? 250;
    this.#max = options.maxMs ?? 30_000;
    this.#factor = options.factor ?? 2;
    this.#random = random;
  }

  get attempt(): number {
    return this.#attempt;
  }

  /** Delay before the next attempt. */
  next(): number {
    const cap = Math.min(this.#max, this.#initial * this.#factor ** this.#attempt);
    this.#attempt++;
    // Never zero: a floor of a tenth of the initial delay keeps a tight loop impossible.
    return Math.max(this.#initial / 10, this.#random() * cap);
  }

  reset(): void {
    this.#attempt = 0;
  }
}
