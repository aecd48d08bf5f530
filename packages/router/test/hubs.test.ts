// Hubs behind bridgeheads (issue 10): name@domain resolved by the domain's gateway to the hub
// the name is homed at, one live session per name across hubs, moves between hubs that lose and
// double nothing, two bridgeheads. Real routers on loopback sockets, real SDK agents.
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { connect, type Client, type Message } from '@postern/client';
import { issueToken, type RouterServer } from '@postern/router';
import { waitFor, TEST_GUESTS } from '@postern/testing';
import { agent, next, onCleanup, router } from './live.js';

const SECRET = 'acme-gateway-secret';

/** A relay, acme's gateway (the bridgehead) and `hubs` hubs of acme dialing it. */
async function domain(hubs = 2, o: { relay?: RouterServer } = {}): Promise<{ relay: RouterServer; gw: RouterServer; hubs: RouterServer[] }> {
  const relay = o.relay ?? (await router({ domain: 'relay', secret: 'relay-secret', ...TEST_GUESTS }));
  const gw = await router({ domain: 'acme', secret: SECRET, ...TEST_GUESTS, uplinks: [{ url: relay.url, token: await issueToken('relay-secret', { domain: 'acme' }) }] });
  const token = await issueToken(SECRET, { domain: 'acme', hub: true });
  const hs: RouterServer[] = [];
  for (let i = 0; i < hubs; i++) hs.push(await router({ domain: 'acme', hub: true, uplinks: [{ url: gw.url, token }] }));
  await waitFor(() => gw.router.stats().hubs === hubs && relay.router.routes().has('acme'), 'the hubs to link to the gateway, and the gateway to the relay');
  return { relay, gw, hubs: hs };
}

async function deliver(from: Client, to: Client, address: string, text: string): Promise<Message> {
  const got = next(to);
  await from.send(address, text, { receipt: 'delivered' });
  return got;
}

function code(c: string) {
  return (e: Error & { code?: string }) => e.code === c;
}

describe('hubs: name@domain resolved by the bridgehead', () => {
  it('an outside agent reaches alice (homed on the second hub) by name only, and her replies come back', async () => {
    const { relay, gw, hubs } = await domain(2);
    const alice = await agent(hubs[1]!.url, 'alice');
    const bob = await agent(hubs[0]!.url, 'bob');
    await waitFor(() => gw.router.stats().directory >= 4, 'the gateway to learn alice and bob');
    const outside = await agent(relay.url);
    const m = await deliver(outside, alice, 'alice@acme', 'hello alice');
    assert.equal(m.from, outside.address);
    assert.equal(new TextDecoder().decode(m.body), 'hello alice');
    const r = await deliver(alice, outside, m.from, 'hello from inside');
    assert.equal(r.from, 'alice@acme', 'the reply names the domain, never the hub');
    // By id, too.
    assert.equal((await deliver(outside, alice, alice.address.replace('alice', alice.id), 'by id')).to, `${alice.id}@acme`);
    // Between hubs of one domain: through the gateway, never the relay.
    const forwarded = relay.router.stats().msgsForwarded + relay.router.stats().msgsDelivered;
    assert.equal((await deliver(bob, alice, 'alice@acme', 'hub to hub')).from, 'bob@acme');
    assert.equal((await deliver(alice, bob, 'bob@acme', 'and back')).from, 'alice@acme');
    assert.equal(relay.router.stats().msgsForwarded + relay.router.stats().msgsDelivered, forwarded, 'nothing between hubs went through the relay');
    assert.equal(hubs[1]!.router.stats().agents, 1);
  });

  it('an agent homed on a hub sends anonymously: the hub hides it, the gateway and the relay wrap it, and the reply finds her', async () => {
    const { relay, hubs } = await domain(1);
    const alice = await agent(hubs[0]!.url, 'alice');
    const outside = await agent(relay.url);
    const got = next(outside);
    await alice.send(outside.address, 'who am I?', { anonymous: true, receipt: 'delivered' });
    const m = await got;
    assert.match(m.from, /^~[a-z2-7]{26}@relay$/, 'the sender is a handle of the relay: neither alice, nor acme, nor the hub');
    const r = await deliver(outside, alice, m.from, 'whoever you are');
    assert.equal(new TextDecoder().decode(r.body), 'whoever you are');
    assert.match(r.to, /^~[a-z2-7]{26}@acme$/, 'to the handle the hub made for her');
  });

  it('refuses a name nobody in the domain ever held at once, from outside and from a hub', async () => {
    const { relay, hubs } = await domain(1);
    const bob = await agent(hubs[0]!.url, 'bob');
    const outside = await agent(relay.url);
    await assert.rejects(outside.send('nobody@acme', 'x', { receipt: 'delivered' }), code('ERR_UNKNOWN_RECIPIENT'));
    await assert.rejects(bob.send('nobody@acme', 'x', { receipt: 'delivered' }), code('ERR_UNKNOWN_RECIPIENT'));
    // Known (once connected) but offline: it waits.
    const carol = await agent(hubs[0]!.url, 'carol');
    await carol.close();
    const accepted = await outside.send('carol@acme', 'wait for me');
    assert.ok(accepted.id);
  });

  it('one live session per name across hubs: another session gets NAME_TAKEN, and the name is free again once it goes', async () => {
    const { gw, hubs } = await domain(2);
    const a1 = await agent(hubs[0]!.url, 'alice');
    await assert.rejects(connect({ url: hubs[1]!.url, name: 'alice', reconnect: false }), code('ERR_NAME_TAKEN'));
    // Not at the bridgehead itself either.
    await assert.rejects(connect({ url: gw.url, name: 'alice', token: await issueToken(SECRET, { domain: 'acme', name: 'alice' }), reconnect: false }), code('ERR_NAME_TAKEN'));
    // REGISTER of a taken name is refused the same way.
    const x = await agent(hubs[1]!.url);
    await assert.rejects(x.register('alice'), code('ERR_NAME_TAKEN'));
    await a1.close();
    await waitFor(() => gw.router.stats().hubs === 2 && hubs[0]!.router.stats().agents === 0, 'alice to go');
    await waitFor(async () => {
      try {
        const a2 = await connect({ url: hubs[1]!.url, name: 'alice', reconnect: false });
        onCleanup(() => a2.close());
        return true;
      } catch {
        return false;
      }
    }, 'alice to be free at the other hub');
  });

  it('a move between hubs loses, doubles and reorders nothing: what waited at the old hub follows her', async () => {
    const { relay, gw, hubs } = await domain(2);
    const a1 = await agent(hubs[0]!.url, 'alice');
    await waitFor(() => gw.router.stats().directory >= 2, 'alice to be known');
    await a1.close();
    await waitFor(() => hubs[0]!.router.stats().agents === 0, 'alice to be offline');
    const outside = await agent(relay.url);
    const bob = await agent(hubs[0]!.url, 'bob'); // a sender on her old hub
    const carol = await agent(hubs[1]!.url, 'carol'); // a sender on her new hub
    // While she is away: these wait at hub 1 (her home).
    for (let i = 0; i < 50; i++) {
      await outside.send('alice@acme', `o${i}`);
      await bob.send('alice@acme', `b${i}`);
      await carol.send('alice@acme', `c${i}`);
    }
    await waitFor(() => hubs[0]!.router.stats().stored >= 150, 'the messages to wait at her old hub');
    // She comes back on hub 2; senders keep going meanwhile.
    const a2 = await connect({ url: hubs[1]!.url, name: 'alice', backoff: { initialMs: 50, maxMs: 500 } });
    onCleanup(() => a2.close());
    const sending = (async () => {
      for (let i = 50; i < 100; i++) {
        await outside.send('alice@acme', `o${i}`);
        await bob.send('alice@acme', `b${i}`);
        await carol.send('alice@acme', `c${i}`);
      }
    })();
    const got: Message[] = [];
    for (let i = 0; i < 300; i++) got.push(await next(a2, 10_000));
    await sending;
    const texts = got.map((m) => new TextDecoder().decode(m.body));
    const o = texts.filter((t) => t.startsWith('o'));
    const b = texts.filter((t) => t.startsWith('b'));
    assert.deepEqual(o, Array.from({ length: 100 }, (_, i) => `o${i}`), 'the outside sender: all, once, in order');
    assert.deepEqual(b, Array.from({ length: 100 }, (_, i) => `b${i}`), 'the sender on her old hub: all, once, in order');
    const c = texts.filter((t) => t.startsWith('c'));
    assert.deepEqual(c, Array.from({ length: 100 }, (_, i) => `c${i}`), 'the sender on her new hub: all, once, in order');
    await waitFor(() => hubs[0]!.router.stats().stored === 0 && gw.router.stats().stored === 0, 'nothing left behind');
    assert.ok(gw.router.stats().moves >= 1);
  });

  it('a bridgehead restarted: the hubs sync their names again, and messages resume', async () => {
    const relay = await router({ domain: 'relay', secret: 'relay-secret', ...TEST_GUESTS });
    const dir = await mkdtemp(join(tmpdir(), 'postern-bridgehead-'));
    const up = [{ url: relay.url, token: await issueToken('relay-secret', { domain: 'acme' }) }];
    let gw = await router({ domain: 'acme', secret: SECRET, ...TEST_GUESTS, dataDir: dir, uplinks: up });
    const port = Number(new URL(gw.url).port);
    const hub = await router({ domain: 'acme', hub: true, uplinks: [{ url: gw.url, token: await issueToken(SECRET, { domain: 'acme', hub: true }) }] });
    const alice = await agent(hub.url, 'alice');
    const outside = await agent(relay.url);
    await waitFor(() => relay.router.routes().has('acme') && gw.router.stats().directory >= 2, 'alice to be known');
    assert.equal((await deliver(outside, alice, 'alice@acme', 'before')).from, outside.address);
    await gw.close();
    gw = await router({ domain: 'acme', secret: SECRET, ...TEST_GUESTS, dataDir: dir, uplinks: up, listen: [`127.0.0.1:${port}`] });
    await waitFor(() => gw.router.stats().hubs === 1 && relay.router.routes().has('acme'), 'the hub and the relay to link again');
    assert.equal((await deliver(outside, alice, 'alice@acme', 'after')).from, outside.address);
  });

  it('two bridgeheads: a hub dials both, the relay uses either, and messages arrive once while one is down and after it restarted', async () => {
    const relay = await router({ domain: 'relay', secret: 'relay-secret', ...TEST_GUESTS });
    const up = [{ url: relay.url, token: await issueToken('relay-secret', { domain: 'acme' }) }];
    const dirs = [await mkdtemp(join(tmpdir(), 'postern-bh1-')), await mkdtemp(join(tmpdir(), 'postern-bh2-'))];
    const gws = [await router({ domain: 'acme', secret: SECRET, ...TEST_GUESTS, uplinks: up, dataDir: dirs[0]! }), await router({ domain: 'acme', secret: SECRET, uplinks: up, dataDir: dirs[1]! })];
    const token = await issueToken(SECRET, { domain: 'acme', hub: true });
    const hub = await router({ domain: 'acme', hub: true, uplinks: gws.map((g) => ({ url: g.url, token })) });
    const alice = await agent(hub.url, 'alice');
    const outside = await agent(relay.url);
    const both = (): boolean => gws.every((g) => g.router.stats().hubs === 1 && g.router.stats().directory >= 2) && (relay.router.routes().get('acme')?.length ?? 0) === 2;
    await waitFor(both, 'both bridgeheads up and knowing alice');
    const seen: string[] = [];
    const reading = (async () => {
      for await (const m of alice) {
        seen.push(new TextDecoder().decode(m.body));
        if (seen.length === 90) return;
      }
    })();
    for (let i = 0; i < 30; i++) await outside.send('alice@acme', `m${i}`);
    await waitFor(() => seen.length === 30, 'the first 30');
    // The one the relay prefers goes; the other carries on.
    const k = relay.router.route('acme')!.node === gws[0]!.node ? 0 : 1;
    const port = Number(new URL(gws[k]!.url).port);
    await gws[k]!.close();
    for (let i = 30; i < 60; i++) await outside.send('alice@acme', `m${i}`);
    await waitFor(() => seen.length === 60, 'the next 30, through the other bridgehead');
    // Back again (same store, same port): both carry on, nothing twice.
    gws[k] = await router({ domain: 'acme', secret: SECRET, ...TEST_GUESTS, uplinks: up, dataDir: dirs[k]!, listen: [`127.0.0.1:${port}`] });
    await waitFor(both, 'both up again');
    for (let i = 60; i < 90; i++) await outside.send('alice@acme', `m${i}`);
    await reading;
    assert.deepEqual(seen, Array.from({ length: 90 }, (_, i) => `m${i}`));
  });
});
