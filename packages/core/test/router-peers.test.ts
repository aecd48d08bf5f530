// Version 2 router links (issue 9): both ends prove their node keys, peers are admitted by the
// operator's trust, routes propagate with their paths and are accepted only where the link is
// entitled or a proof holds; nothing here cuts a link for an announcement it refused.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { acceptPayload, dialPayload, newNonce, routePayload, type NodeIdentity, type TrustPolicy } from '@postern/core';
import { Feature, FrameType, LinkMode, MsgFlag, PROTOCOL_VERSION, Role, RouteOp, WatchOp, errorCodeOf, type RouteFrame } from '@postern/protocol';
import { testIdentity, waitFor } from '@postern/testing';
import { TOKENS, fakeAuthenticator, hello, msg, route, settle, setup, type Ctx, type Peer } from './router-harness.js';

const auth = fakeAuthenticator(TOKENS);

/** Trust: `nodes` maps node ids to what they may speak for; a proof is valid when it reads `ok:<origin>:<domain>`. */
function trust(nodes: Record<string, string[]>): TrustPolicy {
  return {
    trusted: (node) => nodes[node],
    grants: () => undefined,
    verifyOrigin: (proof, origin, domain) => proof === `ok:${origin}:${domain}`,
  };
}

interface V2 {
  peer: Peer;
  id: NodeIdentity;
}

/** Dials ctx.router as a version 2 router: HELLO with a nonce, checks WELCOME's proof, answers AUTH. */
async function link(ctx: Ctx, o: { domain: string; mode?: number; token?: string; features?: number; id?: NodeIdentity; auth?: 'good' | 'bad' | 'none' }): Promise<V2> {
  const id = o.id ?? testIdentity();
  const peer = ctx.connect();
  const nonce = newNonce();
  peer.send(hello({ version: PROTOCOL_VERSION, role: Role.ROUTER, name: o.domain, node: id.node, token: o.token ?? '', nonce, link: o.mode ?? LinkMode.PEER, features: o.features ?? 0 }));
  await waitFor(() => peer.received.some((f) => f.type === FrameType.WELCOME || f.type === FrameType.CLOSE), 'WELCOME or CLOSE', 2000, 1);
  if (!peer.received.some((f) => f.type === FrameType.WELCOME)) return { peer, id }; // refused at HELLO
  const w = await peer.next(FrameType.WELCOME);
  assert.ok(ctx.router.options.identity!.verify(w.node, acceptPayload(nonce, id.node, w.node, w.nonce), w.proof), 'the router proves its key');
  if (o.auth !== 'none') {
    const proof = o.auth === 'bad' ? id.sign('something else') : id.sign(dialPayload(w.nonce, w.node, id.node, nonce));
    peer.send({ type: FrameType.AUTH, proof });
  }
  return { peer, id };
}

function routesTo(peer: Peer, domain: string): RouteFrame[] {
  return peer.all(FrameType.ROUTE).filter((r) => r.domain === domain);
}

describe('Router: version 2 router links', () => {
  it('takes a router link only once it proved its node key; frames before AUTH, or a bad proof, close it', async (t) => {
    const r2 = testIdentity();
    const ctx = setup(t, { allowGuests: true, authenticator: auth, identity: testIdentity(), trust: trust({ [r2.node]: ['globex'] }) });
    const early = await link(ctx, { domain: 'globex', id: r2, auth: 'none' });
    early.peer.send(msg('x@acme', 'too early', { from: 'bot@globex' }));
    assert.equal(await early.peer.closeCode(), 'ERR_PROTOCOL');
    const bad = await link(ctx, { domain: 'globex', id: r2, auth: 'bad' });
    assert.equal(await bad.peer.closeCode(), 'ERR_AUTH_FAILED');
    const good = await link(ctx, { domain: 'globex', id: r2 });
    const own = await good.peer.next(FrameType.ROUTE);
    assert.deepEqual({ domain: own.domain, metric: own.metric, path: own.path }, { domain: 'acme', metric: 0, path: [ctx.router.node] }, 'a peer hears our domain at once');
    assert.equal(ctx.router.stats().peers, 1);
    // A HELLO of version 2 from a router must carry a nonce.
    const p = ctx.connect();
    p.send(hello({ role: Role.ROUTER, name: 'globex', node: r2.node, link: LinkMode.PEER }));
    assert.equal(await p.closeCode(), 'ERR_PROTOCOL');
  });

  it('admits a peer only where the operator trusts its key, or its credential is a peer credential', async (t) => {
    const trusted = testIdentity();
    const ctx = setup(t, { allowGuests: true, authenticator: fakeAuthenticator({ ...TOKENS, 'peer-token': { domain: 'initech', peer: true } }), identity: testIdentity(), trust: trust({ [trusted.node]: ['globex'] }) });
    const stranger = await link(ctx, { domain: 'globex' });
    assert.equal(await stranger.peer.closeCode(), 'ERR_AUTH_FAILED');
    const gatewayToken = await link(ctx, { domain: 'globex', token: 'globex-domain' });
    assert.equal(await gatewayToken.peer.closeCode(), 'ERR_AUTH_FAILED', 'a gateway\'s domain token does not make a peer');
    const wrongDomain = await link(ctx, { domain: 'initech', id: trusted });
    assert.equal(await wrongDomain.peer.closeCode(), 'ERR_DOMAIN_NOT_ALLOWED', 'trusted for globex, not initech');
    const sameDomain = await link(ctx, { domain: 'acme', id: testIdentity(), token: 'peer-token' });
    assert.equal(await sameDomain.peer.closeCode(), 'ERR_DOMAIN_NOT_ALLOWED');
    await link(ctx, { domain: 'initech', token: 'peer-token' });
    await link(ctx, { domain: 'globex', id: trusted });
    await waitFor(() => ctx.router.stats().peers === 2, 'two peers', 2000, 1);
  });

  it('accepts from a peer the domains it is trusted with or proves, refuses the rest without cutting it, and checks senders alike', async (t) => {
    const p = testIdentity();
    const far = testIdentity();
    const ctx = setup(t, { allowGuests: true, authenticator: auth, identity: testIdentity(), trust: trust({ [p.node]: ['globex'] }) });
    const me = ctx.router.node;
    const { peer } = await link(ctx, { domain: 'globex', id: p });
    /** A proof: the grants, then each hop's signature of the path so far towards the next. */
    const proof = (domain: string, grants: string, signers: NodeIdentity[] = [far, p]): string => {
      const path = [far.node, p.node];
      const sigs = signers.map((id, i) => id.sign(routePayload(domain, path.slice(0, i + 1), path[i + 1] ?? me)));
      return `${grants};${sigs.join(',')}`;
    };
    peer.send(route('globex', [p.node]));
    peer.send(route('eu.globex', ['far', p.node], RouteOp.ADD, 1));
    peer.send(route('initech', [far.node, p.node], RouteOp.ADD, 1, proof('initech', `ok:${far.node}:initech`)));
    peer.send(route('umbrella', [far.node, p.node], RouteOp.ADD, 1, proof('umbrella', 'ok:someone-else:umbrella')));
    // A valid grant for its origin, but a path the origin never signed towards p: made up.
    peer.send(route('initrode', [far.node, p.node], RouteOp.ADD, 1, proof('initrode', `ok:${far.node}:initrode`, [p, p])));
    peer.send(route('hooli', ['far', p.node], RouteOp.ADD, 1));
    await peer.sync();
    assert.deepEqual([...ctx.router.routes().keys()].sort(), ['eu.globex', 'globex', 'initech']);
    assert.equal(ctx.router.stats().routesRefused, 3);
    assert.equal(peer.ended, false);
    const a = await ctx.agent({ name: 'alice', token: 'acme-domain' });
    // Senders: from domains it announced with a valid proof, or is trusted with; not others.
    peer.send(msg('alice@acme', 'ok1', { from: 'x@initech', hops: 9 }));
    peer.send(msg('alice@acme', 'no0', { from: 'x@initrode', hops: 9 }));
    peer.send(msg('alice@acme', 'ok2', { from: 'x@sub.globex', hops: 9 }));
    peer.send(msg('alice@acme', 'no1', { from: 'x@hooli', hops: 9 }));
    peer.send(msg('alice@acme', 'no2', { from: 'x@acme', hops: 9 }));
    assert.equal(errorCodeOf((await peer.next(FrameType.NACK, (n) => n.id === 'no0')).code), 'ERR_FORBIDDEN', 'a made-up route does not let it send from that domain');
    assert.equal(errorCodeOf((await peer.next(FrameType.NACK, (n) => n.id === 'no1')).code), 'ERR_FORBIDDEN');
    assert.equal(errorCodeOf((await peer.next(FrameType.NACK, (n) => n.id === 'no2')).code), 'ERR_FORBIDDEN');
    const got = [await a.peer.next(FrameType.MSG), await a.peer.next(FrameType.MSG)].map((m) => m.id);
    assert.deepEqual(got, ['ok1', 'ok2']);
    assert.equal(ctx.router.stats().forbidden, 3);
  });

  it('tells peers what it learned below and from other peers, a downlink that asked everything, never back where a route came from, a version 1 downlink nothing', async (t) => {
    const [p1, p2, gw] = [testIdentity(), testIdentity(), testIdentity()];
    const ctx = setup(t, { allowGuests: true, authenticator: auth, identity: testIdentity(), trust: trust({ [p1.node]: ['r1', 'initech'], [p2.node]: ['r2'], [gw.node]: ['globex'] }) });
    const a = await link(ctx, { domain: 'r1', id: p1 });
    const b = await link(ctx, { domain: 'r2', id: p2 });
    // A gateway below, asking for routes (it has two relays).
    const g = await link(ctx, { domain: 'globex', id: gw, mode: LinkMode.UPLINK, features: Feature.ROUTES });
    g.peer.send(route('globex', [gw.node]));
    a.peer.send(route('initech', ['far', p1.node], RouteOp.ADD, 1));
    await a.peer.sync();
    await g.peer.sync();
    await settle();
    const me = ctx.router.node;
    assert.deepEqual(routesTo(b.peer, 'globex').at(-1)?.path, [gw.node, me], 'a downlink\'s domain goes to peers');
    assert.deepEqual(routesTo(b.peer, 'initech').at(-1)?.path, ['far', p1.node, me], 'a peer\'s route goes to other peers (transit)');
    assert.deepEqual(routesTo(a.peer, 'initech'), [], 'not back to the peer it came from');
    assert.deepEqual(routesTo(g.peer, 'initech').at(-1)?.metric, 2, 'a downlink that asked hears everything');
    assert.deepEqual(routesTo(g.peer, 'globex'), [], 'but not its own routes');
    // Withdrawn at the source: withdrawn everywhere it was told.
    a.peer.send(route('initech', [p1.node], RouteOp.WITHDRAW));
    await waitFor(() => routesTo(b.peer, 'initech').at(-1)?.op === RouteOp.WITHDRAW && routesTo(g.peer, 'initech').at(-1)?.op === RouteOp.WITHDRAW, 'withdrawals', 2000, 1);
    // A version 1 downlink hears nothing (it would close on a ROUTE).
    const v1 = ctx.connect();
    v1.send(hello({ version: 1, role: Role.ROUTER, name: 'globex', node: 'old', token: 'globex-domain' }));
    await v1.next(FrameType.WELCOME);
    await settle();
    assert.deepEqual(v1.all(FrameType.ROUTE), []);
  });

  it('never writes a WATCH to a version 1 router: the watcher is refused with VERSION, the link stays', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth, identity: testIdentity() });
    const v1 = ctx.connect();
    v1.send(hello({ version: 1, role: Role.ROUTER, name: 'globex', node: 'old', token: 'globex-domain' }));
    await v1.next(FrameType.WELCOME);
    v1.send(route('globex', ['old']));
    await v1.sync();
    await waitFor(() => ctx.router.routes().has('globex'), 'the route of the version 1 gateway', 2000, 1);
    const alice = await ctx.agent({ name: 'alice', token: 'acme-domain' });
    alice.peer.send({ type: FrameType.WATCH, op: WatchOp.WATCH, target: 'bob@globex', watcher: '' });
    const w = await alice.peer.next(FrameType.WATCHED);
    assert.equal(errorCodeOf(w.code), 'ERR_VERSION');
    assert.match(w.reason, /protocol 1, which has no presence/);
    await settle();
    assert.deepEqual(v1.all(FrameType.WATCH), [], 'nothing a version 1 router cannot read');
    // The link is still there: messages still cross it.
    alice.peer.send(msg('bob@globex', 'after-watch'));
    assert.equal((await v1.next(FrameType.MSG)).id, 'after-watch');
  });

  it('picks among equal routes deterministically (the lower neighbour node id), and switches when the best goes', async (t) => {
    const [x, y] = [testIdentity(), testIdentity()].sort((a, b) => (a.node < b.node ? -1 : 1));
    const ctx = setup(t, { allowGuests: true, authenticator: auth, identity: testIdentity(), trust: trust({ [x!.node]: ['rx', 'initech'], [y!.node]: ['ry', 'initech'] }) });
    const ly = await link(ctx, { domain: 'ry', id: y });
    const lx = await link(ctx, { domain: 'rx', id: x });
    ly.peer.send(route('initech', ['o', y!.node], RouteOp.ADD, 1));
    lx.peer.send(route('initech', ['o', x!.node], RouteOp.ADD, 1));
    await lx.peer.sync();
    await ly.peer.sync();
    assert.deepEqual(ctx.router.routes().get('initech'), [x!.node, y!.node]);
    const alice = await ctx.agent({ name: 'alice', token: 'acme-domain' });
    alice.peer.send(msg('b@initech', 'v1', { flags: MsgFlag.VOLATILE }));
    assert.equal((await lx.peer.next(FrameType.MSG)).id, 'v1');
    lx.peer.duplex.close();
    await waitFor(() => ctx.router.routes().get('initech')?.length === 1, 'x gone', 2000, 1);
    alice.peer.send(msg('b@initech', 'v2', { flags: MsgFlag.VOLATILE }));
    assert.equal((await ly.peer.next(FrameType.MSG)).id, 'v2');
  });
});

describe('Router: transit custody (HELD) and loops', () => {
  it('as a transit, answers HELD when it stored a message and the ACK only once the next router has it', async (t) => {
    const [a, b] = [testIdentity(), testIdentity()];
    const ctx = setup(t, { allowGuests: true, authenticator: auth, identity: testIdentity(), trust: trust({ [a.node]: ['ra'], [b.node]: ['rb', 'initech'] }) });
    const la = await link(ctx, { domain: 'ra', id: a });
    const lb = await link(ctx, { domain: 'rb', id: b });
    lb.peer.send(route('initech', ['o', b.node], RouteOp.ADD, 1));
    await lb.peer.sync();
    la.peer.send(msg('x@initech', 't1', { from: 'u@ra', hops: 9 }));
    const held = await la.peer.next(FrameType.HELD);
    assert.deepEqual({ id: held.id, from: held.from }, { id: 't1', from: 'u@ra' });
    const fwd = await lb.peer.next(FrameType.MSG, (m) => m.id === 't1');
    await settle();
    assert.deepEqual(la.peer.all(FrameType.ACK), [], 'no ACK while the next router has not answered');
    // A retry meanwhile hears HELD again, and is not forwarded twice.
    la.peer.send(msg('x@initech', 't1', { from: 'u@ra', hops: 9 }));
    await waitFor(() => la.peer.all(FrameType.HELD).length === 2, 'HELD again', 2000, 1);
    lb.peer.ack(fwd);
    const ack = await la.peer.next(FrameType.ACK);
    assert.equal(ack.id, 't1');
    await waitFor(() => la.peer.all(FrameType.ACK).length === 2, 'an ACK for each copy, as for any retry', 2000, 1);
    assert.equal(lb.peer.msgIds().filter((i) => i === 't1').length, 1);
  });

  it('frees its window on HELD but keeps a flow off another path until the ACK, so it cannot overtake itself', async (t) => {
    const [x, y] = [testIdentity(), testIdentity()];
    const ctx = setup(t, { allowGuests: true, authenticator: auth, identity: testIdentity(), maxInFlightPerLink: 2, trust: trust({ [x.node]: ['rx', 'initech'], [y.node]: ['ry', 'initech'] }) });
    const lx = await link(ctx, { domain: 'rx', id: x });
    const ly = await link(ctx, { domain: 'ry', id: y });
    lx.peer.send(route('initech', [x.node]));
    ly.peer.send(route('initech', ['o', y.node], RouteOp.ADD, 1));
    await lx.peer.sync();
    await ly.peer.sync();
    const alice = await ctx.agent({ name: 'alice', token: 'acme-domain' });
    const carol = await ctx.agent({ name: 'carol', token: 'acme-domain' });
    alice.peer.send(msg('b@initech', 'a1'), msg('b@initech', 'a2'), msg('b@initech', 'a3'));
    const first = [await lx.peer.next(FrameType.MSG), await lx.peer.next(FrameType.MSG)];
    await settle();
    assert.deepEqual(lx.peer.msgIds(), ['a1', 'a2'], 'a window of 2');
    for (const m of first) lx.peer.send({ type: FrameType.HELD, id: m.id, from: m.from });
    const a3 = await lx.peer.next(FrameType.MSG, (m) => m.id === 'a3');
    // x withdraws initech: y is the way now. Alice's flow has unsettled messages at x: it waits.
    lx.peer.send(route('initech', [x.node], RouteOp.WITHDRAW));
    await lx.peer.sync();
    alice.peer.send(msg('b@initech', 'a4'));
    carol.peer.send(msg('b@initech', 'c1'));
    await ly.peer.next(FrameType.MSG, (m) => m.id === 'c1');
    await settle();
    assert.deepEqual(ly.peer.msgIds(), ['c1'], 'a4 waits: a1..a3 are held at x, not yet delivered');
    lx.peer.ack(...first, a3);
    assert.equal((await ly.peer.next(FrameType.MSG, (m) => m.id === 'a4')).from, 'alice@acme');
  });

  it('lets a peer send from a domain it announced on an earlier link (messages it took then), and lets reports pass', async (t) => {
    const p = testIdentity();
    const far = testIdentity();
    const ctx = setup(t, { allowGuests: true, authenticator: auth, identity: testIdentity(), trust: trust({ [p.node]: ['rp'] }) });
    const me = ctx.router.node;
    const alice = await ctx.agent({ name: 'alice', token: 'acme-domain' });
    const first = await link(ctx, { domain: 'rp', id: p });
    const sigs = [far.sign(routePayload('initech', [far.node], p.node)), p.sign(routePayload('initech', [far.node, p.node], me))];
    first.peer.send(route('initech', [far.node, p.node], RouteOp.ADD, 1, `ok:${far.node}:initech;${sigs.join(',')}`));
    await first.peer.sync();
    assert.ok(ctx.router.routes().has('initech'));
    first.peer.duplex.close();
    await waitFor(() => ctx.router.stats().peers === 0, 'p gone', 2000, 1);
    // p is back; initech no longer behind it, but p still holds what it took from initech then.
    const again = await link(ctx, { domain: 'rp', id: p });
    again.peer.send(msg('alice@acme', 'held', { from: 'x@initech', hops: 9 }));
    assert.equal((await alice.peer.next(FrameType.MSG)).id, 'held');
    // Never announced by p: refused, as before.
    again.peer.send(msg('alice@acme', 'never', { from: 'x@hooli', hops: 9 }));
    assert.equal(errorCodeOf((await again.peer.next(FrameType.NACK, (n) => n.id === 'never')).code), 'ERR_FORBIDDEN');
    // A report comes from the address of the message it is about: it passes whoever made it.
    again.peer.send(msg('alice@acme', '~r.1', { from: 'y@hooli', hops: 9, flags: MsgFlag.REPORT, body: new Uint8Array([0, 21, 1, 0x6d]) }));
    assert.equal((await alice.peer.next(FrameType.MSG)).id, '~r.1');
  });

  it('refuses with LOOP a copy that comes back from another router than the one it came from', async (t) => {
    const [p, q] = [testIdentity(), testIdentity()];
    const ctx = setup(t, { allowGuests: true, authenticator: auth, identity: testIdentity(), trust: trust({ [p.node]: ['rp', 'globex'], [q.node]: ['rq', 'globex', 'initech'] }) });
    const lp = await link(ctx, { domain: 'rp', id: p });
    const lq = await link(ctx, { domain: 'rq', id: q });
    lq.peer.send(route('initech', [q.node]));
    await lq.peer.sync();
    lp.peer.send(msg('x@initech', 'm', { from: 'bot@globex', hops: 9 }));
    const fwd = await lq.peer.next(FrameType.MSG, (m) => m.id === 'm');
    // q sends it back to us (a loop through q): not taken again.
    lq.peer.send(msg('x@initech', 'm', { from: 'bot@globex', hops: fwd.hops - 1 }));
    const nack = await lq.peer.next(FrameType.NACK, (n) => n.id === 'm');
    assert.equal(errorCodeOf(nack.code), 'ERR_LOOP');
    assert.equal(ctx.router.stats().loops, 1);
    // A retry from p, where it came from, is still a retry.
    lp.peer.send(msg('x@initech', 'm', { from: 'bot@globex', hops: 9 }));
    await waitFor(() => lp.peer.all(FrameType.HELD).length === 2, 'HELD to the retry', 2000, 1);
  });
});
