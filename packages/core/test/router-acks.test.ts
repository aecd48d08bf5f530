// Feature ACKS (PROTOCOL.md 6.1): reliable MSGs numbered per connection and direction,
// acknowledged by number in ranges; RELEASE counts the numbers acknowledged.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Feature, FrameType, MsgFlag, WireCode } from '@postern/protocol';
import { waitFor } from '@postern/testing';
import { msg, settle, setup } from './router-harness.js';

describe('Router: numbered acknowledgements (feature ACKS)', () => {
  it('grants ACKS to a dialer that asks, and acknowledges its reliable MSGs by number in ranges; volatile ones take no number', async (t) => {
    const ctx = setup(t);
    const alice = await ctx.agent({ name: 'alice', features: Feature.ACKS });
    assert.equal(alice.welcome.features & Feature.ACKS, Feature.ACKS);
    // 1, (volatile: no number), 2, 3: stored in one commit, acknowledged as one run.
    alice.peer.send(msg('bob@acme', 'm1'), msg('nobody@acme', 'v1', { flags: MsgFlag.VOLATILE }), msg('bob@acme', 'm2'), msg('bob@acme', 'm3'));
    const a = await alice.peer.next(FrameType.ACKS);
    assert.deepEqual({ first: a.first, count: a.count }, { first: 1, count: 3 });
    assert.equal(alice.peer.all(FrameType.ACK).length, 0, 'no ACK by key on a numbered connection');
    // A retry is a new MSG on the connection: acknowledged again by its own number.
    alice.peer.send(msg('bob@acme', 'm2'));
    const again = await alice.peer.next(FrameType.ACKS, (f) => f.first === 4);
    assert.equal(again.count, 1);
    assert.equal(ctx.router.stats().duplicates, 1);
    // Refused ones still take their number: the next is acknowledged as 6.
    alice.peer.send(msg('not an address', 'bad'), msg('bob@acme', 'm4'));
    const nack = await alice.peer.next(FrameType.NACK, (f) => f.id === 'bad');
    assert.equal(nack.code, WireCode.BAD_ADDRESS);
    assert.equal((await alice.peer.next(FrameType.ACKS, (f) => f.first === 6)).count, 1);
  });

  it('numbers what it writes to an agent, settles each number acknowledged (in any order), and ignores numbers it never sent', async (t) => {
    const ctx = setup(t);
    const alice = await ctx.agent({ name: 'alice', features: Feature.ACKS });
    alice.peer.send(msg('bob@acme', 'm1'), msg('bob@acme', 'm2'), msg('bob@acme', 'm3'));
    await alice.peer.next(FrameType.ACKS);
    const bob = await ctx.agent({ name: 'bob', features: Feature.ACKS });
    await bob.peer.next(FrameType.MSG, (m) => m.id === 'm3');
    assert.deepEqual(bob.peer.all(FrameType.MSG).map((m) => m.id), ['m1', 'm2', 'm3']);
    bob.peer.send({ type: FrameType.ACKS, first: 3, count: 1 }, { type: FrameType.ACKS, first: 50, count: 7 });
    await waitFor(() => ctx.router.stats().stored === 2, 'm3 settled');
    bob.peer.send({ type: FrameType.ACKS, first: 1, count: 2 });
    await waitFor(() => ctx.router.stats().stored === 0, 'm1 and m2 settled');
    await settle();
    assert.equal(bob.peer.all(FrameType.MSG).length, 3, 'nothing sent again');
  });

  it('sends the next MSGs of a connection without ACKS as before, and closes one that sends ACKS anyway with PROTOCOL', async (t) => {
    const ctx = setup(t);
    const alice = await ctx.agent({ name: 'alice' });
    assert.equal(alice.welcome.features & Feature.ACKS, 0);
    alice.peer.send(msg('bob@acme', 'm1'));
    assert.equal((await alice.peer.next(FrameType.ACK)).id, 'm1');
    alice.peer.send({ type: FrameType.ACKS, first: 1, count: 1 });
    await waitFor(() => alice.peer.received.some((f) => f.type === FrameType.CLOSE), 'CLOSE');
    assert.equal(await alice.peer.closeCode(), 'ERR_PROTOCOL');
  });
});
