// One domain, two routers (issue 11 item 4): a second router announcing a domain that another
// router already serves alone is fenced (DOMAIN_TAKEN), logged at both ends, and takes the domain
// when the first goes; nothing accepted waits stranded at the wrong router meanwhile. Bridgeheads
// (hubs) may share a domain: hubs.test.ts. Real routers on loopback sockets, real SDK agents.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Logger } from '@postern/core';
import { createKeyPair, issueToken, type RouterServer } from '@postern/router';
import { waitFor, TEST_GUESTS } from '@postern/testing';
import { agent, next, router } from './live.js';

/** A logger that keeps its lines (level, message and fields) for the test to look at. */
function capture(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (_e: string, m: string, f?: object) => void lines.push(`${level} ${m} ${JSON.stringify(f ?? {})}`);
  return { logger: { debug: () => {}, info: at('info'), warn: at('warn'), error: at('error') }, lines };
}

function code(c: string) {
  return (e: Error & { code?: string }) => e.code === c;
}

describe('fence: two routers for one domain at a relay', () => {
  it('the second gateway of acme is fenced with an error in both logs; bob (on the first) gets everything; the second takes acme once the first goes', async () => {
    const relayLog = capture();
    const relay = await router({ domain: 'relay', secret: 'relay-secret', ...TEST_GUESTS, logger: relayLog.logger });
    const up = [{ url: relay.url, token: await issueToken('relay-secret', { domain: 'acme' }) }];
    const a = await router({ domain: 'acme', uplinks: up });
    await waitFor(() => relay.router.route('acme')?.node === a.node, 'gateway A to serve acme at the relay');
    const bLog = capture();
    const b: RouterServer = await router({ domain: 'acme', uplinks: up, logger: bLog.logger });
    assert.notEqual(a.node, b.node);

    // B is told, and says so once (not at every retry); the relay says so too.
    await waitFor(() => bLog.lines.some((l) => l.startsWith('error this router is fenced') && l.includes('ERR_DOMAIN_TAKEN')), 'B to log its fence');
    await waitFor(() => relayLog.lines.some((l) => l.startsWith('error two routers claim domain "acme"') && l.includes(b.node) && l.includes(a.node)), 'the relay to log the fence');
    await new Promise((r) => setTimeout(r, 1200)); // B retries meanwhile (every 500 ms here)
    assert.equal(bLog.lines.filter((l) => l.startsWith('error')).length, 1, `one error line at B: ${bLog.lines.join('\n')}`);
    assert.equal(relayLog.lines.filter((l) => l.startsWith('error')).length, 1, `one error line at the relay: ${relayLog.lines.join('\n')}`);
    assert.deepEqual(relay.router.routes().get('acme'), [a.node], 'acme goes to A only');
    assert.ok(relay.router.stats().routesFenced >= 2, 'every retry of B was fenced');

    // The report: 20 messages for an agent behind acme. bob is on A: all reach him.
    const bob = await agent(a.url, 'bob');
    const carol = await agent(b.url, 'carol');
    const outside = await agent(relay.url);
    const got: string[] = [];
    const reading = (async () => {
      for await (const m of bob) if (got.push(new TextDecoder().decode(m.body)) === 20) return;
    })();
    for (let i = 0; i < 20; i++) await outside.send('bob@acme', `m${i}`, { receipt: 'delivered' });
    await reading;
    assert.deepEqual(got, Array.from({ length: 20 }, (_, i) => `m${i}`));
    // carol is on the fenced B: A, which serves acme, never knew her and says so; nothing waits.
    await assert.rejects(outside.send('carol@acme', 'x', { receipt: 'delivered' }), code('ERR_UNKNOWN_RECIPIENT'));
    // What carol sends out waits at B (it has no way out while fenced), and goes once B takes acme.
    const reply = next(outside, 15_000);
    await carol.send(outside.address, 'from the standby');
    await waitFor(() => relay.router.stats().stored === 0 && a.router.stats().stored === 0, 'nothing held at the relay or at A');

    // A goes: B takes acme within seconds, and carol is reachable.
    const t0 = Date.now();
    await a.close();
    await waitFor(() => relay.router.route('acme')?.node === b.node, 'B to take acme', 5000);
    assert.ok(Date.now() - t0 < 5000);
    assert.equal(new TextDecoder().decode((await reply).body), 'from the standby');
    const m = next(carol);
    await outside.send('carol@acme', 'now you', { receipt: 'delivered' });
    assert.equal(new TextDecoder().decode((await m).body), 'now you');
    await waitFor(() => bLog.lines.some((l) => l.startsWith('info uplink connected: the fence is lifted')), 'B to log that its fence is lifted');
  });

  it('the same node id (a gateway restarted with its key) is the same router, not fenced by its own old route', async () => {
    const relayLog = capture();
    const relay = await router({ domain: 'relay', secret: 'relay-secret', ...TEST_GUESTS, logger: relayLog.logger });
    const up = [{ url: relay.url, token: await issueToken('relay-secret', { domain: 'acme' }) }];
    const key = createKeyPair('node');
    const first = await router({ domain: 'acme', uplinks: up, key });
    await waitFor(() => relay.router.route('acme')?.node === first.node, 'the gateway to serve acme');
    // A second process with the same key while the first is still linked: it replaces the link.
    const again = await router({ domain: 'acme', uplinks: up, key });
    const bob = await agent(again.url, 'bob');
    await first.close();
    await waitFor(() => relay.router.route('acme')?.node === again.node, 'the restarted gateway to serve acme');
    const outside = await agent(relay.url);
    const m = next(bob);
    await outside.send('bob@acme', 'hi', { receipt: 'delivered' });
    assert.equal(new TextDecoder().decode((await m).body), 'hi');
    assert.equal(relayLog.lines.filter((l) => l.startsWith('error')).length, 0, relayLog.lines.join('\n'));
    assert.equal(relay.router.stats().routesFenced, 0);
  });

  it('across peered relays: a gateway of acme at the second relay is fenced there when acme is served at the first', async () => {
    const k1 = createKeyPair('node');
    const k2 = createKeyPair('node');
    const r1 = await router({ domain: 'r1', secret: 's1', ...TEST_GUESTS, key: k1, trust: [`${k2.publicKey}=r2,acme`] });
    const r2Log = capture();
    const r2 = await router({ domain: 'r2', secret: 's2', ...TEST_GUESTS, key: k2, trust: [`${k1.publicKey}=r1,acme`], peers: [{ url: r1.url }], logger: r2Log.logger });
    const a = await router({ domain: 'acme', uplinks: [{ url: r1.url, token: await issueToken('s1', { domain: 'acme' }) }] });
    await waitFor(() => r2.router.route('acme')?.path[0] === a.node, 'r2 to learn acme (A) through r1');
    const bLog = capture();
    const b = await router({ domain: 'acme', uplinks: [{ url: r2.url, token: await issueToken('s2', { domain: 'acme' }) }], logger: bLog.logger });
    await waitFor(() => bLog.lines.some((l) => l.startsWith('error this router is fenced')), 'B to log its fence');
    assert.ok(r2Log.lines.some((l) => l.startsWith('error two routers claim domain "acme"')));
    const bob = await agent(a.url, 'bob');
    const outside = await agent(r2.url);
    const m = next(bob);
    await outside.send('bob@acme', 'via r1', { receipt: 'delivered' });
    assert.equal(new TextDecoder().decode((await m).body), 'via r1');
    // A goes: r1 withdraws, and B takes acme at r2 (and r1 learns it through r2).
    await a.close();
    await waitFor(() => r2.router.route('acme')?.node === b.node && r1.router.route('acme')?.path[0] === b.node, 'B to take acme at both relays', 5000);
  });
});
