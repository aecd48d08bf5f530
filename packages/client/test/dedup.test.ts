import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DedupWindow } from '../src/dedup.js';

/** What the window must answer: the last `capacity` distinct keys, with their latest state. */
class Model {
  readonly order: string[] = [];
  readonly state = new Map<string, 'queued' | 'taken'>();
  constructor(readonly capacity: number) {}
  set(key: string, s: 'queued' | 'taken'): void {
    if (!this.state.has(key)) {
      this.order.push(key);
      if (this.order.length > this.capacity) this.state.delete(this.order.shift() as string);
    }
    this.state.set(key, s);
  }
}

describe('DedupWindow', () => {
  it('an idle window is small: it reserves no slots until the first key, then 16, not the configured window', () => {
    const w = new DedupWindow(65_536);
    assert.equal(w.capacity, 65_536);
    assert.equal(w.slots, 0);
    assert.equal(w.size, 0);
    w.set('a 1', 'queued');
    assert.equal(w.slots, 16);
    assert.equal(w.get('a 1'), 'queued');
    const small = new DedupWindow(10);
    small.set('a 1', 'queued');
    assert.equal(small.slots, 10);
  });

  it('grows by doubling up to its capacity and forgets nothing before it is full', () => {
    const cap = 5000; // not a power of two: the last growth stops at the capacity
    const w = new DedupWindow(cap);
    for (let i = 0; i < cap; i++) {
      w.set(`a ${i}`, 'queued');
      assert.ok(w.slots <= cap);
    }
    assert.equal(w.slots, cap);
    assert.equal(w.size, cap);
    for (let i = 0; i < cap; i++) assert.equal(w.get(`a ${i}`), 'queued', `key ${i}`);
    // One more forgets exactly the oldest.
    w.set('a new', 'taken');
    assert.equal(w.get('a 0'), undefined);
    assert.equal(w.get('a 1'), 'queued');
    assert.equal(w.get('a new'), 'taken');
    assert.equal(w.size, cap);
    assert.equal(w.slots, cap);
  });

  it('a key set again changes state without taking a slot, during growth and after wrap-around', () => {
    const w = new DedupWindow(300);
    const m = new Model(300);
    for (let i = 0; i < 2000; i++) {
      const k = `s ${i}`;
      w.set(k, 'queued');
      m.set(k, 'queued');
      // Take some late, retry some: across every growth (64, 128, 256, 300) and many wraps.
      if (i % 3 === 0) {
        const j = `s ${Math.max(0, i - 100)}`;
        w.set(j, 'taken');
        m.set(j, 'taken');
      }
      if (i % 97 === 0) {
        for (const [k2, s] of m.state) assert.equal(w.get(k2), s, `at ${i}: ${k2}`);
        assert.equal(w.size, m.state.size);
      }
    }
    for (const [k2, s] of m.state) assert.equal(w.get(k2), s);
    assert.equal(w.size, 300);
    for (let i = 0; i < 1700; i++) assert.equal(w.get(`s ${i}`), m.state.get(`s ${i}`));
  });

  it('matches the model under a random mix of new keys and repeats', () => {
    let seed = 12345;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (const cap of [1, 2, 63, 64, 65, 129, 1000]) {
      const w = new DedupWindow(cap);
      const m = new Model(cap);
      for (let i = 0; i < cap * 6 + 50; i++) {
        const k = `k ${rnd(cap * 3)}`;
        const s = rnd(2) === 0 ? 'queued' : 'taken';
        w.set(k, s);
        m.set(k, s);
      }
      assert.equal(w.size, m.state.size, `capacity ${cap}`);
      for (let i = 0; i < cap * 3; i++) assert.equal(w.get(`k ${i}`), m.state.get(`k ${i}`), `capacity ${cap}, key ${i}`);
    }
  });
});
