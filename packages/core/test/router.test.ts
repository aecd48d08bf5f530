// The routing core driven over in-memory connections: each test speaks raw frames to a Router
// as an agent, a linked router (downlink) or the relay an uplink dials, and times every timer
// with a ManualClock. Store-and-forward (custody, dedup, queues, reports) is in router-store.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Claims } from '@postern/core';
import { FrameType, MsgFlag, PROTOCOL_VERSION, RouteOp, WireCode, errorCodeOf } from '@postern/protocol';
import { ManualClock, MemoryDuplex, memoryPair, testSessionTokens, waitFor } from '@postern/testing';
import { ID, Peer, StuckMemoryDuplex, TOKENS, dec, fakeAuthenticator, hello, msg, route, routerHello, settle, setup, uplinkTo } from './router-harness.js';

describe('Router: agent handshake and sessions', () => {
  it('answers HELLO with WELCOME: a router-assigned id, its domain and node, a resume token', async (t) => {
    const ctx = setup(t);
    const a = await ctx.agent();
    assert.match(a.welcome.id, ID);
    assert.equal(a.welcome.domain, 'acme');
    assert.equal(a.welcome.node, 'r1');
    assert.equal(a.welcome.name, '');
    assert.equal(a.welcome.version, PROTOCOL_VERSION);
    assert.ok(a.welcome.resume.length > 0);
    assert.equal(a.welcome.maxFrame, ctx.router.options.maxFrameBytes);
    assert.equal(a.welcome.pingMs, ctx.router.options.pingIntervalMs);
    const b = await ctx.agent();
    assert.notEqual(b.welcome.id, a.welcome.id, 'ids are unique');
    assert.equal(ctx.router.stats().agents, 2);
  });

  it('resumes a session with its token (same id) and closes the replaced connection with REPLACED', async (t) => {
    const ctx = setup(t);
    const first = await ctx.agent({ name: 'alice' });
    const second = await ctx.agent({ resume: first.welcome.resume, name: 'alice' });
    assert.equal(second.welcome.id, first.welcome.id);
    assert.equal(second.welcome.name, 'alice', 'a session may claim its own name again');
    assert.equal(await first.peer.closeCode(), 'ERR_REPLACED');
    assert.equal(second.peer.ended, false);
    assert.equal(ctx.router.stats().agents, 1);
    // Both the name and the id now reach the new connection.
    const sender = await ctx.agent();
    sender.peer.send(msg('alice', 'by-name'), msg(`${first.welcome.id}@acme`, 'by-id'));
    await second.peer.next(FrameType.MSG, (m) => m.id === 'by-name');
    await second.peer.next(FrameType.MSG, (m) => m.id === 'by-id');
  });

  it('resumes after the old connection is gone, with no name unless claimed again', async (t) => {
    const ctx = setup(t);
    const first = await ctx.agent({ name: 'alice' });
    first.peer.duplex.close();
    await waitFor(() => ctx.router.stats().agents === 0, 'agent gone', 2000, 1);
    const again = await ctx.agent({ resume: first.welcome.resume });
    assert.equal(again.welcome.id, first.welcome.id);
    assert.equal(again.welcome.name, '');
    assert.notEqual(again.welcome.resume, '');
  });

  it('gives a new id for a forged resume token or one issued by another router', async (t) => {
    const ctx = setup(t);
    const a = await ctx.agent();
    const forged = await ctx.agent({ resume: `${a.welcome.id}.AAAAAAAAAAAAAAAAAAAAAA` });
    assert.match(forged.welcome.id, ID);
    assert.notEqual(forged.welcome.id, a.welcome.id);
    const foreign = testSessionTokens().issue(a.welcome.id, '');
    const other = await ctx.agent({ resume: foreign });
    assert.notEqual(other.welcome.id, a.welcome.id);
    assert.equal(a.peer.ended, false, 'a failed resume replaces nothing');
    await a.peer.sync();
    assert.equal(ctx.router.stats().agents, 3);
  });

  it('binds a resume token to the credential that made the session: stolen, it resumes nothing and replaces nobody', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: fakeAuthenticator(TOKENS) });
    const alice = await ctx.agent({ name: 'alice', token: 'alice-only' });
    // Without a credential, or with another one, the token is not hers to use.
    const thief = await ctx.agent({ resume: alice.welcome.resume });
    assert.notEqual(thief.welcome.id, alice.welcome.id);
    const other = await ctx.agent({ resume: alice.welcome.resume, token: 'acme-domain' });
    assert.notEqual(other.welcome.id, alice.welcome.id);
    await alice.peer.sync();
    assert.equal(alice.peer.ended, false, 'alice keeps her session');
    // With her own credential it resumes (and replaces her old connection, as a resume does).
    const again = await ctx.agent({ name: 'alice', token: 'alice-only', resume: alice.welcome.resume });
    assert.equal(again.welcome.id, alice.welcome.id);
  });

  it('refuses a version below 1 with VERSION, and answers a newer dialer in its own version', async (t) => {
    const ctx = setup(t);
    assert.equal(await ctx.refused(hello({ version: 0 })), 'ERR_VERSION');
    const newer = await ctx.agent({ version: PROTOCOL_VERSION + 1 });
    assert.equal(newer.welcome.version, PROTOCOL_VERSION, 'the dialer speaks every version up to its own');
    const v1 = await ctx.agent({ version: 1 });
    assert.equal(v1.welcome.version, 1, 'a version 1 agent is answered in version 1');
  });
});

describe('Router: names', () => {
  it('grants a name claimed in HELLO and one claimed by REGISTER', async (t) => {
    const ctx = setup(t);
    const a = await ctx.agent({ name: 'Alice' });
    assert.equal(a.welcome.name, 'alice', 'names are compared in lower case');
    const b = await ctx.agent();
    b.peer.send({ type: FrameType.REGISTER, ref: 7, name: 'bob' });
    const r = await b.peer.next(FrameType.REGISTERED);
    assert.deepEqual({ ref: r.ref, code: errorCodeOf(r.code), name: r.name }, { ref: 7, code: 'ERR_OK', name: 'bob' });
    a.peer.send(msg('bob@acme', 'm1'));
    const m = await b.peer.next(FrameType.MSG);
    assert.equal(m.to, 'bob@acme');
    assert.equal(m.from, 'alice@acme');
    // Renaming frees the old name.
    b.peer.send({ type: FrameType.REGISTER, ref: 8, name: 'robert' });
    assert.equal((await b.peer.next(FrameType.REGISTERED, (x) => x.ref === 8)).code, WireCode.OK);
    const c = await ctx.agent({ name: 'bob' });
    assert.equal(c.welcome.name, 'bob');
  });

  it('refuses a name held by another live agent with NAME_TAKEN, and frees it on disconnect', async (t) => {
    const ctx = setup(t);
    const a = await ctx.agent({ name: 'alice' });
    assert.equal(await ctx.refused(hello({ name: 'alice' })), 'ERR_NAME_TAKEN');
    const b = await ctx.agent({ name: 'bob' });
    b.peer.send({ type: FrameType.REGISTER, ref: 1, name: 'ALICE' });
    const r = await b.peer.next(FrameType.REGISTERED);
    assert.equal(errorCodeOf(r.code), 'ERR_NAME_TAKEN');
    assert.equal(r.name, 'bob', 'a refused REGISTER keeps the current name');
    assert.ok(r.reason.length > 0);
    assert.equal(b.peer.ended, false, 'a refused REGISTER does not close the connection');
    a.peer.duplex.close();
    await waitFor(() => ctx.router.stats().agents === 1, 'alice gone', 2000, 1);
    b.peer.send({ type: FrameType.REGISTER, ref: 2, name: 'alice' });
    assert.equal(errorCodeOf((await b.peer.next(FrameType.REGISTERED, (x) => x.ref === 2)).code), 'ERR_OK');
  });

  it('refuses an invalid name with BAD_ADDRESS', async (t) => {
    const ctx = setup(t);
    assert.equal(await ctx.refused(hello({ name: 'no spaces' })), 'ERR_BAD_ADDRESS');
    assert.equal(await ctx.refused(hello({ name: '_looks-like-an-id' })), 'ERR_BAD_ADDRESS');
    assert.equal(await ctx.refused(hello({ name: 'x'.repeat(65) })), 'ERR_BAD_ADDRESS');
    const a = await ctx.agent();
    a.peer.send({ type: FrameType.REGISTER, ref: 3, name: 'bad@name' });
    assert.equal(errorCodeOf((await a.peer.next(FrameType.REGISTERED)).code), 'ERR_BAD_ADDRESS');
  });
});

describe('Router: credentials', () => {
  const auth = fakeAuthenticator(TOKENS);

  it('admits an anonymous agent (id only) but refuses it a name with NAME_NOT_ALLOWED', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth });
    const anon = await ctx.agent();
    assert.match(anon.welcome.id, ID);
    assert.equal(await ctx.refused(hello({ name: 'alice' })), 'ERR_NAME_NOT_ALLOWED');
    anon.peer.send({ type: FrameType.REGISTER, ref: 1, name: 'alice' });
    assert.equal(errorCodeOf((await anon.peer.next(FrameType.REGISTERED)).code), 'ERR_NAME_NOT_ALLOWED');
  });

  it('refuses an agent without a token with AUTH_FAILED by default (guests are let in only with allowGuests)', async (t) => {
    const ctx = setup(t, { authenticator: auth });
    assert.equal(await ctx.refused(hello()), 'ERR_AUTH_FAILED');
    const ok = await ctx.agent({ token: 'acme-domain' });
    assert.match(ok.welcome.id, ID);
  });

  it('lets a name-scoped token claim its name only', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth });
    assert.equal(await ctx.refused(hello({ token: 'alice-only', name: 'bob' })), 'ERR_NAME_NOT_ALLOWED');
    const a = await ctx.agent({ token: 'alice-only', name: 'alice' });
    assert.equal(a.welcome.name, 'alice');
    a.peer.send({ type: FrameType.REGISTER, ref: 1, name: 'mallory' });
    const r = await a.peer.next(FrameType.REGISTERED);
    assert.equal(errorCodeOf(r.code), 'ERR_NAME_NOT_ALLOWED');
    assert.equal(r.name, 'alice');
  });

  it('lets a domain token claim any free name', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth });
    const a = await ctx.agent({ token: 'acme-domain', name: 'anything' });
    assert.equal(a.welcome.name, 'anything');
    const b = await ctx.agent({ token: 'any-domain', name: 'other' });
    assert.equal(b.welcome.name, 'other');
  });

  it('refuses a token of another domain and an unknown token with AUTH_FAILED', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth });
    assert.equal(await ctx.refused(hello({ token: 'globex-domain' })), 'ERR_AUTH_FAILED');
    assert.equal(await ctx.refused(hello({ token: 'globex-agent', name: 'bot' })), 'ERR_AUTH_FAILED');
    assert.equal(await ctx.refused(hello({ token: 'forged.jwt.here' })), 'ERR_AUTH_FAILED');
    assert.equal(ctx.router.stats().agents, 0);
  });
});

describe('Router: router links', () => {
  const auth = fakeAuthenticator(TOKENS);

  it('accepts no router link without an authenticator', async (t) => {
    const ctx = setup(t);
    assert.equal(await ctx.refused(routerHello('globex', 'globex-domain')), 'ERR_AUTH_FAILED');
  });

  it('needs a domain token covering the domain claimed in HELLO', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth });
    assert.equal(await ctx.refused(routerHello('globex', '')), 'ERR_AUTH_FAILED');
    assert.equal(await ctx.refused(routerHello('globex', 'globex-agent')), 'ERR_AUTH_FAILED', 'an agent token is no router credential');
    assert.equal(await ctx.refused(routerHello('globex', 'nonsense')), 'ERR_AUTH_FAILED');
    assert.equal(await ctx.refused(routerHello('initech', 'globex-domain')), 'ERR_DOMAIN_NOT_ALLOWED');
    assert.equal(await ctx.refused(routerHello('acme', 'any-domain')), 'ERR_DOMAIN_NOT_ALLOWED', 'nobody may claim our own domain');
    assert.equal(await ctx.refused(routerHello('not a domain', 'any-domain')), 'ERR_BAD_ADDRESS');
    assert.equal(await ctx.refused(routerHello('globex', 'globex-domain', 'r1')), 'ERR_LOOP', 'a router cannot link to itself');
    const peer = ctx.connect();
    peer.send(routerHello('globex', 'globex-domain'));
    const w = await peer.next(FrameType.WELCOME);
    assert.match(w.id, ID);
    assert.equal(w.resume, '', 'router links are not resumable sessions');
    assert.equal(w.node, 'r1');
    assert.equal(ctx.router.stats().downlinks, 1);
    assert.deepEqual(ctx.router.links().map((l) => [l.kind, l.node, l.address]), [['downlink', 'r2', 'globex']]);
  });

  it('takes ROUTE ADD for covered domains and refuses others without cutting the link', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth });
    const r2 = await ctx.downlink();
    r2.send(route('eu.globex', ['r3', 'r2'], RouteOp.ADD, 1));
    await r2.sync();
    assert.deepEqual(ctx.router.routes().get('eu.globex'), ['r2'], 'a subdomain is covered');
    r2.send(route('initech', ['r2']));
    await r2.sync();
    assert.equal(r2.ended, false, 'a refused announcement costs the announcement, not the link');
    assert.equal(ctx.router.routes().has('initech'), false);
    assert.equal(ctx.router.stats().routesRefused, 1);
    r2.duplex.close();
    await waitFor(() => ctx.router.routes().size === 0, 'routes withdrawn with the link', 2000, 1);
  });

  it('refuses an announcement of the router own domain, and keeps the link', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth });
    const r2 = await ctx.downlink('globex', 'any-domain');
    r2.send(route('acme', ['r2']));
    await r2.sync();
    assert.equal(r2.ended, false);
    assert.equal(ctx.router.routes().has('acme'), false);
    assert.equal(ctx.router.stats().routesRefused, 1);
  });

  it('limits the domains one link may announce (maxDomainsPerLink): more are refused, the busy link stays', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth, maxDomainsPerLink: 2 });
    const r2 = await ctx.downlink();
    r2.send(route('a.globex', ['r2']));
    r2.send(route('globex', ['r2']));
    await r2.sync();
    assert.equal(r2.ended, false, 'announcing a known domain again is no new domain');
    r2.send(route('b.globex', ['r2']));
    await r2.sync();
    assert.equal(r2.ended, false);
    assert.deepEqual([...ctx.router.routes().keys()].sort(), ['a.globex', 'globex']);
    assert.equal(ctx.router.stats().routesRefused, 1);
    // Withdrawing one makes room for another.
    r2.send(route('a.globex', ['r2'], RouteOp.WITHDRAW));
    r2.send(route('b.globex', ['r2']));
    await r2.sync();
    assert.deepEqual([...ctx.router.routes().keys()].sort(), ['b.globex', 'globex']);
  });

  it('ignores a ROUTE whose path contains its own node', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth });
    const peer = ctx.connect();
    peer.send(routerHello('globex', 'globex-domain'));
    await peer.next(FrameType.WELCOME);
    peer.send(route('globex', ['r1', 'r2'], RouteOp.ADD, 1));
    await peer.sync();
    assert.equal(ctx.router.routes().has('globex'), false);
    assert.equal(peer.ended, false);
    peer.send(route('globex', ['r2']));
    await peer.sync();
    assert.deepEqual(ctx.router.routes().get('globex'), ['r2']);
  });

  it('removes a route on WITHDRAW: then nothing goes that way (reliable messages wait, volatile ones have no route)', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth });
    const r2 = await ctx.downlink();
    const a = await ctx.agent();
    a.peer.send(msg('x@globex', 'before'));
    r2.ack(await r2.next(FrameType.MSG, (m) => m.id === 'before'));
    r2.send(route('globex', ['r2'], RouteOp.WITHDRAW));
    await r2.sync();
    assert.equal(ctx.router.routes().has('globex'), false);
    a.peer.send(msg('x@globex', 'after'), msg('x@globex', 'after-v', { flags: MsgFlag.VOLATILE }));
    await a.peer.next(FrameType.ACK, (f) => f.id === 'after');
    assert.equal(errorCodeOf((await a.peer.next(FrameType.NACK, (f) => f.id === 'after-v')).code), 'ERR_NO_ROUTE');
    await settle();
    assert.deepEqual(r2.msgIds(), ['before'], 'a link that withdrew the domain gets nothing for it');
    // Announced again: what waited goes.
    r2.send(route('globex', ['r2']));
    assert.equal((await r2.next(FrameType.MSG)).id, 'after');
  });

  it('refuses frames a link kind may not send with PROTOCOL', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth });
    const a = await ctx.agent();
    a.peer.send(route('evil', ['x']));
    assert.equal(await a.peer.closeCode(), 'ERR_PROTOCOL');
    const r2 = await ctx.downlink();
    r2.send({ type: FrameType.REGISTER, ref: 1, name: 'x' });
    assert.equal(await r2.closeCode(), 'ERR_PROTOCOL');
  });
});

describe('Router: routing', () => {
  const auth = fakeAuthenticator(TOKENS);

  it('delivers agent to agent by name and by id, with the body intact and the hop limit stamped', async (t) => {
    const ctx = setup(t);
    const alice = await ctx.agent({ name: 'alice' });
    const bob = await ctx.agent({ name: 'bob' });
    const anon = await ctx.agent();
    alice.peer.send(msg('bob@acme', 'm1', { body: new Uint8Array([0, 1, 2, 255]) }));
    const m1 = await bob.peer.next(FrameType.MSG);
    assert.deepEqual(
      { from: m1.from, to: m1.to, id: m1.id, hops: m1.hops, flags: m1.flags, body: [...m1.body] },
      { from: 'alice@acme', to: 'bob@acme', id: 'm1', hops: 16, flags: 0, body: [0, 1, 2, 255] },
    );
    alice.peer.send(msg(`${anon.welcome.id}@acme`, 'm2'));
    const m2 = await anon.peer.next(FrameType.MSG);
    assert.equal(m2.to, `${anon.welcome.id}@acme`);
    assert.equal(dec.decode(m2.body), 'body of m2');
    anon.peer.send(msg('alice@ACME', 'm3'));
    const m3 = await alice.peer.next(FrameType.MSG);
    assert.equal(m3.from, anon.address, 'an agent without a name sends as its id');
    assert.equal(m3.to, 'alice@acme');
  });

  it('counts reliable messages handed to agents in msgsDelivered and to routers in msgsForwarded', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth });
    const r2 = await ctx.downlink();
    const alice = await ctx.agent({ token: 'alice-only', name: 'alice' });
    const bob = await ctx.agent({ token: 'acme-domain', name: 'bob' });
    alice.peer.send(msg('bob', 'local'), msg('bot@globex', 'remote'));
    await bob.peer.next(FrameType.MSG);
    await r2.next(FrameType.MSG);
    assert.deepEqual({ delivered: ctx.router.stats().msgsDelivered, forwarded: ctx.router.stats().msgsForwarded }, { delivered: 1, forwarded: 1 });
  });

  it('delivers a message an agent sends to itself', async (t) => {
    const ctx = setup(t);
    const alice = await ctx.agent({ name: 'alice' });
    alice.peer.send(msg('alice', 'self'), msg('alice', 'self-v', { flags: MsgFlag.VOLATILE }));
    assert.equal((await alice.peer.next(FrameType.MSG, (m) => m.id === 'self', 500)).from, 'alice@acme');
    await alice.peer.next(FrameType.MSG, (m) => m.id === 'self-v');
    assert.deepEqual(alice.peer.all(FrameType.NACK), []);
  });

  it('writes `from` itself: an agent cannot send as another', async (t) => {
    const ctx = setup(t);
    const mallory = await ctx.agent({ name: 'mallory' });
    const alice = await ctx.agent({ name: 'alice' });
    const bob = await ctx.agent({ name: 'bob' });
    mallory.peer.send(msg('bob', 's1', { from: 'alice@acme' }));
    mallory.peer.send(msg('bob', 's2', { from: `${alice.welcome.id}@acme` }));
    const s1 = await bob.peer.next(FrameType.MSG, (m) => m.id === 's1');
    const s2 = await bob.peer.next(FrameType.MSG, (m) => m.id === 's2');
    assert.equal(s1.from, 'mallory@acme');
    assert.equal(s2.from, 'mallory@acme');
    // The router's ACK names the message by the address it wrote, not the one claimed.
    const ack = await mallory.peer.next(FrameType.ACK, (f) => f.id === 's1');
    assert.equal(ack.from, 'mallory@acme');
  });

  it('reads a bare `to` as a name in the router domain', async (t) => {
    const ctx = setup(t);
    const alice = await ctx.agent({ name: 'alice' });
    const bob = await ctx.agent({ name: 'bob' });
    alice.peer.send(msg('bob', 'bare'));
    const m = await bob.peer.next(FrameType.MSG);
    assert.equal(m.to, 'bob@acme');
  });

  it('nacks a malformed recipient with BAD_ADDRESS; for an absent local agent, takes a reliable message and nacks a volatile one NO_ROUTE', async (t) => {
    const ctx = setup(t);
    const alice = await ctx.agent({ name: 'alice' });
    const bads = ['', 'two words', 'a@b@', '@acme', 'bob@-bad-', `${'x'.repeat(65)}@acme`, 'bob@acme..com', '_x@acme'];
    bads.forEach((bad, i) => alice.peer.send(msg(bad, `bad-${i}`)));
    for (const [i, bad] of bads.entries()) {
      const n = await alice.peer.next(FrameType.NACK, (f) => f.id === `bad-${i}`);
      assert.equal(errorCodeOf(n.code), 'ERR_BAD_ADDRESS', `to ${JSON.stringify(bad)}`);
      assert.equal(n.from, 'alice@acme', 'a NACK names the message by (from, id)');
      assert.ok(n.reason.length > 0);
    }
    alice.peer.send(msg('nobody@acme', 'n1'), msg('_zzzzzzzzzzzzzzzz@acme', 'n2'), msg('nobody', 'n3', { flags: MsgFlag.VOLATILE }));
    await alice.peer.next(FrameType.ACK, (f) => f.id === 'n1');
    await alice.peer.next(FrameType.ACK, (f) => f.id === 'n2');
    const n3 = await alice.peer.next(FrameType.NACK, (f) => f.id === 'n3');
    assert.deepEqual({ code: errorCodeOf(n3.code), reason: n3.reason }, { code: 'ERR_NO_ROUTE', reason: 'no agent "nobody@acme" is connected' });
    assert.deepEqual(alice.peer.all(FrameType.NACK).map((f) => f.id), [...bads.map((_, i) => `bad-${i}`), 'n3'], 'the reliable ones wait');
    assert.deepEqual({ stored: ctx.router.stats().stored, queues: ctx.router.stats().queues }, { stored: 2, queues: 2 });
    assert.equal(alice.peer.ended, false);
  });

  it('holds a message for an unknown domain until a route to it appears; a volatile one is nacked NO_ROUTE', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth });
    const alice = await ctx.agent({ name: 'alice', token: 'alice-only' });
    alice.peer.send(msg('x@initech', 'u1'), msg('x@initech', 'u2', { flags: MsgFlag.VOLATILE }));
    await alice.peer.next(FrameType.ACK, (f) => f.id === 'u1');
    const n = await alice.peer.next(FrameType.NACK);
    assert.deepEqual({ id: n.id, code: errorCodeOf(n.code) }, { id: 'u2', code: 'ERR_NO_ROUTE' });
    const r3 = await ctx.downlink('initech', 'any-domain', 'r3');
    const u1 = await r3.next(FrameType.MSG);
    assert.deepEqual({ id: u1.id, from: u1.from, hops: u1.hops }, { id: 'u1', from: 'alice@acme', hops: 15 });
  });

  it('forwards to the downlink that announced the domain, hop decremented, having acked the sender itself', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth });
    const r2 = await ctx.downlink();
    const alice = await ctx.agent({ token: 'alice-only', name: 'alice' });
    alice.peer.send(msg('bot@globex', 'f1'), msg('bot@eu.globex', 'f2'));
    const f1 = await r2.next(FrameType.MSG);
    assert.deepEqual({ from: f1.from, to: f1.to, hops: f1.hops, body: dec.decode(f1.body) }, { from: 'alice@acme', to: 'bot@globex', hops: 15, body: 'body of f1' });
    // Custody passed to this router when it stored the message: the sender is acked without the downlink.
    const ack = await alice.peer.next(FrameType.ACK, (f) => f.id === 'f1');
    assert.deepEqual({ id: ack.id, from: ack.from }, { id: 'f1', from: 'alice@acme' });
    await alice.peer.next(FrameType.ACK, (f) => f.id === 'f2');
    r2.ack(f1);
    assert.equal((await r2.next(FrameType.RELEASE)).count, 1, 'the downlink may forget the key once our copy is gone');
    await settle();
    assert.deepEqual(r2.msgIds(), ['f1'], 'eu.globex was not announced: f2 waits');
    assert.equal(ctx.router.stats().stored, 1);
  });

  it('delivers a downlink message to a local agent as sent, and nacks a sender outside its credential with FORBIDDEN', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth });
    const r2 = await ctx.downlink();
    const alice = await ctx.agent({ token: 'alice-only', name: 'alice' });
    r2.send(msg('alice@acme', 'd1', { from: 'bot@globex', hops: 9 }));
    const d1 = await alice.peer.next(FrameType.MSG);
    assert.deepEqual({ from: d1.from, to: d1.to, hops: d1.hops }, { from: 'bot@globex', to: 'alice@acme', hops: 9 });
    r2.send(msg('alice@acme', 'd2', { from: 'x@eu.globex' }));
    await alice.peer.next(FrameType.MSG, (m) => m.id === 'd2');
    r2.send(msg('alice@acme', 'd3', { from: 'ceo@initech' }), msg('alice@acme', 'd4', { from: 'alice@acme' }), msg('alice@acme', 'd5', { from: 'not an address' }));
    assert.equal(errorCodeOf((await r2.next(FrameType.NACK, (n) => n.id === 'd3')).code), 'ERR_FORBIDDEN');
    assert.equal(errorCodeOf((await r2.next(FrameType.NACK, (n) => n.id === 'd4')).code), 'ERR_FORBIDDEN', 'a downlink cannot speak for our own agents');
    assert.equal(errorCodeOf((await r2.next(FrameType.NACK, (n) => n.id === 'd5')).code), 'ERR_BAD_ADDRESS');
    r2.send(msg('alice@acme', 'd6', { from: 'bot@globex' }));
    await alice.peer.next(FrameType.MSG, (m) => m.id === 'd6');
    assert.deepEqual(alice.peer.all(FrameType.MSG).map((m) => m.id), ['d1', 'd2', 'd6']);
  });

  it('never sends a message back out of the link it came from: volatile gets NO_ROUTE, reliable waits for another way', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth });
    const r2 = await ctx.downlink();
    r2.send(msg('someone@globex', 'loop-v', { from: 'bot@globex', hops: 5, flags: MsgFlag.VOLATILE }));
    assert.equal(errorCodeOf((await r2.next(FrameType.NACK)).code), 'ERR_NO_ROUTE');
    r2.send(msg('someone@globex', 'loop', { from: 'bot@globex', hops: 5 }));
    await r2.next(FrameType.ACK, (f) => f.id === 'loop');
    await settle();
    assert.equal(ctx.router.stats().stored, 1, 'held: the only route leads back');
    assert.deepEqual(r2.all(FrameType.MSG), []);
  });

  it('nacks with HOP_LIMIT a message that would leave with no hops left', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth, hopLimit: 1 });
    const r2 = await ctx.downlink();
    const alice = await ctx.agent({ token: 'alice-only', name: 'alice' });
    const bob = await ctx.agent({ token: 'acme-domain', name: 'bob' });
    alice.peer.send(msg('bot@globex', 'h1', { hops: 200 }));
    assert.equal(errorCodeOf((await alice.peer.next(FrameType.NACK)).code), 'ERR_HOP_LIMIT');
    alice.peer.send(msg('bob', 'h2'));
    const local = await bob.peer.next(FrameType.MSG);
    assert.equal(local.hops, 1, 'local delivery spends no hop');
    assert.deepEqual(r2.all(FrameType.MSG), []);
  });
});

describe('Router: uplink', () => {
  const auth = fakeAuthenticator(TOKENS);

  it('dials, claims its domain, announces what it reaches, and sends unknown domains up', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: auth });
    const up = uplinkTo(t, ctx);
    await waitFor(() => up.relays.length === 1, 'dial', 2000, 1);
    const relay = up.relays[0]!;
    await up.welcome(relay);
    assert.equal(up.uplink.connected, true);
    assert.equal(ctx.router.stats().uplinks, 1);
    // A downlink's domain is announced up with the path extended by our node.
    const r2 = await ctx.downlink();
    const ann = await relay.next(FrameType.ROUTE, (f) => f.domain === 'globex');
    assert.deepEqual({ op: ann.op, metric: ann.metric, path: ann.path }, { op: RouteOp.ADD, metric: 1, path: ['r2', 'r1'] });

    const alice = await ctx.agent({ token: 'alice-only', name: 'alice' });
    alice.peer.send(msg('x@initech', 'up1'), msg('bot@globex', 'down1'));
    const up1 = await relay.next(FrameType.MSG);
    assert.deepEqual({ id: up1.id, from: up1.from, to: up1.to, hops: up1.hops }, { id: 'up1', from: 'alice@acme', to: 'x@initech', hops: 15 });
    await r2.next(FrameType.MSG, (m) => m.id === 'down1');
    assert.deepEqual(relay.all(FrameType.MSG).map((m) => m.id), ['up1'], 'an announced domain beats the default route');
    relay.send({ type: FrameType.ACK, id: 'up1', from: 'alice@acme' });
    assert.equal((await alice.peer.next(FrameType.ACK)).id, 'up1');

    // From a downlink through us to the uplink: the raw frame keeps its sender, one hop less.
    r2.send(msg('x@initech', 'via', { from: 'bot@globex', hops: 5 }));
    const via = await relay.next(FrameType.MSG, (m) => m.id === 'via');
    assert.deepEqual({ from: via.from, hops: via.hops, body: dec.decode(via.body) }, { from: 'bot@globex', hops: 4, body: 'body of via' });
    r2.send(msg('x@initech', 'last', { from: 'bot@globex', hops: 1 }));
    assert.equal(errorCodeOf((await r2.next(FrameType.NACK, (n) => n.id === 'last')).code), 'ERR_HOP_LIMIT');

    // The uplink may carry anyone's messages in; unknown domains are not sent back up: they
    // wait for a route (volatile ones have none).
    relay.send(msg('alice@acme', 'in1', { from: 'ceo@initech', hops: 10 }));
    const in1 = await alice.peer.next(FrameType.MSG);
    assert.equal(in1.from, 'ceo@initech');
    relay.send(msg('y@nowhere', 'bounce-v', { from: 'ceo@initech', hops: 10, flags: MsgFlag.VOLATILE }));
    assert.equal(errorCodeOf((await relay.next(FrameType.NACK, (n) => n.id === 'bounce-v')).code), 'ERR_NO_ROUTE');
    relay.send(msg('y@nowhere', 'bounce', { from: 'ceo@initech', hops: 10 }));
    await relay.next(FrameType.ACK, (f) => f.id === 'bounce');
    await settle();
    assert.deepEqual(relay.all(FrameType.MSG).map((m) => m.id), ['up1', 'via']);

    // A withdrawn downlink domain is withdrawn upstream too.
    r2.send(route('globex', ['r2'], RouteOp.WITHDRAW));
    const w = await relay.next(FrameType.ROUTE, (f) => f.op === RouteOp.WITHDRAW);
    assert.equal(w.domain, 'globex');
  });

  it('reconnects after a backoff delay when the uplink drops, and resends then what it had not acked, in order', async (t) => {
    const ctx = setup(t);
    const up = uplinkTo(t, ctx);
    await waitFor(() => up.relays.length === 1, 'dial', 2000, 1);
    await up.welcome(up.relays[0]!);
    const alice = await ctx.agent({ name: 'alice' });
    alice.peer.send(msg('x@initech', 'lost'));
    await up.relays[0]!.next(FrameType.MSG);
    await alice.peer.next(FrameType.ACK, (f) => f.id === 'lost');
    up.relays[0]!.duplex.destroy();
    const down = await waitFor(() => up.statuses.find((s) => s.type === 'down'), 'down status', 2000, 1);
    assert.ok(down.type === 'down');
    assert.equal(down.refused, false);
    assert.ok(down.retryInMs >= 10 && down.retryInMs <= 100, `first retry within the initial delay, got ${down.retryInMs}`);
    assert.equal(up.uplink.connected, false);
    assert.equal(ctx.router.stats().uplinks, 0);
    alice.peer.send(msg('x@initech', 'meanwhile'));
    await alice.peer.next(FrameType.ACK, (f) => f.id === 'meanwhile');
    assert.deepEqual(alice.peer.all(FrameType.NACK), [], 'the sender hears nothing of the lost link');
    assert.equal(up.relays.length, 1, 'no redial before the delay');
    ctx.clock.tick(100);
    await waitFor(() => up.relays.length === 2, 'redial', 2000, 1);
    const relay = up.relays[1]!;
    await up.welcome(relay);
    alice.peer.send(msg('x@initech', 'again'));
    await relay.next(FrameType.MSG, (m) => m.id === 'again');
    assert.deepEqual(relay.msgIds(), ['lost', 'meanwhile', 'again']);
  });

  it('reports a refusal as such and waits the longest interval', async (t) => {
    const ctx = setup(t);
    const up = uplinkTo(t, ctx);
    await waitFor(() => up.relays.length === 1, 'dial', 2000, 1);
    const relay = up.relays[0]!;
    await relay.next(FrameType.HELLO);
    relay.send({ type: FrameType.CLOSE, code: WireCode.AUTH_FAILED, reason: 'bad token' });
    relay.duplex.close();
    const down = await waitFor(() => up.statuses.find((s) => s.type === 'down'), 'down status', 2000, 1);
    assert.ok(down.type === 'down');
    assert.equal(down.refused, true);
    assert.equal(down.error.code, 'ERR_AUTH_FAILED');
    assert.equal(down.retryInMs, 1000);
    ctx.clock.tick(999);
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(up.relays.length, 1);
    ctx.clock.tick(1);
    await waitFor(() => up.relays.length === 2, 'redial', 2000, 1);
    up.uplink.close();
    assert.equal(up.statuses.at(-1)?.type, 'closed');
  });
});

describe('Router: robustness', () => {
  it('closes with PROTOCOL when the first frame is not HELLO', async (t) => {
    const ctx = setup(t);
    const p = ctx.connect();
    p.send(msg('bob@acme', 'early'));
    assert.equal(await p.closeCode(), 'ERR_PROTOCOL');
    const q = ctx.connect();
    q.send({ type: FrameType.REGISTER, ref: 1, name: 'x' });
    assert.equal(await q.closeCode(), 'ERR_PROTOCOL');
    assert.equal(ctx.router.stats().protocolErrors, 2);
  });

  it('closes with PROTOCOL a dialer that sends again before WELCOME', async (t) => {
    const ctx = setup(t);
    const p = ctx.connect();
    p.sendBatch(hello(), hello());
    assert.equal(await p.closeCode(), 'ERR_PROTOCOL');
  });

  it('closes a connection sending garbage with PROTOCOL; other agents keep working', async (t) => {
    const ctx = setup(t);
    const alice = await ctx.agent({ name: 'alice' });
    const bob = await ctx.agent({ name: 'bob' });
    const garbage = await ctx.agent({ name: 'garbage' });
    garbage.peer.sendBytes([0, 0, 0, 3, 0xee, 1, 2]);
    assert.equal(await garbage.peer.closeCode(), 'ERR_PROTOCOL');
    const truncated = await ctx.agent();
    truncated.peer.sendBytes([0, 0, 0, 2, FrameType.ACK, 9]);
    assert.equal(await truncated.peer.closeCode(), 'ERR_PROTOCOL');
    const empty = ctx.connect();
    empty.sendBytes([0, 0, 0, 0]);
    assert.equal(await empty.closeCode(), 'ERR_PROTOCOL');
    alice.peer.send(msg('bob', 'still'));
    await bob.peer.next(FrameType.MSG);
    alice.peer.send(msg('garbage', 'gone'));
    await alice.peer.next(FrameType.ACK, (f) => f.id === 'gone');
    assert.deepEqual(ctx.router.links().map((l) => l.address).sort(), ['alice@acme', 'bob@acme'], 'a closed agent leaves the directory');
    assert.deepEqual(alice.peer.all(FrameType.NACK), []);
  });

  it('closes with FRAME_TOO_LARGE on a frame header above maxFrameBytes', async (t) => {
    const ctx = setup(t, { maxFrameBytes: 4096 });
    const a = await ctx.agent();
    a.peer.sendBytes([0, 0, 0x10, 0x01, FrameType.MSG]);
    assert.equal(await a.peer.closeCode(), 'ERR_FRAME_TOO_LARGE');
    const b = ctx.connect();
    b.sendBytes([0x7f, 0xff, 0xff, 0xff]);
    assert.equal(await b.closeCode(), 'ERR_FRAME_TOO_LARGE');
    const c = await ctx.agent();
    const d = await ctx.agent();
    c.peer.send(msg(d.address, 'fits', { body: new Uint8Array(3000) }));
    assert.equal((await d.peer.next(FrameType.MSG)).body.length, 3000);
  });

  it('closes with HANDSHAKE_TIMEOUT a connection silent for handshakeTimeoutMs', async (t) => {
    const ctx = setup(t, { handshakeTimeoutMs: 500 });
    const silent = ctx.connect();
    const welcomed = await ctx.agent();
    ctx.clock.tick(499);
    await silent.sync();
    assert.equal(silent.ended, false, 'a PING is no HELLO, but not a violation either');
    ctx.clock.tick(1);
    assert.equal(await silent.closeCode(), 'ERR_HANDSHAKE_TIMEOUT');
    await welcomed.peer.sync();
    assert.equal(welcomed.peer.ended, false);
  });

  it('closes with TOO_MANY_CONNECTIONS past maxConnections, and admits again once one leaves', async (t) => {
    const ctx = setup(t, { maxConnections: 2 });
    const a = await ctx.agent();
    await ctx.agent();
    const third = ctx.connect();
    assert.equal(await third.closeCode(), 'ERR_TOO_MANY_CONNECTIONS');
    assert.equal(ctx.router.stats().connections, 2);
    a.peer.duplex.close();
    await waitFor(() => ctx.router.stats().connections === 1, 'a gone', 2000, 1);
    await ctx.agent();
  });

  it('pings a silent link after pingIntervalMs and closes it with IDLE_TIMEOUT after twice that', async (t) => {
    const ctx = setup(t, { pingIntervalMs: 1000 });
    const silent = await ctx.agent();
    const lively = await ctx.agent();
    ctx.clock.tick(999);
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(silent.peer.all(FrameType.PING), [], 'no PING before pingIntervalMs');
    ctx.clock.tick(1);
    await silent.peer.next(FrameType.PING);
    const ping = await lively.peer.next(FrameType.PING);
    ctx.clock.tick(5);
    lively.peer.send({ type: FrameType.PONG, nonce: ping.nonce });
    await lively.peer.sync();
    ctx.clock.tick(995);
    assert.equal(await silent.peer.closeCode(), 'ERR_IDLE_TIMEOUT');
    assert.equal(lively.peer.ended, false);
    ctx.clock.tick(5);
    await lively.peer.next(FrameType.PING);
    assert.equal(lively.peer.ended, false);
  });

  it('pings again a link whose PONG came within the millisecond of the PING', async (t) => {
    // A loopback peer can answer within the clock's resolution: that still answers the ping.
    const ctx = setup(t, { pingIntervalMs: 1000 });
    const quick = await ctx.agent();
    ctx.clock.tick(1000);
    const ping = await quick.peer.next(FrameType.PING);
    quick.peer.send({ type: FrameType.PONG, nonce: ping.nonce });
    await quick.peer.sync();
    ctx.clock.tick(1000);
    await quick.peer.next(FrameType.PING, () => true, 500);
    assert.equal(quick.peer.ended, false);
  });

  it('closes a recipient that does not read with SLOW_CONSUMER; what it had not acked waits for it, others are unaffected', async (t) => {
    const ctx = setup(t, { maxOutboundBytes: 64 * 1024 });
    const stuckEnd = new StuckMemoryDuplex('memory:stuck');
    const bobEnd = new MemoryDuplex('memory:bob');
    stuckEnd.peer = bobEnd;
    bobEnd.peer = stuckEnd;
    ctx.router.accept(stuckEnd);
    const bob = new Peer(bobEnd);
    bob.send(hello({ name: 'bob' }));
    await bob.next(FrameType.WELCOME);
    const alice = await ctx.agent({ name: 'alice' });
    const carol = await ctx.agent({ name: 'carol' });
    alice.peer.send(msg('bob', 's0'));
    bob.ack(await bob.next(FrameType.MSG));
    await alice.peer.next(FrameType.ACK);
    stuckEnd.backlog = 10 * 1024 * 1024;
    alice.peer.send(msg('bob', 's1'));
    assert.equal(await bob.closeCode(), 'ERR_SLOW_CONSUMER');
    await alice.peer.next(FrameType.ACK, (f) => f.id === 's1');
    alice.peer.send(msg('carol', 'fine'));
    await carol.peer.next(FrameType.MSG);
    carol.peer.send(msg('alice', 'back'));
    await alice.peer.next(FrameType.MSG);
    assert.equal(ctx.router.stats().agents, 2);
    assert.deepEqual(alice.peer.all(FrameType.NACK), []);
    const bobAgain = await ctx.agent({ name: 'bob' });
    assert.equal((await bobAgain.peer.next(FrameType.MSG)).id, 's1');
  });

  it('keeps a slow but live agent connected under volatile load: an agent sending to it is paused, what comes over a router link is shed and counted', async (t) => {
    const ctx = setup(t, { maxOutboundBytes: 64 * 1024, allowGuests: true, authenticator: fakeAuthenticator(TOKENS) });
    const stuckEnd = new StuckMemoryDuplex('memory:bob');
    const bobEnd = new MemoryDuplex('memory:bob-far');
    stuckEnd.peer = bobEnd;
    bobEnd.peer = stuckEnd;
    ctx.router.accept(stuckEnd);
    const bob = new Peer(bobEnd);
    bob.send(hello({ token: 'acme-domain' }));
    const w = await bob.next(FrameType.WELCOME);
    const [agentEnd, routerEnd] = memoryPair();
    ctx.router.accept(routerEnd);
    const alice = new Peer(agentEnd);
    alice.send(hello({ token: 'acme-domain' }));
    await alice.next(FrameType.WELCOME);
    const gw = await ctx.downlink();
    stuckEnd.backlog = 40 * 1024; // over half of maxOutboundBytes, under all of it
    alice.send(msg(`${w.id}@acme`, 'v1', { flags: MsgFlag.VOLATILE }));
    assert.equal((await bob.next(FrameType.MSG)).id, 'v1', 'the one in hand goes');
    assert.equal(routerEnd.paused, true, 'the agent sending to it is paused');
    gw.send(msg(`${w.id}@acme`, 'g1', { from: 'x@globex', flags: MsgFlag.VOLATILE }));
    await gw.sync();
    assert.equal(ctx.router.stats().msgsDropped, 1, 'what comes over a router link is shed, not the tunnel paused');
    assert.equal(gw.ended, false);
    stuckEnd.backlog = 0;
    ctx.clock.tick(10);
    assert.equal(routerEnd.paused, false, 'resumed once it drained');
    assert.equal(bob.ended, false, 'the slow reader was never disconnected');
  });

  it('pauses the sender of traffic into a congested router link, and resumes it once the link drained', async (t) => {
    const ctx = setup(t, { maxOutboundBytes: 64 * 1024, authenticator: fakeAuthenticator(TOKENS) });
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
    const [agentEnd, routerEnd] = memoryPair();
    ctx.router.accept(routerEnd);
    const alice = new Peer(agentEnd);
    alice.send(hello({ token: 'acme-domain' }));
    await alice.next(FrameType.WELCOME);
    stuckEnd.backlog = 40 * 1024; // over half of maxOutboundBytes, under all of it
    alice.send(msg('bob@globex', 'v1', { flags: MsgFlag.VOLATILE }));
    assert.equal((await gw.next(FrameType.MSG)).id, 'v1', 'nothing is dropped');
    assert.equal(ctx.router.stats().pauses, 1);
    assert.equal(routerEnd.paused, true, 'the router stopped reading from the sender');
    alice.send(msg('bob@globex', 'r1'));
    await new Promise((r) => setTimeout(r, 30));
    assert.ok(gw.received.every((f) => f.type !== FrameType.MSG || f.id !== 'r1'), 'held back while paused');
    stuckEnd.backlog = 0;
    ctx.clock.tick(10);
    assert.equal(routerEnd.paused, false);
    assert.equal((await gw.next(FrameType.MSG, (f) => f.id === 'r1')).id, 'r1');
    assert.equal(ctx.router.stats().msgsDropped, 0);
    assert.equal(gw.ended, false, 'the link stays up');
  });

  it('sheds volatile load on a congested router link when the sender cannot be paused; a reliable message is stored and still sent', async (t) => {
    const ctx = setup(t, { allowGuests: true, maxOutboundBytes: 64 * 1024, authenticator: fakeAuthenticator(TOKENS) });
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
    const [agentEnd, routerEnd] = memoryPair();
    Object.defineProperty(routerEnd, 'pause', { value: undefined }); // a transport that cannot pause
    ctx.router.accept(routerEnd);
    const alice = new Peer(agentEnd);
    alice.send(hello());
    await alice.next(FrameType.WELCOME);
    stuckEnd.backlog = 40 * 1024;
    alice.send(msg('bob@globex', 'v1', { flags: MsgFlag.VOLATILE }));
    alice.send(msg('bob@globex', 'r1'));
    await alice.next(FrameType.ACK, (f) => f.id === 'r1');
    assert.equal((await gw.next(FrameType.MSG)).id, 'r1');
    assert.equal(ctx.router.stats().msgsDropped, 1);
    assert.equal(gw.ended, false, 'the link stays up');
    stuckEnd.backlog = 0;
    alice.send(msg('bob@globex', 'r2'));
    const m = await gw.next(FrameType.MSG);
    assert.equal(m.id, 'r2');
    assert.deepEqual(gw.msgIds(), ['r1', 'r2'], 'v1 was shed');
    assert.deepEqual(alice.all(FrameType.NACK), []);
  });

  it('forgets an agent whose HELLO shares a batch with a frame that closes it (no ghost holding the name)', async (t) => {
    const ctx = setup(t);
    const ghost = ctx.connect();
    // HELLO and a REGISTER for a bad name in one transport message: the second frame arrives
    // while the router has just accepted the first.
    ghost.sendBatch(hello({ name: 'alice' }), { type: FrameType.ROUTE, op: RouteOp.ADD, metric: 0, domain: 'x', path: [], proof: '' });
    assert.equal(await ghost.closeCode(), 'ERR_PROTOCOL');
    await waitFor(() => ctx.router.links().length === 0, 'the ghost link to be forgotten', 2000, 1);
    const alice = await ctx.agent({ name: 'alice' });
    assert.equal(alice.welcome.name, 'alice', 'the name is free again');
    assert.equal(ctx.router.stats().connections, 1);
  });

  it('does not let a router with a credential for another domain replace a link by claiming its node id', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: fakeAuthenticator(TOKENS) });
    const globex = await ctx.downlink('globex', 'globex-domain', 'r2');
    await ctx.downlink('initech', 'any-domain', 'r2'); // the same node id, another domain
    await globex.sync();
    assert.equal(globex.ended, false, 'the globex link is still up');
    assert.deepEqual(ctx.router.routes().get('globex'), ['r2']);
  });

  it('replaces the old link when the same router links again', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: fakeAuthenticator(TOKENS) });
    const first = await ctx.downlink('globex', 'globex-domain', 'r2');
    const second = await ctx.downlink('globex', 'globex-domain', 'r2');
    assert.equal(await first.closeCode(), 'ERR_REPLACED');
    assert.deepEqual(ctx.router.routes().get('globex'), ['r2']);
    const alice = await ctx.agent();
    alice.peer.send(msg('bob@globex', 'after-relink'));
    assert.equal((await second.next(FrameType.MSG)).id, 'after-relink');
  });

  it('refuses, from an uplink, a sender in its own domain or in a domain it reaches below', async (t) => {
    const ctx = setup(t, { allowGuests: true, authenticator: fakeAuthenticator(TOKENS) });
    await ctx.downlink('globex', 'globex-domain', 'r2');
    const up = uplinkTo(t, ctx);
    const relay = await waitFor(() => up.relays[0], 'the uplink to dial');
    await up.welcome(relay);
    await ctx.agent({ name: 'alice', token: 'acme-domain' });
    relay.send(msg('alice@acme', 'spoof-own', { from: 'ceo@acme', hops: 5 }));
    relay.send(msg('alice@acme', 'spoof-below', { from: 'boss@globex', hops: 5 }));
    relay.send(msg('alice@acme', 'fine', { from: 'bob@relay', hops: 5 }));
    const n1 = await relay.next(FrameType.NACK, (f) => f.id === 'spoof-own');
    const n2 = await relay.next(FrameType.NACK, (f) => f.id === 'spoof-below');
    assert.equal(errorCodeOf(n1.code), 'ERR_FORBIDDEN');
    assert.equal(errorCodeOf(n2.code), 'ERR_FORBIDDEN');
    assert.ok(relay.received.every((f) => f.type !== FrameType.NACK || f.id !== 'fine'));
  });

  it('does not forward a frame larger than the next hop accepts: the sender hears FRAME_TOO_LARGE', async (t) => {
    const ctx = setup(t);
    const small = await ctx.agent({ name: 'small', maxFrame: 2048 });
    const big = await ctx.agent({ name: 'big' });
    big.peer.send(msg('small', 'huge', { body: new Uint8Array(4096) }));
    const n = await big.peer.next(FrameType.NACK);
    assert.deepEqual({ id: n.id, code: errorCodeOf(n.code) }, { id: 'huge', code: 'ERR_FRAME_TOO_LARGE' });
    big.peer.send(msg('small', 'fits', { body: new Uint8Array(1000) }));
    assert.equal((await small.peer.next(FrameType.MSG)).id, 'fits');
    assert.equal(small.peer.ended, false);
  });

  it('closes a link when its credential expires', async (t) => {
    const clock = new ManualClock();
    const table: Record<string, Claims> = { short: { domain: 'acme', expiresAt: clock.now() + 60_000 } };
    const ctx = setup(t, { clock, authenticator: fakeAuthenticator(table), pingIntervalMs: 0 });
    const a = await ctx.agent({ name: 'temp', token: 'short' });
    clock.tick(59_000);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(a.peer.ended, false);
    clock.tick(2_000);
    assert.equal(await a.peer.closeCode(), 'ERR_AUTH_FAILED');
  });

  it('closes every connection with SHUTDOWN on close() and refuses new ones', async (t) => {
    const ctx = setup(t);
    const a = await ctx.agent();
    const b = await ctx.agent({ name: 'bob' });
    a.peer.send(msg('bob', 'pending'));
    await b.peer.next(FrameType.MSG);
    ctx.router.close();
    assert.equal(await a.peer.closeCode(), 'ERR_SHUTDOWN');
    assert.equal(await b.peer.closeCode(), 'ERR_SHUTDOWN');
    const late = ctx.connect();
    assert.equal(await late.closeCode(), 'ERR_SHUTDOWN');
    assert.deepEqual(ctx.router.links(), []);
  });
});
