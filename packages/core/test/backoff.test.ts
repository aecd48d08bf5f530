import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BACKOFF_DEFAULTS, Backoff } from '@postern/core';

describe('Backoff', () => {
  it('grows by the factor up to the cap, never above it', () => {
    const b = new Backoff({ initialMs: 100, maxMs: 1000, factor: 2 }, () => 0.999);
    const delays = Array.from({ length: 8 }, () => b.next());
    assert.deepEqual(
      delays.map((d) => Math.round(d)),
      [100, 200, 400, 799, 999, 999, 999, 999],
    );
    for (let i = 1; i < 4; i++) assert.ok(delays[i]! > delays[i - 1]!, 'grows');
    for (const d of delays) assert.ok(d < 1000);
    assert.equal(b.attempt, 8);
  });

  it('spreads delays with full jitter in [floor, cap)', () => {
    const values = [0.5, 0.25, 0.75];
    let i = 0;
    const b = new Backoff({ initialMs: 100, maxMs: 10_000 }, () => values[i++ % values.length]!);
    assert.deepEqual([b.next(), b.next(), b.next()], [50, 50, 300]);
  });

  it('is never zero, even when the random source says 0', () => {
    const b = new Backoff({ initialMs: 250, maxMs: 30_000 }, () => 0);
    for (let k = 0; k < 20; k++) assert.equal(b.next(), 25);
  });

  it('starts over after reset()', () => {
    const b = new Backoff({ initialMs: 100, maxMs: 1000 }, () => 0.999);
    for (let k = 0; k < 5; k++) b.next();
    b.reset();
    assert.equal(b.attempt, 0);
    assert.equal(Math.round(b.next()), 100);
    assert.equal(b.attempt, 1);
  });

  it('uses the documented defaults', () => {
    const b = new Backoff({}, () => 0.999999);
    const d: number[] = [];
    for (let k = 0; k < 20; k++) d.push(b.next());
    assert.equal(Math.round(d[0]!), BACKOFF_DEFAULTS.initialMs);
    assert.equal(Math.round(d[1]!), BACKOFF_DEFAULTS.initialMs * BACKOFF_DEFAULTS.factor);
    assert.ok(Math.max(...d) < BACKOFF_DEFAULTS.maxMs);
    assert.ok(Math.round(d[19]!) === BACKOFF_DEFAULTS.maxMs);
  });
});
