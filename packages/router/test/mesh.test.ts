// Routers of different operators linked as peers (issue 9): trust by exchanged node keys and by
// grants, routing across the mesh, gateways with several relays. Real routers on loopback
// sockets, real SDK agents.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import type { Client, Message } from '@postern/client';
import { createKeyPair, issueGrant, issueToken } from '@postern/router';
import { waitFor, TEST_GUESTS } from '@postern/testing';
import { agent, next, router } from './live.js';


async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<ReturnType<typeof createServer>>((resolve) => {
      const srv = createServer();
      srv.listen(0, '127.0.0.1', () => resolve(srv));
    })),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** Sends with a delivery receipt while the recipient reads; resolves with what it read. */
async function deliver(from: Client, to: Client, address: string, text: string): Promise<Message> {
  const got = next(to);
  await from.send(address, text, { receipt: 'delivered' });
  return got;
}

describe('peers: relays of different operators', () => {
  it('link with exchanged node keys (no shared secret) and carry messages between their gateways both ways, with receipts', async () => {
    const k1 = createKeyPair('node');
    const k2 = createKeyPair('node');
    const r1 = await router({ domain: 'r1', secret: 'secret-of-operator-1', ...TEST_GUESTS, key: k1, trust: [`${k2.publicKey}=r2,globex`] });
    const r2 = await router({ domain: 'r2', secret: 'secret-of-operator-2', ...TEST_GUESTS, key: k2, trust: [`${k1.publicKey}=r1,acme`], peers: [{ url: r1.url }] });
    assert.equal(r1.node, k1.publicKey, 'the node id is the public key');
    const ga = await router({ domain: 'acme', uplinks: [{ url: r1.url, token: await issueToken('secret-of-operator-1', { domain: 'acme' }) }] });
    const gb = await router({ domain: 'globex', uplinks: [{ url: r2.url, token: await issueToken('secret-of-operator-2', { domain: 'globex' }) }] });
    await waitFor(() => r2.router.routes().has('acme') && r1.router.routes().has('globex'), 'each relay to learn the other side through the peer link');
    assert.deepEqual(r2.router.route('acme'), { node: k1.publicKey, kind: 'peer', metric: 2, path: [ga.node, k1.publicKey] });
    assert.equal(r1.router.stats().peers + r2.router.stats().peers, 2, 'one link, seen from both ends');

    const alice = await agent(ga.url, 'alice');
    const bob = await agent(gb.url, 'bob');
    const m = await deliver(alice, bob, 'bob@globex', 'hello across two operators');
    assert.equal(m.from, 'alice@acme');
    const r = await deliver(bob, alice, m.from, 'and back');
    assert.equal(r.from, 'bob@globex');
    // An agent on the far relay reaches a gateway's agent through the peer link too.
    const x = await agent(r2.url);
    assert.equal((await deliver(x, alice, 'alice@acme', 'from r2')).from, x.address);
    assert.equal((await deliver(alice, x, x.address, 'to r2')).from, 'alice@acme');
  });

  it('refuses what a peer is not entitled to: its announcement, its senders, and an untrusted peer', async () => {
    const k1 = createKeyPair('node');
    const k2 = createKeyPair('node');
    // r2 trusts r1 for r1 only, so acme (behind r1) may neither be announced nor send through it.
    const r1 = await router({ domain: 'r1', secret: 's1', ...TEST_GUESTS, key: k1, trust: [`${k2.publicKey}=r2,globex`] });
    const r2 = await router({ domain: 'r2', secret: 's2', ...TEST_GUESTS, key: k2, trust: [`${k1.publicKey}=r1`], peers: [{ url: r1.url }] });
    const ga = await router({ domain: 'acme', uplinks: [{ url: r1.url, token: await issueToken('s1', { domain: 'acme' }) }] });
    const gb = await router({ domain: 'globex', uplinks: [{ url: r2.url, token: await issueToken('s2', { domain: 'globex' }) }] });
    await waitFor(() => r1.router.routes().has('globex') && r2.router.stats().routesRefused > 0, 'globex learned at r1, acme refused at r2');
    assert.equal(r2.router.routes().has('acme'), false);
    assert.equal(r2.router.stats().peers, 1, 'the refusal does not cut the link');
    const alice = await agent(ga.url, 'alice');
    await agent(gb.url, 'bob');
    await assert.rejects(alice.send('bob@globex', 'forged?', { receipt: 'delivered' }), (e: Error & { code?: string }) => e.code === 'ERR_FORBIDDEN');
    assert.ok(r2.router.stats().forbidden >= 1);
    // Messages from r1's own domain are fine.
    const y = await agent(r1.url);
    const bob2 = await agent(r2.url, 'bob2', await issueToken('s2', { domain: 'r2', name: 'bob2' }));
    assert.equal((await deliver(y, bob2, 'bob2@r2', 'from r1 itself')).from, y.address);

    // A router nobody trusts cannot link as a peer.
    const stranger = createKeyPair('node');
    const r3 = await router({ domain: 'r3', key: stranger, peers: [{ url: r1.url }] });
    await waitFor(() => r3.peers[0]!.connected === false && r1.router.stats().peers === 1, 'the stranger to stay out');
    const refused = await new Promise<string>((resolve) => r3.peers[0]!.onStatus((s) => s.type === 'down' && resolve(`${s.error.code} ${s.error.message}`)));
    assert.match(refused, /ERR_AUTH_FAILED .*not a peer of this router/);
  });

  it('accepts a route through a peer it does not trust for that domain when the domain owner signed the origin (grants), and refuses a forged proof', async () => {
    const [k1, k2, k3, kg] = [createKeyPair('node'), createKeyPair('node'), createKeyPair('node'), createKeyPair('node')];
    const owner = createKeyPair('domain');
    const grant = issueGrant(owner, { subject: kg.publicKey, domains: ['acme'] });
    // A line r1 - r2 - r3. Every relay trusts acme's owner for acme; no relay trusts a peer for acme.
    const trustAcme = `${owner.publicKey}=acme`;
    const r1 = await router({ domain: 'r1', key: k1, trust: [trustAcme, `${k2.publicKey}=r2,r3`] });
    const r2 = await router({ domain: 'r2', key: k2, trust: [trustAcme, `${k1.publicKey}=r1`, `${k3.publicKey}=r3`], peers: [{ url: r1.url }] });
    const r3 = await router({ domain: 'r3', key: k3, trust: [trustAcme, `${k2.publicKey}=r2`], peers: [{ url: r2.url }] });
    // The gateway has no token signed with a secret: the owner's grant for its node key admits it.
    const ga = await router({ domain: 'acme', key: kg, uplinks: [{ url: r1.url, token: grant }] });
    await waitFor(() => r3.router.routes().has('acme'), 'acme to reach r3 with its proof');
    assert.deepEqual(r3.router.route('acme')?.path, [ga.node, k1.publicKey, k2.publicKey]);
    const alice = await agent(ga.url, 'alice');
    const far = await agent(r3.url);
    assert.equal((await deliver(far, alice, 'alice@acme', 'over two peer links')).from, far.address);
    assert.equal((await deliver(alice, far, far.address, 'and back over them')).from, 'alice@acme', 'r3 lets acme send through r2: r2 announced it with a valid proof');

    // A gateway holding a grant made out to another node is refused; so is a proof for another node.
    const thief = await router({ domain: 'acme', uplinks: [{ url: r1.url, token: grant }] });
    const code = await new Promise<string>((resolve) => thief.uplinks[0]!.onStatus((s) => s.type === 'down' && resolve(s.error.code)));
    assert.equal(code, 'ERR_AUTH_FAILED');
  });

  it('settles on one link when both sides dial each other', async () => {
    const [k1, k2] = [createKeyPair('node'), createKeyPair('node')];
    const [p1, p2] = await freePorts(2);
    const [r1, r2] = await Promise.all([
      router({ domain: 'r1', key: k1, listen: [`127.0.0.1:${p1}`], trust: [`${k2.publicKey}=r2`], peers: [{ url: `ws://127.0.0.1:${p2}` }] }),
      router({ domain: 'r2', key: k2, listen: [`127.0.0.1:${p2}`], trust: [`${k1.publicKey}=r1`], peers: [{ url: `ws://127.0.0.1:${p1}` }] }),
    ]);
    await waitFor(() => r1.router.stats().peers === 1 && r2.router.stats().peers === 1, 'a peer link each');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(r1.router.stats().peers, 1, 'one link, not two');
    assert.equal(r2.router.stats().peers, 1);
    const a = await agent(r1.url);
    const b = await agent(r2.url);
    assert.equal((await deliver(a, b, b.address, 'x')).from, a.address);
    assert.equal((await deliver(b, a, a.address, 'y')).from, b.address);
  });
});

describe('a gateway with two relays', () => {
  it('sends each message through the relay that reaches its destination, and keeps working while either is down', async () => {
    const r1 = await router({ domain: 'r1', secret: 's1', ...TEST_GUESTS });
    const r2 = await router({ domain: 'r2', secret: 's2', ...TEST_GUESTS });
    const ga = await router({
      domain: 'acme',
      uplinks: [
        { url: r1.url, token: await issueToken('s1', { domain: 'acme' }) },
        { url: r2.url, token: await issueToken('s2', { domain: 'acme' }) },
      ],
    });
    await waitFor(() => ga.router.routes().has('r1') && ga.router.routes().has('r2'), 'both relays to tell the gateway their domains');
    const alice = await agent(ga.url, 'alice');
    const x = await agent(r1.url);
    const y = await agent(r2.url);
    // Replies and receipts go back through the relay their sender is on, not the first uplink.
    assert.equal((await deliver(y, alice, 'alice@acme', 'from r2')).from, y.address);
    assert.equal((await deliver(alice, y, y.address, 'to r2')).from, 'alice@acme');
    assert.equal(r1.router.stats().msgsIn, 0, 'nothing for r2, nor its receipts, went through r1');
    assert.equal((await deliver(alice, x, x.address, 'to r1')).from, 'alice@acme');

    // r1 down: r2's side still works both ways.
    await r1.close();
    await waitFor(() => !ga.router.routes().has('r1'), 'r1 gone');
    assert.equal((await deliver(alice, y, y.address, 'r1 is down')).from, 'alice@acme');
    assert.equal((await deliver(y, alice, 'alice@acme', 'still here')).from, y.address);
  });
});
