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
    cameFrom: '',
    via: '',
    ...extra,
  };
}

const text = (b: Uint8Array): string => new TextDecoder().decode(b);

/** The contract every Store passes (see core/src/store.ts). */
export function storeSuite(name: string, harness: StoreHarness): void {
  describe(`store contract: ${name}`, () => {
    it('reads bodies of held messages back by seq, and leaves bodies past the budget out of recover()', async () => {
      const s = await harness.create();
      await s.recover();
      const seqs = await s.append([message('agent:alice', 'aaaa'), message('agent:alice', 'bbbb'), message('agent:bob', 'cccc')]);
      await s.retire([seqs[1]!]);
      const bodies = await s.readBodies([seqs[2]!, seqs[1]!, seqs[0]!, 999_999]);
      assert.deepEqual(bodies.map((b) => (b === undefined ? undefined : text(b))), ['cccc', undefined, 'aaaa', undefined], 'a retired or unknown seq has none');
      const again = await harness.reopen(s);
      const r = await again.recover({ bodyBudget: 5 });
      assert.deepEqual(
        r.messages.map((m) => [text(m.body), m.bodyOmitted === true]),
        [
          ['aaaa', false],
          ['', true],
        ],
        'bodies in seq order up to the budget; the rest left in the store',
      );
      assert.deepEqual((await again.readBodies([seqs[2]!])).map((b) => b && text(b)), ['cccc']);
      await again.close();
    });

    it('keeps appended messages, in seq order, with every field', async () => {
      const s = await harness.create();
      await s.recover();
      const a = message('agent:alice', 'one', 1_000, { flags: 3, hops: 7, expiresAt: 99_000, cameFrom: 'NODE-A', via: 'NODE-B' });
      const [seqA] = await s.append([a]);
      const [seqB, seqC] = await s.append([message('domain:acme', 'two'), message('agent:alice', 'three')]);
      assert.ok(seqA! < seqB! && seqB! < seqC!);
      const r = await (await harness.reopen(s)).recover();
      assert.deepEqual(r.messages.map((m) => text(m.body)), ['one', 'two', 'three']);
      const first = r.messages[0]!;
      assert.deepEqual(
        { seq: first.seq, queue: first.queue, from: first.from, id: first.id, to: first.to, flags: first.flags, hops: first.hops, storedAt: first.storedAt, expiresAt: first.expiresAt, cameFrom: first.cameFrom, via: first.via },
        { seq: seqA, queue: a.queue, from: a.from, id: a.id, to: a.to, flags: 3, hops: 7, storedAt: 1_000, expiresAt: 99_000, cameFrom: 'NODE-A', via: 'NODE-B' },
      );
      assert.equal(r.messages[1]!.via, '');
    });

    it('repins held messages: their via changes, durably; unknown seqs are ignored', async () => {
      const s = await harness.create();
      await s.recover();
      const [a, b] = await s.append([message('domain:acme', 'a', 1_000, { via: 'N1' }), message('domain:acme', 'b', 1_000, { via: 'N1' })]);
      await s.repin([
        { seq: a!, via: 'N2' },
        { seq: 987_654, via: 'N3' },
      ]);
      const r = await (await harness.reopen(s)).recover();
      assert.deepEqual(r.messages.map((m) => [m.seq, m.via]), [
        [a, 'N2'],
        [b, 'N1'],
      ]);
    });

    it('keeps the key of a retired message, and forgets both on remove', async () => {
      const s = await harness.create();
      await s.recover();
      const held = message('q', 'held', 1_000);
      const retired = message('q', 'retired', 2_000);
      const removed = message('q', 'removed', 3_000);
      const [h, r, x] = await s.append([held, retired, removed]);
      await s.retire([r!]);
      await s.remove([x!]);
      const rec = await (await harness.reopen(s)).recover();
      assert.deepEqual(rec.messages.map((m) => text(m.body)), ['held']);
      // Keys outlive their messages: a retry after delivery must still be recognised.
      assert.deepEqual(
        rec.seen.map((k) => [k.from, k.id, k.seq, k.at]),
        [
          [held.from, held.id, h, 1_000],
          [retired.from, retired.id, r, 2_000],
        ],
      );
    });

    it('ignores unknown seqs, and removing a retired message drops its key', async () => {
      const s = await harness.create();
      await s.recover();
      const seqs = await s.append([message('q', 'a'), message('q', 'b'), message('q', 'c')]);
      await s.remove([seqs[1]!, 987_654]);
      await s.retire([seqs[2]!, 987_655]);
      await s.remove([seqs[2]!]);
      const r = await (await harness.reopen(s)).recover();
      assert.deepEqual(r.messages.map((m) => text(m.body)), ['a']);
      assert.deepEqual(r.seen.map((k) => k.seq), [seqs[0]]);
    });

    it('commits an append, a retire and a removal made in the same tick together', async () => {
      const s = await harness.create();
      await s.recover();
      const [old, gone] = await s.append([message('q', 'old'), message('q', 'gone')]);
      await Promise.all([s.append([message('q', 'report')]), s.retire([old!]), s.remove([gone!])]);
      const r = await (await harness.reopen(s)).recover();
      assert.deepEqual(r.messages.map((m) => text(m.body)), ['report']);
      assert.equal(r.seen.length, 2);
    });

    it('commits many messages in one append (more than one statement holds)', async () => {
      const s = await harness.create();
      await s.recover();
      const many = Array.from({ length: 300 }, (_, i) => message('q', `n${i}`));
      const seqs = await s.append(many);
      await s.retire(seqs.slice(0, 100));
      await s.remove(seqs.slice(100, 250));
      const r = await (await harness.reopen(s)).recover();
      assert.deepEqual(r.messages.map((m) => text(m.body)), Array.from({ length: 50 }, (_, i) => `n${250 + i}`));
      assert.equal(r.seen.length, 150);
    });

    it('never reuses a seq, even after the newest message was removed and the store reopened', async () => {
      const s = await harness.create();
      await s.recover();
      const [a] = await s.append([message('q', 'a')]);
      await s.remove([a!]);
      const s2 = await harness.reopen(s);
      await s2.recover();
      const [b] = await s2.append([message('q', 'b')]);
      assert.ok(b! > a!);
    });

    it('commits appends made in the same tick together, in call order', async () => {
      const s = await harness.create();
      await s.recover();
      const calls = Array.from({ length: 50 }, (_, i) => s.append([message('q', `p${i}`)]));
      const seqs = (await Promise.all(calls)).map(([x]) => x!);
      assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y));
      const r = await (await harness.reopen(s)).recover();
      assert.deepEqual(r.messages.map((m) => text(m.body)), Array.from({ length: 50 }, (_, i) => `p${i}`));
    });

    it('copies bodies: changing the input afterwards changes nothing stored', async () => {
      const s = await harness.create();
      await s.recover();
      const m = message('q', 'original');
      await s.append([m]);
      m.body.fill(0x21);
      const r = await (await harness.reopen(s)).recover();
      assert.equal(text(r.messages[0]!.body), 'original');
    });

    it('keeps large and binary bodies intact', async () => {
      const s = await harness.create();
      await s.recover();
      const body = new Uint8Array(1024 * 1024).map((_, i) => (i * 31) & 0xff);
      await s.append([{ ...message('q', ''), body }, { ...message('q', ''), body: new Uint8Array(0) }]);
      const r = await (await harness.reopen(s)).recover();
      assert.deepEqual(r.messages[0]!.body, body);
      assert.equal(r.messages[1]!.body.length, 0);
    });

    it('keeps named values', async () => {
      const s = await harness.create();
      await s.recover();
      assert.equal(await s.getValue('key'), undefined);
      await s.setValue('key', new Uint8Array([1, 2, 3]));
      await s.setValue('key', new Uint8Array([4, 5]));
      const s2 = await harness.reopen(s);
      await s2.recover();
      assert.deepEqual(await s2.getValue('key'), new Uint8Array([4, 5]));
    });

    it('lists values by prefix in key order, and deletes them', async () => {
      const s = await harness.create();
      await s.recover();
      await Promise.all([s.setValue('h:b', new Uint8Array([2])), s.setValue('h:a', new Uint8Array([1])), s.setValue('other', new Uint8Array([9])), s.setValue('h:c', new Uint8Array([3]))]);
      await s.deleteValues(['h:c', 'h:none']);
      const s2 = await harness.reopen(s);
      await s2.recover();
      assert.deepEqual(await s2.listValues('h:'), [
        ['h:a', new Uint8Array([1])],
        ['h:b', new Uint8Array([2])],
      ]);
      assert.deepEqual(await s2.getValue('other'), new Uint8Array([9]));
    });

    it('commits values with the messages of the same tick', async () => {
      const s = await harness.create();
      await s.recover();
      await Promise.all([s.append([message('q', 'with a handle')]), s.setValue('h:x', new Uint8Array([7]))]);
      const s2 = await harness.reopen(s);
      const r = await s2.recover();
      assert.equal(r.messages.length, 1);
      assert.deepEqual(await s2.getValue('h:x'), new Uint8Array([7]));
    });
  });
}
