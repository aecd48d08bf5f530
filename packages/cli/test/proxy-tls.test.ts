// The `postern` executable with TLS and HTTP CONNECT proxies, as child processes over loopback:
// a relay serving wss:// (--tls-cert/--tls-key), a gateway whose uplink goes through a proxy that
// wants Basic credentials (--proxy, --ca), agents pinning the relay (--fingerprint), the proxy
// variables of the environment, and the one-line errors. Every child is SIGKILLed in afterEach.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { ConnectProxy, hasOpenssl, makeTestPki, type TestPki } from '@postern/testing';
import { killAll, listeningOn, Proc, run, withData, withGuests } from './procs.js';

const SECRET = 'cli-proxy-tls-secret-0123456789ab';
const USER = 'gateway';
const PASSWORD = 'pr0xy-p@ss';
const NO_STACK = /^\s+at /m;
/** The proxy variables cleared, so that only what a test sets applies. */
const NO_PROXY_ENV = { HTTPS_PROXY: '', https_proxy: '', HTTP_PROXY: '', http_proxy: '', NO_PROXY: '', no_proxy: '' };

afterEach(killAll);

/** Starts `postern ARGS` with the proxy variables cleared, then `env` on top. */
function start(args: string[], env: Record<string, string> = {}): Proc {
  return new Proc(withData(args), { env: { ...NO_PROXY_ENV, ...env } });
}

async function finish(args: string[], env: Record<string, string> = {}, timeoutMs = 15_000): Promise<Proc> {
  const p = start(args, env);
  await p.waitExit(timeoutMs);
  return p;
}

async function token(...args: string[]): Promise<string> {
  const p = await run(['token', '--secret', SECRET, ...args]);
  assert.equal(p.exit?.code, 0, p.describe());
  return p.stdout.trim();
}

/** One line on stderr, exit 1, no stack. */
function oneLineError(p: Proc, re: RegExp): void {
  assert.equal(p.exit?.code, 1, p.describe());
  assert.doesNotMatch(p.stderr, NO_STACK, p.describe());
  const lines = p.lines('stderr');
  assert.equal(lines.length, 1, p.describe());
  assert.match(lines[0]!, re, p.describe());
}

describe('postern CLI with TLS and proxies', { skip: hasOpenssl() ? false : 'the openssl command is not installed' }, () => {
  let pki: TestPki;
  let proxy: ConnectProxy;
  before(async () => {
    pki = makeTestPki();
    proxy = await ConnectProxy.start({ credentials: { user: USER, password: PASSWORD } });
  });
  after(async () => {
    await proxy.close();
    pki.remove();
  });

  /** A relay serving TLS; waits for its `listening on wss://` line. */
  async function tlsRelay(): Promise<{ proc: Proc; url: string; port: number }> {
    const proc = start(['relay', ...withGuests(['--listen', '127.0.0.1:0', '--secret', SECRET, '--tls-cert', pki.server.certPath, '--tls-key', pki.server.keyPath])]);
    const m = await proc.waitFor('stdout', /postern relay: domain "relay" listening on wss:\/\/127\.0\.0\.1:(\d+)/);
    return { proc, url: `wss://127.0.0.1:${m[1]}`, port: Number(m[1]) };
  }

  it('a gateway behind a proxy (--proxy, --ca) reaches a TLS relay; messages cross both ways', async () => {
    const relay = await tlsRelay();
    const [domainToken, bobToken] = await Promise.all([token('--domain', 'acme'), token('--domain', 'relay', '--name', 'bob')]);
    const gw = start([
      'gateway', '--relay', relay.url, '--domain', 'acme', '--token', domainToken, '--listen', '127.0.0.1:0',
      '--proxy', proxy.url(USER, PASSWORD), '--ca', pki.caPath,
    ]);
    await relay.proc.waitFor('stdout', new RegExp(`postern relay: TLS certificate SHA-256 ${pki.server.fingerprint} \\(agents may pin it`));
    const gwAt = await listeningOn(gw);
    await gw.waitFor('stdout', /postern gateway: uplink to .* is up/);
    assert.ok(
      proxy.requests.some((r) => r.target === `127.0.0.1:${relay.port}` && r.status === 200),
      `the uplink went through the proxy: ${JSON.stringify(proxy.requests)}`,
    );

    // Inward: an agent on the relay, pinning its certificate, to alice behind the gateway.
    const alice = start(['listen', '--connect', gwAt.url, '--as', 'alice', '--count', '1']);
    await alice.waitFor('stderr', /connected as alice@acme/);
    const send = await finish(['send', '--connect', relay.url, '--fingerprint', pki.server.fingerprint, '--to', 'alice@acme', 'in through the proxy']);
    assert.equal(send.exit?.code, 0, send.describe());
    assert.equal((await alice.waitExit()).code, 0, alice.describe());
    assert.match(alice.stdout, /: in through the proxy\n$/);

    // Outward: alice to bob on the relay, who trusts the relay by its CA.
    const bob = start(['listen', '--connect', relay.url, '--ca', pki.caPath, '--as', 'bob', '--token', bobToken, '--count', '1']);
    await bob.waitFor('stderr', /connected as bob@relay/);
    const out = await finish(['send', '--connect', gwAt.url, '--as', 'alice', '--to', 'bob@relay', 'out through the proxy']);
    assert.equal(out.exit?.code, 0, out.describe());
    assert.equal((await bob.waitExit()).code, 0, bob.describe());
    assert.equal(bob.stdout, 'alice@acme: out through the proxy\n');
    assert.ok(!`${gw.stdout}${gw.stderr}`.includes(PASSWORD), 'the gateway never prints the proxy password');
  });

  it('wrong proxy credentials: the gateway exits 1 at start with the 407 naming the proxy, never the password, without trying long-poll', async () => {
    const relay = await tlsRelay();
    const tunnels = proxy.tunnels;
    const gw = await finish([
      'gateway', '--relay', relay.url, '--domain', 'acme', '--token', await token('--domain', 'acme'), '--listen', '127.0.0.1:0',
      '--proxy', proxy.url(USER, 'wrong-password'), '--ca', pki.caPath,
    ]);
    assert.equal(gw.exit?.code, 1, gw.describe());
    assert.doesNotMatch(gw.stderr, NO_STACK, gw.describe());
    assert.match(gw.lines('stderr').at(-1)!, new RegExp(`^postern: error: cannot reach the relay: proxy http://127\\.0\\.0\\.1:${proxy.port} refused the tunnel: 407 Proxy Authentication Required \\(check the proxy credentials\\) \\[ERR_TRANSPORT\\]$`), gw.describe());
    assert.ok(!`${gw.stdout}${gw.stderr}`.includes('wrong-password'), gw.describe());
    assert.equal(proxy.tunnels, tunnels, 'no tunnel was opened');
  });

  it('agents take HTTPS_PROXY from the environment; NO_PROXY and --no-proxy bypass it', async () => {
    const relay = await tlsRelay();
    const url = proxy.url(USER, PASSWORD);
    const args = ['send', '--connect', relay.url, '--ca', pki.caPath, '--to', 'nobody@relay', '--volatile', 'hi'];
    let n = proxy.tunnels;
    const viaEnv = await finish(args, { HTTPS_PROXY: url });
    assert.equal(viaEnv.exit?.code, 0, viaEnv.describe());
    assert.equal(proxy.tunnels, ++n, 'HTTPS_PROXY was used');
    const exempt = await finish(args, { HTTPS_PROXY: url, NO_PROXY: '127.0.0.1' });
    assert.equal(exempt.exit?.code, 0, exempt.describe());
    const direct = await finish([...args, '--no-proxy'], { HTTPS_PROXY: url });
    assert.equal(direct.exit?.code, 0, direct.describe());
    assert.equal(proxy.tunnels, n, 'NO_PROXY and --no-proxy went direct');
    const refused = await finish(args, { HTTPS_PROXY: proxy.url(USER, 'bad-password') });
    oneLineError(refused, new RegExp(`^postern: error: proxy http://127\\.0\\.0\\.1:${proxy.port} refused the tunnel: 407 .*\\[ERR_TRANSPORT\\]$`));
    assert.ok(!refused.stderr.includes('bad-password'), refused.describe());
  });

  it('an agent that cannot verify the relay exits 1 with one line naming it', async () => {
    const relay = await tlsRelay();
    const [untrusted, mismatch] = await Promise.all([
      finish(['send', '--connect', relay.url, '--to', 'x@relay', 'hi']),
      finish(['listen', '--connect', relay.url, '--as', 'x', '--fingerprint', pki.otherName.fingerprint]),
    ]);
    oneLineError(untrusted, new RegExp(`^postern: error: TLS to 127\\.0\\.0\\.1:${relay.port}: certificate not trusted: .*\\[ERR_TRANSPORT\\]$`));
    oneLineError(
      mismatch,
      new RegExp(`^postern: error: TLS to 127\\.0\\.0\\.1:${relay.port}: certificate fingerprint mismatch: expected ${pki.otherName.fingerprint}, got ${pki.server.fingerprint}\\b.*\\[ERR_TRANSPORT\\]$`),
    );
  });

  it('a scheme mismatch says which scheme the server speaks, once: ws:// to TLS, wss:// to plain', async () => {
    const tlsRelayAt = await tlsRelay();
    const plain = start(['relay', ...withGuests(['--listen', '127.0.0.1:0'])]);
    const plainAt = await listeningOn(plain);
    const [toTls, toPlain, listenToTls, gwToPlain, pollToTls] = await Promise.all([
      finish(['send', '--connect', `ws://127.0.0.1:${tlsRelayAt.port}`, '--to', 'a@relay', 'hi']),
      finish(['send', '--connect', `wss://127.0.0.1:${plainAt.port}`, '--to', 'a@relay', 'hi']),
      finish(['listen', '--connect', `127.0.0.1:${tlsRelayAt.port}`, '--as', 'a']),
      finish(['gateway', '--relay', `wss://127.0.0.1:${plainAt.port}`, '--domain', 'acme', '--token', 't', '--listen', '127.0.0.1:0']),
      finish(['send', '--connect', `http://127.0.0.1:${tlsRelayAt.port}`, '--transport', 'http', '--to', 'a@relay', 'hi']),
    ]);
    oneLineError(toTls, /^postern: error: cannot connect to ws:\/\/127\.0\.0\.1:\d+: the server speaks TLS: use wss:\/\/ \(or https:\/\/\) \[ERR_TRANSPORT\]$/);
    oneLineError(toPlain, /^postern: error: TLS to 127\.0\.0\.1:\d+: the server does not speak TLS: use ws:\/\/ \(or http:\/\/\) \[ERR_TRANSPORT\]$/);
    oneLineError(listenToTls, /the server speaks TLS: use wss:\/\//);
    assert.equal(gwToPlain.exit?.code, 1, gwToPlain.describe());
    assert.match(gwToPlain.stderr, /cannot reach the relay: TLS to .*: the server does not speak TLS: use ws:\/\//, gwToPlain.describe());
    oneLineError(pollToTls, /^postern: error: .*the server speaks TLS: use https:\/\/ \(or wss:\/\/\) \[ERR_TRANSPORT\]$/);
    for (const p of [toTls, toPlain, gwToPlain, pollToTls]) assert.doesNotMatch(p.stderr, /openssl|\.c:\d+|socket hang up/i, p.describe());
  });

  it('bad TLS and proxy flags: usage errors, and one line naming an unreadable file', async () => {
    const [noKey, noCert, both, badPin, missing, notPem] = await Promise.all([
      finish(['relay', '--listen', '127.0.0.1:0', '--tls-cert', pki.server.certPath]),
      finish(['gateway', '--relay', 'wss://127.0.0.1:9', '--domain', 'acme', '--token', 't', '--listen', '127.0.0.1:0', '--tls-key', pki.server.keyPath]),
      finish(['send', '--connect', 'wss://127.0.0.1:9', '--to', 'a@b', '--proxy', 'http://127.0.0.1:9', '--no-proxy', 'hi']),
      finish(['listen', '--connect', 'wss://127.0.0.1:9', '--as', 'a', '--fingerprint', 'abcd']),
      finish(['relay', '--listen', '127.0.0.1:0', '--tls-cert', '/nonexistent/relay.crt', '--tls-key', pki.server.keyPath]),
      finish(['send', '--connect', 'wss://127.0.0.1:9', '--to', 'a@b', '--ca', pki.server.keyPath, 'hi']),
    ]);
    for (const [p, cmd, re] of [
      [noKey, 'relay', /give --tls-cert and --tls-key together/],
      [noCert, 'gateway', /give --tls-cert and --tls-key together/],
      [both, 'send', /give --proxy or --no-proxy, not both/],
      [badPin, 'listen', /--fingerprint must be/],
    ] as const) {
      assert.equal(p.exit?.code, 2, p.describe());
      assert.match(p.lines('stderr')[0]!, new RegExp(`^postern: ${cmd}: ${re.source}`), p.describe());
    }
    for (const [p, re] of [
      [missing, /^postern: relay: cannot read --tls-cert \/nonexistent\/relay\.crt: no such file \[ERR_USAGE\]$/],
      [notPem, /^postern: send: --ca .*localhost\.key holds no PEM certificate \[ERR_USAGE\]$/],
    ] as const) {
      assert.equal(p.exit?.code, 2, p.describe());
      assert.equal(p.lines('stderr').length, 1, p.describe());
      assert.match(p.lines('stderr')[0]!, re, p.describe());
    }
  });
});
