// A real full disk (issue 11 item 2): a `postern relay` whose --data is a 3 MiB tmpfs that fills
// up stays alive, refuses reliable messages with ERR_STORE_UNAVAILABLE, shows a degraded store in
// /healthz, delivers what it held, and accepts again once space returns, without a restart.
// Needs root (mount); skipped otherwise.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { connect, type Client, type Message } from '@postern/client';
import { waitFor } from '@postern/testing';
import { killAll, startRelay } from './procs.js';

/** Mounts a small tmpfs; undefined (with why) when this process may not. */
function mountTmpfs(): { dir: string } | { skip: string } {
  if (process.getuid?.() !== 0) return { skip: 'needs root to mount a tmpfs' };
  const dir = mkdtempSync(join(tmpdir(), 'postern-full-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', dir], { stdio: 'pipe' });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    return { skip: `cannot mount a tmpfs: ${(err as Error).message.split('\n')[0]}` };
  }
  return { dir };
}

/** Writes `file` until the file system is full. */
function fill(file: string): void {
  const fd = openSync(file, 'w');
  try {
    for (const size of [256 * 1024, 4096, 512]) {
      const chunk = Buffer.alloc(size, 7);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
    }
  } finally {
    closeSync(fd);
  }
}

type Outcome = { ok: true } | { ok: false; code: string };

async function send(c: Client, to: string, id: string): Promise<Outcome> {
  try {
    await c.send(to, `body of ${id} `.padEnd(1500, '.'), { id, timeoutMs: 5000 });
    return { ok: true };
  } catch (err) {
    return { ok: false, code: (err as { code?: string }).code ?? String(err) };
  }
}

/** The counters of /healthz are behind the admin token. */
const ADMIN_TOKEN = 'full-disk-admin-token-0123';

async function health(port: number): Promise<{ status: string; store: { ok: boolean; error?: string; since?: number }; stats: Record<string, number> }> {
  const r = await fetch(`http://127.0.0.1:${port}/healthz`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  return (await r.json()) as never;
}

describe('postern relay on a full disk', () => {
  const m = mountTmpfs();
  const clients: Client[] = [];
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    // The relay holds its store open on the tmpfs: it goes first.
    await killAll();
    if ('dir' in m) {
      try {
        execFileSync('umount', [m.dir], { stdio: 'pipe' });
      } catch {
        execFileSync('umount', ['-l', m.dir], { stdio: 'pipe' });
      }
      rmSync(m.dir, { recursive: true, force: true });
    }
  });

  it('refuses with ERR_STORE_UNAVAILABLE while full, keeps serving, and accepts again when space returns', { skip: 'skip' in m ? m.skip : false, timeout: 30_000 }, async () => {
    assert.ok('dir' in m);
    const data = join(m.dir, 'data');
    const filler = join(m.dir, 'filler');
    const relay = await startRelay('--data', data, '--known', 'carol', '--admin-token', ADMIN_TOKEN);
    const sender = await connect({ url: relay.url, name: 'alice', sendTimeoutMs: 5000 });
    clients.push(sender);
    const accepted = new Set<string>();
    const record = async (id: string): Promise<Outcome> => {
      const o = await send(sender, 'carol', id);
      if (o.ok) accepted.add(id);
      return o;
    };

    // Held before the disk fills; carol is offline.
    for (let i = 1; i <= 5; i++) assert.deepEqual(await record(`before-${i}`), { ok: true });

    fill(filler);
    // The first commit that needs a page more fails: from then on sends are refused.
    let refused: Outcome | undefined;
    for (let i = 1; i <= 200 && refused === undefined; i++) {
      const o = await record(`full-${i}`);
      if (!o.ok) refused = o;
    }
    assert.deepEqual(refused, { ok: false, code: 'ERR_STORE_UNAVAILABLE' }, 'a refusal once the disk is full');
    assert.deepEqual(await record('full-again'), { ok: false, code: 'ERR_STORE_UNAVAILABLE' }, 'and again while it stays full');
    const h = await health(relay.port);
    assert.equal(h.status, 'degraded');
    assert.equal(h.store.ok, false);
    assert.match(h.store.error ?? '', /full/);
    assert.ok((h.stats.storeRefused ?? 0) >= 2);
    assert.match(relay.proc.stdout + relay.proc.stderr, /the store cannot commit/);

    // Volatile messages and deliveries of what it holds go on.
    const carol = await connect({ url: relay.url, name: 'carol' });
    clients.push(carol);
    const got: string[] = [];
    const reading = (async () => {
      for await (const msg of carol as AsyncIterable<Message>) got.push(msg.id);
    })();
    await sender.send('carol', 'fleeting', { volatile: true, id: 'volatile-1' });
    await waitFor(() => [...accepted].every((id) => got.includes(id)) && got.includes('volatile-1'), 'held messages and the volatile one delivered', 10_000, 20);
    assert.equal(relay.proc.exit, undefined, `the relay runs on: ${relay.proc.describe()}`);

    // Space returns: without a restart, sends are accepted again (the probe or the next commit).
    unlinkSync(filler);
    await waitFor(async () => (await health(relay.port)).store.ok, 'the store recovered', 10_000, 100);
    for (let i = 1; i <= 5; i++) assert.deepEqual(await record(`after-${i}`), { ok: true });
    const healthy = await health(relay.port);
    assert.equal(healthy.status, 'ok');
    await waitFor(() => [...accepted].every((id) => got.includes(id)), 'everything accepted delivered', 10_000, 20);
    await new Promise((r) => setTimeout(r, 300));
    // Exactly once: every accepted message once, nothing refused delivered.
    const counts = new Map<string, number>();
    for (const id of got) counts.set(id, (counts.get(id) ?? 0) + 1);
    assert.deepEqual([...counts].filter(([, n]) => n > 1), [], 'no duplicates');
    assert.deepEqual(got.filter((id) => id !== 'volatile-1' && !accepted.has(id)), [], 'nothing refused was delivered');
    assert.match(relay.proc.stdout + relay.proc.stderr, /the store commits again/);
    assert.equal(relay.proc.exit, undefined);
    await carol.close();
    await reading;
  });
});
