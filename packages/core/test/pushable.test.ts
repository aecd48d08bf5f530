import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Broadcast, Pushable } from '@postern/core';

async function drain<T>(it: AsyncIterable<T>, max = 10_000): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) {
    out.push(x);
    if (out.length >= max) break;
  }
  return out;
}

describe('Pushable', () => {
  it('hands queued items to the consumer in order, then ends', async () => {
    const p = new Pushable<number>();
    p.push(1);
    p.push(2);
    assert.equal(p.length, 2);
    p.end();
    p.push(3);
    assert.equal(p.ended, true);
    assert.deepEqual(await drain(p), [1, 2]);
  });

  it('wakes a waiting consumer on push and on end', async () => {
    const p = new Pushable<string>();
    const first = p.next();
    p.push('a');
    assert.deepEqual(await first, { value: 'a', done: false });
    const second = p.next();
    p.end();
    assert.deepEqual(await second, { value: undefined, done: true });
  });

  it('throws the end error after the queue is drained', async () => {
    const p = new Pushable<number>();
    p.push(1);
    p.end(new Error('boom'));
    const got: number[] = [];
    await assert.rejects(async () => {
      for await (const x of p) got.push(x);
    }, /boom/);
    assert.deepEqual(got, [1]);
  });

  it('rejects a waiting consumer when failed, wrapping a non-Error', async () => {
    const p = new Pushable<number>();
    const waiting = p.next();
    p.end(new Error('gone'));
    await assert.rejects(waiting, /gone/);
    const q = new Pushable<number>();
    q.end('plain string');
    await assert.rejects(q.next(), (e: unknown) => e instanceof Error && e.cause === 'plain string');
  });

  it('calls onTake as each item reaches the consumer', async () => {
    const taken: number[] = [];
    const p = new Pushable<number>((x) => taken.push(x));
    p.push(1);
    assert.deepEqual(taken, []);
    await p.next();
    const w = p.next();
    p.push(2);
    await w;
    assert.deepEqual(taken, [1, 2]);
  });

  it('stops when the consumer breaks out, ignoring later pushes', async () => {
    const p = new Pushable<number>();
    for (let i = 0; i < 5; i++) p.push(i);
    for await (const x of p) if (x === 1) break;
    assert.equal(p.ended, true);
    p.push(9);
    assert.equal(p.length, 0);
  });

  it('keeps order across many items (queue compaction)', async () => {
    const p = new Pushable<number>();
    for (let i = 0; i < 3000; i++) p.push(i);
    const got: number[] = [];
    for (let i = 0; i < 2000; i++) got.push((await p.next()).value as number);
    for (let i = 3000; i < 3500; i++) p.push(i);
    p.end();
    got.push(...(await drain(p)));
    assert.equal(got.length, 3500);
    assert.ok(got.every((x, i) => x === i));
  });
});

describe('Broadcast', () => {
  it('fans each event out to every reader and listener', async () => {
    const b = new Broadcast<number>();
    const r1 = drain(b.iterate());
    const r2 = drain(b.iterate());
    const heard: number[] = [];
    const off = b.on((e) => heard.push(e));
    b.emit(1);
    b.emit(2);
    off();
    b.emit(3);
    assert.equal(b.last, 3);
    b.end();
    assert.deepEqual(await r1, [1, 2, 3]);
    assert.deepEqual(await r2, [1, 2, 3]);
    assert.deepEqual(heard, [1, 2]);
  });

  it('gives a reader only the events after it started', async () => {
    const b = new Broadcast<string>();
    b.emit('before');
    const r = drain(b.iterate());
    b.emit('after');
    b.end();
    assert.deepEqual(await r, ['after']);
  });

  it('forgets a reader that stopped iterating', async () => {
    const b = new Broadcast<number>();
    const it = b.iterate()[Symbol.asyncIterator]();
    b.emit(1);
    assert.deepEqual(await it.next(), { value: 1, done: false });
    await it.return?.();
    b.emit(2);
    assert.deepEqual(await it.next(), { value: undefined, done: true });
    const late = drain(b.iterate());
    b.emit(3);
    b.end();
    assert.deepEqual(await late, [3]);
  });
});
