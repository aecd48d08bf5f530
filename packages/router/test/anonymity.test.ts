// Anonymous sending and receiving (issue 9, claim C5): reply handles, re-wrapping at the relay,
// replies, receipts, sticky handles, pseudonyms, limits. Real routers on loopback, real SDK agents.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { issueToken, type RouterServer, type RouterServerOptions } from '@postern/router';
import { waitFor, TEST_GUESTS } from '@postern/testing';
import { agent, next, onCleanup, router } from './live.js';


/** A relay (domain `relay`) and a gateway (acme) behind it. */
async function world(relayOptions: Partial<RouterServerOptions> = {}, gatewayOptions: Partial<RouterServerOptions> = {}): Promise<{ relay: RouterServer; gateway: RouterServer }> {
  const relay = await router({ domain: 'relay', secret: 'anon-secret', ...TEST_GUESTS, ...relayOptions });
  const gateway = await router({ domain: 'acme', uplinks: [{ url: relay.url, token: await issueToken('anon-secret', { domain: 'acme' }) }], ...gatewayOptions });
  await waitFor(() => relay.router.routes().has('acme'), 'the gateway to be linked');
  return { relay, gateway };
}

const HANDLE_AT_RELAY = /^~[a-z2-7]{26}@relay$/;

describe('anonymous sending', () => {
  it('hides the sender behind a handle the relay wraps again; the recipient replies to it; receipts come back', async () => {
    const { relay, gateway } = await world();
    const carol = await agent(gateway.url, 'carol');
    const bob = await agent(relay.url, 'bob', await issueToken('anon-secret', { domain: 'relay', name: 'bob' }));
    const got = next(bob);
    const sent = await carol.send('bob@relay', 'who am I?', { anonymous: true, receipt: 'delivered' });
    const m = await got;
    assert.equal(m.text(), 'who am I?');
    assert.match(m.from, HANDLE_AT_RELAY, 'the relay wrapped the gateway\'s handle: acme does not show');
    assert.ok(!m.from.includes('acme') && !m.from.includes('carol'));
    assert.notEqual(m.id, sent.id, 'the id is sealed');
    assert.ok(!m.id.includes(sent.id.split('.')[0]!), 'not even the id prefix shows');
    // The reply reaches carol; she learns nothing new about bob (he is not anonymous).
    const reply = next(carol);
    await bob.send(m.from, 'you are anonymous', { receipt: 'delivered' });
    const r = await reply;
    assert.equal(r.text(), 'you are anonymous');
    assert.equal(r.from, 'bob@relay');
    assert.match(r.to, /^~[a-z2-7]{26}@acme$/, 'she is reached through her handle at her own router');
    assert.equal(relay.router.stats().anonymousWrapped, 1);
    assert.equal(gateway.router.stats().anonymous, 1);
    // The relay answered the gateway under the gateway's own names: nothing stays in flight or held.
    await waitFor(() => gateway.router.stats().stored === 0 && relay.router.stats().stored === 0, 'every copy settled');
  });

  it('gives each message its own unlinkable handle, and one long-lived handle when asked (sticky)', async () => {
    const { relay, gateway } = await world();
    const carol = await agent(gateway.url, 'carol');
    const bob = await agent(relay.url);
    const froms: string[] = [];
    for (const sticky of [false, false, true, true]) {
      const got = next(bob);
      await carol.send(bob.address, 'x', { anonymous: true, sticky });
      froms.push((await got).from);
    }
    assert.notEqual(froms[0], froms[1], 'two messages, two handles');
    assert.equal(froms[2], froms[3], 'sticky: one handle');
    assert.notEqual(froms[2], froms[0]);
  });

  it('queues a reply while the anonymous sender is briefly away', async () => {
    const { relay, gateway } = await world();
    let carol = await agent(gateway.url, 'carol');
    const bob = await agent(relay.url);
    const got = next(bob);
    await carol.send(bob.address, 'write back later', { anonymous: true });
    const handle = (await got).from;
    await carol.close();
    await bob.send(handle, 'here it is');
    carol = await agent(gateway.url, 'carol');
    assert.equal((await next(carol)).text(), 'here it is');
  });

  it('retries of one message keep its handle and id (duplicates are dropped)', async () => {
    // settleDelayMs 0: the relay's key is released as soon as the gateway removed its copy, so the
    // retry below reaches bob and it is his SDK that must recognise it.
    const { relay, gateway } = await world({ settleDelayMs: 0 }, { settleDelayMs: 0 });
    const carol = await agent(gateway.url, 'carol');
    const bob = await agent(relay.url);
    const got = next(bob);
    await carol.send(bob.address, 'once', { anonymous: true, id: 'fixed-id' });
    const first = await got;
    // The same id again is a retry: every hop recognises it and it is not delivered twice.
    await carol.send(bob.address, 'once', { anonymous: true, id: 'fixed-id' });
    const again = next(bob, 500).then(
      (m) => m,
      () => undefined,
    );
    assert.equal(await again, undefined, 'not delivered twice');
    // The relay did hand it over twice (its key was released after the first): the recipient
    // dropped the second copy because it came with the same handle and the same sealed id.
    assert.equal(relay.router.stats().msgsDelivered, 2);
    assert.match(first.from, HANDLE_AT_RELAY);
  });

  it('refuses anonymous messages where switched off, beyond the rate, and replies to handles it does not know', async () => {
    const { relay, gateway } = await world({}, { allowAnonymous: false });
    const carol = await agent(gateway.url, 'carol');
    const bob = await agent(relay.url);
    await assert.rejects(carol.send(bob.address, 'x', { anonymous: true }), (e: Error & { code?: string }) => e.code === 'ERR_FORBIDDEN');
    await assert.rejects(carol.pseudonym(), (e: Error & { code?: string }) => e.code === 'ERR_FORBIDDEN');
    await assert.rejects(bob.send('~aaaaaaaaaaaaaaaaaaaaaaaaaa@relay', 'to nobody'), (e: Error & { code?: string }) => e.code === 'ERR_UNKNOWN_RECIPIENT');

    const limited = await world({}, { anonymousRate: 5, maxAnonymousBodyBytes: 100 });
    const dave = await agent(limited.gateway.url, 'dave');
    const eve = await agent(limited.relay.url);
    await assert.rejects(dave.send(eve.address, 'x'.repeat(101), { anonymous: true }), (e: Error & { code?: string }) => e.code === 'ERR_FRAME_TOO_LARGE');
    const results = await Promise.allSettled(Array.from({ length: 30 }, (_, i) => dave.send(eve.address, `n${i}`, { anonymous: true })));
    const limitedCodes = results.filter((r) => r.status === 'rejected').map((r) => (r.reason as { code?: string }).code);
    assert.ok(limitedCodes.length >= 15 && limitedCodes.every((c) => c === 'ERR_RATE_LIMITED'), `a burst of 30 at 5/s: ${limitedCodes.length} refused (${[...new Set(limitedCodes)].join(',')})`);
    // Identified messages are not limited.
    await dave.send(eve.address, 'not anonymous');
  });
});

describe('anonymous receiving: pseudonyms', () => {
  it('wraps an agent\'s pseudonym at the relay, so others can write first without learning its name or organisation', async () => {
    const { relay, gateway } = await world();
    const alice = await agent(gateway.url, 'alice');
    const p = await alice.pseudonym({ ttlMs: 3600_000 });
    assert.match(p.address, HANDLE_AT_RELAY);
    assert.ok(p.expiresAt > Date.now() + 3500_000 && p.expiresAt <= Date.now() + 3600_000 + 1000);
    const bob = await agent(relay.url);
    const got = next(alice);
    await bob.send(p.address, 'hello, whoever you are', { receipt: 'delivered' });
    const m = await got;
    assert.equal(m.text(), 'hello, whoever you are');
    assert.match(m.to, /^~[a-z2-7]{26}@acme$/, 'through her pseudonym at her own router');
    // Alice answers as herself, or anonymously.
    const back = next(bob);
    await alice.send(m.from, 'answered anonymously', { anonymous: true });
    assert.match((await back).from, HANDLE_AT_RELAY);
  });

  it('keeps handles and pseudonyms across a restart of the relay and the gateway (they are in their stores)', async () => {
    const dirs = [mkdtempSync(join(tmpdir(), 'postern-anon-r-')), mkdtempSync(join(tmpdir(), 'postern-anon-g-'))];
    onCleanup(() => Promise.resolve(dirs.forEach((d) => rmSync(d, { recursive: true, force: true }))));
    const token = await issueToken('anon-secret', { domain: 'acme' });
    let relay = await router({ domain: 'relay', secret: 'anon-secret', ...TEST_GUESTS, dataDir: dirs[0]!, listen: ['127.0.0.1:0'] });
    const port = relay.addresses[0]!.port;
    let gateway = await router({ domain: 'acme', dataDir: dirs[1]!, uplinks: [{ url: relay.url, token }] });
    await waitFor(() => relay.router.routes().has('acme'), 'linked');
    let alice = await agent(gateway.url, 'alice');
    const p = await alice.pseudonym();
    await alice.close();
    await gateway.close();
    await relay.close();
    relay = await router({ domain: 'relay', secret: 'anon-secret', ...TEST_GUESTS, dataDir: dirs[0]!, listen: [`127.0.0.1:${port}`] });
    gateway = await router({ domain: 'acme', dataDir: dirs[1]!, uplinks: [{ url: relay.url, token }] });
    await waitFor(() => relay.router.routes().has('acme'), 'linked again');
    alice = await agent(gateway.url, 'alice');
    const bob = await agent(relay.url);
    const got = next(alice);
    await bob.send(p.address, 'after both restarted');
    assert.equal((await got).text(), 'after both restarted');
  });
});
