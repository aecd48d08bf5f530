// The dashboard's server side (issue 14 items 3, 4, 7): login and sessions, the Host and Origin
// guards, CSP, and the JSON API over real routers (a relay and a gateway behind it) and sockets.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { describe, it } from 'node:test';
import type { Client } from '@postern/client';
import { issueToken, startRouter, type RouterServer } from '@postern/router';
import { waitFor } from '@postern/testing';
import { agent, next, router } from './live.js';

const secret = 'dashboard test secret';
const relayToken = 'relay-admin-token-0123456789';
const gatewayToken = 'gateway-admin-token-0123456789';
const bearer = (t: string): Record<string, string> => ({ authorization: `Bearer ${t}` });

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** Every body any request of this file got: the admin token must be in none. */
const bodies: string[] = [];

/** One HTTP request with exactly these headers (Host included: fetch may not set it). */
function http(url: string, o: { method?: string; headers?: Record<string, string>; body?: string | Buffer; localAddress?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: o.method ?? 'GET', headers: o.headers ?? {}, ...(o.localAddress === undefined ? {} : { localAddress: o.localAddress }) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        bodies.push(body);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

async function api<T>(r: RouterServer, path: string, token: string): Promise<T> {
  const a = await http(`${r.adminUrl!}${path}`, { headers: bearer(token) });
  assert.equal(a.status, 200, `${path}: ${a.body}`);
  assert.equal(a.headers['content-type'], 'application/json');
  assert.equal(a.headers['cache-control'], 'no-store');
  return JSON.parse(a.body) as T;
}

async function post(r: RouterServer, path: string, token: string, body: unknown): Promise<Answer> {
  return http(`${r.adminUrl!}${path}`, { method: 'POST', headers: { ...bearer(token), 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
}

interface Link {
  key: string;
  kind: string;
  dialed: boolean;
  state: string;
  transport: string | null;
  since: number;
  rttMs: number | null;
  domains: string[];
  url?: string;
}
interface Hop {
  router: { domain: string; node: string; name: string };
  reachable: boolean;
  error?: string;
  events: Array<{ at: number; event: string; link?: { kind: string } }>;
}

describe('dashboard API', () => {
  let relay: RouterServer;
  let gateway: RouterServer;
  let bob: Client;

  it('starts a relay and a gateway with admin listeners; the gateway uplink appears in both link lists with its transport and since', async () => {
    relay = await router({ domain: 'relay', secret, adminListen: '127.0.0.1:0', adminToken: relayToken, adminHosts: ['relay.example'], pingIntervalMs: 300, maxConnectionsPerAddress: 1000, connectRatePerAddress: 1000 });
    const before = Date.now();
    gateway = await router({
      domain: 'acme',
      adminListen: '127.0.0.1:0',
      adminToken: gatewayToken,
      pingIntervalMs: 300,
      uplinks: [{ url: relay.url, token: await issueToken(secret, { domain: 'acme' }), transport: 'ws' }],
      dashboardPeers: [{ url: relay.adminUrl!, token: relayToken }, { url: 'http://127.0.0.1:1' }],
    });
    const up = await waitFor(async () => (await api<{ links: Link[] }>(gateway, '/api/links', gatewayToken)).links.find((l) => l.kind === 'uplink' && l.state === 'up'), 'the uplink up');
    assert.equal(up.dialed, true);
    assert.equal(up.url, relay.url);
    assert.equal(up.transport, 'ws');
    assert.ok(up.since >= before && up.since <= Date.now(), `since ${up.since}`);
    const down = await waitFor(async () => (await api<{ links: Link[] }>(relay, '/api/links', relayToken)).links.find((l) => l.kind === 'downlink'), 'the downlink at the relay');
    assert.deepEqual(down.domains, ['acme']);
    assert.equal(down.dialed, false);
    // Keepalive pings every 300 ms of silence: the RTT comes from their PONGs.
    const rtt = await waitFor(async () => (await api<{ links: Link[] }>(gateway, '/api/links', gatewayToken)).links.find((l) => l.kind === 'uplink')?.rttMs ?? undefined, 'an RTT', 5000, 100);
    console.log(`# uplink RTT over loopback: ${rtt} ms`);
    const o = await api<{ role: string; domain: string; counts: { uplinks: number }; held: Record<string, unknown> }>(gateway, '/api/overview', gatewayToken);
    assert.equal(o.role, 'gateway');
    assert.equal(o.domain, 'acme');
    assert.equal(o.counts.uplinks, 1);
    assert.deepEqual(Object.keys(o.held).sort(), ['agent', 'domain', 'return']);
    const routes = await api<{ routes: Array<{ domain: string; via: Array<{ kind: string; metric: number }> }> }>(relay, '/api/routes', relayToken);
    assert.deepEqual(routes.routes.find((r) => r.domain === 'acme')?.via.map((v) => v.kind), ['downlink']);
  });

  it('login: a wrong token fails, the right one sets an HttpOnly SameSite=Strict session cookie; the API needs it or the Bearer token', async () => {
    const u = relay.adminUrl!;
    assert.equal((await http(`${u}/`)).headers.location, '/dashboard/');
    assert.equal((await http(`${u}/dashboard/`)).headers.location, '/dashboard/login');
    const denied = await http(`${u}/api/overview`);
    assert.equal(denied.status, 401);
    assert.equal((JSON.parse(denied.body) as { error: { code: string } }).error.code, 'ERR_UNAUTHORIZED');
    assert.equal((await http(`${u}/metrics`)).status, 401);
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const wrong = await http(`${u}/api/login`, { method: 'POST', headers: form, body: 'token=not-the-token' });
    assert.equal(wrong.status, 303);
    assert.equal(wrong.headers.location, '/dashboard/login?failed=1');
    assert.equal(wrong.headers['set-cookie'], undefined);
    const ok = await http(`${u}/api/login`, { method: 'POST', headers: { ...form, origin: u }, body: `token=${encodeURIComponent(relayToken)}` });
    assert.equal(ok.status, 303);
    assert.equal(ok.headers.location, '/dashboard/');
    const cookie = ok.headers['set-cookie']![0]!;
    assert.match(cookie, new RegExp(`^postern_admin_${new URL(u).port}=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200$`));
    assert.ok(!cookie.includes(relayToken));
    const session = cookie.split(';')[0]!;
    assert.equal((await http(`${u}/api/overview`, { headers: { cookie: session } })).status, 200);
    assert.equal((await http(`${u}/metrics`, { headers: { cookie: session } })).status, 200);
    assert.equal((await http(`${u}/api/overview`, { headers: { cookie: `postern_admin_${new URL(u).port}=forged` } })).status, 401);
    assert.equal((await http(`${u}/api/overview`, bearer(relayToken) && { headers: bearer(relayToken) })).status, 200);
    const out = await http(`${u}/api/logout`, { method: 'POST', headers: { cookie: session } });
    assert.equal(out.headers.location, '/dashboard/login');
    assert.equal((await http(`${u}/api/overview`, { headers: { cookie: session } })).status, 401, 'the session ended');
  });

  it('Host check (421), foreign Origin on POST (403), CSP on pages without unsafe-inline, bad input answered 4xx', async () => {
    const u = relay.adminUrl!;
    const evil = await http(`${u}/api/overview`, { headers: { ...bearer(relayToken), host: 'evil.example:80' } });
    assert.equal(evil.status, 421);
    assert.equal((await http(`${u}/api/overview`, { headers: { ...bearer(relayToken), host: 'relay.example:9999' } })).status, 200, 'a listed --admin-host');
    assert.equal((await http(`${u}/api/overview`, { headers: { ...bearer(relayToken), host: 'localhost' } })).status, 200);
    const foreign = await http(`${u}/api/send`, { method: 'POST', headers: { ...bearer(relayToken), origin: 'http://evil.example' }, body: '{}' });
    assert.equal(foreign.status, 403);
    assert.equal((await http(`${u}/api/login`, { method: 'POST', headers: { origin: 'http://evil.example' }, body: `token=${relayToken}` })).status, 403);
    for (const path of ['/dashboard/login', '/dashboard/login.js', '/dashboard/', '/dashboard/app.js']) {
      const page = await http(`${u}${path}`, { headers: bearer(relayToken) });
      const csp = String(page.headers['content-security-policy']);
      assert.match(csp, /default-src 'none'; script-src 'self'; style-src 'self';.*frame-ancestors 'none'/, path);
      assert.ok(!csp.includes('unsafe-inline'), path);
      assert.equal(page.headers['x-content-type-options'], 'nosniff');
      assert.equal(page.headers['referrer-policy'], 'same-origin');
    }
    const code = async (a: Promise<Answer>): Promise<[number, string]> => {
      const r = await a;
      return [r.status, (JSON.parse(r.body) as { error: { code: string } }).error.code];
    };
    assert.deepEqual(await code(post(relay, '/api/send', relayToken, '{not json')), [400, 'ERR_BAD_REQUEST']);
    assert.deepEqual(await code(post(relay, '/api/send', relayToken, { to: `${'a'.repeat(400)}@acme`, text: 'x' })), [400, 'ERR_BAD_REQUEST']);
    assert.deepEqual(await code(post(relay, '/api/send', relayToken, { to: 'a@acme', text: 'x', timeoutMs: 600_000 })), [400, 'ERR_BAD_REQUEST']);
    assert.deepEqual(await code(post(relay, '/api/send', relayToken, { to: 'a@acme', text: 'x'.repeat(20_000) })), [413, 'ERR_TOO_LARGE']);
    assert.deepEqual(await code(http(`${u}/api/agents?limit=501`, { headers: bearer(relayToken) })), [400, 'ERR_BAD_REQUEST']);
    assert.deepEqual(await code(http(`${u}/api/agents?offset=-1`, { headers: bearer(relayToken) })), [400, 'ERR_BAD_REQUEST']);
    assert.deepEqual(await code(http(`${u}/api/trace`, { headers: bearer(relayToken) })), [400, 'ERR_BAD_REQUEST']);
    assert.deepEqual(await code(http(`${u}/api/nothing`, { headers: bearer(relayToken) })), [404, 'ERR_NOT_FOUND']);
    assert.equal((await api<{ domain: string }>(relay, '/api/overview', relayToken)).domain, 'relay', 'still serving');
  });

  it('agents: 300 connected, paged and searched, sorted by address', async () => {
    const clients = await Promise.all(Array.from({ length: 300 }, async (_, i) => agent(relay.url, `user-${String(i).padStart(3, '0')}`, await issueToken(secret, { domain: 'relay', name: `user-${String(i).padStart(3, '0')}` }))));
    const started = performance.now();
    const page = await api<{ total: number; matched: number; offset: number; limit: number; agents: Array<{ id: string; name: string | null; address: string; transport: string; since: number; queued: number }> }>(relay, '/api/agents?offset=100&limit=50', relayToken);
    console.log(`# /api/agents over ${page.total} agents: ${(performance.now() - started).toFixed(1)} ms`);
    assert.equal(page.total, 300);
    assert.equal(page.matched, 300);
    assert.equal(page.agents.length, 50);
    assert.equal(page.agents[0]!.address, 'user-100@relay');
    assert.equal(page.agents[49]!.address, 'user-149@relay');
    assert.equal(page.agents[0]!.name, 'user-100');
    assert.equal(page.agents[0]!.transport, 'ws');
    assert.ok(page.agents[0]!.since > 0);
    const found = await api<{ matched: number; agents: Array<{ address: string }> }>(relay, '/api/agents?q=USER-01', relayToken);
    assert.equal(found.matched, 10);
    assert.deepEqual(
      found.agents.map((a) => a.address),
      Array.from({ length: 10 }, (_, i) => `user-01${i}@relay`),
    );
    const byId = await api<{ matched: number }>(relay, `/api/agents?q=${encodeURIComponent(page.agents[0]!.id)}`, relayToken);
    assert.equal(byId.matched, 1);
    await Promise.all(clients.map((c) => c.close()));
    await waitFor(async () => (await api<{ total: number }>(relay, '/api/agents', relayToken)).total === 0 || undefined, 'the agents gone');
  });

  it('a queue grows while its agent is away and drains when it returns; the trace shows the hops of both routers, in order', async () => {
    bob = await agent(relay.url, 'bob', await issueToken(secret, { domain: 'relay', name: 'bob' }));
    const alice = await agent(gateway.url, 'alice');
    await alice.close();
    await waitFor(async () => (await api<{ total: number }>(gateway, '/api/agents', gatewayToken)).total === 0 || undefined, 'alice away');
    for (let i = 0; i < 5; i++) await bob.send('alice@acme', `hello ${i}`);
    type Queues = { total: number; queues: Array<{ kind: string; dest: string; messages: number; bytes: number; oldestAt: number | null }> };
    const q = await waitFor(async () => (await api<Queues>(gateway, '/api/queues', gatewayToken)).queues.find((x) => x.dest === 'alice' && x.messages === 5), 'the queue for alice at 5');
    assert.equal(q.kind, 'agent');
    assert.ok(q.bytes > 0 && q.oldestAt !== null && q.oldestAt <= Date.now());
    const o = await api<{ held: { agent: { messages: number; oldestAt: number | null } } }>(gateway, '/api/overview', gatewayToken);
    assert.equal(o.held.agent.messages, 5);
    assert.equal(o.held.agent.oldestAt, q.oldestAt);
    const back = await agent(gateway.url, 'alice');
    for (let i = 0; i < 5; i++) assert.equal((await next(back)).text(), `hello ${i}`);
    await waitFor(async () => (await api<Queues>(gateway, '/api/queues', gatewayToken)).total === 0 || undefined, 'the queue drained');
    // One more message, traced across both routers (the gateway asks the relay: dashboardPeers).
    // The receipt needs alice to take the message (and so ACK it): both at once.
    const sending = bob.send('alice@acme', 'traced', { receipt: 'delivered' });
    await next(back);
    const { id } = await sending;
    const t = await waitFor(
      async () => {
        const r = await api<{ id: string; hops: Hop[] }>(gateway, `/api/trace?id=${encodeURIComponent(id)}&from=${encodeURIComponent('bob@relay')}`, gatewayToken);
        return r.hops.find((h) => h.router.domain === 'acme')?.events.some((e) => e.event === 'delivered') === true && r.hops.find((h) => h.router.domain === 'relay')?.events.some((e) => e.event === 'acked') === true ? r : undefined;
      },
      'the trace of both routers',
    );
    assert.deepEqual(
      t.hops.map((h) => [h.router.domain, h.reachable]),
      [
        ['relay', true],
        ['acme', true],
        ['', false],
      ],
    );
    for (const h of t.hops.slice(0, 2)) console.log(`# ${h.router.domain}: ${h.events.map((e) => `${e.event}${e.link === undefined ? '' : `(${e.link.kind})`}`).join(' ')}`);
    const relayEvents = t.hops[0]!.events.map((e) => e.event);
    assert.deepEqual(relayEvents.slice(0, 3), ['received', 'stored', 'forwarded']);
    assert.ok(relayEvents.includes('acked'));
    const gwEvents = t.hops[1]!.events.map((e) => e.event);
    assert.deepEqual(gwEvents.slice(0, 3), ['received', 'stored', 'forwarded']);
    assert.ok(gwEvents.includes('delivered') && gwEvents.includes('report'));
    assert.ok(t.hops[0]!.events[0]!.at <= t.hops[1]!.events[0]!.at, 'ordered by time');
    assert.match(t.hops[2]!.error!, /./);
    const local = await api<{ hops: Hop[] }>(relay, `/api/trace?local=1&id=${encodeURIComponent(id)}`, relayToken);
    assert.equal(local.hops.length, 1);
  });

  it('undeliverable: a report the relay made is listed; /api/send gets a receipt OK, and an error code for an unknown recipient', async () => {
    const lost = await bob.send('nobody@acme', 'to no one');
    const r = await waitFor(async () => (await api<{ reports: Array<{ id: string; from: string; to: string; code: string; reason: string; at: number }> }>(relay, '/api/undeliverable', relayToken)).reports.find((x) => x.id === lost.id), 'the report');
    assert.equal(r.code, 'ERR_UNKNOWN_RECIPIENT');
    assert.equal(r.from, 'bob@relay');
    assert.equal(r.to, 'nobody@acme');
    // The receipt needs bob to take the message: both at once.
    const posting = post(relay, '/api/send', relayToken, { to: 'bob@relay', text: 'from the dashboard' });
    assert.equal((await next(bob)).text(), 'from the dashboard');
    const ok = await posting;
    assert.equal(ok.status, 200, ok.body);
    const sent = JSON.parse(ok.body) as { id: string; from: string; to: string; acceptedMs: number | null; receipt: { code: string; ms: number } | null };
    assert.equal(sent.receipt?.code, 'OK');
    assert.equal(sent.from, 'postern-dashboard@relay');
    const posting2 = post(gateway, '/api/send', gatewayToken, { to: 'bob@relay', text: 'across' });
    assert.equal((await next(bob)).text(), 'across');
    const far = JSON.parse((await posting2).body) as typeof sent;
    assert.equal(far.receipt?.code, 'OK');
    console.log(`# /api/send receipts: local ${sent.receipt?.ms} ms, across the uplink ${far.receipt?.ms} ms`);
    const unknown = JSON.parse((await post(relay, '/api/send', relayToken, { to: 'nobody@relay', text: 'x' })).body) as typeof sent;
    assert.equal(unknown.receipt?.code, 'ERR_UNKNOWN_RECIPIENT');
    const remote = JSON.parse((await post(gateway, '/api/send', gatewayToken, { to: 'nobody@relay', text: 'x', timeoutMs: 5000 })).body) as typeof sent;
    assert.equal(remote.receipt?.code, 'ERR_UNKNOWN_RECIPIENT');
  });

  it('the event stream sends the links then a tick a second; at most 32 streams', async () => {
    const u = relay.adminUrl!;
    const open = (): Promise<{ status: number; text: () => string; close: () => void }> =>
      new Promise((resolve, reject) => {
        const req = request(`${u}/api/stream`, { headers: bearer(relayToken) }, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString('utf8')));
          res.on('error', () => undefined);
          resolve({ status: res.statusCode ?? 0, text: () => text, close: () => req.destroy() });
        });
        req.on('error', (e) => (e.message === 'socket hang up' ? undefined : reject(e)));
        req.end();
      });
    const s = await open();
    assert.equal(s.status, 200);
    await waitFor(() => s.text().includes('event: tick'), 'a tick', 5000);
    assert.match(s.text(), /^retry: \d+\n\nevent: links\ndata: \{"links":\[/);
    const tick = JSON.parse(/event: tick\ndata: (.*)\n/.exec(s.text())![1]!) as Record<string, number>;
    for (const k of ['t', 'in', 'out', 'acked', 'nacked', 'delivered', 'forwarded', 'commits', 'commitP50Ms', 'commitP99Ms', 'agents', 'connections', 'heldMessages', 'heldBytes']) assert.equal(typeof tick[k], 'number', k);
    const more = await Promise.all(Array.from({ length: 31 }, () => open()));
    assert.ok(more.every((m) => m.status === 200));
    const over = await open();
    assert.equal(over.status, 503);
    for (const m of [s, ...more, over]) m.close();
    const h = await api<{ ticks: unknown[] }>(relay, '/api/history', relayToken);
    assert.ok(h.ticks.length >= 1 && h.ticks.length <= 300);
  });

  it('logins are limited to 10 failures a minute from one address (then even the right token fails there; other addresses and Bearer still work); no token, no login', async () => {
    const u = gateway.adminUrl!;
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    for (let i = 0; i < 10; i++) assert.equal((await http(`${u}/api/login`, { method: 'POST', headers: form, body: 'token=wrong' })).headers.location, '/dashboard/login?failed=1');
    const right = await http(`${u}/api/login`, { method: 'POST', headers: form, body: `token=${gatewayToken}` });
    assert.equal(right.headers.location, '/dashboard/login?failed=1');
    assert.equal(right.headers['set-cookie'], undefined);
    assert.equal((await http(`${u}/api/overview`, { headers: bearer(gatewayToken) })).status, 200);
    // The operator at another address is not locked out by that burst (loopback: any 127.x is ours).
    const elsewhere = await http(`${u}/api/login`, { method: 'POST', headers: form, body: `token=${gatewayToken}`, localAddress: '127.0.0.2' });
    assert.equal(elsewhere.headers.location, '/dashboard/');
    assert.match(String(elsewhere.headers['set-cookie']), /^postern_admin_\d+=/);
    const open = await router({ domain: 'open', adminListen: '127.0.0.1:0' });
    assert.equal((await http(`${open.adminUrl!}/api/overview`)).status, 200, 'loopback without a token: no login');
    assert.equal((await http(`${open.adminUrl!}/dashboard/login`)).headers.location, '/dashboard/');
  });

  it('the admin token appears in no answer', () => {
    for (const b of bodies) {
      assert.ok(!b.includes(relayToken) && !b.includes(gatewayToken));
    }
  });

  it('without an admin listener the router keeps no traces', async () => {
    const plain = await router({ domain: 'plain' });
    assert.equal(plain.router.tracer, undefined);
    assert.ok(relay.router.tracer !== undefined);
    await assert.rejects(startRouter({ domain: 'x', adminListen: '127.0.0.1:0', dashboardFrameAncestors: ["'self'; script-src *"] }), /dashboardFrameAncestors/);
  });
});
