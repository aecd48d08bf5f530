// Custody across many hops (issue 9): a message written to a router stays pinned to that router
// until it answers, across lost links and restarts; only never-sent messages take a new route;
// order per sender holds; a message never goes back where it came from, also after a restart.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryStore, type NewMessage } from '@postern/core';
import { FrameType, Role, RouteOp, WireCode } from '@postern/protocol';
import { waitFor } from '@postern/testing';
import { TOKENS, fakeAuthenticator, msg, route, routerHello, settle, setup, uplinkTo, type Ctx, type Peer } from './router-harness.js';

const auth = fakeAuthenticator(TOKENS);

/**
 * A version 1 downlink with node id `node`, announcing globex with `metric` unless told not to:
 * a way to globex's one gateway `g` (two such downlinks are two ways to one router; two origins
 * would be two routers claiming globex, and the second would be fenced).
 */
async function globex(ctx: Ctx, node: string, announce = true, metric = 0): Promise<Peer> {
  const p = ctx.connect();
  p.send(routerHello('globex', 'globex-domain', node));
  await p.next(FrameType.WELCOME);
  if (announce) p.send(route('globex', ['g', node], RouteOp.ADD, metric));
  await p.sync();
  return p;
}

/** A MemoryStore that counts repins and holds appends until opened. */
class WatchedStore extends MemoryStore {
  repins: Array<{ seq: number; via: string }> = [];
  #open = true;
  readonly #waiting: Array<() => void> = [];

  hold(): void {
    this.#open = false;
  }

  open(): void {
    this.#open = true;
    for (const w of this.#waiting.splice(0)) w();
  }

  override async append(messages: readonly NewMessage[]): Promise<number[]> {
    if (!this.#open) await new Promise<void>((r) => this.#waiting.push(r));
    return super.append(messages);
  }

  override repin(changes: ReadonlyArray<{ seq: number; via: string }>): Promise<void> {
    this.repins.push(...changes);
    return super.repin(changes);
  }
}

describe('Router: custody across hops', () => {
  it('keeps a message written to a router pinned to it when the link is lost; other senders take the new route at once', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth });
    const r2 = await globex(ctx, 'r2');
    const r3 = await globex(ctx, 'r3', true, 1); // a longer way: r2 is the best route
    assert.deepEqual(ctx.router.routes().get('globex'), ['r2', 'r3']);
    const alice = await ctx.agent({ name: 'alice', token: 'acme-domain' });
    const carol = await ctx.agent({ name: 'carol', token: 'acme-domain' });
    alice.peer.send(msg('x@globex', 'a1'), msg('x@globex', 'a2'));
    await waitFor(() => r2.all(FrameType.MSG).length === 2, 'a1 a2 on r2', 2000, 1);
    // r2 took them (or not: its ACK is lost with the link).
    r2.duplex.close();
    await waitFor(() => ctx.router.routes().get('globex')?.length === 1, 'r2 gone', 2000, 1);
    alice.peer.send(msg('x@globex', 'a3'));
    carol.peer.send(msg('x@globex', 'c1'));
    const c1 = await r3.next(FrameType.MSG, (m) => m.id === 'c1');
    assert.equal(c1.from, 'carol@acme', 'a sender with nothing pinned takes the new route');
    await settle();
    assert.deepEqual(r3.msgIds(), ['c1'], 'a1 and a2 wait for r2 (it may have them), and a3 waits behind them');
    assert.equal(ctx.router.stats().pinned, 2);

    // r2 comes back, without even announcing globex: what is pinned to it goes there.
    const r2b = await globex(ctx, 'r2', false);
    const again = [await r2b.next(FrameType.MSG), await r2b.next(FrameType.MSG)];
    assert.deepEqual(again.map((m) => m.id), ['a1', 'a2'], 'resent to the router it was written to, in order');
    await settle();
    assert.deepEqual(r3.msgIds(), ['c1'], 'a3 still waits: a1 and a2 are not settled');
    r2b.ack(...again);
    const a3 = await r3.next(FrameType.MSG, (m) => m.id === 'a3');
    assert.equal(a3.from, 'alice@acme', 'then alice\'s next message takes the new route');
    assert.equal(ctx.router.stats().pinned, 0);
  });

  it('keeps where a message went across a restart: it goes back only to that router', async (t) => {
    const store = new MemoryStore();
    const first = setup(t, { allowGuests: true, authenticator: auth, store, node: 'r1' });
    const r2 = await globex(first, 'r2');
    const alice = await first.agent({ name: 'alice', token: 'acme-domain' });
    alice.peer.send(msg('x@globex', 'm1'));
    await r2.next(FrameType.MSG, (m) => m.id === 'm1');
    first.router.close(); // a crash: r2 never answered
    const ctx = setup(t, { allowGuests: true, authenticator: auth, store, node: 'r1', clock: first.clock });
    await ctx.router.ready;
    const r3 = await globex(ctx, 'r3');
    await settle();
    assert.deepEqual(r3.msgIds(), [], 'not sent along another route: r2 may hold it');
    const r2b = await globex(ctx, 'r2', false);
    assert.equal((await r2b.next(FrameType.MSG)).id, 'm1');
  });

  it('remembers where a message came from across a restart: never sent back there, it waits for another way', async (t) => {
    const store = new MemoryStore();
    const first = setup(t, { allowGuests: true, authenticator: auth, store, node: 'r1' });
    const r2 = await globex(first, 'r2');
    r2.send(msg('x@initech', 'back?', { from: 'bot@globex', hops: 9 }));
    await r2.next(FrameType.ACK, (f) => f.id === 'back?'); // held: nobody reaches initech
    first.router.close();
    const ctx = setup(t, { allowGuests: true, authenticator: { verify: () => Promise.resolve({ domain: '*' }) }, store, node: 'r1', clock: first.clock });
    await ctx.router.ready;
    const back = ctx.connect();
    back.send(routerHello('initech', 'any', 'r2'));
    await back.next(FrameType.WELCOME);
    back.send(route('initech', ['i', 'r2'])); // initech's gateway i, through r2
    await back.sync();
    await settle();
    assert.deepEqual(back.all(FrameType.MSG), [], 'the only route leads back to r2, where it came from');
    const other = ctx.connect();
    other.send(routerHello('initech', 'any', 'r0'));
    await other.next(FrameType.WELCOME);
    other.send(route('initech', ['i', 'r0'])); // the same gateway, another way
    assert.equal((await other.next(FrameType.MSG)).id, 'back?');
  });

  it('records a new next hop before a never-sent message takes it (repin), then sends it', async (t) => {
    const store = new WatchedStore();
    const ctx = setup(t, { allowGuests: true, authenticator: auth, store });
    const r2 = await globex(ctx, 'r2');
    const r3 = await globex(ctx, 'r3', true, 1);
    const alice = await ctx.agent({ name: 'alice', token: 'acme-domain' });
    store.hold();
    alice.peer.send(msg('x@globex', 'm1')); // stored with via r2, the best route now
    await alice.peer.sync();
    r2.send(route('globex', ['g', 'r2'], RouteOp.WITHDRAW));
    await r2.sync();
    store.open();
    assert.equal((await r3.next(FrameType.MSG)).id, 'm1');
    assert.deepEqual(store.repins.map((r) => r.via), ['r3'], 'the new via was committed before it left');
    assert.deepEqual(r2.all(FrameType.MSG), []);
  });
});

describe('Router: protocol versions', () => {
  it('an uplink whose relay refuses version 2 speaks version 1 to it', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth });
    const up = uplinkTo(t, ctx);
    await waitFor(() => up.relays.length === 1, 'dial', 2000, 1);
    const old = up.relays[0]!;
    const h = await old.next(FrameType.HELLO);
    assert.equal(h.version, 2);
    // What a version 1 router answers to any other version.
    old.send({ type: FrameType.CLOSE, code: WireCode.VERSION, reason: 'protocol version 2 is not supported; this router speaks 1' });
    old.duplex.close();
    await waitFor(() => up.relays.length === 2, 'the second dial, at once', 2000, 1);
    const again = await up.relays[1]!.next(FrameType.HELLO);
    assert.deepEqual({ version: again.version, role: again.role, nonce: again.nonce }, { version: 1, role: Role.ROUTER, nonce: '' });
    await up.welcome(up.relays[1]!, true);
    assert.equal(up.uplink.connected, true);
  });
});
