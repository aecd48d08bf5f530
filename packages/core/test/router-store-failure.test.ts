// A store that cannot commit (issue 11 item 2, "full disk"): the router refuses what it cannot
// store with NACK STORE_UNAVAILABLE, keeps serving the rest, keeps the changes it could not
// commit, and takes messages again, without a restart, once the store commits.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryStore, type NewMessage } from '@postern/core';
import { FrameType, MsgFlag, PosternError, WireCode, type NackFrame } from '@postern/protocol';
import { waitFor } from '@postern/testing';
import { TOKENS, fakeAuthenticator, msg, reportOf, settle, setup } from './router-harness.js';

const authenticator = fakeAuthenticator(TOKENS);

/** A real MemoryStore whose commits fail on demand, as SqliteStore's do on a full disk (nothing of a failed call happens). */
class FailingStore extends MemoryStore {
  failing = false;
  /** Throw something other than ERR_STORE_UNAVAILABLE: a store that cannot go on. */
  broken = false;
  calls = { append: 0, retire: 0, remove: 0, repin: 0, setValue: 0, deleteValues: 0 };

  #check(kind: keyof FailingStore['calls']): void {
    this.calls[kind]++;
    if (this.broken) throw new PosternError('ERR_INTERNAL', 'the store could not commit: database disk image is malformed');
    if (this.failing) throw new PosternError('ERR_STORE_UNAVAILABLE', 'the store could not commit: database or disk is full', { cause: Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }) });
  }

  override async append(messages: readonly NewMessage[]): Promise<number[]> {
    this.#check('append');
    return super.append(messages);
  }
  override async retire(seqs: readonly number[]): Promise<void> {
    this.#check('retire');
    return super.retire(seqs);
  }
  override async remove(seqs: readonly number[]): Promise<void> {
    this.#check('remove');
    return super.remove(seqs);
  }
  override async repin(changes: ReadonlyArray<{ readonly seq: number; readonly via: string }>): Promise<void> {
    this.#check('repin');
    return super.repin(changes);
  }
  override async setValue(key: string, value: Uint8Array): Promise<void> {
    this.#check('setValue');
    return super.setValue(key, value);
  }
  override async deleteValues(keys: readonly string[]): Promise<void> {
    this.#check('deleteValues');
    return super.deleteValues(keys);
  }
}

const isNack = (id: string) => (f: NackFrame) => f.id === id;

describe('Router: a store that cannot commit', () => {
  it('refuses reliable messages with STORE_UNAVAILABLE, keeps delivering, and accepts again once the store commits', async (t) => {
    const store = new FailingStore();
    let fatal: unknown;
    const ctx = setup(t, { store, authenticator, onFatal: (err) => (fatal = err) });
    await ctx.router.ready;
    const alice = await ctx.agent({ name: 'alice', token: 'acme-domain' });
    // Held before the store fails: delivered while it fails.
    for (const id of ['h1', 'h2']) alice.peer.send(msg('bob@acme', id));
    await alice.peer.next(FrameType.ACK, (f) => f.id === 'h1');
    await alice.peer.next(FrameType.ACK, (f) => f.id === 'h2');

    store.failing = true;
    alice.peer.send(msg('bob@acme', 'f1'), msg('bob@acme', 'f2'));
    const n1 = await alice.peer.next(FrameType.NACK, isNack('f1'));
    assert.equal(n1.code, WireCode.STORE_UNAVAILABLE);
    assert.match(n1.reason, /database or disk is full/);
    assert.equal((await alice.peer.next(FrameType.NACK, isNack('f2'))).code, WireCode.STORE_UNAVAILABLE);
    assert.equal(ctx.router.storeState().ok, false);
    assert.match(ctx.router.storeState().error ?? '', /disk is full/);
    assert.equal(typeof ctx.router.storeState().since, 'number');
    // A retry while failing is refused again (its key was not kept: nothing was stored).
    alice.peer.send(msg('bob@acme', 'f1'));
    assert.equal((await alice.peer.next(FrameType.NACK, isNack('f1'))).code, WireCode.STORE_UNAVAILABLE);

    // Held messages still go out; their removal fails and is kept for later.
    const bob = await ctx.agent({ name: 'bob', token: 'acme-domain' });
    const got = await bob.peer.next(FrameType.MSG, (m) => m.id === 'h1');
    await bob.peer.next(FrameType.MSG, (m) => m.id === 'h2');
    bob.peer.ack(got, { id: 'h2', from: got.from });
    // Volatile traffic flows.
    alice.peer.send(msg('bob@acme', 'v1', { flags: MsgFlag.VOLATILE }));
    assert.equal((await bob.peer.next(FrameType.MSG, (m) => m.id === 'v1')).id, 'v1');
    await settle();
    assert.equal(fatal, undefined, 'not fatal');
    assert.ok(store.calls.remove + store.calls.retire > 0, 'the removal was tried');
    assert.equal(ctx.router.stats().stored, 0);

    // The probe runs every second while failing; nothing recovers while it still fails.
    const before = store.calls.append + store.calls.retire + store.calls.remove + store.calls.setValue;
    ctx.clock.tick(1000);
    await settle();
    assert.ok(store.calls.append + store.calls.retire + store.calls.remove + store.calls.setValue > before, 'tried again');
    assert.equal(ctx.router.storeState().ok, false);

    // Space returns: the next commit succeeds, the kept removals are made, new messages are accepted.
    store.failing = false;
    ctx.clock.tick(1000);
    await waitFor(() => ctx.router.storeState().ok, 'the store recovered', 2000, 1);
    const rows = await store.recover();
    assert.deepEqual(rows.messages.map((m) => m.id), [], 'the delivered messages were removed');
    alice.peer.send(msg('bob@acme', 'f1'), msg('bob@acme', 'n1'));
    await alice.peer.next(FrameType.ACK, (f) => f.id === 'f1');
    await alice.peer.next(FrameType.ACK, (f) => f.id === 'n1');
    const f1 = await bob.peer.next(FrameType.MSG, (m) => m.id === 'f1');
    const n1b = await bob.peer.next(FrameType.MSG, (m) => m.id === 'n1');
    bob.peer.ack(f1, n1b);
    await settle();
    // Exactly once: every message bob got, once each.
    assert.deepEqual(bob.peer.msgIds(), ['h1', 'h2', 'v1', 'f1', 'n1']);
    const s = ctx.router.stats();
    assert.equal(s.storeRefused, 3);
    assert.ok(s.storeFailures >= 2);
    assert.equal(fatal, undefined);
  });

  it('sends RELEASE only once the removals of a failed commit are durable', async (t) => {
    const store = new FailingStore();
    const ctx = setup(t, { store, authenticator });
    await ctx.router.ready;
    const globex = await ctx.downlink('globex', 'globex-domain', 'r2');
    const alice = await ctx.agent({ name: 'alice', token: 'acme-domain' });
    alice.peer.send(msg('x@globex', 'a1'));
    const m = await globex.next(FrameType.MSG, (f) => f.id === 'a1');
    store.failing = true;
    globex.ack(m);
    await globex.sync();
    await settle();
    assert.deepEqual(globex.all(FrameType.RELEASE), [], 'no RELEASE while the removal is not durable');
    store.failing = false;
    ctx.clock.tick(1000);
    await globex.next(FrameType.RELEASE);
    assert.deepEqual((await store.recover()).messages, []);
  });

  it('keeps a repin waiting until it is durable: the message goes to its new router only then', async (t) => {
    const store = new FailingStore();
    const ctx = setup(t, { store, authenticator });
    await ctx.router.ready;
    const alice = await ctx.agent({ name: 'alice', token: 'acme-domain' });
    // No route yet: stored without a `via`.
    alice.peer.send(msg('x@globex', 'a1'));
    await alice.peer.next(FrameType.ACK, (f) => f.id === 'a1');
    store.failing = true;
    const globex = await ctx.downlink('globex', 'globex-domain', 'r2');
    await settle();
    assert.ok(store.calls.repin > 0, 'the repin was tried');
    assert.deepEqual(globex.msgIds(), [], 'not sent before its via is durable');
    store.failing = false;
    ctx.clock.tick(1000);
    const m = await globex.next(FrameType.MSG, (f) => f.id === 'a1');
    assert.equal((await store.recover()).messages[0]?.via, 'r2');
    globex.ack(m);
  });

  it('a router that answers STORE_UNAVAILABLE gets the message again later; the sender hears nothing bad', async (t) => {
    const ctx = setup(t, { authenticator });
    await ctx.router.ready;
    const globex = await ctx.downlink('globex', 'globex-domain', 'r2');
    const alice = await ctx.agent({ name: 'alice', token: 'acme-domain' });
    alice.peer.send(msg('x@globex', 'a1', { flags: MsgFlag.RECEIPT }));
    await alice.peer.next(FrameType.ACK, (f) => f.id === 'a1');
    const m = await globex.next(FrameType.MSG, (f) => f.id === 'a1');
    globex.send({ type: FrameType.NACK, code: WireCode.STORE_UNAVAILABLE, id: m.id, from: m.from, reason: 'disk full' });
    await globex.sync();
    await settle();
    assert.deepEqual(globex.msgIds(), ['a1'], 'not again at once');
    ctx.clock.tick(1000);
    await waitFor(() => globex.msgIds().length === 2, 'sent again', 2000, 1);
    globex.ack(m);
    await settle();
    assert.equal(ctx.router.stats().stored, 0);
    assert.ok(alice.peer.all(FrameType.MSG).every((r) => reportOf(r).code === WireCode.OK), 'no failure report');
  });

  it('stays fatal for a store that cannot go on', async (t) => {
    const store = new FailingStore();
    let fatal: unknown;
    const ctx = setup(t, { store, authenticator, onFatal: (err) => (fatal = err) });
    await ctx.router.ready;
    const alice = await ctx.agent({ name: 'alice', token: 'acme-domain' });
    store.broken = true;
    alice.peer.send(msg('bob@acme', 'b1'));
    await waitFor(() => fatal !== undefined, 'fatal', 2000, 1);
    assert.equal((fatal as PosternError).code, 'ERR_INTERNAL');
  });
});
