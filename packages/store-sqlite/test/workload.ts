// A deterministic workload of commits (appends, retires, removes, repins) and a model of what
// the store must hold after each: crash-child.ts runs it against a SqliteStore until it is
// killed, sqlite-crash.test.ts replays the model to judge what survived.
import assert from 'node:assert/strict';
import type { NewMessage, Recovered, Store } from '@postern/core';

export interface Model {
  held: Map<number, { id: string; via: string; size: number }>;
  keys: Map<number, { id: string; size: number }>;
  next: number;
  step: number;
  random: () => number;
}

export interface Step {
  fresh: NewMessage[];
  retire: number[];
  remove: number[];
  repin: Array<{ seq: number; via: string }>;
}

export function newModel(seed: number): Model {
  let a = seed >>> 0;
  // mulberry32
  const random = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { held: new Map(), keys: new Map(), next: 1, step: 0, random };
}

/** A body that names its message. */
export function bodyFor(id: string, size: number): Uint8Array {
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = id.charCodeAt(i % id.length);
  return b;
}

/** The next step's calls. */
export function nextStep(m: Model): Step {
  const r = m.random;
  const fresh = Array.from({ length: Math.floor(r() * 4) }, (_, i): NewMessage => {
    const id = `s${m.step}-${i}`;
    const size = 200 + Math.floor(r() * 6000);
    return { queue: 'agent:bob', from: 'alice@acme', id, to: 'bob@acme', flags: 0, hops: 3, body: bodyFor(id, size), storedAt: m.step, expiresAt: 0, cameFrom: '', via: r() < 0.5 ? 'N1' : '' };
  });
  // Most messages leave within a few steps; about one in twenty stays long.
  const stays = (seq: number): boolean => m.held.get(seq)!.size % 20 === 0;
  const retire = [...m.held.keys()].filter((seq) => r() < (stays(seq) ? 0.002 : 0.25));
  // A key whose message size is a multiple of 3 is kept long (its message's next hop has not
  // released it): keys alone get compacted too.
  const remove = [...[...m.keys.keys()].filter((seq) => r() < (m.keys.get(seq)!.size % 3 === 0 ? 0.003 : 0.4)), ...[...m.held.keys()].filter((seq) => !retire.includes(seq) && r() < (stays(seq) ? 0.002 : 0.1))];
  const repin = [...m.held.keys()].filter((seq) => !retire.includes(seq) && !remove.includes(seq) && r() < 0.02).map((seq) => ({ seq, via: `R${m.step}` }));
  return { fresh, retire, remove, repin };
}

export function applyStep(m: Model, s: Step): number[] {
  for (const seq of s.retire) {
    m.keys.set(seq, m.held.get(seq)!);
    m.held.delete(seq);
  }
  for (const seq of s.remove) {
    m.keys.delete(seq);
    m.held.delete(seq);
  }
  for (const p of s.repin) m.held.get(p.seq)!.via = p.via;
  const seqs = s.fresh.map((f) => {
    const seq = m.next++;
    m.held.set(seq, { id: f.id, via: f.via, size: f.body.length });
    return seq;
  });
  m.step++;
  return seqs;
}

/** The model after `steps` steps. */
export function modelAt(seed: number, steps: number): Model {
  const m = newModel(seed);
  while (m.step < steps) applyStep(m, nextStep(m));
  return m;
}

/** One step against a store: all its calls in one tick, so one commit. */
export async function runStep(store: Store, m: Model): Promise<void> {
  const s = nextStep(m);
  const [seqs] = await Promise.all([store.append(s.fresh), store.retire(s.retire), store.remove(s.remove), store.repin(s.repin)]);
  assert.deepEqual(seqs, applyStep(m, s));
}

/** Whether `r` (recovered with no budget) is exactly the model's state. */
export function matches(r: Recovered, m: Model): boolean {
  const held = [...m.held].sort((a, b) => a[0] - b[0]);
  if (r.messages.length !== held.length) return false;
  for (let i = 0; i < held.length; i++) {
    const [seq, h] = held[i]!;
    const x = r.messages[i]!;
    if (x.seq !== seq || x.id !== h.id || x.via !== h.via || Buffer.compare(Buffer.from(x.body), Buffer.from(bodyFor(h.id, h.size))) !== 0) return false;
  }
  const keys = [...new Map<number, string>([...[...m.keys].map(([seq, k]): [number, string] => [seq, k.id]), ...[...m.held].map(([seq, h]): [number, string] => [seq, h.id])])].sort((a, b) => a[0] - b[0]);
  return r.seen.length === keys.length && r.seen.every((k, i) => k.seq === keys[i]![0] && k.id === keys[i]![1]);
}
