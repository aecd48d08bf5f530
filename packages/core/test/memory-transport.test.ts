import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { memoryPair, transportSuite } from '@postern/testing';

transportSuite('memory', { pair: async () => memoryPair() });

describe('memory transport', () => {
  it('counts bytes not yet received in bufferedAmount, and ends both sides on destroy', async () => {
    const [a, b] = memoryPair();
    const got: number[] = [];
    const errors: Array<Error | undefined> = [];
    a.start({ message: () => {}, close: (e) => errors.push(e) });
    b.start({ message: (m) => got.push(m.length), close: (e) => errors.push(e) });
    a.send(new Uint8Array(100));
    assert.equal(a.bufferedAmount, 100);
    await new Promise((r) => setImmediate(r));
    assert.equal(a.bufferedAmount, 0);
    assert.deepEqual(got, [100]);
    a.destroy(new Error('reset'));
    assert.deepEqual(errors.map((e) => e?.message), ['reset', 'reset']);
    await Promise.all([a.done, b.done]);
  });
});
