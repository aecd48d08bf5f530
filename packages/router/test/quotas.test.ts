// Quotas for whoever is not trusted (issue 11, item 1): a router with a secret refuses agents
// without a token unless guests are allowed; connections are counted per source address (those
// without a token) and per credential; new connections per address a second; a sender's rates
// pause its reading; a sender's share of the store is refused to that sender only. Real routers,
// real sockets; attackers dial from other loopback addresses (127.0.0.2, ...) so that the
// honest agents on 127.0.0.1 show what the others see.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, describe, it } from 'node:test';
import WebSocket from 'ws';
import { connect, PosternError, type Client } from '@postern/client';
import type { Logger } from '@postern/core';
import { issueToken, startRouter, type RouterServer } from '@postern/router';
import { waitFor } from '@postern/testing';

const quiet: Logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };
const SECRET = 'quota-secret';

async function router(o: Partial<Parameters<typeof startRouter>[0]>): Promise<RouterServer> {
  const r = await startRouter({ listen: ['127.0.0.1:0'], secret: SECRET, logger: quiet, ...o, domain: 'relay' });
  after(() => r.close());
  return r;
}

async function agent(url: string, name?: string, o: { token?: boolean } = {}): Promise<Client> {
  const c = await connect({ url, ...(name === undefined ? {} : { name }), ...(o.token === false ? {} : { token: await issueToken(SECRET, { domain: 'relay', ...(name === undefined ? {} : { name }) }) }), reconnect: false });
  after(() => c.close());
  return c;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return err instanceof PosternError ? err.code : String(err);
  }
}

/** A raw WebSocket from `localAddress` that never says HELLO: the HTTP status of its upgrade (101 when it got one). */
function silentSocket(url: string, localAddress: string): Promise<{ status: number; ws: WebSocket | undefined }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { localAddress });
    ws.on('open', () => resolve({ status: 101, ws }));
    ws.on('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode ?? 0, ws: undefined });
      res.resume();
    });
    ws.on('error', () => resolve({ status: 0, ws: undefined }));
  });
}

/** Opens a long-poll session from `localAddress`: its HTTP status. */
function longPollOpen(port: number, localAddress: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, localAddress, method: 'POST', path: '/postern/http/sessions', agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.end();
  });
}

describe('quotas for whoever is not trusted', () => {
  it('a router with a secret refuses agents without a token unless guests are allowed; guests get an id and no name', async () => {
    const closed = await router({});
    assert.equal(await codeOf(agent(closed.url, undefined, { token: false })), 'ERR_AUTH_FAILED');
    const open = await router({ allowGuests: true });
    const guest = await agent(open.url, undefined, { token: false });
    assert.match(guest.address, /^_[^@]+@relay$/);
    assert.equal(await codeOf(agent(open.url, 'alice', { token: false })), 'ERR_NAME_NOT_ALLOWED');
  });

  it('one sender can fill only its own share of the store: it gets QUEUE_FULL, others still get their messages accepted', async () => {
    const body = new Uint8Array(10_000);
    const r = await router({ allowGuests: true, knownNames: ['bob', 'carol'], maxStoredBytes: 200_000, guestStoredBytes: 50_000, maxGuestStoredBytes: 100_000, maxStoredBytesPerSender: 80_000 });
    // A guest (no token) writes to bob, who is away, until refused.
    const guest = await agent(r.url, undefined, { token: false });
    let accepted = 0;
    let refused = '';
    for (let i = 0; i < 20 && refused === ''; i++) {
      const code = await codeOf(guest.send('bob@relay', body));
      if (code === 'ok') accepted++;
      else refused = code;
    }
    assert.equal(refused, 'ERR_QUEUE_FULL');
    assert.equal(accepted, 4, 'about 50 KB of a guest address are held (10 KB bodies)');
    // A token holder fills its own share (80 KB) and is refused in turn...
    const alice = await agent(r.url, 'alice');
    let aliceAccepted = 0;
    for (let i = 0; i < 20; i++) {
      if ((await codeOf(alice.send('bob@relay', body))) !== 'ok') break;
      aliceAccepted++;
    }
    assert.equal(aliceAccepted, 7);
    assert.equal(await codeOf(alice.send('carol@relay', body)), 'ERR_QUEUE_FULL', 'her share counts across recipients');
    // ...while another sender is still served, and the store (200 KB) is not full.
    const dave = await agent(r.url, 'dave');
    assert.equal(await codeOf(dave.send('carol@relay', body)), 'ok');
    assert.equal(r.router.stats().senderQuotaRefused >= 3, true);
    // Her share comes back as her messages leave: bob takes them.
    const bob = await agent(r.url, 'bob');
    let got = 0;
    void (async () => {
      for await (const _ of bob) got++;
    })().catch(() => {}); // ends when the router closes after the test
    await waitFor(() => got === accepted + aliceAccepted, 'bob to get every accepted message', 5000);
    assert.equal(await codeOf(alice.send('carol@relay', body)), 'ok');
  });

  it('connections without a token (or still in their handshake) are counted per address: one address cannot take the slots of others', async () => {
    const r = await router({ maxConnectionsPerAddress: 5, handshakeTimeoutMs: 30_000 });
    const held: WebSocket[] = [];
    after(() => held.forEach((w) => w.terminate()));
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) {
      const s = await silentSocket(r.url, '127.0.0.2');
      statuses.push(s.status);
      if (s.ws !== undefined) held.push(s.ws);
    }
    assert.deepEqual(statuses, [101, 101, 101, 101, 101, 429, 429]);
    assert.equal(await longPollOpen(Number(new URL(r.url).port), '127.0.0.2'), 429, 'long-poll opens count the same');
    // Agents elsewhere are not affected.
    const alice = await agent(r.url, 'alice');
    assert.equal(alice.connected, true);
    assert.equal(r.router.stats().connectionsRefused >= 3, true);
    // The slots come back when the sockets go.
    for (const w of held.splice(0)) w.terminate();
    await waitFor(async () => (await silentSocket(r.url, '127.0.0.2').then((s) => (s.ws?.terminate(), s.status))) === 101, 'a slot to come back', 5000);
  });

  it('new connections per address a second: a burst beyond twice the rate gets 429 (WebSocket and long-poll), others connect', async () => {
    const r = await router({ connectRatePerAddress: 5, allowGuests: true });
    const port = Number(new URL(r.url).port);
    const statuses: number[] = [];
    for (let i = 0; i < 14; i++) statuses.push(await longPollOpen(port, '127.0.0.3'));
    assert.deepEqual(
      statuses.map((s) => (s === 201 ? 'open' : s === 429 ? 'refused' : String(s))),
      [...Array<string>(10).fill('open'), ...Array<string>(4).fill('refused')],
      'a burst of 10 (twice the rate), then refused',
    );
    assert.equal((await silentSocket(r.url, '127.0.0.3')).status, 429, 'the same bucket for WebSocket upgrades');
    const alice = await agent(r.url, 'alice');
    assert.equal(alice.connected, true, 'another address is not affected');
  });

  it('connections per credential are bounded: one more gets TOO_MANY_CONNECTIONS', async () => {
    const r = await router({ maxConnectionsPerCredential: 2 });
    const token = await issueToken(SECRET, { domain: 'relay' });
    const a = await connect({ url: r.url, token, reconnect: false });
    const b = await connect({ url: r.url, token, reconnect: false });
    after(() => Promise.all([a.close(), b.close()]));
    assert.equal(await codeOf(connect({ url: r.url, token, reconnect: false })), 'ERR_TOO_MANY_CONNECTIONS');
    assert.equal(await codeOf(agent(r.url, 'alice')), 'ok', 'another credential connects');
    await a.close();
    await waitFor(async () => (await codeOf(connect({ url: r.url, token, reconnect: false }).then((c) => c.close()))) === 'ok', 'the slot to come back', 5000);
  });

  it("a sender's rate holds over all its connections and within one transport message: bursts wait, nothing is lost", async () => {
    const r = await router({ allowGuests: true, guestMsgRate: 100, guestByteRate: 0 });
    const bob = await agent(r.url, 'bob');
    let got = 0;
    void (async () => {
      for await (const _ of bob) got++;
    })().catch(() => {});
    const guests = await Promise.all([0, 1, 2].map(() => agent(r.url, undefined, { token: false })));
    const started = Date.now();
    // Each guest puts 100 volatile messages in one tick: the SDK sends them as one transport message.
    for (const g of guests) for (let i = 0; i < 100; i++) void g.send('bob@relay', `v${i}`, { volatile: true }).catch(() => {});
    await new Promise((res) => setTimeout(res, 1000));
    const atOneSecond = got;
    const elapsed = (Date.now() - started) / 1000;
    // A bucket of 100 and 100 a second for the address, whatever the connections; each link may
    // overdraw by the one message that found the bucket not in debt.
    assert.ok(atOneSecond <= 100 + Math.ceil(100 * elapsed) + 3, `${atOneSecond} delivered after ${elapsed.toFixed(2)} s`);
    await waitFor(() => got === 300, 'all 300 to arrive (they waited, none was dropped)', 10_000);
  });

  it("a sender's rate pauses its reading: nothing is refused or lost, it only takes longer; others are not slowed", async () => {
    const r = await router({ allowGuests: true, guestMsgRate: 20 });
    const bob = await agent(r.url, 'bob');
    const got: string[] = [];
    void (async () => {
      for await (const m of bob) got.push(m.text());
    })().catch(() => {}); // ends when the router closes after the test
    const guest = await agent(r.url, undefined, { token: false });
    const alice = await agent(r.url, 'alice');
    const started = Date.now();
    // One at a time, each in its own transport message: within one, a rate may be overdrawn (the
    // pause after it pays that back); across them it holds.
    const sending = (async () => {
      for (let i = 0; i < 70; i++) await guest.send('bob@relay', `g${i}`);
    })();
    await waitFor(() => r.router.stats().rateLimited > 0, 'the guest to go over its rate', 5000);
    // A token holder (no rate by default) is not held up meanwhile.
    const t0 = Date.now();
    await alice.send('bob@relay', 'from alice');
    const aliceMs = Date.now() - t0;
    await sending;
    const guestMs = Date.now() - started;
    await waitFor(() => got.length === 71, 'bob to get all 71', 10_000);
    assert.deepEqual(
      got.filter((x) => x.startsWith('g')),
      Array.from({ length: 70 }, (_, i) => `g${i}`),
      'all of the guest messages, in order',
    );
    // 70 messages at 20 a second with a burst of 20 cannot take less than 2.5 s.
    assert.ok(guestMs >= 2400, `the guest was slowed to its rate (${guestMs} ms)`);
    assert.ok(r.router.stats().rateLimited > 0);
    assert.ok(aliceMs < guestMs, `alice's message went on meanwhile (${aliceMs} ms)`);
  });
});
