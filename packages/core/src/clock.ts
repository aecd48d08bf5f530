/** Time source injected everywhere timers matter, so tests can tick a manual clock. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = Object.freeze({
  now: () => Date.now(),
  setTimeout: (fn: () => void, ms: number): unknown => {
    const t = setTimeout(fn, ms);
    // Timers of a library must not keep a process alive on their own.
    (t as { unref?: () => void }).unref?.();
    return t;
  },
  clearTimeout: (h: unknown) => clearTimeout(h as ReturnType<typeof setTimeout>),
});

/** Runs `fn` after the current I/O phase, so frames produced together leave together. */
export type Scheduler = (fn: () => void) => void;

export const defaultScheduler: Scheduler =
  typeof (globalThis as { setImmediate?: unknown }).setImmediate === 'function'
    ? (fn) => {
        (globalThis as unknown as { setImmediate: (f: () => void) => void }).setImmediate(fn);
      }
    : (fn) => {
        setTimeout(fn, 0);
      };
