// Store-and-forward in the routing core (issue 3): a reliable message is acked once stored, waits
// for its next hop, goes in order within the link's window, is deduplicated by (from, id), and
// its sender hears about failures (and, when asked, delivery) through REPORT messages.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryStore, type NewMessage } from '@postern/core';
import { FrameType, MsgFlag, WireCode, errorCodeOf, type MsgFrame } from '@postern/protocol';
import { ManualClock, MemoryDuplex, testSessionTokens, waitFor } from '@postern/testing';
import { Peer, StuckMemoryDuplex, TOKENS, enc, fakeAuthenticator, msg, reportOf, route, routerHello, settle, setup } from './router-harness.js';

/** A MemoryStore whose appends commit only once the test opens the gate. */
class GatedStore extends MemoryStore {
  appends = 0;
  #open = false;
  readonly #waiting: Array<() => void> = [];

  open(): void {
    this.#open = true;
    for (const w of this.#waiting.splice(0)) w();
  }

  override async append(messages: readonly NewMessage[]): Promise<number[]> {
    this.appends++;
    if (!this.#open) await new Promise<void>((r) => this.#waiting.push(r));
    return super.append(messages);
  }
}

/** A MemoryStore whose recover() resolves only once the test opens the gate: a slow start. */
class SlowStartStore extends MemoryStore {
  #release!: () => void;
  readonly #gate = new Promise<void>((r) => (this.#release = r));

  open(): void {
    this.#release();
  }

  override async recover(): ReturnType<MemoryStore['recover']> {
    await this.#gate;
    return super.recover();
  }
}

/** Waits until `peer` has received `n` messages, and returns them. */
async function received(peer: Peer, n: number): Promise<MsgFrame[]> {
  await waitFor(() => peer.all(FrameType.MSG).length >= n, `${n} messages`, 2000, 1);
  return peer.all(FrameType.MSG);
}

const ids = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i + 1}`);

describe('Router: store and forward', () => {
  const auth = fakeAuthenticator(TOKENS);

  it('acks the sender only once the store has the message, and forwards it only then', async (t) => {
    const store = new GatedStore();
    const ctx = setup(t, { store });
    await ctx.router.ready;
    const alice = await ctx.agent({ name: 'alice' });
    const bob = await ctx.agent({ name: 'bob' });
    alice.peer.send(msg('bob', 'a1'));
    await waitFor(() => store.appends === 1, 'the append', 2000, 1);
    // A retry while the first copy commits is answered when it has committed, and not stored again.
    alice.peer.send(msg('bob', 'a1'));
    await alice.peer.sync();
    await settle();
    assert.deepEqual(alice.peer.all(FrameType.ACK), [], 'no ACK before the commit');
    assert.deepEqual(bob.peer.all(FrameType.MSG), [], 'nothing forwarded before the commit');
    assert.equal(ctx.router.stats().stored, 1);
    store.open();
    await alice.peer.next(FrameType.ACK, (f) => f.id === 'a1');
    await alice.peer.next(FrameType.ACK, (f) => f.id === 'a1');
    assert.equal((await bob.peer.next(FrameType.MSG)).id, 'a1');
    await settle();
    assert.deepEqual(bob.peer.msgIds(), ['a1']);
    assert.equal(store.appends, 1);
    assert.equal(ctx.router.stats().duplicates, 1);
  });

  it('takes messages while the store is still loading, and acks them once it is ready', async (t) => {
    const store = new SlowStartStore();
    const ctx = setup(t, { store });
    const alice = await ctx.agent({ name: 'alice' });
    const bob = await ctx.agent({ name: 'bob' });
    alice.peer.send(msg('bob', 'early'));
    await alice.peer.sync();
    await settle();
    assert.deepEqual(alice.peer.all(FrameType.ACK), []);
    store.open();
    await ctx.router.ready;
    await alice.peer.next(FrameType.ACK, (f) => f.id === 'early');
    assert.equal((await bob.peer.next(FrameType.MSG)).id, 'early');
  });

  it('keeps a message for an agent that is offline, by name, and delivers in order when it connects', async (t) => {
    const ctx = setup(t);
    const alice = await ctx.agent({ name: 'alice' });
    alice.peer.send(...ids('w', 3).map((id) => msg('bob', id)));
    for (const id of ids('w', 3)) await alice.peer.next(FrameType.ACK, (f) => f.id === id);
    assert.deepEqual({ stored: ctx.router.stats().stored, queues: ctx.router.stats().queues }, { stored: 3, queues: 1 });
    const bob = await ctx.agent({ name: 'bob' });
    await bob.peer.next(FrameType.MSG, (m) => m.id === 'w3');
    assert.deepEqual(bob.peer.msgIds(), ['w1', 'w2', 'w3']);
    assert.equal(bob.peer.all(FrameType.MSG)[0]!.from, 'alice@acme');
    bob.peer.ack(...bob.peer.all(FrameType.MSG));
    await waitFor(() => ctx.router.stats().stored === 0, 'the copies removed', 2000, 1);
    assert.equal(ctx.router.stats().queues, 0, 'an empty queue is dropped');
    assert.deepEqual(alice.peer.all(FrameType.NACK), []);
  });

  it('keeps a message for an agent id that is offline, and delivers in order when the session resumes with its token', async (t) => {
    const ctx = setup(t);
    const gone = await ctx.agent();
    gone.peer.duplex.close();
    await waitFor(() => ctx.router.stats().agents === 0, 'agent gone', 2000, 1);
    const alice = await ctx.agent({ name: 'alice' });
    alice.peer.send(...ids('x', 3).map((id) => msg(gone.address, id)), msg('_zzzzzzzzzzzzzzzz@acme', 'never'));
    for (const id of [...ids('x', 3), 'never']) await alice.peer.next(FrameType.ACK, (f) => f.id === id);
    const back = await ctx.agent({ resume: gone.welcome.resume });
    assert.equal(back.welcome.id, gone.welcome.id);
    await back.peer.next(FrameType.MSG, (m) => m.id === 'x3');
    assert.deepEqual(back.peer.msgIds(), ['x1', 'x2', 'x3']);
    assert.equal(back.peer.all(FrameType.MSG)[0]!.to, gone.address);
    assert.equal(ctx.router.stats().stored, 4, 'the one for an id never seen still waits');
  });

  it('resends from the first unacked message, in order, when the recipient reconnects; acked ones are not resent', async (t) => {
    const ctx = setup(t);
    const alice = await ctx.agent({ name: 'alice' });
    const bob = await ctx.agent({ name: 'bob' });
    alice.peer.send(...ids('o', 5).map((id) => msg('bob', id)));
    await bob.peer.next(FrameType.MSG, (m) => m.id === 'o5');
    const [o1, o2] = bob.peer.all(FrameType.MSG);
    bob.peer.ack(o1!, o2!);
    await bob.peer.sync();
    bob.peer.duplex.destroy();
    await waitFor(() => ctx.router.stats().agents === 1, 'bob gone', 2000, 1);
    alice.peer.send(msg('bob', 'o6'));
    await alice.peer.next(FrameType.ACK, (f) => f.id === 'o6');
    const again = await ctx.agent({ name: 'bob' });
    await again.peer.next(FrameType.MSG, (m) => m.id === 'o6');
    await settle();
    assert.deepEqual(again.peer.msgIds(), ['o3', 'o4', 'o5', 'o6']);
    assert.deepEqual(alice.peer.all(FrameType.NACK), []);
  });

  it('moves what is in flight to the new connection when a session resumes while the old one is open', async (t) => {
    const ctx = setup(t);
    const alice = await ctx.agent({ name: 'alice' });
    const carol = await ctx.agent({ name: 'carol' });
    alice.peer.send(...ids('r', 3).map((id) => msg('carol', id)));
    carol.peer.ack(await carol.peer.next(FrameType.MSG, (m) => m.id === 'r1'));
    await carol.peer.next(FrameType.MSG, (m) => m.id === 'r3');
    await carol.peer.sync();
    const resumed = await ctx.agent({ name: 'carol', resume: carol.welcome.resume });
    assert.equal(await carol.peer.closeCode(), 'ERR_REPLACED');
    await resumed.peer.next(FrameType.MSG, (m) => m.id === 'r3');
    alice.peer.send(msg('carol', 'r4'));
    await resumed.peer.next(FrameType.MSG, (m) => m.id === 'r4');
    assert.deepEqual(resumed.peer.msgIds(), ['r2', 'r3', 'r4']);
  });

  it('acks a retry of the same (from, id) again without storing or delivering it twice; another sender may use the same id', async (t) => {
    const ctx = setup(t);
    const alice = await ctx.agent({ name: 'alice' });
    const bob = await ctx.agent({ name: 'bob' });
    alice.peer.send(msg('bob', 'd1'));
    await alice.peer.next(FrameType.ACK);
    const d1 = await bob.peer.next(FrameType.MSG);
    alice.peer.send(msg('bob', 'd1', { body: enc.encode('a different body changes nothing') }));
    await alice.peer.next(FrameType.ACK);
    bob.peer.ack(d1);
    await waitFor(() => ctx.router.stats().stored === 0, 'd1 delivered', 2000, 1);
    alice.peer.send(msg('bob', 'd1'));
    await alice.peer.next(FrameType.ACK);
    const carol = await ctx.agent({ name: 'carol' });
    carol.peer.send(msg('bob', 'd1'));
    assert.equal((await bob.peer.next(FrameType.MSG)).from, 'carol@acme');
    await settle();
    assert.deepEqual(bob.peer.all(FrameType.MSG).map((m) => `${m.from} ${m.id}`), ['alice@acme d1', 'carol@acme d1']);
    assert.deepEqual(alice.peer.all(FrameType.ACK).map((f) => f.id), ['d1', 'd1', 'd1']);
    assert.equal(ctx.router.stats().duplicates, 2);
  });

  it('forgets a key when the sender RELEASEs the ACKs (counted per connection)', async (t) => {
    const ctx = setup(t);
    const alice = await ctx.agent({ name: 'alice' });
    const bob = await ctx.agent({ name: 'bob' });
    alice.peer.send(msg('bob', 'k1'), msg('bob', 'k2'), msg('bob', 'k1'));
    await waitFor(() => alice.peer.all(FrameType.ACK).length === 3, 'three ACKs', 2000, 1);
    assert.equal(ctx.router.stats().seenKeys, 2);
    // The first ACK released: k1's key goes, k2's stays.
    alice.peer.send({ type: FrameType.RELEASE, count: 1 });
    await waitFor(() => ctx.router.stats().seenKeys === 1, 'k1 forgotten', 2000, 1);
    alice.peer.send(msg('bob', 'k2'));
    await waitFor(() => alice.peer.all(FrameType.ACK).length === 4, 'k2 acked again', 2000, 1);
    alice.peer.send({ type: FrameType.RELEASE, count: 4 });
    await waitFor(() => ctx.router.stats().seenKeys === 0, 'all forgotten', 2000, 1);
    // A released key is new again (an SDK never reuses an id it has released).
    alice.peer.send(msg('bob', 'k1'));
    await waitFor(() => bob.peer.msgIds().length === 3, 'k1 anew', 2000, 1);
    assert.deepEqual(bob.peer.msgIds(), ['k1', 'k2', 'k1']);
  });

  it('keeps a key unreleased on a lost link for dedupWindowMs: a retry after reconnecting is acked, not delivered again', async (t) => {
    const ctx = setup(t, { maxMessageAgeMs: 10_000, dedupWindowMs: 30_000, pingIntervalMs: 0 });
    const bob = await ctx.agent({ name: 'bob' });
    let alice = await ctx.agent({ name: 'alice' });
    alice.peer.send(msg('bob', 'k1'));
    await alice.peer.next(FrameType.ACK);
    bob.peer.ack(await bob.peer.next(FrameType.MSG));
    // While the link that got the ACK is up, its key is kept however long it takes to be released.
    ctx.clock.tick(40_000);
    assert.equal(ctx.router.stats().seenKeys, 1);
    alice.peer.duplex.destroy();
    await waitFor(() => ctx.router.stats().agents === 1, 'alice gone', 2000, 1);
    alice = await ctx.agent({ name: 'alice' });
    alice.peer.send(msg('bob', 'k1'));
    await alice.peer.next(FrameType.ACK);
    await settle();
    assert.deepEqual(bob.peer.msgIds(), ['k1'], 'the retry after a reconnect is dropped');
    alice.peer.duplex.destroy();
    await waitFor(() => ctx.router.stats().agents === 1, 'alice gone again', 2000, 1);
    ctx.clock.tick(29_000);
    assert.equal(ctx.router.stats().seenKeys, 1, 'kept within the window');
    ctx.clock.tick(2_000);
    assert.equal(ctx.router.stats().seenKeys, 0, 'forgotten after the window (and the 1 s sweep)');
    assert.equal(ctx.router.stats().dedupEvicted, 0);
  });

  it('does not grow with a peer that repeats one message without ever releasing: the key is kept once', async (t) => {
    const ctx = setup(t, { maxUnreleasedPerLink: 4, pingIntervalMs: 0 });
    const alice = await ctx.agent({ name: 'alice' });
    for (let i = 0; i < 5; i++) alice.peer.sendBatch(...Array.from({ length: 10 }, () => msg('bob', 'again')));
    await waitFor(() => alice.peer.all(FrameType.ACK).length === 50, 'fifty ACKs', 2000, 1);
    const s = ctx.router.stats();
    assert.deepEqual({ seenKeys: s.seenKeys, orphanKeys: s.orphanKeys, stored: s.stored, duplicates: s.duplicates }, { seenKeys: 1, orphanKeys: 1, stored: 1, duplicates: 49 });
  });

  it('lets the oldest keys of a peer that never releases wait out the window (maxUnreleasedPerLink)', async (t) => {
    const ctx = setup(t, { maxUnreleasedPerLink: 2, maxMessageAgeMs: 10_000, dedupWindowMs: 30_000, pingIntervalMs: 0 });
    const alice = await ctx.agent({ name: 'alice' });
    const bob = await ctx.agent({ name: 'bob' });
    alice.peer.send(...ids('u', 3).map((id) => msg('bob', id)));
    await waitFor(() => alice.peer.all(FrameType.ACK).length === 3, 'three ACKs', 2000, 1);
    bob.peer.ack(...(await received(bob.peer, 3)));
    assert.equal(ctx.router.stats().seenKeys, 3);
    ctx.clock.tick(31_000);
    assert.equal(ctx.router.stats().seenKeys, 2, 'u1 waited out the window although its link is up');
    alice.peer.send(msg('bob', 'u1'));
    await waitFor(() => bob.peer.msgIds().length === 4, 'u1 anew', 2000, 1);
    // Four ACKs on this link, the last (u1 again) pushed u2 out to the window: a RELEASE of all
    // four forgets u3 and u1, while u2 waits out the window.
    alice.peer.send({ type: FrameType.RELEASE, count: 4 });
    await waitFor(() => ctx.router.stats().seenKeys === 1, 'u3 and u1 released', 2000, 1);
    ctx.clock.tick(31_000);
    assert.equal(ctx.router.stats().seenKeys, 0);
  });

  it('drops the oldest keys of lost links early past maxSeenKeys, and counts them', async (t) => {
    const ctx = setup(t, { maxSeenKeys: 2, pingIntervalMs: 0 });
    const alice = await ctx.agent({ name: 'alice' });
    const bob = await ctx.agent({ name: 'bob' });
    alice.peer.send(...ids('s', 3).map((id) => msg('bob', id)));
    await waitFor(() => alice.peer.all(FrameType.ACK).length === 3, 'three ACKs', 2000, 1);
    alice.peer.duplex.destroy();
    await waitFor(() => ctx.router.stats().agents === 1, 'alice gone', 2000, 1);
    bob.peer.ack(...(await received(bob.peer, 3)));
    await waitFor(() => ctx.router.stats().stored === 0, 'delivered', 2000, 1);
    assert.equal(ctx.router.stats().seenKeys, 3);
    ctx.clock.tick(1_000);
    assert.deepEqual({ seenKeys: ctx.router.stats().seenKeys, dedupEvicted: ctx.router.stats().dedupEvicted }, { seenKeys: 2, dedupEvicted: 1 });
  });

  it('refuses with QUEUE_FULL past maxQueueMessages for one recipient; other queues are unaffected; a refused id may be sent again', async (t) => {
    const ctx = setup(t, { maxQueueMessages: 2 });
    const alice = await ctx.agent({ name: 'alice' });
    alice.peer.send(msg('bob', 'q1'), msg('bob', 'q2'), msg('bob', 'q3'), msg('carol', 'q4'));
    const n = await alice.peer.next(FrameType.NACK);
    assert.deepEqual({ id: n.id, code: errorCodeOf(n.code), reason: n.reason }, { id: 'q3', code: 'ERR_QUEUE_FULL', reason: 'the queue for "bob@acme" holds its limit of 2 messages' });
    for (const id of ['q1', 'q2', 'q4']) await alice.peer.next(FrameType.ACK, (f) => f.id === id);
    const bob = await ctx.agent({ name: 'bob' });
    await bob.peer.next(FrameType.MSG, (m) => m.id === 'q2');
    bob.peer.ack(...bob.peer.all(FrameType.MSG));
    await waitFor(() => ctx.router.stats().stored === 1, 'bob drained', 2000, 1);
    alice.peer.send(msg('bob', 'q3'));
    await alice.peer.next(FrameType.ACK, (f) => f.id === 'q3');
    await bob.peer.next(FrameType.MSG, (m) => m.id === 'q3');
    assert.deepEqual(bob.peer.msgIds(), ['q1', 'q2', 'q3']);
  });

  it('refuses with QUEUE_FULL past maxQueueBytes for one recipient, and past maxStoredBytes and maxStoredMessages in all', async (t) => {
    const body = new Uint8Array(100); // ~136 bytes held with its addresses and id
    const perQueue = setup(t, { maxQueueBytes: 300 });
    const alice = await perQueue.agent({ name: 'alice' });
    alice.peer.send(msg('bob', 'b1', { body }), msg('bob', 'b2', { body }), msg('bob', 'b3', { body }), msg('carol', 'b4', { body }));
    const n = await alice.peer.next(FrameType.NACK);
    assert.deepEqual({ id: n.id, code: errorCodeOf(n.code), reason: n.reason }, { id: 'b3', code: 'ERR_QUEUE_FULL', reason: 'the queue for "bob@acme" holds its limit of 300 bytes' });
    for (const id of ['b1', 'b2', 'b4']) await alice.peer.next(FrameType.ACK, (f) => f.id === id);

    const inAll = setup(t, { maxStoredBytes: 300, maxStoredBytesPerSender: 300 });
    const dave = await inAll.agent({ name: 'dave' });
    dave.peer.send(msg('bob', 's1', { body }), msg('carol', 's2', { body }), msg('erin', 's3', { body }));
    const n2 = await dave.peer.next(FrameType.NACK);
    assert.deepEqual({ id: n2.id, code: errorCodeOf(n2.code), reason: n2.reason }, { id: 's3', code: 'ERR_QUEUE_FULL', reason: 'this router holds its limit of 300 bytes of messages' });
    assert.equal(inAll.router.stats().queues, 2, 'a refused message leaves no queue behind');

    const byCount = setup(t, { maxStoredMessages: 2 });
    const erin = await byCount.agent({ name: 'erin' });
    erin.peer.send(msg('bob', 'c1'), msg('carol', 'c2'), msg('dave', 'c3'));
    const n3 = await erin.peer.next(FrameType.NACK);
    assert.deepEqual({ id: n3.id, code: errorCodeOf(n3.code), reason: n3.reason }, { id: 'c3', code: 'ERR_QUEUE_FULL', reason: 'this router holds its limit of 2 messages' });
  });

  it('drops a message that waited past maxMessageAgeMs and tells its sender with an EXPIRED report, which the sender acks', async (t) => {
    const ctx = setup(t, { maxMessageAgeMs: 5_000, pingIntervalMs: 0 });
    const alice = await ctx.agent({ name: 'alice' });
    alice.peer.send(msg('bob', 'e1'));
    await alice.peer.next(FrameType.ACK);
    ctx.clock.tick(4_000);
    await settle();
    assert.deepEqual(alice.peer.all(FrameType.MSG), [], 'not before its age');
    ctx.clock.tick(2_000);
    const r = await alice.peer.next(FrameType.MSG);
    assert.deepEqual({ flags: r.flags, from: r.from, to: r.to }, { flags: MsgFlag.REPORT, from: 'bob@acme', to: 'alice@acme' });
    const report = reportOf(r);
    assert.deepEqual({ code: errorCodeOf(report.code), ref: report.ref }, { code: 'ERR_EXPIRED', ref: 'e1' });
    assert.equal(report.reason, 'not delivered within 5000 ms');
    assert.deepEqual({ expired: ctx.router.stats().expired, reports: ctx.router.stats().reports, stored: ctx.router.stats().stored }, { expired: 1, reports: 1, stored: 1 });
    // The report is a reliable message: held until its recipient acks it.
    await settle();
    assert.equal(ctx.router.stats().stored, 1);
    alice.peer.ack(r);
    await waitFor(() => ctx.router.stats().stored === 0, 'the report settled', 2000, 1);
    const bob = await ctx.agent({ name: 'bob' });
    await bob.peer.sync();
    await settle();
    assert.deepEqual(bob.peer.all(FrameType.MSG), [], 'an expired message is not delivered');
  });

  it('does not expire a message in flight (the next hop may have it), but does once it is back in the queue', async (t) => {
    const ctx = setup(t, { maxMessageAgeMs: 5_000, pingIntervalMs: 0 });
    const alice = await ctx.agent({ name: 'alice' });
    const bob = await ctx.agent({ name: 'bob' });
    alice.peer.send(msg('bob', 'e2'));
    await bob.peer.next(FrameType.MSG);
    ctx.clock.tick(10_000);
    await settle();
    assert.deepEqual(alice.peer.all(FrameType.MSG), []);
    bob.peer.duplex.destroy();
    await waitFor(() => ctx.router.stats().agents === 1, 'bob gone', 2000, 1);
    ctx.clock.tick(1_000);
    const report = reportOf(await alice.peer.next(FrameType.MSG));
    assert.deepEqual({ code: errorCodeOf(report.code), ref: report.ref }, { code: 'ERR_EXPIRED', ref: 'e2' });
    assert.match(report.reason, /sent to the next hop once, before that link was lost, so it may still arrive/, 'the sender is told it may still arrive');
  });

  it('never reports about a report: a report that expires unread is dropped and counted', async (t) => {
    const ctx = setup(t, { maxMessageAgeMs: 5_000, pingIntervalMs: 0 });
    const alice = await ctx.agent({ name: 'alice' });
    alice.peer.send(msg('bob', 'e1'));
    await alice.peer.next(FrameType.ACK);
    alice.peer.duplex.destroy();
    await waitFor(() => ctx.router.stats().agents === 0, 'alice gone', 2000, 1);
    ctx.clock.tick(6_000);
    assert.deepEqual({ expired: ctx.router.stats().expired, reports: ctx.router.stats().reports }, { expired: 1, reports: 1 });
    assert.equal(ctx.router.stats().stored, 1, 'the report waits for alice');
    await settle(); // its commit
    ctx.clock.tick(6_000);
    assert.deepEqual({ expired: ctx.router.stats().expired, reports: ctx.router.stats().reports, reportsDropped: ctx.router.stats().reportsDropped, stored: ctx.router.stats().stored }, { expired: 2, reports: 1, reportsDropped: 1, stored: 0 });
    const back = await ctx.agent({ name: 'alice' });
    await back.peer.sync();
    await settle();
    assert.deepEqual(back.peer.all(FrameType.MSG), []);
  });

  it('makes reports about ids of any UTF-8 (up to 255 bytes, or cut inside a surrogate pair) that fit the wire and settle', async (t) => {
    const ctx = setup(t);
    const alice = await ctx.agent({ name: 'alice' });
    const bob = await ctx.agent({ name: 'bob' });
    const long = '€'.repeat(85); // 255 bytes: a report id of the whole would not fit
    const pair = `${'a'.repeat(99)}😀x`; // a cut at 100 UTF-16 units would split the emoji
    alice.peer.send(msg('bob', long, { flags: MsgFlag.RECEIPT }), msg('bob', pair, { flags: MsgFlag.RECEIPT }));
    for (const id of [long, pair]) bob.peer.ack(await bob.peer.next(FrameType.MSG, (m) => m.id === id));
    for (const id of [long, pair]) {
      const r = await alice.peer.next(FrameType.MSG, (m) => reportOf(m).ref === id);
      assert.equal(reportOf(r).code, WireCode.OK);
      assert.ok(new TextEncoder().encode(r.id).length <= 255);
      assert.doesNotMatch(r.id, /\uFFFD/, 'no half of a surrogate pair replaced on the wire');
      alice.peer.ack(r);
    }
    await waitFor(() => ctx.router.stats().stored === 0, 'the reports settled (their ACKs matched)', 2000, 1);
  });

  it('reports delivery (OK) for a message sent with RECEIPT once the recipient acks it, and the recipient NACK code when it refuses', async (t) => {
    const ctx = setup(t);
    const alice = await ctx.agent({ name: 'alice' });
    const bob = await ctx.agent({ name: 'bob' });
    alice.peer.send(msg('bob', 'r1', { flags: MsgFlag.RECEIPT }), msg('bob', 'r2', { flags: MsgFlag.RECEIPT }), msg('bob', 'r3'));
    const r1 = await bob.peer.next(FrameType.MSG, (m) => m.id === 'r1');
    assert.equal(r1.flags, MsgFlag.RECEIPT, 'flags pass through');
    bob.peer.ack(r1);
    const ok = await alice.peer.next(FrameType.MSG);
    assert.equal(ok.from, 'bob@acme');
    assert.deepEqual(reportOf(ok), { code: WireCode.OK, ref: 'r1', reason: '' });
    alice.peer.ack(ok);
    await bob.peer.next(FrameType.MSG, (m) => m.id === 'r2');
    bob.peer.send({ type: FrameType.NACK, id: 'r2', from: 'alice@acme', code: WireCode.UNAVAILABLE, reason: 'not now' });
    const refused = await alice.peer.next(FrameType.MSG);
    assert.deepEqual(reportOf(refused), { code: WireCode.UNAVAILABLE, ref: 'r2', reason: 'not now' });
    alice.peer.ack(refused);
    // Without RECEIPT, delivery is silent.
    bob.peer.ack(await bob.peer.next(FrameType.MSG, (m) => m.id === 'r3'));
    await waitFor(() => ctx.router.stats().stored === 0, 'all settled', 2000, 1);
    await settle();
    assert.equal(alice.peer.all(FrameType.MSG).length, 2);
    assert.equal(ctx.router.stats().reports, 2);
  });

  it('RELEASEs the ACKs of a downlink once its copy is removed, and reports the downlink NACK to the sender', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth });
    const r2 = await ctx.downlink();
    const alice = await ctx.agent({ token: 'alice-only', name: 'alice' });
    alice.peer.send(msg('bot@globex', 'f1'), msg('bot@globex', 'f2'), msg('bot@globex', 'f3'));
    await r2.next(FrameType.MSG, (m) => m.id === 'f3');
    const [f1, f2, f3] = r2.all(FrameType.MSG);
    r2.ack(f1!);
    assert.equal((await r2.next(FrameType.RELEASE)).count, 1);
    r2.ack(f2!);
    assert.equal((await r2.next(FrameType.RELEASE)).count, 2, 'counts are cumulative');
    r2.send({ type: FrameType.NACK, id: f3!.id, from: f3!.from, code: WireCode.QUEUE_FULL, reason: 'bot is full' });
    const r = await alice.peer.next(FrameType.MSG);
    assert.deepEqual({ from: r.from, to: r.to }, { from: 'bot@globex', to: 'alice@acme' });
    assert.deepEqual(reportOf(r), { code: WireCode.QUEUE_FULL, ref: 'f3', reason: 'bot is full' });
    alice.peer.ack(r);
    await waitFor(() => ctx.router.stats().stored === 0, 'all settled', 2000, 1);
    await settle();
    assert.equal(r2.all(FrameType.RELEASE).length, 2, 'a NACK is not released');
  });

  it('commits removals with the next new messages, or after settleDelayMs: RELEASE waits for that commit', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth, settleDelayMs: 20 });
    const r2 = await ctx.downlink();
    const alice = await ctx.agent({ token: 'alice-only', name: 'alice' });
    alice.peer.send(msg('bot@globex', 'f1'));
    const f1 = await r2.next(FrameType.MSG, (m) => m.id === 'f1');
    r2.ack(f1);
    await settle();
    assert.equal(r2.all(FrameType.RELEASE).length, 0, 'no commit of its own for a removal while nothing else is stored');
    alice.peer.send(msg('bot@globex', 'f2'));
    assert.equal((await r2.next(FrameType.RELEASE)).count, 1, 'the removal rode with the commit of f2');
    const f2 = await r2.next(FrameType.MSG, (m) => m.id === 'f2');
    r2.ack(f2);
    await settle();
    assert.equal(r2.all(FrameType.RELEASE).length, 1);
    ctx.clock.tick(19);
    await settle();
    assert.equal(r2.all(FrameType.RELEASE).length, 1, 'not before settleDelayMs');
    ctx.clock.tick(1);
    assert.equal((await r2.next(FrameType.RELEASE, (f) => f.count === 2)).count, 2, 'then on its own');
  });

  it('acks a retry of a message it holds even when the route changed meanwhile (no NACK for a message on its way)', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth });
    const r2 = await ctx.downlink('globex', 'any-domain', 'r2');
    r2.send(msg('x@initech', 'm1', { from: 'bot@globex', hops: 9 }));
    await r2.next(FrameType.ACK, (f) => f.id === 'm1'); // held: nobody reaches initech yet
    r2.send(route('initech', ['i', 'r2'])); // now only back through r2 (to initech's gateway i)
    r2.send(msg('x@initech', 'm1', { from: 'bot@globex', hops: 9 })); // r2 retries it
    await r2.sync();
    assert.deepEqual(r2.all(FrameType.NACK), [], 'the retry is not refused with NO_ROUTE');
    assert.equal(r2.all(FrameType.ACK).filter((f) => f.id === 'm1').length, 2);
    assert.equal(ctx.router.stats().duplicates, 1);
    // The held copy is not sent back where it came from (r2 could drop it as a duplicate): it
    // waits for another way, and takes it when one comes.
    await settle();
    assert.equal(r2.all(FrameType.MSG).length, 0, 'neither the message nor a report went back');
    const r3 = ctx.connect();
    r3.send(routerHello('initech', 'any-domain', 'r0'));
    await r3.next(FrameType.WELCOME);
    r3.send(route('initech', ['i', 'r0'])); // the same gateway, another way
    const fwd = await r3.next(FrameType.MSG, (m) => m.id === 'm1');
    assert.equal(fwd.from, 'bot@globex');
    assert.equal(r2.all(FrameType.MSG).length, 0);
  });

  it('acks a downlink once stored, forgets the key on its RELEASE, and sends a receipt back through it', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth });
    const r2 = await ctx.downlink();
    const alice = await ctx.agent({ token: 'alice-only', name: 'alice' });
    r2.send(msg('alice@acme', 'in1', { from: 'bot@globex', hops: 9, flags: MsgFlag.RECEIPT }));
    await r2.next(FrameType.ACK, (f) => f.id === 'in1');
    alice.peer.ack(await alice.peer.next(FrameType.MSG));
    const receipt = await r2.next(FrameType.MSG);
    assert.deepEqual({ from: receipt.from, to: receipt.to, hops: receipt.hops }, { from: 'alice@acme', to: 'bot@globex', hops: 15 });
    assert.deepEqual(reportOf(receipt), { code: WireCode.OK, ref: 'in1', reason: '' });
    // The key of in1 (acked to r2) is kept; the receipt's (made here: nobody retries it to us) is not.
    assert.equal(ctx.router.stats().seenKeys, 1);
    r2.send({ type: FrameType.RELEASE, count: 1 });
    await waitFor(() => ctx.router.stats().seenKeys === 0, 'in1 forgotten', 2000, 1);
    r2.ack(receipt);
    assert.equal((await r2.next(FrameType.RELEASE)).count, 1);
  });

  it('resends what was in flight to a downlink when it links again', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth });
    const first = await ctx.downlink();
    const alice = await ctx.agent({ token: 'alice-only', name: 'alice' });
    alice.peer.send(msg('bot@globex', 'g1'), msg('bot@globex', 'g2'));
    first.ack(await first.next(FrameType.MSG, (m) => m.id === 'g1'));
    await first.next(FrameType.MSG, (m) => m.id === 'g2');
    await first.next(FrameType.RELEASE);
    first.duplex.destroy();
    await waitFor(() => ctx.router.stats().downlinks === 0, 'downlink gone', 2000, 1);
    alice.peer.send(msg('bot@globex', 'g3'));
    await alice.peer.next(FrameType.ACK, (f) => f.id === 'g3');
    const second = await ctx.downlink();
    await second.next(FrameType.MSG, (m) => m.id === 'g3');
    assert.deepEqual(second.msgIds(), ['g2', 'g3']);
  });

  it('survives a restart: a new Router on the same store delivers what the old one accepted, in order, and drops retries of it', async (t) => {
    const store = new MemoryStore();
    const clock = new ManualClock();
    const sessionTokens = testSessionTokens();
    const a = setup(t, { store, clock, sessionTokens });
    await a.router.ready;
    const alice = await a.agent({ name: 'alice' });
    alice.peer.send(...ids('i', 4).map((id) => msg('bob', id)));
    for (const id of ids('i', 4)) await alice.peer.next(FrameType.ACK, (f) => f.id === id);
    // bob takes i1 and has i2 in flight when the router stops.
    const bobA = await a.agent({ name: 'bob' });
    await bobA.peer.next(FrameType.MSG, (m) => m.id === 'i4');
    bobA.peer.ack(bobA.peer.all(FrameType.MSG)[0]!);
    await waitFor(async () => (await store.recover()).messages.length === 3, 'i1 removed from the store', 2000, 1);
    a.router.close();
    assert.equal(await alice.peer.closeCode(), 'ERR_SHUTDOWN');

    const b = setup(t, { store, clock, sessionTokens });
    await b.router.ready;
    assert.deepEqual({ stored: b.router.stats().stored, queues: b.router.stats().queues }, { stored: 3, queues: 1 });
    const alice2 = await b.agent({ name: 'alice' });
    alice2.peer.send(msg('bob', 'i3'));
    await alice2.peer.next(FrameType.ACK, (f) => f.id === 'i3');
    const bobB = await b.agent({ name: 'bob', resume: bobA.welcome.resume });
    assert.equal(bobB.welcome.id, bobA.welcome.id);
    await bobB.peer.next(FrameType.MSG, (m) => m.id === 'i4');
    bobB.peer.ack(...bobB.peer.all(FrameType.MSG));
    await waitFor(() => b.router.stats().stored === 0, 'all delivered', 2000, 1);
    alice2.peer.send(msg('bob', 'i1'), msg('bob', 'i4'), msg('bob', 'i5'));
    await bobB.peer.next(FrameType.MSG, (m) => m.id === 'i5');
    await settle();
    assert.deepEqual(bobB.peer.msgIds(), ['i2', 'i3', 'i4', 'i5']);
    assert.deepEqual(alice2.peer.all(FrameType.ACK).map((f) => f.id), ['i3', 'i1', 'i4', 'i5']);
    assert.equal(b.router.stats().duplicates, 3);
  });

  it('pauses a sender feeding a connected recipient that falls behind queueHighWater, and resumes it once the queue drained to half', async (t) => {
    const ctx = setup(t, { queueHighWater: 4, maxInFlightPerLink: 2 });
    const alice = await ctx.agent({ name: 'alice' });
    const bob = await ctx.agent({ name: 'bob' });
    alice.peer.sendBatch(...ids('p', 8).map((id) => msg('bob', id)));
    await waitFor(() => alice.peer.routerEnd.paused, 'alice paused', 2000, 1);
    await bob.peer.next(FrameType.MSG, (m) => m.id === 'p2');
    bob.peer.ack(...bob.peer.all(FrameType.MSG));
    await bob.peer.next(FrameType.MSG, (m) => m.id === 'p4');
    await settle();
    assert.equal(alice.peer.routerEnd.paused, true, '4 waiting (over half of 4)');
    bob.peer.ack(...bob.peer.all(FrameType.MSG).slice(2));
    await waitFor(() => !alice.peer.routerEnd.paused, 'alice resumed', 2000, 1);
    let acked = 4;
    for (let round = 0; round < 8 && acked < 8; round++) {
      await waitFor(() => bob.peer.msgIds().length > acked, 'more for bob', 2000, 1);
      const got = bob.peer.all(FrameType.MSG);
      bob.peer.ack(...got.slice(acked));
      acked = got.length;
    }
    assert.deepEqual(bob.peer.msgIds(), ids('p', 8));
    assert.equal(alice.peer.ended, false);
  });

  it('does not close a sender it paused as idle: the silence is the router\'s own', async (t) => {
    const ctx = setup(t, { queueHighWater: 4, maxInFlightPerLink: 2, pingIntervalMs: 1000, maxStallMs: 600_000 });
    const alice = await ctx.agent({ name: 'alice' });
    const bob = await ctx.agent({ name: 'bob' });
    alice.peer.sendBatch(...ids('p', 8).map((id) => msg('bob', id)));
    await waitFor(() => alice.peer.routerEnd.paused, 'alice paused', 2000, 1);
    for (let i = 0; i < 10; i++) {
      ctx.clock.tick(500); // 5 s in all: more than twice the ping interval
      await bob.peer.sync(); // bob is alive, and slow
    }
    assert.equal(alice.peer.ended, false, 'alice was not closed for IDLE_TIMEOUT');
    assert.equal(alice.peer.routerEnd.paused, true);
    let acked = 0;
    for (let round = 0; round < 8 && acked < 8; round++) {
      await waitFor(() => bob.peer.msgIds().length > acked, 'more for bob', 2000, 1);
      const got = bob.peer.all(FrameType.MSG);
      bob.peer.ack(...got.slice(acked));
      acked = got.length;
    }
    await waitFor(() => !alice.peer.routerEnd.paused, 'alice resumed', 2000, 1);
    assert.deepEqual(bob.peer.msgIds(), ids('p', 8));
    assert.equal(alice.peer.ended, false);
  });

  it('lets paused senders go when the recipient acknowledges nothing for maxStallMs; its queue then fills to its limits', async (t) => {
    const ctx = setup(t, { queueHighWater: 4, maxInFlightPerLink: 2, pingIntervalMs: 0, maxStallMs: 5000 });
    const alice = await ctx.agent({ name: 'alice' });
    const bob = await ctx.agent({ name: 'bob' }); // never acks: a hung recipient
    const carol = await ctx.agent({ name: 'carol' });
    alice.peer.sendBatch(...ids('p', 8).map((id) => msg('bob', id)));
    await waitFor(() => alice.peer.routerEnd.paused, 'alice paused', 2000, 1);
    ctx.clock.tick(4000);
    await settle();
    assert.equal(alice.peer.routerEnd.paused, true, 'not before maxStallMs');
    ctx.clock.tick(2000);
    await waitFor(() => !alice.peer.routerEnd.paused, 'alice let go', 2000, 1);
    // Bob's hang holds up nobody now: alice reaches carol, and more for bob is taken (queued).
    alice.peer.send(msg('carol', 'c1'));
    await carol.peer.next(FrameType.MSG, (m) => m.id === 'c1');
    alice.peer.sendBatch(...ids('q', 8).map((id) => msg('bob', id)));
    await waitFor(() => alice.peer.all(FrameType.ACK).filter((f) => f.id.startsWith('q')).length === 8, 'q1-q8 acked', 2000, 1);
    assert.equal(alice.peer.routerEnd.paused, false);
    assert.equal(bob.peer.msgIds().length, 2, 'bob still has only his window');
  });

  it('does not pause a sender for a recipient that is offline (the queue limits apply instead)', async (t) => {
    const ctx = setup(t, { queueHighWater: 4 });
    const alice = await ctx.agent({ name: 'alice' });
    alice.peer.sendBatch(...ids('p', 8).map((id) => msg('bob', id)));
    await waitFor(() => alice.peer.all(FrameType.ACK).length === 8, 'all acked', 2000, 1);
    assert.equal(alice.peer.routerEnd.paused, false);
  });

  it('resumes a paused sender when the recipient it waits for disconnects', async (t) => {
    const ctx = setup(t, { queueHighWater: 4, maxInFlightPerLink: 2 });
    const alice = await ctx.agent({ name: 'alice' });
    const bob = await ctx.agent({ name: 'bob' });
    const carol = await ctx.agent({ name: 'carol' });
    alice.peer.sendBatch(...ids('p', 8).map((id) => msg('bob', id)));
    await waitFor(() => alice.peer.routerEnd.paused, 'alice paused', 2000, 1);
    bob.peer.duplex.destroy();
    await waitFor(() => ctx.router.stats().agents === 2, 'bob gone', 2000, 1);
    await waitFor(() => !alice.peer.routerEnd.paused, 'alice resumed', 500, 1);
    alice.peer.send(msg('carol', 'still-there'));
    await carol.peer.next(FrameType.MSG);
  });

  it('keeps a sender paused while a congested router link still holds it, though its queue drained', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth, maxOutboundBytes: 64 * 1024, queueHighWater: 4, maxInFlightPerLink: 2 });
    const stuckEnd = new StuckMemoryDuplex('memory:gateway');
    const farEnd = new MemoryDuplex('memory:far');
    stuckEnd.peer = farEnd;
    farEnd.peer = stuckEnd;
    ctx.router.accept(stuckEnd);
    const gw = new Peer(farEnd);
    gw.send(routerHello('globex', 'globex-domain'));
    await gw.next(FrameType.WELCOME);
    gw.send(route('globex', ['r2']));
    await gw.sync();
    const alice = await ctx.agent({ name: 'alice', token: 'alice-only' });
    const bob = await ctx.agent({ name: 'bob', token: 'acme-domain' });
    stuckEnd.backlog = 40 * 1024; // over half of maxOutboundBytes
    alice.peer.sendBatch(...ids('p', 8).map((id) => msg('bob', id)), msg('x@globex', 'v1', { flags: MsgFlag.VOLATILE }));
    await gw.next(FrameType.MSG, (m) => m.id === 'v1');
    assert.ok(ctx.router.stats().pauses >= 1, 'paused for the congested router link');
    assert.equal(alice.peer.routerEnd.paused, true);
    for (const last of ['p2', 'p4', 'p6']) {
      await bob.peer.next(FrameType.MSG, (m) => m.id === last);
      bob.peer.ack(...bob.peer.all(FrameType.MSG).slice(-2));
    }
    await settle();
    assert.equal(alice.peer.routerEnd.paused, true, 'the router link is still congested');
  });

  it('sends at most maxInFlightPerLink unacked messages on a link, across its queues', async (t) => {
    const ctx = setup(t, { maxInFlightPerLink: 2 });
    const alice = await ctx.agent({ name: 'alice' });
    const carol = await ctx.agent({ name: 'carol' });
    const bob = await ctx.agent({ name: 'bob' });
    alice.peer.send(...ids('w', 4).map((id) => msg('bob', id)));
    await bob.peer.next(FrameType.MSG, (m) => m.id === 'w2');
    carol.peer.send(msg(bob.welcome.id + '@acme', 'c1'));
    await carol.peer.next(FrameType.ACK);
    await settle();
    assert.deepEqual(bob.peer.msgIds(), ['w1', 'w2']);
    assert.deepEqual(ctx.router.links().find((l) => l.address === 'bob@acme')?.pending, 2);
    bob.peer.ack(bob.peer.all(FrameType.MSG)[0]!);
    await waitFor(() => bob.peer.msgIds().length === 3, 'one more', 2000, 1);
    await settle();
    assert.equal(bob.peer.msgIds().length, 3);
    bob.peer.ack(...bob.peer.all(FrameType.MSG).slice(1));
    await waitFor(() => bob.peer.msgIds().length === 5, 'the rest', 2000, 1);
    const got = bob.peer.msgIds();
    assert.deepEqual(got.filter((id) => id.startsWith('w')), ['w1', 'w2', 'w3', 'w4'], 'in order per queue');
    assert.ok(got.includes('c1'));
  });

  it('takes an ACK or NACK only from the link the message was sent on', async (t) => {
    const ctx = setup(t);
    const alice = await ctx.agent({ name: 'alice' });
    const bob = await ctx.agent({ name: 'bob' });
    const mallory = await ctx.agent({ name: 'mallory' });
    alice.peer.send(msg('bob', 'm1', { flags: MsgFlag.RECEIPT }));
    const m1 = await bob.peer.next(FrameType.MSG);
    mallory.peer.ack(m1);
    mallory.peer.send({ type: FrameType.NACK, id: m1.id, from: m1.from, code: WireCode.UNAVAILABLE, reason: 'forged' });
    await mallory.peer.sync();
    await settle();
    assert.equal(ctx.router.stats().stored, 1, 'still held for bob');
    assert.deepEqual(alice.peer.all(FrameType.MSG), [], 'no report from a forged answer');
    bob.peer.ack(m1);
    assert.deepEqual(reportOf(await alice.peer.next(FrameType.MSG)), { code: WireCode.OK, ref: 'm1', reason: '' });
  });

  it('sends at most maxInFlightBytesPerLink on a link, but always one message', async (t) => {
    const ctx = setup(t, { maxInFlightBytesPerLink: 300 });
    const alice = await ctx.agent({ name: 'alice' });
    const bob = await ctx.agent({ name: 'bob' });
    alice.peer.send(msg('bob', 'big', { body: new Uint8Array(1000) }), msg('bob', 'm1', { body: new Uint8Array(100) }), msg('bob', 'm2', { body: new Uint8Array(100) }), msg('bob', 'm3', { body: new Uint8Array(100) }));
    const big = await bob.peer.next(FrameType.MSG);
    assert.equal(big.id, 'big', 'larger than the window, yet sent alone');
    await settle();
    assert.deepEqual(bob.peer.msgIds(), ['big']);
    bob.peer.ack(big);
    await bob.peer.next(FrameType.MSG, (m) => m.id === 'm2');
    await settle();
    assert.deepEqual(bob.peer.msgIds(), ['big', 'm1', 'm2'], 'two of ~136 bytes fit in 300');
  });

  it('sends volatile messages directly: never stored or acked, outside the window, NO_ROUTE when nobody is there', async (t) => {
    const ctx = setup(t, { maxInFlightPerLink: 1 });
    const alice = await ctx.agent({ name: 'alice' });
    const bob = await ctx.agent({ name: 'bob' });
    alice.peer.send(msg('bob', 'r1'), msg('bob', 'r2'), msg('bob', 'v1', { flags: MsgFlag.VOLATILE }), msg('nobody', 'v2', { flags: MsgFlag.VOLATILE }));
    const v1 = await bob.peer.next(FrameType.MSG, (m) => m.id === 'v1');
    assert.equal(v1.flags, MsgFlag.VOLATILE);
    const n = await alice.peer.next(FrameType.NACK);
    assert.deepEqual({ id: n.id, code: errorCodeOf(n.code) }, { id: 'v2', code: 'ERR_NO_ROUTE' });
    await settle();
    assert.deepEqual(bob.peer.msgIds().sort(), ['r1', 'v1'], 'r2 waits for the window; v1 does not');
    assert.deepEqual(alice.peer.all(FrameType.ACK).map((f) => f.id), ['r1', 'r2']);
    assert.equal(ctx.router.stats().stored, 2);
  });

  it('reports FRAME_TOO_LARGE for a waiting message larger than the recipient accepts when it connects', async (t) => {
    const ctx = setup(t);
    const alice = await ctx.agent({ name: 'alice' });
    alice.peer.send(msg('small', 'huge', { body: new Uint8Array(4096) }), msg('small', 'fits'));
    await alice.peer.next(FrameType.ACK, (f) => f.id === 'fits');
    const small = await ctx.agent({ name: 'small', maxFrame: 2048 });
    assert.equal((await small.peer.next(FrameType.MSG)).id, 'fits');
    const report = reportOf(await alice.peer.next(FrameType.MSG));
    assert.deepEqual({ code: errorCodeOf(report.code), ref: report.ref }, { code: 'ERR_FRAME_TOO_LARGE', ref: 'huge' });
    assert.equal(small.peer.ended, false);
  });
});
