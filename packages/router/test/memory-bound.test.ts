// Memory that the limits bound (issue 11, item 6): past maxBodyMemoryBytes the bodies of stored
// messages stay on disk only (SQLite) and are read back when sent; after a restart, recovery
// loads bodies only up to the same budget. Real router, real SQLite file, real SDK clients.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { connect, type Client } from '@postern/client';
import { startRouter, type RouterServer } from '@postern/router';
import { waitFor } from '@postern/testing';

const BUDGET = 20_000;
const N = 200;
const SIZE = 1000;

function body(i: number): Uint8Array {
  const b = new Uint8Array(SIZE);
  b.fill(i % 251);
  new DataView(b.buffer).setUint32(0, i);
  return b;
}

async function receive(c: Client, n: number): Promise<number[]> {
  const got: number[] = [];
  const bad: number[] = [];
  void (async () => {
    for await (const m of c) {
      const i = new DataView(m.body.buffer, m.body.byteOffset).getUint32(0);
      if (m.body.length !== SIZE || m.body[SIZE - 1] !== i % 251) bad.push(i);
      got.push(i);
    }
  })().catch(() => {});
  await waitFor(() => got.length >= n, `${n} messages`, 15_000);
  assert.deepEqual(bad, [], 'every body arrived whole');
  return got;
}

describe('memory bounded by maxBodyMemoryBytes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'postern-membound-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const start = (port = 0): Promise<RouterServer> =>
    startRouter({ domain: 'acme', listen: [`127.0.0.1:${port}`], dataDir: dir, maxBodyMemoryBytes: BUDGET, knownNames: ['bob'] });

  it('keeps at most the budget of bodies in memory while messages wait, and delivers every one whole and in order', async () => {
    const r = await start();
    const alice = await connect({ url: r.url, name: 'alice' });
    for (let i = 0; i < N; i++) await alice.send('bob@acme', body(i));
    const s = r.router.stats();
    assert.equal(s.stored, N);
    assert.ok(s.bodyBytes <= BUDGET + SIZE, `bodies in memory: ${s.bodyBytes} bytes for ${N * SIZE} held`);
    assert.ok(s.bodiesEvicted >= N - BUDGET / SIZE - 1, `evicted ${s.bodiesEvicted}`);
    const bob = await connect({ url: r.url, name: 'bob' });
    assert.deepEqual(await receive(bob, N), Array.from({ length: N }, (_, i) => i));
    await waitFor(() => r.router.stats().stored === 0, 'the router to settle', 5000);
    const settled = r.router.stats();
    assert.ok(settled.bodiesRead >= s.bodiesEvicted, `read back ${settled.bodiesRead}`);
    assert.equal(settled.bodyBytes, 0, 'nothing left in memory');
    await Promise.all([alice.close(), bob.close()]);
    await r.close();
  });

  it('after a restart, recovers bodies only up to the budget, and delivers the rest from disk', async () => {
    let r = await start();
    const port = Number(new URL(r.url).port);
    const alice = await connect({ url: r.url, name: 'alice', reconnect: false });
    for (let i = 0; i < N; i++) await alice.send('bob@acme', body(i));
    await alice.close();
    await r.close();
    r = await start(port);
    after(() => r.close());
    const s = r.router.stats();
    assert.equal(s.stored, N);
    assert.ok(s.bodyBytes <= BUDGET, `recovered bodies in memory: ${s.bodyBytes}`);
    const bob = await connect({ url: r.url, name: 'bob' });
    after(() => bob.close());
    assert.deepEqual(await receive(bob, N), Array.from({ length: N }, (_, i) => i));
  });
});
