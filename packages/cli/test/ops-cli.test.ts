// Operations of the real `postern` executable (issue 13 items 4 and 5): JSON logs, a graceful
// stop on SIGTERM (exit 0, CLOSE to agents, what it held kept for the next start), a gateway's
// uplink outage said once, and /metrics on the admin listener.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, describe, it } from 'node:test';
import { connect, type Client } from '@postern/client';
import { issueToken } from '@postern/router';
import { freePort, waitFor } from '@postern/testing';
import { killAll, listeningOn, run, start } from './procs.js';

afterEach(killAll);

const SECRET = 'ops-test-secret-0123456789abcdef';

function jsonLines(text: string): Array<Record<string, unknown>> {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        throw new Error(`not a JSON line: ${l}`);
      }
    });
}

describe('postern relay as a service', () => {
  const dir = mkdtempSync(join(tmpdir(), 'postern-ops-cli-'));
  const clients: Client[] = [];
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it('SIGTERM: JSON logs, agents get a clean CLOSE, exit 0, and what it held is delivered after a restart', async () => {
    const relay = start('relay', '--listen', '127.0.0.1:0', '--data', dir, '--known', 'carol', '--log-format', 'json', '--admin-listen', '127.0.0.1:0');
    const { url } = await listeningOn(relay);
    await relay.waitFor('stderr', /"event":"router\.start"/);
    const alice = await connect({ url, name: 'alice', backoff: { initialMs: 5000, maxMs: 5000 } });
    clients.push(alice);
    const closes: string[] = [];
    void (async () => {
      for await (const s of alice.status()) if (s.type === 'disconnected') closes.push(s.error.code);
    })();
    await alice.send('carol', 'held over a restart');
    // The admin listener's address is in the start event.
    const start0 = jsonLines(relay.stderr).find((l) => l['event'] === 'router.start')!;
    const metricsUrl = /^http:\/\/\S+\/metrics/.exec(start0['admin'] as string)![0];
    const metrics = await (await fetch(metricsUrl)).text();
    assert.match(metrics, /^postern_queue_messages\{class="agent"\} 1$/m);
    assert.match(metrics, /^postern_connections\{role="agent",transport="ws"\} 1$/m);
    const t0 = Date.now();
    relay.child.kill('SIGTERM');
    const exit = await relay.waitExit(15_000);
    assert.equal(exit.code, 0, relay.describe());
    assert.ok(Date.now() - t0 < 5000, 'it stops in a bounded time');
    const lines = jsonLines(relay.stderr);
    for (const l of lines) {
      assert.equal(typeof l['time'], 'string');
      assert.equal(typeof l['event'], 'string');
      assert.equal(typeof l['msg'], 'string');
    }
    const events = lines.map((l) => l['event']);
    assert.deepEqual(events.slice(-2), ['router.stopping', 'router.stopped']);
    const stopping = lines.find((l) => l['event'] === 'router.stopping')!;
    assert.equal(stopping['reason'], 'SIGTERM');
    assert.equal(stopping['held_messages'], 1);
    assert.deepEqual(stopping['held'], { agent: 1, domain: 0, return: 0 });
    await waitFor(() => closes.length > 0, 'alice to see the close');
    assert.equal(closes[0], 'ERR_SHUTDOWN', 'a CLOSE frame, not a dropped connection');
    await alice.close();

    const again = start('relay', '--listen', '127.0.0.1:0', '--data', dir, '--known', 'carol');
    const { url: url2 } = await listeningOn(again);
    const carol = await connect({ url: url2, name: 'carol' });
    clients.push(carol);
    const m = await carol[Symbol.asyncIterator]().next();
    assert.ok(m.done !== true);
    assert.equal(new TextDecoder().decode(m.value.body), 'held over a restart');
    again.child.kill('SIGINT');
    assert.equal((await again.waitExit(15_000)).code, 0);
    assert.match(again.stderr, /INFO {2}relay: stopping \(SIGINT\)/);
  });

  it('usage errors: an admin listener off loopback without a token, an unknown log format, a short admin token, bad dashboard peers and admin hosts', async () => {
    const offLoopback = await run(['relay', '--listen', '127.0.0.1:0', '--memory', '--admin-listen', '0.0.0.0:9464']);
    assert.equal(offLoopback.exit?.code, 2, offLoopback.describe());
    assert.match(offLoopback.stderr, /--admin-listen on 0\.0\.0\.0 \(not loopback\) needs --admin-token/);
    const format = await run(['relay', '--listen', '127.0.0.1:0', '--memory', '--log-format', 'xml']);
    assert.equal(format.exit?.code, 2, format.describe());
    assert.match(format.stderr, /--log-format must be text or json/);
    const short = await run(['relay', '--listen', '127.0.0.1:0', '--memory', '--admin-token', 'short']);
    assert.equal(short.exit?.code, 2, short.describe());
    const peer = await run(['relay', '--listen', '127.0.0.1:0', '--memory', '--dashboard-peer', 'ftp://127.0.0.1:1']);
    assert.equal(peer.exit?.code, 2, peer.describe());
    assert.match(peer.stderr, /--dashboard-peer takes the URL of an admin listener/);
    const tokens = ['--dashboard-peer-token', 'a'.repeat(16), '--dashboard-peer-token', 'b'.repeat(16), '--dashboard-peer-token', 'c'.repeat(16)];
    const peerTokens = await run(['relay', '--listen', '127.0.0.1:0', '--memory', '--dashboard-peer', 'http://127.0.0.1:1', '--dashboard-peer', 'http://127.0.0.1:2', ...tokens]);
    assert.equal(peerTokens.exit?.code, 2, peerTokens.describe());
    assert.match(peerTokens.stderr, /one --dashboard-peer-token for all --dashboard-peer, or one each \(2\), not 3/);
    const host = await run(['relay', '--listen', '127.0.0.1:0', '--memory', '--admin-host', 'bad host']);
    assert.equal(host.exit?.code, 2, host.describe());
  });

  it('a gateway whose relay is not there: one WARN while it retries, one INFO when the relay comes up', async () => {
    const port = await freePort();
    const token = await issueToken(SECRET, { domain: 'acme' });
    const gateway = start('gateway', '--relay', `ws://127.0.0.1:${port}`, '--domain', 'acme', '--token', token, '--listen', '127.0.0.1:0');
    await listeningOn(gateway);
    await gateway.waitFor('stderr', /WARN {2}gateway: uplink down/);
    await new Promise((r) => setTimeout(r, 2500)); // retries at 250, 500, 1000 ms...
    const relay = start('relay', '--listen', `127.0.0.1:${port}`, '--secret', SECRET);
    await listeningOn(relay);
    await gateway.waitFor('stderr', /INFO {2}gateway: uplink connected url=.* down_ms=\d+ attempts=\d+/, 40_000);
    const warns = gateway.stderr.split('\n').filter((l) => / WARN /.test(l));
    assert.equal(warns.length, 1, gateway.stderr);
    assert.ok(warns[0]!.length < 400, warns[0]);
  });
});
