import { ConfigError } from '@postern/protocol';

/**
 * Named points in the reliable path where a test may make a router die, to prove that a crash
 * anywhere loses and duplicates nothing. Compiled into every build; a check costs one
 * comparison while nothing is armed. `startRouter` arms one from `POSTERN_CRASH_AT`.
 */
export const CRASH_POINTS = Object.freeze([
  /** Inside the store's group commit, after the first message row (the transaction is rolled back). */
  'store.mid-commit',
  /** The message is stored; the previous hop has not been acked. */
  'accept.after-store',
  /** The previous hop was acked (the ACK may not have left); not yet forwarded. */
  'accept.after-ack',
  /** Written to the next router; its ack not yet received. */
  'forward.after-send',
  /** The next router acked; our copy is not yet removed. */
  'forward.after-ack',
  /** Our copy is removed; the next router has not been told it may forget the key (RELEASE). */
  'forward.after-remove',
  /** Written to the recipient agent; its ack not yet received. */
  'deliver.after-send',
  /** The recipient agent acked; our copy is not yet removed (nor the delivery report stored). */
  'deliver.after-ack',
] as const);

export type CrashPointName = (typeof CRASH_POINTS)[number];

let armed: { point: string; remaining: number; fire: (point: string) => void } | undefined;

/**
 * Arms one crash point from a spec `point` or `point:n` (die at the n-th time it is reached).
 * `fire` must not return normally in production use (it kills the process).
 */
export function armCrashPoint(spec: string, fire: (point: string) => void): void {
  const m = /^([a-z.-]+)(?::(\d+))?$/.exec(spec.trim());
  const point = m?.[1];
  if (m === null || point === undefined || !(CRASH_POINTS as readonly string[]).includes(point)) {
    throw new ConfigError(`unknown crash point "${spec}"; known: ${CRASH_POINTS.join(', ')} (optionally :N for the N-th time)`);
  }
  const n = m[2] === undefined ? 1 : Number(m[2]);
  if (!Number.isSafeInteger(n) || n < 1) throw new ConfigError(`crash point count must be >= 1 in "${spec}"`);
  armed = { point, remaining: n, fire };
}

export function disarmCrashPoint(): void {
  armed = undefined;
}

export function crashPoint(point: CrashPointName): void {
  if (armed === undefined || armed.point !== point) return;
  if (--armed.remaining > 0) return;
  const fire = armed.fire;
  armed = undefined;
  fire(point);
}
