// A relay serving TLS, a gateway whose uplink reaches it through an HTTP CONNECT proxy that
// wants Basic credentials, and SDK agents verifying the relay with a CA or a pinned
// fingerprint: real loopback sockets, a throwaway CA made with openssl.
import assert from 'node:assert/strict';
import https from 'node:https';
import { after, before, describe, it } from 'node:test';
import { connect, type Client, type Message } from '@postern/client';
import type { UplinkStatus } from '@postern/core';
import { issueToken, startRouter, type RouterServer } from '@postern/router';
import { ConnectProxy, hasOpenssl, makeTestPki, waitFor, type TestPki, TEST_GUESTS } from '@postern/testing';

const secret = 'proxy-tls-test-secret';
const USER = 'gw';
const PASSWORD = 's3cret:with@chars';

async function next(c: Client): Promise<Message | undefined> {
  for await (const m of c) return m;
  return undefined;
}

/** GET over https, trusting `ca`. */
function httpsGet(url: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (s: string) => (body += s));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

/** Runs `fn` with proxy variables set in process.env, restoring them after. */
async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = new Map(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

describe('TLS relay, gateway through a CONNECT proxy, SDK agents', { skip: hasOpenssl() ? false : 'the openssl command is not installed' }, () => {
  let pki: TestPki;
  let relay: RouterServer;
  let proxy: ConnectProxy;
  const closers: Array<() => Promise<void>> = [];
  const open = async (o: Parameters<typeof connect>[0]): Promise<Client> => {
    const c = await connect(o);
    closers.push(() => c.close());
    return c;
  };

  before(async () => {
    pki = makeTestPki();
    relay = await startRouter({ domain: 'relay', listen: ['127.0.0.1:0'], secret, ...TEST_GUESTS, tls: { cert: pki.server.cert, key: pki.server.key } });
    proxy = await ConnectProxy.start({ credentials: { user: USER, password: PASSWORD } });
  });
  after(async () => {
    for (const c of closers.reverse()) await c();
    await relay.close();
    await proxy.close();
    pki.remove();
  });

  it('serves wss:// and /healthz over https', async () => {
    assert.match(relay.url, /^wss:\/\/127\.0\.0\.1:\d+$/);
    const port = relay.addresses[0]!.port;
    const h = await httpsGet(`https://localhost:${port}/healthz`, pki.ca);
    assert.equal(h.status, 200);
    assert.equal((JSON.parse(h.body) as { status: string }).status, 'ok');
  });

  it('a gateway reaches the relay through the proxy, and messages cross both ways', async () => {
    const statuses: UplinkStatus[] = [];
    const gateway = await startRouter({
      domain: 'acme',
      listen: ['127.0.0.1:0'],
      uplinks: [{ url: relay.url, token: await issueToken(secret, { domain: 'acme' }), ca: pki.ca, proxy: proxy.url(USER, PASSWORD) }],
      onUplinkStatus: (_u, s) => void statuses.push(s),
    });
    closers.push(() => gateway.close());
    await waitFor(() => gateway.uplinks[0]!.connected, 'the uplink through the proxy', 10_000);
    assert.ok(
      proxy.requests.some((r) => r.target === `127.0.0.1:${relay.addresses[0]!.port}` && r.status === 200),
      'the tunnel went through the proxy',
    );
    const alice = await open({ url: gateway.url, name: 'alice', proxy: false });
    const bob = await open({ url: relay.url, name: 'bob', token: await issueToken(secret, { domain: 'relay', name: 'bob' }), ca: pki.ca, proxy: false });
    const toBob = next(bob);
    await alice.send('bob@relay', 'out through the proxy');
    assert.equal((await toBob)?.text(), 'out through the proxy');
    const toAlice = next(alice);
    await bob.send('alice@acme', 'in through the proxy');
    const m = await toAlice;
    assert.equal(m?.text(), 'in through the proxy');
    assert.equal(m?.from, 'bob@relay');
    assert.ok(statuses.some((s) => s.type === 'up'));
  });

  it('a gateway with wrong proxy credentials reports the 407 as a refusal, naming the proxy and not the password', async () => {
    const downs: string[] = [];
    const refused: boolean[] = [];
    const gateway = await startRouter({
      domain: 'wrongcreds',
      listen: [],
      uplinks: [{ url: relay.url, token: await issueToken(secret, { domain: 'wrongcreds' }), ca: pki.ca, proxy: proxy.url(USER, 'not-the-password') }],
      backoff: { initialMs: 50, maxMs: 200 },
      onUplinkStatus: (_u, s) => {
        if (s.type === 'down') {
          downs.push(s.error.message);
          refused.push(s.refused);
        }
        return true;
      },
    });
    closers.push(() => gateway.close());
    await waitFor(() => downs.length > 0, 'the uplink to fail', 5000);
    // The refusal alone: long-poll through the same proxy is not tried. A refusal waits the
    // longest backoff before the next attempt.
    assert.equal(downs[0], `proxy http://127.0.0.1:${proxy.port} refused the tunnel: 407 Proxy Authentication Required (check the proxy credentials)`);
    assert.equal(refused[0], true);
    assert.ok(!downs.some((d) => d.includes('not-the-password')));
  });

  it('agents verify the relay: CA, right pin, wrong pin, nothing', async () => {
    const url = relay.url;
    const viaCa = await open({ url, ca: pki.ca, proxy: false });
    assert.match(viaCa.address, /@relay$/);
    const pinned = await open({ url, fingerprint: pki.server.fingerprint.replace(/:/g, '').toLowerCase(), proxy: false });
    assert.match(pinned.address, /@relay$/);
    const port = relay.addresses[0]!.port;
    await assert.rejects(connect({ url, fingerprint: pki.otherName.fingerprint, proxy: false, connectTimeoutMs: 3000 }), (e: unknown) => {
      const err = e as { code: string; message: string };
      assert.equal(err.code, 'ERR_TRANSPORT');
      assert.ok(
        err.message.startsWith(`TLS to 127.0.0.1:${port}: certificate fingerprint mismatch: expected ${pki.otherName.fingerprint}, got ${pki.server.fingerprint}`),
        err.message,
      );
      return true;
    });
    await assert.rejects(connect({ url, proxy: false, connectTimeoutMs: 3000 }), (e: unknown) => {
      const err = e as { code: string; message: string };
      assert.equal(err.code, 'ERR_TRANSPORT');
      assert.match(err.message, new RegExp(`^TLS to 127\\.0\\.0\\.1:${port}: certificate not trusted: unable to verify the first certificate`));
      return true;
    });
    await assert.rejects(connect({ url, fingerprint: 'nope', proxy: false }), { code: 'ERR_CONFIG' });
  });

  it('agents take HTTPS_PROXY from the environment, and NO_PROXY exempts a host', async () => {
    const before = proxy.tunnels;
    const url = proxy.url(USER, PASSWORD);
    const viaEnv = await withEnv({ HTTPS_PROXY: url, NO_PROXY: '' }, () => open({ url: relay.url, ca: pki.ca }));
    assert.match(viaEnv.address, /@relay$/);
    assert.equal(proxy.tunnels, before + 1, 'the connection went through the proxy');
    const exempt = await withEnv({ HTTPS_PROXY: url, NO_PROXY: 'example.com,127.0.0.1' }, () => open({ url: relay.url, ca: pki.ca }));
    assert.match(exempt.address, /@relay$/);
    assert.equal(proxy.tunnels, before + 1, 'NO_PROXY bypassed the proxy');
  });
});
