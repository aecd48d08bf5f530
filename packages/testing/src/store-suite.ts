import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NewMessage, Store } from '@postern/core';

export interface StoreHarness {
  /** A new, empty store. */
  create(): Promise<Store>;
  /** The same store after a restart: close it and open its data again. */
  reopen(store: Store): Promise<Store>;
}

let n = 0;
function message(queue: string, body: string, at = 1_000, extra: Partial<NewMessage> = {}): NewMessage {
  n++;
  return {
    queue,
    from: 'bob@relay',
    id: `m${n}`,
    to: 'alice@acme',
    flags: 0,
    hops: 15,
    body: new TextEncoder().encode(body),
    storedAt: at,
    expiresAt: 0,
    ...extra,
  };
}

const text = (b: Uint8Array): string => new TextDecoder().decode(b);

/** The contract every Store passes (see core/src/store.ts). */
export function storeSuite(name: string, harness: StoreHarness): void {
  describe(`store contract: ${name}`, () => {
    it('keeps appended messages, in seq order, with every field', async () => {
      const s = await harness.create();
      await s.recover(0);
      const a = message('agent:alice', 'one', 1_000, { flags: 3, hops: 7, expiresAt: 99_000 });
      const [seqA] = await s.append([a]);
      const [seqB, seqC] = await s.append([message('domain:acme', 'two'), message('agent:alice', 'three')]);
      assert.ok(seqA! < seqB! && seqB! < seqC!);
      const r = await (await harness.reopen(s)).recover(0);
      assert.deepEqual(r.messages.map((m) => text(m.body)), ['one', 'two', 'three']);
      const first = r.messages[0]!;
      assert.deepEqual(
        { seq: first.seq, queue: first.queue, from: first.from, id: first.id, to: first.to, flags: first.flags, hops: first.hops, storedAt: first.storedAt, expiresAt: first.expiresAt },
        { seq: seqA, queue: a.queue, from: a.from, id: a.id, to: a.to, flags: 3, hops: 7, storedAt: 1_000, expiresAt: 99_000 },
      );
    });

    it('records the key of every appended message, and prunes old keys', async () => {
      const s = await harness.create();
      await s.recover(0);
      const old = message('q', 'old', 1_000);
      const recent = message('q', 'recent', 5_000);
      await s.append([old, recent]);
      await s.remove((await s.recover(0)).messages.map((m) => m.seq));
      // Keys outlive the messages: a retry after delivery must still be recognised.
      const s2 = await harness.reopen(s);
      let r = await s2.recover(0);
      assert.deepEqual(r.seen.map((k) => [k.from, k.id, k.at]).sort(), [[old.from, old.id, 1_000], [recent.from, recent.id, 5_000]].sort());
      assert.deepEqual((await s2.recover(2_000)).seen.map((k) => k.id), [recent.id]);
      await s2.pruneSeen(2_000);
      r = await (await harness.reopen(s2)).recover(0);
      assert.deepEqual(r.seen.map((k) => k.id), [recent.id]);
    });

    it('forgets released keys, and ignores unknown ones', async () => {
      const s = await harness.create();
      await s.recover(0);
      const a = message('q', 'a', 1_000);
      const b = message('q', 'b', 1_000);
      await s.append([a, b]);
      await s.forget([{ from: a.from, id: a.id }, { from: 'nobody@x', id: 'zz' }]);
      const r = await (await harness.reopen(s)).recover(0);
      assert.deepEqual(r.seen.map((k) => k.id), [b.id]);
      assert.equal(r.messages.length, 2, 'forgetting a key keeps its message');
    });

    it('commits an append, a removal and a forget made in the same tick together', async () => {
      const s = await harness.create();
      await s.recover(0);
      const [old] = await s.append([message('q', 'old')]);
      const report = message('q', 'report');
      const done = Promise.all([s.append([report]), s.remove([old!]), s.forget([{ from: report.from, id: 'gone' }])]);
      await done;
      const r = await (await harness.reopen(s)).recover(0);
      assert.deepEqual(r.messages.map((m) => text(m.body)), ['report']);
    });

    it('forgets removed messages and ignores unknown seqs', async () => {
      const s = await harness.create();
      await s.recover(0);
      const seqs = await s.append([message('q', 'a'), message('q', 'b'), message('q', 'c')]);
      await s.remove([seqs[1]!, 987_654]);
      const r = await (await harness.reopen(s)).recover(0);
      assert.deepEqual(r.messages.map((m) => text(m.body)), ['a', 'c']);
    });

    it('never reuses a seq, even after the newest message was removed and the store reopened', async () => {
      const s = await harness.create();
      await s.recover(0);
      const [a] = await s.append([message('q', 'a')]);
      await s.remove([a!]);
      const s2 = await harness.reopen(s);
      await s2.recover(0);
      const [b] = await s2.append([message('q', 'b')]);
      assert.ok(b! > a!);
    });

    it('commits appends made in the same tick together, in call order', async () => {
      const s = await harness.create();
      await s.recover(0);
      const calls = Array.from({ length: 50 }, (_, i) => s.append([message('q', `p${i}`)]));
      const seqs = (await Promise.all(calls)).map(([x]) => x!);
      assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y));
      const r = await (await harness.reopen(s)).recover(0);
      assert.deepEqual(r.messages.map((m) => text(m.body)), Array.from({ length: 50 }, (_, i) => `p${i}`));
    });

    it('copies bodies: changing the input afterwards changes nothing stored', async () => {
      const s = await harness.create();
      await s.recover(0);
      const m = message('q', 'original');
      await s.append([m]);
      m.body.fill(0x21);
      const r = await (await harness.reopen(s)).recover(0);
      assert.equal(text(r.messages[0]!.body), 'original');
    });

    it('keeps large and binary bodies intact', async () => {
      const s = await harness.create();
      await s.recover(0);
      const body = new Uint8Array(1024 * 1024).map((_, i) => (i * 31) & 0xff);
      await s.append([{ ...message('q', ''), body }, { ...message('q', ''), body: new Uint8Array(0) }]);
      const r = await (await harness.reopen(s)).recover(0);
      assert.deepEqual(r.messages[0]!.body, body);
      assert.equal(r.messages[1]!.body.length, 0);
    });

    it('keeps named values', async () => {
      const s = await harness.create();
      await s.recover(0);
      assert.equal(await s.getValue('key'), undefined);
      await s.setValue('key', new Uint8Array([1, 2, 3]));
      await s.setValue('key', new Uint8Array([4, 5]));
      const s2 = await harness.reopen(s);
      await s2.recover(0);
      assert.deepEqual(await s2.getValue('key'), new Uint8Array([4, 5]));
    });
  });
}
