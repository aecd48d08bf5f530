import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { connect, type Client, type Message } from '@postern/client';
import type { UplinkStatus } from '@postern/core';
import { issueToken, startRouter, type RouterServer } from '@postern/router';
import { TEST_GUESTS, waitFor } from '@postern/testing';

const secret = 'integration-secret';

async function next(client: Client, timeoutMs = 5000): Promise<Message> {
  const it = client[Symbol.asyncIterator]();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const r = await Promise.race([
    it.next(),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('no message')), timeoutMs))),
  ]);
  clearTimeout(timer);
  if (r.done) throw new Error('client ended');
  return r.value;
}

async function relayAndGateway(relayListen = '127.0.0.1:0'): Promise<{ relay: RouterServer; gateway: RouterServer; statuses: UplinkStatus[] }> {
  const relay = await startRouter({ domain: 'relay', listen: [relayListen], secret, ...TEST_GUESTS });
  const statuses: UplinkStatus[] = [];
  const gateway = await startRouter({
    domain: 'acme',
    listen: ['127.0.0.1:0'],
    uplinks: [{ url: relay.url, token: await issueToken(secret, { domain: 'acme' }) }],
    backoff: { initialMs: 50, maxMs: 500 },
    onUplinkStatus: (_u, s) => void statuses.push(s),
  });
  await waitFor(() => relay.router.routes().has('acme'), 'the gateway to claim acme at the relay');
  return { relay, gateway, statuses };
}

describe('relay + gateway + agents in one process', () => {
  const cleanup: Array<() => Promise<void>> = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  it('carries messages in and out through the one tunnel', async () => {
    const { relay, gateway } = await relayAndGateway();
    cleanup.push(() => relay.close(), () => gateway.close());
    const alice = await connect({ url: gateway.url, name: 'alice' });
    const carol = await connect({ url: gateway.url, name: 'carol' });
    const bob = await connect({ url: relay.url, name: 'bob', token: await issueToken(secret, { domain: 'relay', name: 'bob' }) });
    const anon = await connect({ url: relay.url });
    cleanup.push(() => alice.close(), () => carol.close(), () => bob.close(), () => anon.close());

    assert.equal(alice.address, 'alice@acme');
    assert.equal(bob.address, 'bob@relay');
    assert.match(anon.address, /^_[a-z2-7]{16}@relay$/);

    // send() resolves once the recipient's application has taken the message: read first.
    const incoming = next(alice);
    await bob.send('alice@acme', 'hello alice');
    const m = await incoming;
    assert.equal(m.text(), 'hello alice');
    assert.equal(m.from, 'bob@relay');
    assert.equal(m.to, 'alice@acme');

    const reply = next(bob);
    await alice.send(m.from, 'hello bob');
    const r = await reply;
    assert.equal(r.text(), 'hello bob');
    assert.equal(r.from, 'alice@acme');

    // An agent with no name is reachable by its id.
    const toId = next(anon);
    await carol.send(anon.address, 'to an id');
    const a = await toId;
    assert.equal(a.from, 'carol@acme');

    // However many agents sit behind the gateway, the relay holds one link for them.
    const stats = relay.router.stats();
    assert.equal(stats.downlinks, 1);
    assert.equal(stats.agents, 2);
    assert.equal(gateway.router.stats().agents, 2);
  });

  it('keeps internal traffic going while the uplink is down, and re-announces after reconnecting', async () => {
    const first = await startRouter({ domain: 'relay', listen: ['127.0.0.1:0'], secret, ...TEST_GUESTS });
    const port = first.addresses[0]!.port;
    await first.close();
    const { relay, gateway, statuses } = await relayAndGateway(`127.0.0.1:${port}`);
    cleanup.push(() => gateway.close());
    const alice = await connect({ url: gateway.url, name: 'alice' });
    const dave = await connect({ url: gateway.url, name: 'dave' });
    cleanup.push(() => alice.close(), () => dave.close());

    await relay.close();
    await waitFor(() => !gateway.uplinks[0]!.connected, 'the gateway to notice the relay is gone');
    const inside = next(alice);
    await dave.send('alice', 'inside only');
    assert.equal((await inside).text(), 'inside only');
    // Outward messages are accepted by the gateway and wait in it for the uplink.
    await alice.send('bob@relay', 'sent during the outage');
    assert.equal(gateway.router.stats().stored, 1);

    // A new relay (its store is gone) that knows bob because he is provisioned.
    const relay2 = await startRouter({ domain: 'relay', listen: [`127.0.0.1:${port}`], secret, ...TEST_GUESTS, knownNames: ['bob'] });
    cleanup.push(() => relay2.close());
    await waitFor(() => relay2.router.routes().has('acme'), 'the gateway to reconnect and announce acme again', 10_000);
    assert.ok(statuses.some((s) => s.type === 'down' && !s.refused));
    const bob = await connect({ url: relay2.url, name: 'bob', token: await issueToken(secret, { domain: 'relay', name: 'bob' }) });
    cleanup.push(() => bob.close());
    assert.equal((await next(bob)).text(), 'sent during the outage');
    const later = next(alice);
    await bob.send('alice@acme', 'after the outage');
    assert.equal((await later).text(), 'after the outage');
  });

  it('refuses a gateway whose credential is not signed by the relay', async () => {
    const relay = await startRouter({ domain: 'relay', listen: ['127.0.0.1:0'], secret, ...TEST_GUESTS });
    cleanup.push(() => relay.close());
    const statuses: UplinkStatus[] = [];
    const gateway = await startRouter({
      domain: 'acme',
      listen: [],
      uplinks: [{ url: relay.url, token: await issueToken('another secret', { domain: 'acme' }) }],
      onUplinkStatus: (_u, s) => void statuses.push(s),
    });
    cleanup.push(() => gateway.close());
    const down = await waitFor(() => statuses.find((s) => s.type === 'down'), 'a refusal');
    assert.equal(down.type === 'down' && down.refused, true);
    assert.equal(down.type === 'down' && down.error.code, 'ERR_AUTH_FAILED');
    assert.equal(relay.router.routes().has('acme'), false);
  });

  it('gives an agent the same id when it resumes, and resends what was not acknowledged', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'postern-data-'));
    cleanup.push(() => Promise.resolve(rmSync(dataDir, { recursive: true, force: true })));
    const first = await startRouter({ domain: 'relay', listen: ['127.0.0.1:0'], secret, ...TEST_GUESTS, dataDir });
    const port = first.addresses[0]!.port;
    const url = first.url;
    const first_eve = await connect({ url });
    const id = first_eve.id;
    const statuses: string[] = [];
    first_eve.onStatus((s) => statuses.push(s.type === 'closed' ? `closed:${s.error?.code}` : s.type));
    // Another client resuming the same session gets the same id, and the first one is told.
    const eve = await connect({ url, resume: first_eve.resumeToken, backoff: { initialMs: 2000, maxMs: 2000 } });
    cleanup.push(() => eve.close());
    assert.equal(eve.id, id);
    await waitFor(() => statuses.includes('closed:ERR_REPLACED'), 'the replaced client to close with ERR_REPLACED');

    // The router restarts (same secret, same store): a send made meanwhile waits in the client, then goes.
    await first.close();
    await waitFor(() => !eve.connected, 'eve to notice');
    const frankToken = await issueToken(secret, { domain: 'relay', name: 'frank' });
    const queued = eve.send('frank@relay', 'sent while the router was down');
    const second = await startRouter({ domain: 'relay', listen: [`127.0.0.1:${port}`], secret, ...TEST_GUESTS, dataDir });
    cleanup.push(() => second.close());
    const frank = await connect({ url, name: 'frank', token: frankToken });
    cleanup.push(() => frank.close());
    const got = await next(frank, 10_000);
    assert.equal(got.text(), 'sent while the router was down');
    assert.equal(got.from, `${id}@relay`, 'the restarted router recognised the session: same id');
    await queued;

    // A message to an agent that is away waits for it; a receipt says when it got there.
    const eveToken = eve.resumeToken;
    await eve.close();
    const receipt = frank.send(`${id}@relay`, 'while you were away', { receipt: 'delivered' });
    const back = await connect({ url, resume: eveToken });
    cleanup.push(() => back.close());
    assert.equal(back.id, id);
    assert.equal((await next(back)).text(), 'while you were away');
    await receipt;
  });

  it('keeps the resume key of a router without a secret in its data dir, so ids survive its restart', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'postern-data-'));
    cleanup.push(() => Promise.resolve(rmSync(dataDir, { recursive: true, force: true })));
    const first = await startRouter({ domain: 'lan', listen: ['127.0.0.1:0'], dataDir });
    const port = first.addresses[0]!.port;
    const agent = await connect({ url: first.url });
    const { id, resumeToken } = agent;
    await agent.close();
    await first.close();
    const second = await startRouter({ domain: 'lan', listen: [`127.0.0.1:${port}`], dataDir });
    cleanup.push(() => second.close());
    const again = await connect({ url: second.url, resume: resumeToken });
    cleanup.push(() => again.close());
    assert.equal(again.id, id);
    // Without the data dir the key is random per process: the same token gives a new id.
    const third = await startRouter({ domain: 'lan', listen: ['127.0.0.1:0'] });
    cleanup.push(() => third.close());
    const other = await connect({ url: third.url, resume: resumeToken });
    cleanup.push(() => other.close());
    assert.notEqual(other.id, id);
  });

  it('takes no resume token as a recovery once its store was lost: the agent is told its session was not recovered', async () => {
    // With a secret the resume key survives everything; only the store's epoch tells a wiped store from the same one.
    const dataDir = mkdtempSync(join(tmpdir(), 'postern-data-'));
    cleanup.push(() => Promise.resolve(rmSync(dataDir, { recursive: true, force: true })));
    const start = (o: { listen?: string; dataDir?: string } = {}): Promise<RouterServer> =>
      startRouter({ domain: 'relay', listen: [o.listen ?? '127.0.0.1:0'], secret, ...TEST_GUESTS, ...(o.dataDir === undefined ? {} : { dataDir: o.dataDir }) });
    let relay = await start({ dataDir });
    const port = relay.addresses[0]!.port;
    const alice = await connect({ url: relay.url, name: 'alice', token: await issueToken(secret, { domain: 'relay', name: 'alice' }), backoff: { initialMs: 50, maxMs: 300 } });
    cleanup.push(() => alice.close());
    const seen: Array<{ resumed: boolean; lost: boolean; id: string }> = [];
    alice.onStatus((st) => {
      if (st.type === 'connected') seen.push({ resumed: st.resumed, lost: st.lost, id: st.id });
    });
    const id = alice.id;
    // The same store: a recovery.
    await relay.close();
    relay = await start({ listen: `127.0.0.1:${port}`, dataDir });
    await waitFor(() => seen.length === 1, 'alice back');
    assert.deepEqual(seen[0], { resumed: true, lost: false, id });
    // The store gone (a new one in its place): not a recovery, and alice is told.
    await relay.close();
    rmSync(dataDir, { recursive: true, force: true });
    relay = await start({ listen: `127.0.0.1:${port}`, dataDir });
    cleanup.push(() => relay.close());
    await waitFor(() => seen.length === 2, 'alice back again');
    assert.equal(seen[1]!.resumed, false);
    assert.equal(seen[1]!.lost, true);
    assert.notEqual(seen[1]!.id, id);
    assert.equal(alice.address, 'alice@relay', 'her name is hers still');
  });

  it('drops duplicates at the recipient and acks them again', async () => {
    const relay = await startRouter({ domain: 'relay', listen: ['127.0.0.1:0'], secret, ...TEST_GUESTS });
    cleanup.push(() => relay.close());
    const tok = (name: string): Promise<string> => issueToken(secret, { domain: 'relay', name });
    const gina = await connect({ url: relay.url, name: 'gina', token: await tok('gina') });
    const hal = await connect({ url: relay.url, name: 'hal', token: await tok('hal') });
    cleanup.push(() => gina.close(), () => hal.close());
    const sends = Array.from({ length: 200 }, (_, i) => hal.send('gina', `n${i}`));
    const got: string[] = [];
    for (let i = 0; i < 200; i++) got.push((await next(gina)).text());
    await Promise.all(sends);
    assert.deepEqual(got, Array.from({ length: 200 }, (_, i) => `n${i}`));
  });
});
