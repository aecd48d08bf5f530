import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { Duplex } from '@postern/core';

export interface TransportHarness {
  /** A connected pair: [the dialing end, the accepting end]. */
  pair(): Promise<[Duplex, Duplex]>;
  /** Releases listeners and the like. */
  close?(): Promise<void>;
}

function collect(d: Duplex): { messages: Uint8Array[]; closed: Promise<Error | undefined>; closes: () => number } {
  const messages: Uint8Array[] = [];
  let closes = 0;
  let done!: (e: Error | undefined) => void;
  const closed = new Promise<Error | undefined>((r) => (done = r));
  d.start({
    message: (m) => messages.push(m),
    close: (e) => {
      closes++;
      done(e);
    },
  });
  return { messages, closed, closes: () => closes };
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 2));
  }
}

/**
 * The contract every Transport implementation passes: whole messages, in order, both ways;
 * one close notification on each side; nothing thrown at a closed duplex.
 */
export function transportSuite(name: string, harness: TransportHarness): void {
  describe(`transport contract: ${name}`, () => {
    after(async () => harness.close?.());

    it('carries whole messages in order, both ways', async () => {
      const [a, b] = await harness.pair();
      const ra = collect(a);
      const rb = collect(b);
      for (let i = 0; i < 200; i++) a.send(new Uint8Array([i, i >> 8, 7]));
      for (let i = 0; i < 50; i++) b.send(new Uint8Array(i + 1).fill(i));
      await until(() => rb.messages.length === 200 && ra.messages.length === 50);
      rb.messages.forEach((m, i) => assert.deepEqual([...m], [i & 0xff, i >> 8, 7]));
      ra.messages.forEach((m, i) => assert.equal(m.length, i + 1));
      a.close();
      await Promise.all([ra.closed, rb.closed]);
    });

    it('keeps message boundaries for large messages', async () => {
      const [a, b] = await harness.pair();
      collect(a);
      const rb = collect(b);
      const big = new Uint8Array(512 * 1024).map((_, i) => i % 251);
      a.send(big);
      a.send(new Uint8Array([1]));
      await until(() => rb.messages.length === 2);
      assert.deepEqual(rb.messages[0], big);
      assert.deepEqual([...(rb.messages[1] ?? [])], [1]);
      a.close();
    });

    it('reports a close once on both sides, and settles done', async () => {
      const [a, b] = await harness.pair();
      const ra = collect(a);
      const rb = collect(b);
      b.close();
      await Promise.all([ra.closed, rb.closed, a.done, b.done]);
      a.send(new Uint8Array([1]));
      b.close();
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(ra.closes(), 1);
      assert.equal(rb.closes(), 1);
    });

    it('delivers messages that arrive before start()', async () => {
      const [a, b] = await harness.pair();
      a.start({ message: () => {}, close: () => {} });
      a.send(new Uint8Array([9, 9]));
      await new Promise((r) => setTimeout(r, 50));
      const rb = collect(b);
      await until(() => rb.messages.length === 1);
      assert.deepEqual([...(rb.messages[0] ?? [])], [9, 9]);
      a.close();
    });

    it('exposes bufferedAmount and remote', async () => {
      const [a, b] = await harness.pair();
      collect(a);
      collect(b);
      assert.equal(typeof a.bufferedAmount, 'number');
      assert.ok(a.bufferedAmount >= 0);
      assert.equal(typeof b.remote, 'string');
      assert.ok(a.kind.length > 0);
      a.close();
    });
  });
}
