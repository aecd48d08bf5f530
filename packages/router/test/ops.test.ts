// Operations (issue 13 items 4 and 5): what a router logs (event names, JSON lines, a link going
// down said once, not per retry), its graceful stop, and its metrics behind the admin endpoints.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { LOG_EVENTS, type Logger, type UplinkStatus } from '@postern/core';
import { PosternError } from '@postern/protocol';
import { createConsoleLogger, issueToken, startRouter } from '@postern/router';
import { ManualClock, freePort, waitFor } from '@postern/testing';
import { LINK_REMINDER_FIRST_MS, linkLog } from '../src/link-log.js';
import { agent, next, router } from './live.js';

interface Line {
  level: string;
  event: string;
  msg: string;
  fields: Record<string, unknown>;
}

/** A logger that keeps what it is given. */
function capture(): { logger: Logger; lines: Line[] } {
  const lines: Line[] = [];
  const at =
    (level: string) =>
    (event: string, msg: string, fields: Record<string, unknown> = {}): void =>
      void lines.push({ level, event, msg, fields });
  return { logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }, lines };
}

const down = (code = 'ERR_TRANSPORT'): UplinkStatus => ({ type: 'down', error: new PosternError(code as 'ERR_TRANSPORT', `cannot open ws://127.0.0.1:1: connect ECONNREFUSED ${'x'.repeat(400)}`), retryInMs: 500, refused: false });

describe('logs', () => {
  it('JSON: one object a line with time, level, event and msg; fields cannot overwrite them; text stays one readable line', () => {
    const out: string[] = [];
    const log = createConsoleLogger('info', 'gateway: ', (l) => out.push(l), 'json');
    log.warn('uplink.down', 'uplink down', { url: 'ws://r', event: 'spoof', err: new Error('boom'), n: 3n });
    log.debug('link.closed', 'not at info level');
    assert.equal(out.length, 1);
    assert.ok(out[0]!.endsWith('\n') && !out[0]!.slice(0, -1).includes('\n'));
    const o = JSON.parse(out[0]!) as Record<string, unknown>;
    assert.equal(typeof o['time'], 'string');
    assert.deepEqual({ ...o, time: 0 }, { time: 0, level: 'warn', event: 'uplink.down', msg: 'uplink down', name: 'gateway', url: 'ws://r', err: 'boom', n: '3' });
    const text: string[] = [];
    createConsoleLogger('info', 'relay: ', (l) => text.push(l)).info('router.start', 'relay started', { listen: ['ws://a'], secret: '--secret' });
    assert.match(text[0]!, /^\S+ INFO {2}relay: relay started listen=\["ws:\/\/a"\] secret="--secret"\n$/);
  });

  it('every event name is documented in docs/OPERATIONS.md', () => {
    const doc = readFileSync(new URL('../../../../docs/OPERATIONS.md', import.meta.url), 'utf8');
    const missing = LOG_EVENTS.filter((e) => !doc.includes(`| \`${e}\` |`));
    assert.deepEqual(missing, [], 'add a row to the event table of docs/OPERATIONS.md');
  });

  it('a link down: one WARN, retries at debug level, a reminder after a minute then doubling, one INFO back up with its downtime', () => {
    const clock = new ManualClock();
    const { logger, lines } = capture();
    const said = linkLog(clock, logger, 'uplink', 'uplink', 'ws://relay');
    said(down());
    for (let i = 0; i < 50; i++) {
      clock.tick(1000);
      said(down());
    }
    const loud = () => lines.filter((l) => l.level !== 'debug');
    assert.deepEqual(
      loud().map((l) => `${l.level} ${l.event}`),
      ['warn uplink.down'],
      'one line in 50 s of retries',
    );
    assert.ok((loud()[0]!.fields['reason'] as string).length <= 300, 'a long reason is cut');
    clock.tick(LINK_REMINDER_FIRST_MS - 50_000);
    said(down());
    assert.equal(loud().at(-1)!.event, 'uplink.still_down');
    assert.equal(loud().at(-1)!.fields['down_ms'], LINK_REMINDER_FIRST_MS);
    // The next reminder comes twice as late.
    for (let i = 0; i < 119; i++) {
      clock.tick(1000);
      said(down());
    }
    assert.equal(loud().length, 2);
    clock.tick(1000);
    said(down());
    assert.equal(loud().length, 3);
    // Another reason is said at once.
    said(down('ERR_AUTH_FAILED'));
    assert.equal(loud().length, 4);
    assert.equal(loud().at(-1)!.fields['reason_changed'], true);
    clock.tick(5000);
    said({ type: 'up', node: 'N', domain: 'acme', version: 2 });
    const up = loud().at(-1)!;
    assert.equal(up.level, 'info');
    assert.equal(up.event, 'uplink.up');
    assert.equal(up.fields['down_ms'], 1000 * 50 + 10_000 + 120_000 + 5000);
    assert.equal(up.fields['attempts'], 1 + 50 + 1 + 120 + 1);
  });

  it('a real gateway whose relay is not there yet: one WARN while it retries, one INFO when the relay comes', async () => {
    const port = await freePort();
    const gw = capture();
    const token = await issueToken('relay-secret', { domain: 'acme' });
    const started = performance.now();
    await router({ domain: 'acme', uplinks: [{ url: `ws://127.0.0.1:${port}`, token }], backoff: { initialMs: 20, maxMs: 50 }, logger: gw.logger });
    await new Promise((r) => setTimeout(r, 1000)); // some 20+ attempts
    const attempts = gw.lines.filter((l) => l.event === 'uplink.down').length;
    assert.ok(attempts >= 5, `it retried: ${attempts}`);
    assert.deepEqual(
      gw.lines.filter((l) => l.level === 'warn' || l.level === 'info').map((l) => `${l.level} ${l.event}`),
      ['info router.start', 'warn uplink.down'],
    );
    await router({ domain: 'relay', secret: 'relay-secret', listen: [`127.0.0.1:${port}`] });
    await waitFor(() => gw.lines.some((l) => l.event === 'uplink.up'), 'the uplink to come up');
    const up = gw.lines.find((l) => l.event === 'uplink.up')!;
    assert.equal(up.level, 'info');
    // Down from the first failed dial (just after start) until it came back: about the wait.
    const downMs = up.fields['down_ms'] as number;
    assert.ok(downMs >= 800 && downMs <= performance.now() - started, JSON.stringify(up));
  });

  it('says once at start what runs, where and guarded by what: listeners and transports, secret source, access, store, changed limits', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'postern-ops-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const { logger, lines } = capture();
    const r = await startRouter({ domain: 'acme', listen: ['127.0.0.1:0'], dataDir: dir, maxQueueMessages: 50, logger, role: 'gateway', secretSource: '$POSTERN_SECRET', secret: 's3cret' });
    await r.close();
    const start = lines.filter((l) => l.event === 'router.start');
    assert.equal(start.length, 1);
    const f = start[0]!.fields;
    assert.deepEqual(f['listen'], [`ws://127.0.0.1:${r.addresses[0]!.port} (WebSocket, HTTP long-poll http://127.0.0.1:${r.addresses[0]!.port}/postern/http)`]);
    assert.equal(f['secret'], '$POSTERN_SECRET');
    assert.equal(f['access'], 'LAN: requires tokens');
    assert.equal(f['store'], `${join(dir, 'router.db')} (sync full)`);
    assert.deepEqual(f['limits'], { maxQueueMessages: 50 });
    assert.equal(f['admin'], 'off');
    const open = capture();
    const o = await startRouter({ domain: 'acme', listen: ['127.0.0.1:0'], logger: open.logger, role: 'gateway' });
    await o.close();
    assert.match(open.lines.find((l) => l.event === 'router.start')!.fields['access'] as string, /^LAN: open/);
    assert.equal(open.lines.find((l) => l.event === 'router.start')!.fields['store'], 'memory (lost on restart)');
  });
});

describe('graceful stop', () => {
  it('shutdown(): agents get CLOSE SHUTDOWN (not a transport error), what it held is logged and stays in the store', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'postern-ops-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const { logger, lines } = capture();
    const r = await startRouter({ domain: 'acme', listen: ['127.0.0.1:0'], dataDir: dir, knownNames: ['carol'], logger });
    const alice = await agent(r.url, 'alice');
    await alice.send('carol', 'kept over a restart');
    const statuses: string[] = [];
    void (async () => {
      for await (const s of alice.status()) if (s.type === 'disconnected') statuses.push(s.error.code);
    })();
    assert.equal(await r.shutdown('SIGTERM'), true);
    const stopping = lines.find((l) => l.event === 'router.stopping')!;
    assert.equal(stopping.fields['held_messages'], 1);
    assert.deepEqual(stopping.fields['held'], { agent: 1, domain: 0, return: 0 });
    assert.ok(lines.some((l) => l.event === 'router.stopped'));
    await waitFor(() => statuses.length > 0, 'alice to see the close');
    assert.equal(statuses[0], 'ERR_SHUTDOWN');
    await alice.close();
    const again = await router({ domain: 'acme', dataDir: dir, knownNames: ['carol'] });
    const carol = await agent(again.url, 'carol');
    assert.equal(new TextDecoder().decode((await next(carol)).body), 'kept over a restart');
  });
});

describe('admin endpoints', () => {
  it('public /healthz says liveness only; /metrics and the counters need the admin token (401 without); the admin listener serves them on loopback', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'postern-ops-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const token = 'an-admin-token-0123456789';
    const r = await router({ domain: 'acme', dataDir: dir, adminToken: token, adminListen: '127.0.0.1:0' });
    const pub = `http://127.0.0.1:${r.addresses[0]!.port}`;
    assert.deepEqual(await (await fetch(`${pub}/healthz`)).json(), { status: 'ok' });
    const refused = await fetch(`${pub}/metrics`);
    assert.equal(refused.status, 401);
    assert.equal((await fetch(`${pub}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
    assert.equal((await fetch(`${pub}/healthz`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
    const auth = { headers: { authorization: `Bearer ${token}` } };
    const full = (await (await fetch(`${pub}/healthz`, auth)).json()) as { stats: { msgsIn: number } };
    assert.equal(full.stats.msgsIn, 0);
    const alice = await agent(r.url, 'alice');
    const bob = await agent(r.url, 'bob');
    await alice.send('bob', 'hi');
    await next(bob);
    await waitFor(async () => (await (await fetch(`${pub}/metrics`, auth)).text()).includes('postern_messages_acked_total 1'), 'the ACK to be counted');
    const text = await (await fetch(`${r.adminUrl!}/metrics`, auth)).text();
    for (const want of [
      /^postern_connections\{role="agent",transport="ws"\} 2$/m,
      /^postern_messages_in_total 1$/m,
      /^postern_messages_out_total\{to="agent"\} 1$/m,
      /^postern_queue_messages\{class="agent"\} 0$/m,
      /^postern_store_commit_seconds_count\{result="ok"\} [1-9]/m,
      /^process_cpu_user_seconds_total /m,
      /^postern_info\{domain="acme",/m,
    ]) {
      assert.match(text, want);
    }
    assert.equal((await fetch(`${r.adminUrl!}/metrics`)).status, 401, 'the admin listener asks for the token when there is one');
  });

  it('refuses an admin listener off loopback without a token; without admin settings the public listener serves no /metrics', async () => {
    await assert.rejects(startRouter({ domain: 'acme', adminListen: '0.0.0.0:0' }), (e: Error & { code?: string }) => e.code === 'ERR_CONFIG' && /not on loopback/.test(e.message));
    const r = await router({ domain: 'acme', adminListen: '127.0.0.1:0' });
    assert.equal((await fetch(`http://127.0.0.1:${r.addresses[0]!.port}/metrics`)).status, 404);
    assert.equal((await fetch(`${r.adminUrl!}/metrics`)).status, 200);
    const h = (await (await fetch(`${r.adminUrl!}/healthz`)).json()) as { stats?: unknown };
    assert.ok(h.stats !== undefined);
  });
});
