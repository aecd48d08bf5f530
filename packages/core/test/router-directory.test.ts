// Known and unknown recipients (issue 10): a name or id that was once held, or provisioned, is
// known, and messages to it wait while it is offline; one nobody ever held is refused at once.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryStore } from '@postern/core';
import { FrameType, MsgFlag, errorCodeOf } from '@postern/protocol';
import { msg, settle, setup } from './router-harness.js';

describe('Router: known and unknown recipients', () => {
  it('refuses a message to a name nobody ever held with UNKNOWN_RECIPIENT at once; a name once held waits', async (t) => {
    const ctx = setup(t, { unknownRecipients: 'refuse' });
    const a = await ctx.agent({ name: 'alice' });
    a.peer.send(msg('ghost', 'g1'), msg('ghost', 'g2', { flags: MsgFlag.VOLATILE }), msg('_zzzzzzzzzzzzzzzz', 'g3'));
    for (const id of ['g1', 'g2', 'g3']) assert.equal(errorCodeOf((await a.peer.next(FrameType.NACK, (n) => n.id === id)).code), 'ERR_UNKNOWN_RECIPIENT');
    const bob = await ctx.agent({ name: 'bob' });
    bob.peer.duplex.close();
    await settle();
    a.peer.send(msg('bob', 'later'));
    await a.peer.next(FrameType.ACK, (f) => f.id === 'later');
    assert.equal(ctx.router.stats().stored, 1, 'bob is known (offline): his message waits');
    const b2 = await ctx.agent({ name: 'bob' });
    assert.equal((await b2.peer.next(FrameType.MSG)).id, 'later');
  });

  it('knows provisioned names, and what it knew after a restart', async (t) => {
    const store = new MemoryStore();
    const first = setup(t, { unknownRecipients: 'refuse', knownNames: ['carol'], store });
    const a = await first.agent({ name: 'alice' });
    a.peer.send(msg('carol', 'c1'));
    await a.peer.next(FrameType.ACK, (f) => f.id === 'c1');
    const dave = await first.agent({ name: 'dave' });
    const daveId = dave.welcome.id;
    await settle();
    first.router.close();
    const ctx = setup(t, { unknownRecipients: 'refuse', store, clock: first.clock });
    await ctx.router.ready;
    const b = await ctx.agent({ name: 'bob' });
    b.peer.send(msg('dave', 'd1'), msg(`${daveId}@acme`, 'd2'), msg('erin', 'e1'));
    await b.peer.next(FrameType.ACK, (f) => f.id === 'd1');
    await b.peer.next(FrameType.ACK, (f) => f.id === 'd2');
    assert.equal(errorCodeOf((await b.peer.next(FrameType.NACK, (n) => n.id === 'e1')).code), 'ERR_UNKNOWN_RECIPIENT');
    const carol = await ctx.agent({ name: 'carol' });
    assert.equal((await carol.peer.next(FrameType.MSG)).id, 'c1', 'what waited for the provisioned name before the restart');
  });

  it('forgets ids offline for longer than directoryTtlMs, never names', async (t) => {
    const ctx = setup(t, { unknownRecipients: 'refuse', directoryTtlMs: 5000 });
    const gone = await ctx.agent({ name: 'zed' });
    const id = gone.welcome.id;
    gone.peer.duplex.close();
    await settle();
    ctx.clock.tick(70_000);
    await settle();
    const a = await ctx.agent();
    a.peer.send(msg(`${id}@acme`, 'x'), msg('zed', 'y'));
    assert.equal(errorCodeOf((await a.peer.next(FrameType.NACK, (n) => n.id === 'x')).code), 'ERR_UNKNOWN_RECIPIENT');
    await a.peer.next(FrameType.ACK, (f) => f.id === 'y');
  });
});
