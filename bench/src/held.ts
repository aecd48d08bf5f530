// `node bench/dist/held.js` (part of `npm run bench`): what a router's memory (RSS) grows by while
// it holds messages for an agent that is away, against the bytes it holds, measured in the same
// run for the SQLite store (bodies past maxBodyMemoryBytes stay on disk) and the in-memory store
// (the baseline: every body in memory). docs/LIMITS.md quotes these figures. Writes
// bench/results/held.json. See bench/README.md.
//
// Each case runs a router in a child process of its own (its RSS is read from /proc); this
// process is the sending agent. The child collects garbage before each reading, so the figure
// is what stays, not what awaits collection.
import { fork } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { connect } from '@postern/client';
import { startRouter } from '@postern/router';

const { values: opt } = parseArgs({
  options: {
    'held-mib': { type: 'string', default: '128' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
    child: { type: 'string' },
  },
});
if (opt.help) {
  console.log(`Usage: node --expose-gc bench/dist/held.js [--held-mib M] [--out FILE]
  --held-mib  MiB of message bodies held for an absent agent, per case [128]`);
  process.exit(0);
}

interface Case {
  id: string;
  label: string;
  /** Bytes of one body. */
  size: number;
  store: 'sqlite' | 'memory';
  budget?: number;
}

interface Row extends Case {
  messages: number;
  heldBytes: number;
  rssBeforeMiB: number;
  rssAfterMiB: number;
  /** RSS growth / body bytes held. */
  growthPerHeldByte: number;
  /** RSS growth per message, bytes. */
  growthPerMessage: number;
  bodyBytesInMemory: number;
  sendSeconds: number;
}

const MIB = 1024 * 1024;

/** The router side: started by the parent with a case, answers `rss` requests after a GC. */
async function child(spec: string): Promise<void> {
  const c = JSON.parse(spec) as Case & { dir: string };
  const silent = { debug() {}, info() {}, warn() {}, error() {} };
  const r = await startRouter({
    domain: 'acme',
    listen: ['127.0.0.1:0'],
    logger: silent,
    knownNames: ['bob'],
    maxStoredBytes: 4096 * MIB,
    maxStoredBytesPerSender: 4096 * MIB,
    maxQueueBytes: 4096 * MIB,
    maxQueueMessages: 10_000_000,
    ...(c.store === 'sqlite' ? { dataDir: c.dir } : {}),
    ...(c.budget === undefined ? {} : { maxBodyMemoryBytes: c.budget }),
  });
  const gc = (globalThis as { gc?: () => void }).gc;
  process.on('message', (m: { op: string }) => {
    if (m.op === 'rss') {
      for (let i = 0; i < 3; i++) gc?.();
      const s = r.router.stats();
      process.send?.({ rss: rssBytes(), stored: s.stored, bodyBytes: s.bodyBytes });
    } else if (m.op === 'stop') {
      void r.close().then(() => process.exit(0));
    }
  });
  process.send?.({ url: r.url });
}

function rssBytes(pid: number | 'self' = 'self'): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}

async function runCase(c: Case, heldBytes: number): Promise<Row> {
  const dir = mkdtempSync(join(tmpdir(), 'postern-held-'));
  const p = fork(fileURLToPath(import.meta.url), ['--child', JSON.stringify({ ...c, dir })], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const next = <T>(): Promise<T> => new Promise((resolve) => p.once('message', (m) => resolve(m as T)));
  try {
    const { url } = await next<{ url: string }>();
    const ask = async (): Promise<{ rss: number; stored: number; bodyBytes: number }> => {
      const a = next<{ rss: number; stored: number; bodyBytes: number }>();
      p.send({ op: 'rss' });
      return a;
    };
    const before = await ask();
    const alice = await connect({ url, name: 'alice', maxInFlight: 256 });
    const n = Math.floor(heldBytes / c.size);
    const body = new Uint8Array(c.size).fill(7);
    const t0 = Date.now();
    const sends: Array<Promise<unknown>> = [];
    for (let i = 0; i < n; i++) {
      sends.push(alice.send('bob@acme', body));
      if (sends.length >= 512) await Promise.all(sends.splice(0));
    }
    await Promise.all(sends);
    const sendSeconds = (Date.now() - t0) / 1000;
    await alice.close();
    const after = await ask();
    if (after.stored !== n) throw new Error(`case ${c.id}: the router holds ${after.stored} messages, not ${n}`);
    const growth = after.rss - before.rss;
    return {
      ...c,
      messages: n,
      heldBytes: n * c.size,
      rssBeforeMiB: before.rss / MIB,
      rssAfterMiB: after.rss / MIB,
      growthPerHeldByte: growth / (n * c.size),
      growthPerMessage: growth / n,
      bodyBytesInMemory: after.bodyBytes,
      sendSeconds,
    };
  } finally {
    p.send({ op: 'stop' });
    await new Promise((r) => setTimeout(r, 200));
    p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const held = Number(opt['held-mib']) * MIB;
  const cases: Case[] = [
    { id: 'm64k', label: 'in-memory store (baseline), 64 KiB bodies', size: 64 * 1024, store: 'memory' },
    { id: 's64k', label: 'SQLite, default maxBodyMemoryBytes (32 MiB), 64 KiB bodies', size: 64 * 1024, store: 'sqlite' },
    { id: 's64k-8', label: 'SQLite, maxBodyMemoryBytes 8 MiB, 64 KiB bodies', size: 64 * 1024, store: 'sqlite', budget: 8 * MIB },
    { id: 's1k', label: 'SQLite, default budget, 1 KiB bodies (per-message cost)', size: 1024, store: 'sqlite' },
  ];
  const rows: Row[] = [];
  for (const c of cases) {
    // Small bodies show the cost per message: 32 MiB of them (32,768 messages) is enough.
    const bytes = c.size < 4096 ? Math.min(held, 32 * MIB) : held;
    const r = await runCase(c, bytes);
    rows.push(r);
    console.log(
      `  ${r.id.padEnd(7)} ${r.label}: held ${(r.heldBytes / MIB).toFixed(0)} MiB in ${r.messages} messages; ` +
        `RSS ${r.rssBeforeMiB.toFixed(0)} -> ${r.rssAfterMiB.toFixed(0)} MiB (+${(r.rssAfterMiB - r.rssBeforeMiB).toFixed(0)}); ` +
        `${r.growthPerHeldByte.toFixed(2)} per byte held, ${r.growthPerMessage.toFixed(0)} B per message; bodies in memory ${(r.bodyBytesInMemory / MIB).toFixed(1)} MiB (sent in ${r.sendSeconds.toFixed(1)} s)`,
    );
  }
  const base = rows.find((r) => r.id === 'm64k');
  const sq = rows.find((r) => r.id === 's64k');
  if (base !== undefined && sq !== undefined) {
    const ratio = (sq.rssAfterMiB - sq.rssBeforeMiB) / (base.rssAfterMiB - base.rssBeforeMiB);
    console.log(`held memory: SQLite / in-memory store RSS growth at ${(sq.heldBytes / MIB).toFixed(0)} MiB held: ${ratio.toFixed(2)}`);
  }
  const out = opt.out ?? join(fileURLToPath(new URL('..', import.meta.url)), 'results', 'held.json');
  mkdirSync(join(out, '..'), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ node: process.version, date: new Date().toISOString(), heldMiB: held / MIB, rows }, null, 2)}\n`);
  console.log(`wrote ${out}`);
}

if (opt.child !== undefined) void child(opt.child);
else
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(`bench held: ${err instanceof Error ? err.message : String(err)}`);
      process.exit(1);
    },
  );
