// Presence and properties (issue 10): watching an address gives its state, then every change;
// across hubs, the relay and another organisation; unreachable when its hub goes; the watched
// agent's policy; limits; and the fan-out (one frame per router link). Real routers on loopback
// sockets, real SDK agents.
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { connect, type Client, type PresenceEvent } from '@postern/client';
import { createKeyPair, issueToken, type RouterServer } from '@postern/router';
import { waitFor, TEST_GUESTS } from '@postern/testing';
import { agent, onCleanup, router } from './live.js';

const SECRET = 'acme-gateway-secret';

/** Reads a watch in the background; `until` waits for an event that passes `ok`. */
function watching(c: Client, address: string): { events: PresenceEvent[]; until(ok: (e: PresenceEvent) => boolean, what: string, timeoutMs?: number): Promise<PresenceEvent>; error: Promise<Error | undefined>; stop(): void } {
  const events: PresenceEvent[] = [];
  const ac = new AbortController();
  const waiters: Array<() => void> = [];
  const error = (async () => {
    try {
      for await (const e of c.watch(address, { signal: ac.signal })) {
        events.push(e);
        for (const w of waiters.splice(0)) w();
      }
      return undefined;
    } catch (err) {
      return err as Error;
    } finally {
      for (const w of waiters.splice(0)) w();
    }
  })();
  let seen = 0;
  return {
    events,
    error,
    stop: () => ac.abort(),
    async until(ok, what, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        while (seen < events.length) {
          const e = events[seen++]!;
          if (ok(e)) return e;
        }
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no presence event: ${what}; saw ${JSON.stringify(events.map((e) => [e.state, e.properties]))}`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
    },
  };
}

async function acme(o: { relay?: RouterServer; hubs?: number; hubDirs?: string[] } = {}): Promise<{ relay: RouterServer; gw: RouterServer; hubs: RouterServer[]; hubToken: string }> {
  const relay = o.relay ?? (await router({ domain: 'relay', secret: 'relay-secret', ...TEST_GUESTS }));
  const gw = await router({ domain: 'acme', secret: SECRET, ...TEST_GUESTS, uplinks: [{ url: relay.url, token: await issueToken('relay-secret', { domain: 'acme' }) }] });
  const hubToken = await issueToken(SECRET, { domain: 'acme', hub: true });
  const hubs: RouterServer[] = [];
  for (let i = 0; i < (o.hubs ?? 2); i++) {
    const dir = o.hubDirs?.[i];
    hubs.push(await router({ domain: 'acme', hub: true, uplinks: [{ url: gw.url, token: hubToken }], ...(dir === undefined ? {} : { dataDir: dir }) }));
  }
  await waitFor(() => gw.router.stats().hubs === hubs.length && relay.router.routes().has('acme'), 'acme up');
  return { relay, gw, hubs, hubToken };
}

describe('presence: watching an address', () => {
  it('gives the state now, then every change: online, properties, offline with last seen; across hubs', async () => {
    const { gw, hubs } = await acme();
    const a1 = await agent(hubs[1]!.url, 'alice');
    await a1.setProperties({ status: 'here' });
    await a1.close();
    await waitFor(() => gw.router.stats().directory >= 1 && hubs[1]!.router.stats().agents === 0, 'alice known, gone');
    const bob = await agent(hubs[0]!.url, 'bob');
    const w = watching(bob, 'alice@acme');
    const first = await w.until(() => true, 'the current state');
    assert.equal(first.state, 'offline');
    assert.deepEqual(first.properties, { status: 'here' }, 'properties outlive the session');
    assert.ok(Date.now() - first.since.getTime() < 60_000, 'last seen lately');
    const a2 = await agent(hubs[1]!.url, 'alice');
    await w.until((e) => e.state === 'online', 'alice online');
    await a2.setProperties({ status: 'busy', key: 'ed25519:abc' });
    const busy = await w.until((e) => e.properties.status === 'busy', 'the new status');
    assert.deepEqual(busy.properties, { status: 'busy', key: 'ed25519:abc' });
    await a2.setProperties({ key: null });
    assert.deepEqual((await w.until((e) => !('key' in e.properties), 'the key removed')).properties, { status: 'busy' });
    await a2.close();
    const off = await w.until((e) => e.state === 'offline', 'alice offline');
    assert.deepEqual(off.properties, { status: 'busy' });
    // Same router, and the gateway's own agents, too.
    const carol = await agent(hubs[1]!.url, 'carol');
    const w2 = watching(carol, 'bob@acme');
    assert.equal((await w2.until(() => true, 'bob')).state, 'online');
    w.stop();
    w2.stop();
  });

  it('across the relay and another organisation: refused by default, let by allowWatchers, and unreachable when the hub goes', async () => {
    const relay = await router({ domain: 'relay', secret: 'relay-secret', ...TEST_GUESTS });
    const dir = await mkdtemp(join(tmpdir(), 'postern-hub-'));
    const { gw, hubs, hubToken } = await acme({ relay, hubs: 1, hubDirs: [dir] });
    const globex = await router({ domain: 'globex', uplinks: [{ url: relay.url, token: await issueToken('relay-secret', { domain: 'globex' }) }] });
    await waitFor(() => relay.router.routes().has('globex'), 'globex up');
    const alice = await agent(hubs[0]!.url, 'alice');
    const zed = await agent(globex.url, 'zed');
    const refused = watching(zed, 'alice@acme');
    const err = await refused.error;
    assert.equal((err as Error & { code?: string }).code, 'ERR_FORBIDDEN', 'another domain may not watch by default');
    await alice.allowWatchers(['*@globex']);
    const w = watching(zed, 'alice@acme');
    assert.equal((await w.until(() => true, 'alice, let')).state, 'online');
    await alice.setProperties({ status: 'travelling' });
    await w.until((e) => e.properties.status === 'travelling', 'her status across the relay');
    // Her hub goes: unreachable.
    const port = Number(new URL(hubs[0]!.url).port);
    await hubs[0]!.close();
    await w.until((e) => e.state === 'unreachable', 'unreachable while her hub is down');
    // It comes back (same store): watchers are told again, without asking.
    const hub = await router({ domain: 'acme', hub: true, uplinks: [{ url: gw.url, token: hubToken }], dataDir: dir, listen: [`127.0.0.1:${port}`] });
    await waitFor(() => gw.router.stats().hubs === 1, 'the hub back');
    const back = await w.until((e) => e.state !== 'unreachable', 'state after the hub came back', 10_000);
    assert.ok(back.state === 'online' || back.state === 'offline');
    assert.equal(back.properties.status, 'travelling', 'kept in the hub\'s store');
    // Offline first when the hub came back before her client did; online then (or at once).
    if (back.state !== 'online') await w.until((e) => e.state === 'online', 'alice reconnected to her restarted hub', 10_000);
    // Allowing nobody again: the watch ends.
    const hubAlice = hub.router.stats().agents;
    assert.equal(hubAlice, 1);
    await alice.allowWatchers([]);
    const ended = await w.error;
    assert.equal((ended as Error & { code?: string }).code, 'ERR_FORBIDDEN');
  });

  it('across peered relays of two operators: a watcher behind globex on r2 sees alice behind acme on r1', async () => {
    const k1 = createKeyPair('node');
    const k2 = createKeyPair('node');
    const r1 = await router({ domain: 'r1', secret: 's1', ...TEST_GUESTS, key: k1, trust: [`${k2.publicKey}=r2,globex`] });
    const r2 = await router({ domain: 'r2', secret: 's2', ...TEST_GUESTS, key: k2, trust: [`${k1.publicKey}=r1,acme`], peers: [{ url: r1.url }] });
    const ga = await router({ domain: 'acme', uplinks: [{ url: r1.url, token: await issueToken('s1', { domain: 'acme' }) }] });
    const gb = await router({ domain: 'globex', uplinks: [{ url: r2.url, token: await issueToken('s2', { domain: 'globex' }) }] });
    await waitFor(() => r2.router.routes().has('acme') && r1.router.routes().has('globex'), 'the peers to learn both sides');
    const alice = await agent(ga.url, 'alice');
    await alice.allowWatchers(['zed@globex']);
    const zed = await agent(gb.url, 'zed');
    const w = watching(zed, 'alice@acme');
    assert.equal((await w.until(() => true, 'alice across the peer link')).state, 'online');
    await alice.setProperties({ status: 'peered' });
    await w.until((e) => e.properties.status === 'peered', 'her status across two operators');
    // Another globex agent is not on her list.
    const yan = await agent(gb.url, 'yan');
    assert.equal(((await watching(yan, 'alice@acme').error) as Error & { code?: string }).code, 'ERR_FORBIDDEN');
    await alice.close();
    await w.until((e) => e.state === 'offline', 'alice offline');
    // The peer link goes: the way to her home is lost.
    await r1.close();
    await w.until((e) => e.state === 'unreachable', 'unreachable once r1 is gone');
    w.stop();
  });

  it('a watcher on the gateway follows alice when she moves to another hub (the watch is never bounced back to it)', async () => {
    const { gw, hubs } = await acme();
    const a1 = await agent(hubs[0]!.url, 'alice');
    const dave = await agent(gw.url); // the gateway's own agent (by id: its names need tokens)
    const w = watching(dave, 'alice@acme');
    assert.equal((await w.until(() => true, 'alice')).state, 'online');
    await a1.close();
    await w.until((e) => e.state === 'offline', 'alice offline');
    const a2 = await agent(hubs[1]!.url, 'alice');
    await w.until((e) => e.state === 'online', 'alice online on hub 2');
    await a2.setProperties({ status: 'moved' });
    await w.until((e) => e.properties.status === 'moved', 'her status, from hub 2');
    assert.equal(gw.router.stats().watched, 1, 'the gateway still watches her for dave');
    w.stop();
  });

  it('a watch survives the watcher\'s reconnect and a restart of the watcher\'s router', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'postern-gw-'));
    const relay = await router({ domain: 'relay', secret: 'relay-secret', ...TEST_GUESTS });
    const up = [{ url: relay.url, token: await issueToken('relay-secret', { domain: 'acme' }) }];
    let gw = await router({ domain: 'acme', uplinks: up, dataDir: dir });
    const port = Number(new URL(gw.url).port);
    const outside = await router({ domain: 'outside', uplinks: [{ url: relay.url, token: await issueToken('relay-secret', { domain: 'outside' }) }] });
    const alice = await agent(outside.url, 'alice');
    await alice.allowWatchers(['*@acme']);
    const bob = await connect({ url: gw.url, name: 'bob', backoff: { initialMs: 50, maxMs: 300 } });
    onCleanup(() => bob.close());
    await waitFor(() => relay.router.routes().has('acme') && relay.router.routes().has('outside'), 'both up');
    const w = watching(bob, 'alice@outside');
    assert.equal((await w.until(() => true, 'alice')).state, 'online');
    await gw.close();
    gw = await router({ domain: 'acme', uplinks: up, dataDir: dir, listen: [`127.0.0.1:${port}`] });
    await waitFor(() => bob.connected && relay.router.routes().has('acme'), 'bob reconnected');
    await alice.setProperties({ status: 'after the restart' });
    await w.until((e) => e.properties.status === 'after the restart', 'the watch, sent again by the SDK', 10_000);
    w.stop();
    // Every event is a change: the state the watch was made again for is not told twice.
    const seen = w.events.map((e) => JSON.stringify([e.state, e.since.getTime(), e.properties]));
    assert.deepEqual(
      seen.filter((e, i) => i > 0 && e === seen[i - 1]),
      [],
      `events: ${seen.join(' ')}`,
    );
  });

  it('refuses what it cannot or may not: an unknown name, a handle, limits on watches and properties', async () => {
    const gw = await router({ domain: 'acme', maxWatchesPerAgent: 2, maxProperties: 2 });
    const a = await agent(gw.url, 'alice');
    const b = await agent(gw.url, 'bob');
    const unknown = await watching(a, 'nobody@acme').error;
    assert.equal((unknown as Error & { code?: string }).code, 'ERR_UNKNOWN_RECIPIENT');
    const handle = await watching(a, '~abcdefghijklmnopqrstuvwxyz@acme').error;
    assert.equal((handle as Error & { code?: string }).code, 'ERR_FORBIDDEN');
    const w1 = watching(a, 'bob@acme');
    const w2 = watching(a, 'alice@acme');
    await w1.until(() => true, 'bob');
    await w2.until(() => true, 'alice');
    const third = await watching(a, `${b.id}@acme`).error;
    assert.equal((third as Error & { code?: string }).code, 'ERR_LIMIT_EXCEEDED');
    await assert.rejects(b.setProperties({ a: '1', b: '2', c: '3' }), (e: Error & { code?: string }) => e.code === 'ERR_LIMIT_EXCEEDED');
    await assert.rejects(b.setProperties({ big: 'x'.repeat(2000) }), (e: Error & { code?: string }) => e.code === 'ERR_LIMIT_EXCEEDED');
    await b.setProperties({ a: '1', b: '2' });
    assert.deepEqual((await w1.until((e) => e.properties.a === '1', 'bob\'s properties')).properties, { a: '1', b: '2' });
    w1.stop();
    w2.stop();
  });

  it('fans out at the last router: one change reaches N watchers behind M gateways with one frame per router link', async () => {
    const relay = await router({ domain: 'relay', secret: 'relay-secret', ...TEST_GUESTS });
    const { hubs } = await acme({ relay, hubs: 1 });
    const alice = await agent(hubs[0]!.url, 'alice');
    await alice.allowWatchers(['*']);
    const M = 4;
    const N = 40;
    const gws: RouterServer[] = [];
    for (let i = 0; i < M; i++) gws.push(await router({ domain: `org${i}`, uplinks: [{ url: relay.url, token: await issueToken('relay-secret', { domain: `org${i}` }) }] }));
    await waitFor(() => gws.every((g) => relay.router.routes().has(g.router.domain)), 'the gateways up');
    const ws: Array<ReturnType<typeof watching>> = [];
    for (let i = 0; i < N; i++) {
      const c = await agent(gws[i % M]!.url);
      const w = watching(c, 'alice@acme');
      await w.until(() => true, 'the first state');
      ws.push(w);
    }
    const before = { relay: relay.router.stats(), gws: gws.map((g) => g.router.stats()), hub: hubs[0]!.router.stats() };
    await alice.setProperties({ status: 'one change' });
    await Promise.all(ws.map((w) => w.until((e) => e.properties.status === 'one change', 'the change')));
    const after = { relay: relay.router.stats(), gws: gws.map((g) => g.router.stats()), hub: hubs[0]!.router.stats() };
    assert.equal(after.hub.presenceToLinks - before.hub.presenceToLinks, 1, 'the hub: one frame, to its bridgehead');
    assert.equal(after.relay.presenceToLinks - before.relay.presenceToLinks, M, 'the relay: one frame per gateway, not per watcher');
    assert.equal(after.relay.presenceToAgents - before.relay.presenceToAgents, 0);
    const toAgents = after.gws.reduce((n, s, i) => n + s.presenceToAgents - before.gws[i]!.presenceToAgents, 0);
    assert.equal(toAgents, N, 'the gateways fan out to their own watchers');
    for (const w of ws) w.stop();
  });
});
