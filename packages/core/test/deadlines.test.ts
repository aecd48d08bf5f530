import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Deadlines, type Timed } from '@postern/core';
import { ManualClock } from '@postern/testing';

/** A queued item that records when it fired, and may reschedule itself. */
class Item implements Timed {
  deadlineSlot = -1;
  readonly fired: number[] = [];
  again: number | undefined;
  constructor(
    readonly clock: ManualClock,
    readonly queue: Deadlines,
    readonly name: string,
    readonly log: string[],
  ) {}
  onDeadline(): void {
    this.fired.push(this.clock.now());
    this.log.push(this.name);
    if (this.again !== undefined) this.queue.schedule(this, this.clock.now() + this.again);
  }
}

describe('Deadlines', () => {
  it('fires each item at its own time, in time order, on one timer', () => {
    const clock = new ManualClock(0);
    const q = new Deadlines(clock);
    const log: string[] = [];
    const items = [30, 10, 20, 10, 50].map((at, i) => {
      const it = new Item(clock, q, `i${i}@${at}`, log);
      q.schedule(it, at);
      return it;
    });
    assert.equal(clock.pending, 1, 'one timer for all');
    clock.tick(25);
    assert.deepEqual(log.sort(), ['i1@10', 'i2@20', 'i3@10']);
    assert.deepEqual(items[1]!.fired, [10]);
    assert.deepEqual(items[2]!.fired, [20]);
    clock.tick(100);
    assert.deepEqual(items[0]!.fired, [30]);
    assert.deepEqual(items[4]!.fired, [50]);
    assert.equal(q.size, 0);
    assert.equal(clock.pending, 0, 'no timer once empty');
  });

  it('moves a deadline earlier or later, and cancels one', () => {
    const clock = new ManualClock(0);
    const q = new Deadlines(clock);
    const log: string[] = [];
    const a = new Item(clock, q, 'a', log);
    const b = new Item(clock, q, 'b', log);
    const c = new Item(clock, q, 'c', log);
    q.schedule(a, 100);
    q.schedule(b, 200);
    q.schedule(c, 300);
    q.schedule(c, 50);
    q.schedule(a, 250);
    q.cancel(b);
    assert.equal(b.deadlineSlot, -1);
    q.cancel(b);
    clock.tick(1000);
    assert.deepEqual(c.fired, [50]);
    assert.deepEqual(a.fired, [250]);
    assert.deepEqual(b.fired, []);
    q.schedule(a, 1100);
    q.cancel(a);
    assert.equal(clock.pending, 0);
  });

  it('fires an item that reschedules itself once per round, again at its new time', () => {
    const clock = new ManualClock(0);
    const q = new Deadlines(clock);
    const a = new Item(clock, q, 'a', []);
    a.again = 10;
    q.schedule(a, 10);
    clock.tick(35);
    assert.deepEqual(a.fired, [10, 20, 30]);
    assert.equal(q.size, 1);
    q.cancel(a);
    assert.equal(clock.pending, 0);
  });

  it('keeps order over many items (a heap, not a list)', () => {
    const clock = new ManualClock(0);
    const q = new Deadlines(clock);
    const log: string[] = [];
    const times = Array.from({ length: 500 }, (_, i) => (i * 7919) % 1000);
    const items = times.map((t, i) => {
      const it = new Item(clock, q, String(i), log);
      q.schedule(it, t + 1);
      return it;
    });
    for (let i = 0; i < items.length; i += 3) q.cancel(items[i]!);
    clock.tick(2000);
    const fired = items.flatMap((it, i) => it.fired.map((at) => [at, i] as const));
    assert.equal(fired.length, items.filter((_, i) => i % 3 !== 0).length);
    for (const [at, i] of fired) assert.equal(at, times[i]! + 1);
  });

  it('is shared per clock', () => {
    const a = new ManualClock(0);
    assert.equal(Deadlines.of(a), Deadlines.of(a));
    assert.notEqual(Deadlines.of(a), Deadlines.of(new ManualClock(0)));
  });
});
