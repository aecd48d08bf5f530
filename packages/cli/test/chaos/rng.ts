// A seeded PRNG, so that a failing chaos run can be replayed (POSTERN_CHAOS_SEED).

export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [lo, hi]. */
  int(lo: number, hi: number): number;
  pick<T>(items: readonly T[]): T;
}

/** mulberry32: small, fast, good enough to pick moments and delays. */
export function createRng(seed: number): Rng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: (items) => items[Math.floor(next() * items.length)]!,
  };
}

/** A seed per scenario from the run's seed and its name: a scenario replays alone, in any order. */
export function scenarioSeed(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** The run's seed: POSTERN_CHAOS_SEED when set, else a fresh one. */
export function runSeed(): number {
  const env = process.env['POSTERN_CHAOS_SEED'];
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`POSTERN_CHAOS_SEED must be a non-negative integer, got "${env}"`);
    return n >>> 0;
  }
  return Math.floor(Math.random() * 2 ** 32);
}
