// `node bench/dist/presence.js` (part of `npm run bench`): what one presence change costs as
// watchers (N) and the routers they sit behind (M) grow, against the baseline of telling each
// watcher with a message of its own, measured in the same run. Prints a table and writes
// bench/results/presence.json. See bench/README.md.
//
// The world: a relay; gateway acme with one hub where alice is homed; M gateways (org0..) each
// with N/M watcher agents watching alice@acme (she allowed '*'). Everything runs in this one
// process (routers and agents share its event loop), so the figures are the whole system's CPU
// per change, not one router's.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { connect, type Client } from '@postern/client';
import { issueToken, startRouter, type RouterServer } from '@postern/router';

const { values: opt } = parseArgs({
  options: {
    shapes: { type: 'string', default: '1x10,4x100,4x1000,16x1000,16x2000' },
    changes: { type: 'string', default: '40' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opt.help) {
  console.log(`Usage: node bench/dist/presence.js [--shapes MxN,...] [--changes K] [--out FILE]
  --shapes   M gateways x N watchers in all [1x10,4x100,4x1000,16x1000,16x2000]
  --changes  property changes per shape (each waits until every watcher saw it) [40]`);
  process.exit(0);
}

const BUDGET_MS = 240_000;
const started = Date.now();
const budget = setTimeout(() => {
  console.error('bench presence: over its time budget; stopping');
  process.exit(1);
}, BUDGET_MS);
budget.unref();

interface Row {
  gateways: number;
  watchers: number;
  /** PRESENCE frames per change, on router links in all, and to agents. */
  framesToLinksPerChange: number;
  framesToAgentsPerChange: number;
  /** On the relay's links: its share of the frames (M with presence; N with one message each). */
  relayFramesPerChange: number;
  /** CPU (all routers and agents, this process) per change, µs: presence, and one message per watcher. */
  cpuPerChangeUs: number;
  baselineCpuPerChangeUs: number;
  /** Time until every watcher saw a change, median, ms. */
  latencyMs: number;
  baselineLatencyMs: number;
  /** Heap per watch (all routers and the SDK, connections not counted), bytes. */
  heapPerWatcherBytes: number;
}

const silent = { debug() {}, info() {}, warn() {}, error() {} };

async function shape(m: number, n: number, changes: number): Promise<Row> {
  const closers: Array<() => Promise<void>> = [];
  const r = async (o: Parameters<typeof startRouter>[0]): Promise<RouterServer> => {
    // Every watcher connects from 127.0.0.1 without a token: the per-address limits are lifted.
    const s = await startRouter({ listen: ['127.0.0.1:0'], logger: silent, maxConnectionsPerAddress: 1_000_000, connectRatePerAddress: 1_000_000, ...o });
    closers.push(() => s.close());
    return s;
  };
  try {
    const relay = await r({ domain: 'relay', secret: 'relay-secret', maxConnections: 100_000 });
    const gw = await r({ domain: 'acme', secret: 'gs', uplinks: [{ url: relay.url, token: await issueToken('relay-secret', { domain: 'acme' }) }] });
    const hub = await r({ domain: 'acme', hub: true, uplinks: [{ url: gw.url, token: await issueToken('gs', { domain: 'acme', hub: true }) }] });
    const orgs: RouterServer[] = [];
    for (let i = 0; i < m; i++) orgs.push(await r({ domain: `org${i}`, maxConnections: 100_000, uplinks: [{ url: relay.url, token: await issueToken('relay-secret', { domain: `org${i}` }) }] }));
    await until(() => gw.router.stats().hubs === 1 && orgs.every((o) => relay.router.routes().has(o.router.domain)) && relay.router.routes().has('acme'), 'the routers to link');
    const alice = await connect({ url: hub.url, name: 'alice' });
    closers.push(() => alice.close());
    await alice.allowWatchers(['*']);
    const watchers: Client[] = [];
    const seen: number[] = new Array<number>(n).fill(-1);
    const got: number[] = new Array<number>(n).fill(0);
    const readers: Array<Promise<void>> = [];
    const ac = new AbortController();
    for (let i = 0; i < n; i++) {
      const c = await connect({ url: orgs[i % m]!.url });
      watchers.push(c);
      closers.push(() => c.close());
      readers.push(
        (async () => {
          for await (const msg of c) got[i] = Number(msg.text());
        })(),
      );
    }
    // The watches alone: connections and SDKs are there already.
    await sleep(200);
    global.gc?.();
    const heap0 = process.memoryUsage().heapUsed;
    watchers.forEach((c, i) => {
      readers.push(
        (async () => {
          try {
            for await (const e of c.watch('alice@acme', { signal: ac.signal })) {
              const v = Number(e.properties.v ?? '-1');
              if (v > seen[i]!) seen[i] = v;
            }
          } catch {
            // ended
          }
        })(),
      );
    });
    await until(() => seen.every((v) => v === -1) && relay.router.stats().watched === 1 && orgs.every((o) => o.router.stats().presenceToAgents >= n / m - 1), 'every watcher to have its first state', 60_000);
    await sleep(200);
    global.gc?.();
    const heapPerWatcherBytes = Math.max(0, (process.memoryUsage().heapUsed - heap0) / n);

    // Presence: K changes, each until every watcher saw it.
    const statsBefore = all(relay, gw, hub, orgs);
    const lat: number[] = [];
    const cpu0 = process.cpuUsage();
    for (let k = 0; k < changes; k++) {
      const t = performance.now();
      await alice.setProperties({ v: String(k) });
      await until(() => seen.every((v) => v >= k), `change ${k} to reach every watcher`);
      lat.push(performance.now() - t);
    }
    const cpu = process.cpuUsage(cpu0);
    const statsAfter = all(relay, gw, hub, orgs);

    // Baseline: the same news as one volatile message to each watcher.
    const relayMsgs0 = relay.router.stats().msgsForwarded + relay.router.stats().msgsDelivered;
    const addresses = watchers.map((w) => w.address);
    const blat: number[] = [];
    const bcpu0 = process.cpuUsage();
    for (let k = 0; k < changes; k++) {
      const t = performance.now();
      for (const a of addresses) void alice.send(a, String(k), { volatile: true }).catch(() => undefined);
      await until(() => got.every((v) => v >= k), `message ${k} to reach every watcher`);
      blat.push(performance.now() - t);
    }
    const bcpu = process.cpuUsage(bcpu0);
    const relayMsgs = relay.router.stats().msgsForwarded + relay.router.stats().msgsDelivered - relayMsgs0;
    ac.abort();
    return {
      gateways: m,
      watchers: n,
      framesToLinksPerChange: (statsAfter.toLinks - statsBefore.toLinks) / changes,
      framesToAgentsPerChange: (statsAfter.toAgents - statsBefore.toAgents) / changes,
      relayFramesPerChange: (statsAfter.relayToLinks - statsBefore.relayToLinks) / changes,
      cpuPerChangeUs: Math.round((cpu.user + cpu.system) / changes),
      baselineCpuPerChangeUs: Math.round((bcpu.user + bcpu.system) / changes),
      latencyMs: median(lat),
      baselineLatencyMs: median(blat),
      heapPerWatcherBytes: Math.round(heapPerWatcherBytes),
      ...{ baselineRelayFramesPerChange: relayMsgs / changes },
    };
  } finally {
    for (const c of closers.reverse()) await c().catch(() => undefined);
  }
}

function all(relay: RouterServer, gw: RouterServer, hub: RouterServer, orgs: RouterServer[]): { toLinks: number; toAgents: number; relayToLinks: number } {
  const rs = [relay, gw, hub, ...orgs].map((s) => s.router.stats());
  return { toLinks: rs.reduce((a, s) => a + s.presenceToLinks, 0), toAgents: rs.reduce((a, s) => a + s.presenceToAgents, 0), relayToLinks: relay.router.stats().presenceToLinks };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round((s[Math.floor(s.length / 2)] ?? 0) * 100) / 100;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function until(ok: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`bench presence: timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

const shapes = (opt.shapes ?? '').split(',').map((s) => s.split('x').map(Number) as [number, number]);
const changes = Number(opt.changes);
const rows: Row[] = [];
for (const [m, n] of shapes) {
  if (!(m >= 1 && n >= m)) throw new Error(`--shapes: bad shape ${m}x${n}`);
  rows.push(await shape(m, n, changes));
}
const head = ['M gw', 'N watchers', 'frames/change (links)', 'relay frames/change', 'to agents', 'CPU µs/change', 'baseline CPU µs', 'CPU ratio', 'latency ms', 'baseline ms', 'heap B/watch'];
console.log(`\npresence fan-out: one property change of alice@acme, watched by N agents behind M gateways (${changes} changes per row)`);
console.log(head.join(' | '));
for (const r of rows) {
  console.log(
    [r.gateways, r.watchers, r.framesToLinksPerChange, r.relayFramesPerChange, r.framesToAgentsPerChange, r.cpuPerChangeUs, r.baselineCpuPerChangeUs, (r.cpuPerChangeUs / r.baselineCpuPerChangeUs).toFixed(2), r.latencyMs, r.baselineLatencyMs, r.heapPerWatcherBytes].join(' | '),
  );
}
console.log('baseline: the same news sent as one volatile message to each watcher, in the same run');
const dir = join(fileURLToPath(new URL('..', import.meta.url)), 'results');
mkdirSync(dir, { recursive: true });
const out = opt.out ?? join(dir, 'presence.json');
writeFileSync(out, `${JSON.stringify({ at: new Date().toISOString(), node: process.version, changes, rows, seconds: Math.round((Date.now() - started) / 1000) }, null, 2)}\n`);
console.log(`written: ${out}`);
process.exit(0);
