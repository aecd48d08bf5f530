// The Node dialer's TLS verification (CA, pin, host name) and HTTP CONNECT proxies, over real
// loopback sockets: an https/http server with the WebSocket transport that echoes, a throwaway
// CA made with openssl, and a CONNECT proxy that wants Basic credentials.
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Duplex } from '@postern/core';
import { ConfigError, TransportError } from '@postern/protocol';
import { ConnectProxy, hasOpenssl, makeTestPki, type TestPki } from '@postern/testing';
import { attachWsServer, bypassesProxy, createNodeWsDialer, parseFingerprint, parseProxyUrl, type NodeWsDialerOptions } from '@postern/transport-ws/node';

interface Echo {
  port: number;
  /** Upgrades accepted. */
  accepted: number;
  close(): Promise<void>;
}

/** An http or https server on 127.0.0.1 whose WebSocket connections echo every message. */
async function echoServer(tls?: { cert: string; key: string }): Promise<Echo> {
  const server = tls === undefined ? http.createServer() : https.createServer({ cert: tls.cert, key: tls.key });
  const duplexes: Duplex[] = [];
  const state = { accepted: 0 };
  const ws = attachWsServer(
    server,
    (d) => {
      state.accepted++;
      duplexes.push(d);
      d.start({ message: (m) => d.send(m), close: () => {} });
    },
    { maxPayload: 1024 * 1024 },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    get accepted() {
      return state.accepted;
    },
    async close() {
      for (const d of duplexes) d.close();
      ws.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Sends `text` and waits for it to come back: bytes crossed both ways. */
async function roundTrip(d: Duplex, text: string): Promise<void> {
  const back = new Promise<string>((resolve, reject) =>
    d.start({ message: (m) => resolve(new TextDecoder().decode(m)), close: (e) => reject(e ?? new Error('closed')) }),
  );
  d.send(new TextEncoder().encode(text));
  assert.equal(await back, text);
  d.close();
  await d.done;
}

/** `permanent`: whether retrying with the same settings is pointless (proxy 4xx, untrusted certificate). */
function transportError(re: RegExp, not?: RegExp, permanent = false): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof TransportError, `expected TransportError, got ${String(e)}`);
    assert.equal(e.code, 'ERR_TRANSPORT');
    assert.match(e.message, re);
    if (not !== undefined) assert.doesNotMatch(e.message, not);
    assert.equal(e.permanent, permanent, `permanent for "${e.message}"`);
    return true;
  };
}

/** A dialer that ignores the real environment unless given one. */
function dialer(o: NodeWsDialerOptions = {}): ReturnType<typeof createNodeWsDialer> {
  return createNodeWsDialer({ env: {}, ...o });
}

async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const openssl = hasOpenssl();

describe('TLS verification of the Node dialer', { skip: openssl ? false : 'the openssl command is not installed' }, () => {
  let pki: TestPki;
  let server: Echo;
  let other: Echo;
  before(async () => {
    pki = makeTestPki();
    server = await echoServer(pki.server);
    other = await echoServer(pki.otherName);
  });
  after(async () => {
    await server.close();
    await other.close();
    pki.remove();
  });

  it('verifies with the CA given as `ca`, by IP and by name', async () => {
    await roundTrip(await dialer({ ca: pki.ca })(`wss://127.0.0.1:${server.port}`, { timeoutMs: 5000 }), 'hello over TLS');
    await roundTrip(await dialer({ ca: pki.ca })(`https://localhost:${server.port}/`, { timeoutMs: 5000 }), 'by name');
  });

  it('without the CA, fails verification with the reason, naming the host', async () => {
    await assert.rejects(
      dialer()(`wss://127.0.0.1:${server.port}`, { timeoutMs: 5000 }),
      transportError(new RegExp(`TLS to 127\\.0\\.0\\.1:${server.port}: certificate not trusted: .*(unable to verify|UNABLE_TO_VERIFY_LEAF_SIGNATURE)`), undefined, true),
    );
  });

  it('refuses a certificate for another name even from a trusted CA', async () => {
    await assert.rejects(
      dialer({ ca: pki.ca })(`wss://127.0.0.1:${other.port}`, { timeoutMs: 5000 }),
      transportError(/TLS to 127\.0\.0\.1:\d+: certificate not trusted: .*ERR_TLS_CERT_ALTNAME_INVALID/, undefined, true),
    );
  });

  it('with the right pin, accepts a chain it cannot verify, in any spelling of the fingerprint', async () => {
    const fp = pki.server.fingerprint;
    for (const spelling of [fp, fp.toLowerCase(), fp.replace(/:/g, ''), `sha256 Fingerprint=${fp}`]) {
      await roundTrip(await dialer({ fingerprint: spelling })(`wss://127.0.0.1:${server.port}`, { timeoutMs: 5000 }), `pinned ${spelling.length}`);
    }
    // The pin replaces the name check too: the pinned certificate is the identity.
    await roundTrip(await dialer({ fingerprint: pki.otherName.fingerprint })(`wss://127.0.0.1:${other.port}`, { timeoutMs: 5000 }), 'pinned other');
  });

  it('with a wrong pin, fails with both fingerprints, even when the CA would verify', async () => {
    const wrong = pki.otherName.fingerprint;
    await assert.rejects(
      dialer({ ca: pki.ca, fingerprint: wrong })(`wss://127.0.0.1:${server.port}`, { timeoutMs: 5000 }),
      transportError(new RegExp(`TLS to 127\\.0\\.0\\.1:${server.port}: certificate fingerprint mismatch: expected ${wrong}, got ${pki.server.fingerprint}$`), undefined, true),
    );
    const accepted = server.accepted;
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(server.accepted, accepted, 'no upgrade was sent to the mismatched server');
  });

  it('checks a pin when the dialer is made', () => {
    assert.throws(() => createNodeWsDialer({ fingerprint: 'abc' }), (e: unknown) => e instanceof ConfigError && /64 hex digits/.test(e.message));
    assert.equal(parseFingerprint(`AA:${'0'.repeat(62)}`), `aa${'0'.repeat(62)}`);
  });

  it('says so when a wss:// router speaks plain HTTP', async () => {
    const plain = await echoServer();
    try {
      await assert.rejects(dialer({ ca: pki.ca })(`wss://127.0.0.1:${plain.port}`, { timeoutMs: 5000 }), transportError(/TLS to 127\.0\.0\.1:\d+: the server does not speak TLS: use ws:\/\//, undefined, true));
    } finally {
      await plain.close();
    }
  });
});

describe('HTTP CONNECT proxies in the Node dialer', () => {
  const USER = 'agent';
  const PASSWORD = 'p@ss:w0rd/%';
  let proxy: ConnectProxy;
  let plain: Echo;
  let pki: TestPki | undefined;
  let secure: Echo | undefined;
  before(async () => {
    proxy = await ConnectProxy.start({ credentials: { user: USER, password: PASSWORD } });
    plain = await echoServer();
    if (openssl) {
      pki = makeTestPki();
      secure = await echoServer(pki.server);
    }
  });
  after(async () => {
    await proxy.close();
    await plain.close();
    await secure?.close();
    pki?.remove();
  });

  it('tunnels ws:// and wss:// with Basic credentials from the URL, percent-decoded', async (t) => {
    const before = proxy.tunnels;
    await roundTrip(await dialer({ proxy: proxy.url(USER, PASSWORD) })(`ws://127.0.0.1:${plain.port}`, { timeoutMs: 5000 }), 'through the proxy');
    const seen = proxy.requests.at(-1)!;
    assert.equal(seen.target, `127.0.0.1:${plain.port}`);
    assert.equal(seen.status, 200);
    assert.equal(seen.authorization, `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`);
    if (secure === undefined || pki === undefined) return t.skip('the openssl command is not installed');
    await roundTrip(await dialer({ proxy: proxy.url(USER, PASSWORD), ca: pki.ca })(`wss://localhost:${secure.port}`, { timeoutMs: 5000 }), 'TLS inside the tunnel');
    assert.equal(proxy.requests.at(-1)!.target, `localhost:${secure.port}`);
    assert.equal(proxy.tunnels, before + 2);
  });

  it('wrong credentials: one 407 error naming the proxy, never the password', async () => {
    await assert.rejects(
      dialer({ proxy: proxy.url(USER, 'wrong-secret') })(`ws://127.0.0.1:${plain.port}`, { timeoutMs: 5000 }),
      transportError(new RegExp(`^proxy http://127\\.0\\.0\\.1:${proxy.port} refused the tunnel: 407 Proxy Authentication Required \\(check the proxy credentials\\)$`), /wrong-secret|agent/, true),
    );
    await assert.rejects(
      dialer({ proxy: proxy.url() })(`ws://127.0.0.1:${plain.port}`, { timeoutMs: 5000 }),
      transportError(/refused the tunnel: 407 .*wants credentials/, undefined, true),
    );
  });

  it('a refused CONNECT names the proxy, the target and the status line; a 4xx is permanent, a 5xx is not', async () => {
    const strict = await ConnectProxy.start({ allowPort: (p) => p === 443 });
    try {
      await assert.rejects(
        dialer({ proxy: strict.url() })(`ws://127.0.0.1:${plain.port}`, { timeoutMs: 5000 }),
        transportError(new RegExp(`^proxy http://127\\.0\\.0\\.1:${strict.port} refused CONNECT to 127\\.0\\.0\\.1:${plain.port}: HTTP/1\\.1 403 Forbidden$`), undefined, true),
      );
      // The proxy could not reach the target: that may pass, so it is not permanent.
      const port = await closedPort();
      await assert.rejects(
        dialer({ proxy: proxy.url(USER, PASSWORD) })(`ws://127.0.0.1:${port}`, { timeoutMs: 5000 }),
        transportError(new RegExp(`^proxy http://127\\.0\\.0\\.1:${proxy.port} refused CONNECT to 127\\.0\\.0\\.1:${port}: HTTP/1\\.1 502 Bad Gateway$`)),
      );
    } finally {
      await strict.close();
    }
  });

  it('an unreachable proxy is one error naming it, without credentials', async () => {
    const port = await closedPort();
    await assert.rejects(
      dialer({ proxy: `http://${USER}:${encodeURIComponent(PASSWORD)}@127.0.0.1:${port}` })(`ws://127.0.0.1:${plain.port}`, { timeoutMs: 5000 }),
      transportError(new RegExp(`^cannot reach proxy http://127\\.0\\.0\\.1:${port}: ECONNREFUSED$`)),
    );
  });

  it('the connect timeout covers the CONNECT exchange', async () => {
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((s) => sockets.add(s.on('error', () => {})));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      const t0 = Date.now();
      await assert.rejects(
        dialer({ proxy: `http://127.0.0.1:${port}` })(`ws://127.0.0.1:${plain.port}`, { timeoutMs: 200 }),
        transportError(new RegExp(`no answer from ws://127\\.0\\.0\\.1:${plain.port} within 200 ms \\(waiting for proxy http://127\\.0\\.0\\.1:${port} to open a tunnel\\)`)),
      );
      assert.ok(Date.now() - t0 < 2000);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  it('takes the proxy from the environment: https_proxy for wss, http_proxy for ws, minus NO_PROXY', async (t) => {
    const url = proxy.url(USER, PASSWORD);
    const target = `ws://127.0.0.1:${plain.port}`;
    let n = proxy.tunnels;
    await roundTrip(await createNodeWsDialer({ env: { HTTP_PROXY: url } })(target, { timeoutMs: 5000 }), 'env proxy');
    assert.equal(proxy.tunnels, ++n, 'HTTP_PROXY used for ws://');
    await roundTrip(await createNodeWsDialer({ env: { HTTPS_PROXY: url } })(target, { timeoutMs: 5000 }), 'not for ws');
    assert.equal(proxy.tunnels, n, 'HTTPS_PROXY not used for ws://');
    await roundTrip(await createNodeWsDialer({ env: { HTTP_PROXY: url, NO_PROXY: 'example.com, 127.0.0.1' } })(target, { timeoutMs: 5000 }), 'no_proxy');
    await roundTrip(await createNodeWsDialer({ env: { http_proxy: url, no_proxy: `127.0.0.0/8:${plain.port}` } })(target, { timeoutMs: 5000 }), 'cidr');
    await roundTrip(await createNodeWsDialer({ env: { HTTP_PROXY: url }, proxy: false })(target, { timeoutMs: 5000 }), 'proxy: false');
    assert.equal(proxy.tunnels, n, 'NO_PROXY and proxy: false bypass the proxy');
    await assert.rejects(
      createNodeWsDialer({ env: { HTTP_PROXY: proxy.url(USER, 'nope') } })(target, { timeoutMs: 5000 }),
      transportError(/refused the tunnel: 407/, /nope/, true),
    );
    if (secure === undefined || pki === undefined) return t.skip('the openssl command is not installed');
    await roundTrip(await createNodeWsDialer({ env: { HTTPS_PROXY: url }, ca: pki.ca })(`wss://127.0.0.1:${secure.port}`, { timeoutMs: 5000 }), 'env wss');
    assert.equal(proxy.tunnels, ++n, 'HTTPS_PROXY used for wss://');
  });

  it('checks proxy URLs when the dialer is made, naming the variable and hiding credentials', () => {
    const bad = (o: NodeWsDialerOptions, re: RegExp): void =>
      assert.throws(() => createNodeWsDialer(o), (e: unknown) => e instanceof ConfigError && re.test(e.message) && !e.message.includes('hunter2'));
    bad({ proxy: 'socks5://u:hunter2@127.0.0.1:1080' }, /^proxy: only http:\/\/ proxies/);
    bad({ env: { HTTPS_PROXY: 'https://u:hunter2@127.0.0.1:3128' } }, /^HTTPS_PROXY: only http:\/\//);
    bad({ proxy: 'http://u:hunter2@[bad' }, /not a proxy URL: "http:\/\/\*\*\*@\[bad"/);
    // Unencoded `/` or `@` in a password: nothing before the last `@` is shown.
    bad({ proxy: 'http://alice:hunter2/x@proxy.example:3128' }, /^proxy: not a proxy URL: "http:\/\/\*\*\*@proxy\.example:3128"/);
    bad({ env: { HTTPS_PROXY: 'http://bob:hunter2/@x@10.0.0.1:8080' } }, /^HTTPS_PROXY: not a proxy URL: "http:\/\/\*\*\*@10\.0\.0\.1:8080"/);
    bad({ env: { HTTP_PROXY: 'bob:hunter2/x@10.0.0.1:8080' } }, /^HTTP_PROXY: not a proxy URL: "\*\*\*@10\.0\.0\.1:8080"/);
    const p = parseProxyUrl('u%40corp:pa%3Ass@proxy.corp:3128', 'proxy');
    assert.equal(p.display, 'http://proxy.corp:3128');
    assert.equal(p.authorization, `Basic ${Buffer.from('u@corp:pa:ss').toString('base64')}`);
    assert.equal(parseProxyUrl('http://[::1]', 'proxy').display, 'http://[::1]:80');
  });
});

describe('NO_PROXY rules (curl semantics)', () => {
  it('matches names as domain suffixes, IPs exactly or by CIDR, with optional ports and *', () => {
    const cases: Array<[string, number, string, boolean]> = [
      ['relay.example.com', 443, 'example.com', true],
      ['example.com', 443, 'example.com', true],
      ['example.com', 443, '.example.com', true],
      ['relay.example.com', 443, '.example.com', true],
      ['notexample.com', 443, 'example.com', false],
      ['RELAY.Example.COM.', 443, 'example.com', true],
      ['relay.example.com', 443, 'other.org, example.com', true],
      ['relay.example.com', 443, 'other.org example.com', true],
      ['relay.example.com', 443, 'example.com:8443', false],
      ['relay.example.com', 8443, 'example.com:8443', true],
      ['anything', 1, '*', true],
      ['127.0.0.1', 7443, '', false],
      ['127.0.0.1', 7443, 'localhost', false],
      ['localhost', 7443, 'localhost', true],
      ['127.0.0.1', 7443, '127.0.0.1', true],
      ['127.0.0.2', 7443, '127.0.0.1', false],
      ['10.1.2.3', 7443, '10.0.0.0/8', true],
      ['11.1.2.3', 7443, '10.0.0.0/8', false],
      ['::1', 7443, '::1', true],
      ['::1', 7443, '[::1]:7443', true],
      ['::1', 7444, '[::1]:7443', false],
      ['fd00::5', 1, 'fd00::/8', true],
      ['10.0.0.1', 1, 'fd00::/8', false],
    ];
    for (const [host, port, list, want] of cases) assert.equal(bypassesProxy(host, port, list), want, `${host}:${port} vs "${list}"`);
  });
});
