// Routers and agents over long-poll on loopback: a gateway whose uplink is forced to HTTP
// (one session for all its agents), and agents in auto mode behind a middlebox that refuses
// WebSocket, which fall back to long-poll and move to WebSocket once the middlebox allows it,
// losing and doubling nothing on the way.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { connect, type Client, type Message } from '@postern/client';
import type { LinkInfo, UplinkStatus } from '@postern/core';
import { issueToken, startRouter, type RouterServer } from '@postern/router';
import { waitFor, TEST_GUESTS } from '@postern/testing';
import { Middlebox } from './middlebox.js';

const secret = 'long-poll-integration';

async function next(client: Client, timeoutMs = 5000): Promise<Message> {
  const it = client[Symbol.asyncIterator]();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const r = await Promise.race([it.next(), new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('no message')), timeoutMs)))]);
  clearTimeout(timer);
  if (r.done) throw new Error('client ended');
  return r.value;
}

/** The counters are behind the admin token (the public /healthz says liveness only). */
const ADMIN = 'admin-token-of-the-tests';

async function healthz(server: RouterServer): Promise<{ longPollSessions: number }> {
  const r = await fetch(`${server.url.replace(/^ws/, 'http')}/healthz`, { headers: { authorization: `Bearer ${ADMIN}` } });
  return (await r.json()) as { longPollSessions: number };
}

function link(server: RouterServer, address: string): LinkInfo | undefined {
  return server.router.links().find((l) => l.address === address);
}

/** Reads `client` in the background; every body seen, in order of arrival. */
function drain(client: Client): string[] {
  const got: string[] = [];
  void (async () => {
    for await (const m of client) got.push(m.text());
  })().catch(() => undefined);
  return got;
}

describe('routers and agents over HTTP long-poll', () => {
  const cleanups: Array<() => Promise<void>> = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it('carries messages both ways through a gateway whose uplink is forced to long-poll, on one session for all its agents', async () => {
    const relay = await startRouter({ adminToken: ADMIN, domain: 'relay', listen: ['127.0.0.1:0'], secret, ...TEST_GUESTS });
    cleanups.push(() => relay.close());
    const statuses: UplinkStatus[] = [];
    const gateway = await startRouter({ adminToken: ADMIN,
      domain: 'acme',
      listen: ['127.0.0.1:0'],
      uplinks: [{ url: relay.url, token: await issueToken(secret, { domain: 'acme' }), transport: 'http' }],
      backoff: { initialMs: 50, maxMs: 500 },
      onUplinkStatus: (_u, s) => void statuses.push(s),
    });
    cleanups.push(() => gateway.close());
    await waitFor(() => relay.router.routes().has('acme'), 'the gateway to claim acme at the relay');

    // Two agents behind the gateway, one of them itself on long-poll; one agent at the relay.
    const alice = await connect({ url: gateway.url, name: 'alice', transport: 'ws' });
    const carol = await connect({ url: gateway.url, name: 'carol', transport: 'http' });
    const bob = await connect({ url: relay.url, name: 'bob', token: await issueToken(secret, { domain: 'relay', name: 'bob' }) });
    cleanups.push(() => alice.close(), () => carol.close(), () => bob.close());

    const toAlice = next(alice);
    const toCarol = next(carol);
    await bob.send('alice@acme', 'hello alice');
    await bob.send('carol@acme', 'hello carol');
    assert.equal((await toAlice).text(), 'hello alice');
    const c = await toCarol;
    assert.equal(c.text(), 'hello carol');
    assert.equal(c.from, 'bob@relay');

    const toBob = next(bob);
    await carol.send('bob@relay', 'hello bob from carol');
    const b1 = await toBob;
    assert.equal(b1.text(), 'hello bob from carol');
    assert.equal(b1.from, 'carol@acme');
    const toBob2 = next(bob);
    await alice.send('bob@relay', 'hello bob from alice', { receipt: 'delivered' });
    assert.equal((await toBob2).from, 'alice@acme');

    // A burst bigger than one batch, reliable, both ways.
    const n = 300;
    const atBob = drain(bob);
    const atCarol = drain(carol);
    const body = 'x'.repeat(1000);
    await Promise.all([
      ...Array.from({ length: n }, (_, i) => carol.send('bob@relay', `${i} ${body}`)),
      ...Array.from({ length: n }, (_, i) => bob.send('carol@acme', `${i} ${body}`)),
    ]);
    await waitFor(() => atBob.length >= n && atCarol.length >= n, 'both bursts to arrive', 15_000);
    assert.equal(new Set(atBob).size, n);
    assert.equal(new Set(atCarol).size, n);

    // The relay sees the gateway as one downlink over one long-poll session, whatever the agents.
    const down = relay.router.links().filter((l) => l.kind === 'downlink');
    assert.equal(down.length, 1);
    assert.equal(down[0]!.transport, 'http');
    assert.equal((await healthz(relay)).longPollSessions, 1);
    assert.equal(relay.router.links().filter((l) => l.kind === 'agent').length, 1); // bob only
    assert.equal(gateway.router.links().find((l) => l.kind === 'uplink')?.transport, 'http');
    assert.deepEqual(
      ['alice@acme', 'carol@acme'].map((a) => link(gateway, a)?.transport),
      ['ws', 'http'],
    );
    assert.equal((await healthz(gateway)).longPollSessions, 1); // carol's
    assert.equal(statuses.filter((s) => s.type === 'down').length, 0);
  });

  it('an agent in auto mode gets through a middlebox that refuses WebSocket, and moves to WebSocket once allowed, losing nothing', async () => {
    const relay = await startRouter({ adminToken: ADMIN, domain: 'relay', listen: ['127.0.0.1:0'] });
    cleanups.push(() => relay.close());
    const mb = await Middlebox.start({ host: '127.0.0.1', port: relay.addresses[0]!.port });
    cleanups.push(() => mb.close());

    const inside = await connect({ url: mb.url, name: 'inside', wsProbeIntervalMs: 300, backoff: { initialMs: 20, maxMs: 200 } });
    const outside = await connect({ url: relay.url, name: 'outside' });
    cleanups.push(() => inside.close(), () => outside.close());
    assert.equal(link(relay, 'inside@relay')?.transport, 'http');
    assert.ok(mb.seen.some((s) => s.method === 'UPGRADE' && s.dropped), 'the WebSocket upgrade was refused');

    const atInside = drain(inside);
    const atOutside = drain(outside);
    const disconnects: string[] = [];
    inside.onStatus((s) => {
      if (s.type === 'disconnected') disconnects.push(s.error.message);
    });

    // Reliable messages both ways, every 10 ms, from before the middlebox relents until after
    // the agent is on WebSocket.
    let i = 0;
    let upgradedAt = 0;
    const sends: Array<Promise<unknown>> = [];
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && i < 600) {
      sends.push(inside.send('outside@relay', `in ${i}`), outside.send('inside@relay', `out ${i}`));
      i++;
      if (i === 20) mb.blockUpgrades = false;
      if (upgradedAt === 0 && link(relay, 'inside@relay')?.transport === 'ws') upgradedAt = i;
      if (upgradedAt > 0 && i >= upgradedAt + 20) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(upgradedAt > 0, 'the agent moved to WebSocket');
    await Promise.all(sends);
    await waitFor(() => atInside.length >= i && atOutside.length >= i, 'every message to arrive', 10_000);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(new Set(atOutside), new Set(Array.from({ length: i }, (_, k) => `in ${k}`)));
    assert.deepEqual(new Set(atInside), new Set(Array.from({ length: i }, (_, k) => `out ${k}`)));
    assert.equal(atOutside.length, i, 'nothing arrived twice at outside');
    assert.equal(atInside.length, i, 'nothing arrived twice at inside');
    assert.equal(link(relay, 'inside@relay')?.transport, 'ws');
    assert.equal((await healthz(relay)).longPollSessions, 0);
    assert.equal(disconnects.length, 1);
    assert.match(disconnects[0]!, /WebSocket works again/);
  });

  it('a gateway in auto mode behind the middlebox keeps its uplink on long-poll while WebSocket is refused', async () => {
    const relay = await startRouter({ adminToken: ADMIN, domain: 'relay', listen: ['127.0.0.1:0'], secret, ...TEST_GUESTS });
    cleanups.push(() => relay.close());
    const mb = await Middlebox.start({ host: '127.0.0.1', port: relay.addresses[0]!.port });
    cleanups.push(() => mb.close());
    const gateway = await startRouter({ adminToken: ADMIN,
      domain: 'acme',
      listen: ['127.0.0.1:0'],
      uplinks: [{ url: mb.url, token: await issueToken(secret, { domain: 'acme' }), wsProbeIntervalMs: 200 }],
      backoff: { initialMs: 50, maxMs: 500 },
    });
    cleanups.push(() => gateway.close());
    await waitFor(() => relay.router.routes().has('acme'), 'the gateway to claim acme at the relay');
    assert.equal(gateway.router.links().find((l) => l.kind === 'uplink')?.transport, 'http');
    const alice = await connect({ url: gateway.url, name: 'alice' });
    const bob = await connect({ url: relay.url, name: 'bob', token: await issueToken(secret, { domain: 'relay', name: 'bob' }) });
    cleanups.push(() => alice.close(), () => bob.close());
    const got = next(alice);
    await bob.send('alice@acme', 'through the middlebox');
    assert.equal((await got).text(), 'through the middlebox');
    // Probes keep failing (refused with 403) and the uplink stays up on long-poll.
    await waitFor(() => mb.seen.filter((s) => s.method === 'UPGRADE').length >= 3, 'a few probes', 5000);
    assert.equal(gateway.router.links().find((l) => l.kind === 'uplink')?.transport, 'http');
    assert.equal(relay.router.links().filter((l) => l.kind === 'downlink').length, 1);
  });
});
