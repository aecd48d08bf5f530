import type { Clock } from './clock.js';

/** Something a `Deadlines` queue calls back at its time. */
export interface Timed {
  /** Its place in the queue, -1 while not queued: the queue's to manage, nobody else's. */
  deadlineSlot: number;
  /** Its time has come (it is no longer queued). */
  onDeadline(): void;
}

/**
 * Many deadlines on one timer: a binary min-heap of times, with one `clock.setTimeout` armed for
 * the earliest. Each item fires at its own time, as with a timer of its own, but a connection
 * waiting for its next keepalive costs a slot here (its time unboxed in a number array) instead
 * of a Timeout, a closure and a boxed number (issue 12: an idle connection's memory). Items
 * due together fire in time order; one that reschedules itself from `onDeadline` for a later time
 * is not fired again in the same round.
 */
export class Deadlines {
  readonly #clock: Clock;
  #items: Timed[] = [];
  #at: number[] = [];
  #timer: unknown = undefined;
  /** The time the timer is armed for, or Infinity. */
  #armedAt = Infinity;
  /** Calling back due items: the timer is armed once they are done. */
  #firing = false;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** The queue shared by everything on `clock` (one timer for all the connections of a process). */
  static of(clock: Clock): Deadlines {
    let d = shared.get(clock);
    if (d === undefined) shared.set(clock, (d = new Deadlines(clock)));
    return d;
  }

  get size(): number {
    return this.#items.length;
  }

  /** Calls `item.onDeadline()` at `at` (clock time), instead of when it was due before. */
  schedule(item: Timed, at: number): void {
    const i = item.deadlineSlot;
    if (i >= 0) {
      const before = this.#at[i]!;
      this.#at[i] = at;
      if (at < before) this.#up(i);
      else this.#down(i);
    } else {
      const n = this.#items.length;
      this.#items.push(item);
      this.#at.push(at);
      item.deadlineSlot = n;
      this.#up(n);
    }
    this.#arm();
  }

  /** Forgets `item`'s deadline, if it has one. */
  cancel(item: Timed): void {
    const i = item.deadlineSlot;
    if (i < 0) return;
    this.#remove(i);
    if (this.#items.length === 0 && this.#timer !== undefined) {
      this.#clock.clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#armedAt = Infinity;
    }
  }

  #remove(i: number): void {
    const items = this.#items;
    const at = this.#at;
    items[i]!.deadlineSlot = -1;
    const last = items.length - 1;
    if (i !== last) {
      items[i] = items[last]!;
      at[i] = at[last]!;
      items[i].deadlineSlot = i;
    }
    items.pop();
    at.pop();
    if (i < items.length) {
      this.#up(i);
      this.#down(i);
    }
  }

  /** The timer for the earliest deadline; re-armed only when that one is earlier than the armed time. */
  #arm(): void {
    if (this.#firing || this.#items.length === 0) return;
    const first = this.#at[0]!;
    if (first >= this.#armedAt && this.#timer !== undefined) return;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#armedAt = first;
    this.#timer = this.#clock.setTimeout(() => this.#fire(), Math.max(0, first - this.#clock.now()));
  }

  #fire(): void {
    this.#timer = undefined;
    this.#armedAt = Infinity;
    this.#firing = true;
    try {
      const now = this.#clock.now();
      while (this.#items.length > 0 && this.#at[0]! <= now) {
        const item = this.#items[0]!;
        this.#remove(0);
        item.onDeadline();
      }
    } finally {
      this.#firing = false;
      this.#arm();
    }
  }

  #up(i: number): void {
    const items = this.#items;
    const at = this.#at;
    const item = items[i]!;
    const t = at[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (at[p]! <= t) break;
      items[i] = items[p]!;
      at[i] = at[p]!;
      items[i]!.deadlineSlot = i;
      i = p;
    }
    items[i] = item;
    at[i] = t;
    item.deadlineSlot = i;
  }

  #down(i: number): void {
    const items = this.#items;
    const at = this.#at;
    const n = items.length;
    const item = items[i]!;
    const t = at[i]!;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && at[c + 1]! < at[c]!) c++;
      if (at[c]! >= t) break;
      items[i] = items[c]!;
      at[i] = at[c]!;
      items[i]!.deadlineSlot = i;
      i = c;
    }
    items[i] = item;
    at[i] = t;
    item.deadlineSlot = i;
  }
}

const shared = new WeakMap<Clock, Deadlines>();
