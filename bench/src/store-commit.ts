// `node bench/dist/store-commit.js`: the cost of one group commit of the SQLite store alone, in the
// pattern of a router under load: each commit appends K messages, retires K and removes K that
// earlier commits appended (each message lives two commits). Prints wall and CPU time per commit
// and per message, with `sync: 'full'` (an fsync per commit) and `'normal'`. Run it in two
// worktrees to compare two versions of the store (bench/RESULTS.md, issue 12).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SqliteStore } from '@postern/store-sqlite';

const { values: opt } = parseArgs({
  options: {
    commits: { type: 'string', default: '2000' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opt.help) {
  console.log('Usage: node bench/dist/store-commit.js [--commits N]   (N commits per row [2000])');
  process.exit(0);
}
const commits = Number(opt.commits);

async function row(k: number, size: number, sync: 'full' | 'normal'): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'postern-store-commit-'));
  const s = new SqliteStore(join(dir, 'router.db'), { sync, commitIntervalMs: 0 });
  await s.recover();
  const body = new Uint8Array(size).fill(7);
  let n = 0;
  const message = (): Parameters<SqliteStore['append']>[0][number] => ({ queue: 'agent:bob', from: 'alice@acme', id: `m${n++}`, to: 'bob@acme', flags: 0, hops: 3, body, storedAt: Date.now(), expiresAt: 0, cameFrom: '', via: 'NBQXGZ3JNZTSA3DPNYQGS3TEMVRQ' });
  const held: number[] = [];
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  for (let c = 0; c < commits; c++) {
    const calls: Array<Promise<unknown>> = [s.append(Array.from({ length: k }, message))];
    if (held.length >= 2 * k) calls.push(s.retire(held.slice(k, 2 * k)), s.remove(held.splice(0, k)));
    const [seqs] = (await Promise.all(calls)) as [number[]];
    held.push(...seqs);
  }
  const wall = ((performance.now() - t0) * 1000) / commits;
  const used = process.cpuUsage(cpu);
  const busy = (used.user + used.system) / commits;
  await s.close();
  rmSync(dir, { recursive: true, force: true });
  console.log(`${`K=${k}`.padEnd(5)} ${`${size} B`.padStart(6)}  ${sync.padEnd(6)}  ${wall.toFixed(0).padStart(6)} us/commit wall  ${busy.toFixed(0).padStart(5)} us/commit CPU  ${(busy / k).toFixed(1).padStart(5)} us/message CPU`);
}

for (const sync of ['full', 'normal'] as const) for (const k of [5, 50]) for (const size of [64, 1024]) await row(k, size, sync);
