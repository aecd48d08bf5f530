// `node --expose-gc bench/dist/idle.js` (part of `npm run bench`): what an idle agent costs. (a) A
// relay holding N idle agents (10,000 by default): the growth of its RSS per agent, for a Postern
// relay and, in the same run, for the baseline, a plain `ws` WebSocketServer holding N idle
// sockets. (b) An idle SDK client: the growth of RSS and heap per `connect()`ed client in a
// process that holds N/children of them. Prints the target lines of issue 12 and writes
// bench/results/idle.json. See bench/README.md.
//
// The relay runs in a child process of its own; the agents in `--children` others (so their
// memory is not the relay's). Every process collects garbage before each reading, so a figure is
// what stays, not what awaits collection. Readings are taken after a warm-up (`--warm` agents per
// child), so code loaded and compiled on the first connections is not counted per agent. Every
// child gets the open-files limit raised (`ulimit -n`, up to the hard limit).
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getHeapSpaceStatistics, writeHeapSnapshot } from 'node:v8';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { WebSocket, WebSocketServer } from 'ws';
import { connect, type Client } from '@postern/client';
import { startRouter } from '@postern/router';
import { pool } from './fleet.js';
import { openFilesLimit, spawnNode } from './spawn.js';

const { values: opt } = parseArgs({
  options: {
    agents: { type: 'string', default: '10000' },
    children: { type: 'string', default: '4' },
    warm: { type: 'string', default: '50' },
    'idle-s': { type: 'string', default: '30' },
    store: { type: 'string', default: 'sqlite' },
    out: { type: 'string' },
    heap: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
    child: { type: 'string' },
    spec: { type: 'string' },
  },
});
if (opt.help) {
  console.log(`Usage: node --expose-gc bench/dist/idle.js [--agents N] [--children C] [--warm W] [--store sqlite|memory] [--out FILE]
  --agents    idle agents held by the relay, in all [10000]
  --children  processes the agents are spread over (each also measures its SDK clients) [4]
  --warm      agents per child connected before the first reading (not counted) [50]
  --idle-s    a second reading once the agents have been idle this long (0: none) [30]
  --store     the Postern relay's store: sqlite (a temp dataDir, as in production) or memory [sqlite]
  --heap DIR  also write heap snapshots of the relay and of the first agents process, before and
              after (DIR/{ws,postern}-{relay,agents}-{before,after}.heapsnapshot; compare them with
              bench/dist/heap-diff.js); the snapshots perturb the RSS figures, so use a separate run`);
  process.exit(0);
}

const KIB = 1024;
const MIB = 1024 * KIB;
const RELAY_TARGET_KIB = 6;
const SDK_TARGET_KIB = 16;
const BUDGET_MS = 230_000;
const silent = { debug() {}, info() {}, warn() {}, error() {} };

interface Reading {
  rss: number;
  heap: number;
  /**
   * Where RSS went: V8's new space (the young generation, which grows under allocation and
   * survival and is part of RSS whether or not it holds anything), its old space, and memory
   * outside V8's heap that V8 knows of (`external`: ArrayBuffers and the like), resident bytes.
   */
  newSpace: number;
  oldSpace: number;
  external: number;
  /** Connections the relay holds (agents for Postern, sockets for ws). */
  held?: number;
}

function rssBytes(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}

function reading(held?: number): Reading {
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < 3; i++) gc?.();
  const space = (name: string): number => getHeapSpaceStatistics().find((x) => x.space_name === name)?.physical_space_size ?? 0;
  const m = process.memoryUsage();
  return { rss: rssBytes(), heap: m.heapUsed, newSpace: space('new_space'), oldSpace: space('old_space'), external: m.external, ...(held === undefined ? {} : { held }) };
}

/** A reading, then (`--heap`) a heap snapshot written to `file`: after the reading, which it would disturb. */
function readAndSnapshot(held: number, file: string | undefined): Reading {
  const r = reading(held);
  if (file !== undefined) writeHeapSnapshot(file);
  return r;
}

// ---------------------------------------------------------------------------------- children

/** The relay: a Postern router, or the baseline ws server. Answers `read` with a Reading. */
async function relayChild(kind: 'postern' | 'ws', spec: { store: string; agents: number }): Promise<void> {
  if (openFilesLimit() < spec.agents + 64) throw new Error(`the relay's open-files limit (${openFilesLimit()}) is below ${spec.agents + 64}`);
  let url: string;
  let held: () => number;
  let dir: string | undefined;
  if (kind === 'postern') {
    if (spec.store === 'sqlite') dir = mkdtempSync(join(tmpdir(), 'postern-idle-'));
    const r = await startRouter({
      domain: 'relay',
      listen: ['127.0.0.1:0'],
      logger: silent,
      maxConnections: spec.agents + 1000,
      // Every agent connects from 127.0.0.1: the per-address limits are lifted.
      maxConnectionsPerAddress: 1_000_000,
      connectRatePerAddress: 1_000_000,
      ...(dir === undefined ? {} : { dataDir: dir }),
    });
    url = r.url;
    held = () => r.router.stats().agents;
  } else {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 1024 * 1024 });
    await new Promise<void>((resolve) => wss.once('listening', resolve));
    wss.on('connection', (ws) => {
      ws.on('error', () => {});
    });
    url = `ws://127.0.0.1:${(wss.address() as { port: number }).port}`;
    held = () => wss.clients.size;
  }
  process.on('message', (m: { op: string; snapshot?: string }) => {
    if (m.op === 'read') process.send?.(readAndSnapshot(held(), m.snapshot));
  });
  process.on('disconnect', () => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    process.exit(0);
  });
  process.send?.({ url });
}

/** Agents: `warm` connected at once, then `count` more on `go`. Answers `read` with its own Reading. */
async function agentsChild(spec: { url: string; kind: 'sdk' | 'ws'; first: number; warm: number; count: number }): Promise<void> {
  if (openFilesLimit() < spec.warm + spec.count + 64) throw new Error(`an agents process's open-files limit (${openFilesLimit()}) is below ${spec.warm + spec.count + 64}`);
  const held: Array<Client | WebSocket> = [];
  const one = async (i: number): Promise<void> => {
    if (spec.kind === 'sdk') {
      held.push(await connect({ url: spec.url, name: `a${spec.first + i}`, reconnect: false }));
      return;
    }
    const ws = new WebSocket(spec.url, { perMessageDeflate: false });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.on('error', () => {});
    held.push(ws);
  };
  const run = (from: number, n: number): Promise<void> => pool(n, 32, (i) => one(from + i));
  process.on('disconnect', () => process.exit(0));
  process.on('message', (m: { op: string; snapshot?: string }) => {
    if (m.op === 'read') process.send?.(readAndSnapshot(held.length, m.snapshot));
    else if (m.op === 'go') {
      run(spec.warm, spec.count).then(
        () => process.send?.({ done: held.length }),
        (err: unknown) => {
          console.error(`bench idle: agents: ${err instanceof Error ? err.message : String(err)}`);
          process.exit(1);
        },
      );
    }
  });
  await run(0, spec.warm);
  process.send?.({ warm: held.length });
}

// ------------------------------------------------------------------------------------ parent

/** A child with the open-files limit raised as far as the hard limit lets. */
function start(role: string, spec: unknown, nofile: number): ChildProcess {
  return spawnNode(fileURLToPath(import.meta.url), ['--child', role, '--spec', JSON.stringify(spec)], { nofile, execArgv: ['--expose-gc'] });
}

function next<T>(p: ChildProcess, key: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: Record<string, unknown>): void => {
      if (!(key in m)) return;
      p.off('message', onMessage);
      p.off('exit', onExit);
      resolve(m as T);
    };
    const onExit = (code: number | null): void => reject(new Error(`a child exited (${code}) before answering '${key}'`));
    p.on('message', onMessage);
    p.once('exit', onExit);
  });
}

async function read(p: ChildProcess, snapshot?: string): Promise<Reading> {
  const a = next<Reading>(p, 'rss');
  p.send({ op: 'read', ...(snapshot === undefined ? {} : { snapshot }) });
  return a;
}

/** Where a child writes its heap snapshot (`--heap DIR`), or undefined. */
function snapshotFile(kind: 'postern' | 'ws', who: 'relay' | 'agents', when: 'before' | 'after'): string | undefined {
  return opt.heap === undefined ? undefined : join(opt.heap, `${kind}-${who}-${when}.heapsnapshot`);
}

interface CaseResult {
  relay: 'postern' | 'ws';
  agents: number;
  /** Agents connected between the two readings (warm-up agents excluded). */
  counted: number;
  connectSeconds: number;
  relayBefore: Reading;
  relayAfter: Reading;
  relayRssPerAgentBytes: number;
  relayHeapPerAgentBytes: number;
  /** The part of the RSS growth that is V8's new space growing (see Reading). */
  relayNewSpacePerAgentBytes: number;
  /** Per client in each agents process (SDK clients, or raw ws sockets for the baseline). */
  clientRssPerClientBytes: number[];
  clientHeapPerClientBytes: number[];
  clientNewSpacePerClientBytes: number[];
  /**
   * The same once the agents have been idle for `--idle-s` seconds (counted from the end of
   * their connecting): by then V8 has given back the young generation that the burst of
   * connections grew, which the reading 1 s after counts as if each connection cost it.
   */
  idle?: Figures & { seconds: number; relay: Reading };
}

type Figures = Pick<
  CaseResult,
  'relayRssPerAgentBytes' | 'relayHeapPerAgentBytes' | 'relayNewSpacePerAgentBytes' | 'clientRssPerClientBytes' | 'clientHeapPerClientBytes' | 'clientNewSpacePerClientBytes'
>;

function figures(counted: number, relayBefore: Reading, relayAfter: Reading, clientsBefore: Reading[], clientsAfter: Reading[]): Figures {
  return {
    relayRssPerAgentBytes: (relayAfter.rss - relayBefore.rss) / counted,
    relayHeapPerAgentBytes: (relayAfter.heap - relayBefore.heap) / counted,
    relayNewSpacePerAgentBytes: (relayAfter.newSpace - relayBefore.newSpace) / counted,
    clientRssPerClientBytes: perClient(clientsBefore, clientsAfter, 'rss'),
    clientHeapPerClientBytes: perClient(clientsBefore, clientsAfter, 'heap'),
    clientNewSpacePerClientBytes: perClient(clientsBefore, clientsAfter, 'newSpace'),
  };
}

const children = new Set<ChildProcess>();

/** The growth of `key` per client connected between the readings, in each agents process. */
function perClient(before: Reading[], after: Reading[], key: 'rss' | 'heap' | 'newSpace'): number[] {
  return after.map((a, i) => (a[key] - before[i]![key]) / ((a.held ?? 0) - (before[i]!.held ?? 0)));
}

async function runCase(kind: 'postern' | 'ws', n: number, c: number, warm: number, store: string): Promise<CaseResult> {
  const nofile = n + 1024;
  const relay = start(kind === 'postern' ? 'relay-postern' : 'relay-ws', { store, agents: n }, nofile);
  children.add(relay);
  const agents: ChildProcess[] = [];
  try {
    const { url } = await next<{ url: string }>(relay, 'url');
    const per = Math.ceil(n / c);
    let first = 0;
    const warms: Array<Promise<unknown>> = [];
    for (let i = 0; i < c; i++) {
      const total = Math.min(per, n - first);
      const w = Math.min(warm, total);
      const p = start('agents', { url, kind: kind === 'postern' ? 'sdk' : 'ws', first, warm: w, count: total - w }, total + 1024);
      children.add(p);
      agents.push(p);
      warms.push(next(p, 'warm'));
      first += total;
    }
    await Promise.all(warms);
    await new Promise((r) => setTimeout(r, 300));
    if (opt.heap !== undefined) mkdirSync(opt.heap, { recursive: true });
    const relayBefore = await read(relay, snapshotFile(kind, 'relay', 'before'));
    const clientsBefore = await Promise.all(agents.map((p, i) => read(p, i === 0 ? snapshotFile(kind, 'agents', 'before') : undefined)));
    const t0 = Date.now();
    const dones = agents.map((p) => next(p, 'done'));
    for (const p of agents) p.send({ op: 'go' });
    await Promise.all(dones);
    const connectSeconds = (Date.now() - t0) / 1000;
    // Let the handshakes' garbage and the first timers settle.
    await new Promise((r) => setTimeout(r, 1000));
    const relayAfter = await read(relay, snapshotFile(kind, 'relay', 'after'));
    const clientsAfter = await Promise.all(agents.map((p, i) => read(p, i === 0 ? snapshotFile(kind, 'agents', 'after') : undefined)));
    if (relayAfter.held !== n) throw new Error(`the ${kind} relay holds ${relayAfter.held} agents, not ${n}`);
    const counted = (relayAfter.held ?? 0) - (relayBefore.held ?? 0);
    const result: CaseResult = { relay: kind, agents: n, counted, connectSeconds, relayBefore, relayAfter, ...figures(counted, relayBefore, relayAfter, clientsBefore, clientsAfter) };
    const idleS = Number(opt['idle-s']);
    if (idleS > 0) {
      await new Promise((r) => setTimeout(r, Math.max(0, t0 + connectSeconds * 1000 + idleS * 1000 - Date.now())));
      const relayIdle = await read(relay);
      const clientsIdle = await Promise.all(agents.map((p) => read(p)));
      if (relayIdle.held !== n) throw new Error(`the ${kind} relay holds ${relayIdle.held} agents after ${idleS} s idle, not ${n}`);
      result.idle = { seconds: idleS, relay: relayIdle, ...figures(counted, relayBefore, relayIdle, clientsBefore, clientsIdle) };
    }
    return result;
  } finally {
    for (const p of agents) {
      p.kill('SIGKILL');
      children.delete(p);
    }
    relay.disconnect();
    await new Promise((r) => setTimeout(r, 300));
    relay.kill('SIGKILL');
    children.delete(relay);
  }
}

const kib = (b: number): string => (b / KIB).toFixed(1);
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const n = Number(opt.agents);
  const c = Math.max(1, Number(opt.children));
  const warm = Number(opt.warm);
  const store = opt.store === 'memory' ? 'memory' : 'sqlite';
  const budget = setTimeout(() => {
    console.error('bench idle: over its time budget; stopping');
    for (const p of children) p.kill('SIGKILL');
    process.exit(1);
  }, BUDGET_MS);
  budget.unref();
  const rows: CaseResult[] = [];
  const line = (f: Figures): string =>
    `${kib(f.relayRssPerAgentBytes)} KiB RSS (new space ${kib(f.relayNewSpacePerAgentBytes)} of it), ${kib(f.relayHeapPerAgentBytes)} KiB heap per agent; ` +
    `per client (agents' side, median of ${c}): ${kib(median(f.clientRssPerClientBytes))} KiB RSS (new space ${kib(median(f.clientNewSpacePerClientBytes))} of it), ${kib(median(f.clientHeapPerClientBytes))} KiB heap`;
  for (const kind of ['ws', 'postern'] as const) {
    const r = await runCase(kind, n, c, warm, store);
    rows.push(r);
    const who = kind === 'ws' ? 'ws relay (baseline), raw ws clients' : `Postern relay (${store} store), SDK clients`;
    console.log(
      `  ${who}: ${r.agents} idle agents in ${c} processes (${r.counted} counted, connected in ${r.connectSeconds.toFixed(1)} s); ` +
        `relay RSS ${(r.relayBefore.rss / MIB).toFixed(0)} -> ${(r.relayAfter.rss / MIB).toFixed(0)} MiB 1 s after: ${line(r)}`,
    );
    if (r.idle !== undefined) console.log(`    after ${r.idle.seconds} s idle: relay RSS ${(r.idle.relay.rss / MIB).toFixed(0)} MiB: ${line(r.idle)}`);
  }
  const ws = rows[0]!;
  const pt = rows[1]!;
  const target = (f: Figures, base: Figures): { relay: { kib: number; wsBaselineKiB: number; met: boolean }; sdk: { kib: number; heapKiB: number; wsBaselineKiB: number; met: boolean } } => {
    const relay = f.relayRssPerAgentBytes / KIB;
    const sdk = median(f.clientRssPerClientBytes) / KIB;
    return {
      relay: { kib: relay, wsBaselineKiB: base.relayRssPerAgentBytes / KIB, met: relay <= RELAY_TARGET_KIB },
      sdk: { kib: sdk, heapKiB: median(f.clientHeapPerClientBytes) / KIB, wsBaselineKiB: median(base.clientRssPerClientBytes) / KIB, met: sdk <= SDK_TARGET_KIB },
    };
  };
  const now = target(pt, ws);
  const later = pt.idle !== undefined && ws.idle !== undefined ? target(pt.idle, ws.idle) : undefined;
  const targets = {
    relayIdleAgent: { targetKiB: RELAY_TARGET_KIB, ...now.relay },
    sdkIdleClient: { targetKiB: SDK_TARGET_KIB, clientsPerProcess: Math.ceil(n / c), ...now.sdk },
    ...(later === undefined
      ? {}
      : {
          relayIdleAgentSettled: { targetKiB: RELAY_TARGET_KIB, idleSeconds: pt.idle!.seconds, ...later.relay },
          sdkIdleClientSettled: { targetKiB: SDK_TARGET_KIB, idleSeconds: pt.idle!.seconds, clientsPerProcess: Math.ceil(n / c), ...later.sdk },
        }),
  };
  const say = (what: string, goal: number, t: { kib: number; wsBaselineKiB: number; met: boolean; heapKiB?: number }, when: string): void =>
    console.log(
      `target ${what} <= ${goal} KiB${when}: ${t.met ? 'met' : 'NOT met'} (${t.kib.toFixed(1)} KiB RSS${t.heapKiB === undefined ? '' : `, ${t.heapKiB.toFixed(1)} KiB heap`}; ws baseline ${t.wsBaselineKiB.toFixed(1)} KiB)`,
    );
  say('idle agent on the relay', RELAY_TARGET_KIB, now.relay, ', 1 s after connecting');
  say(`idle SDK client (${Math.ceil(n / c)} per process)`, SDK_TARGET_KIB, now.sdk, ', 1 s after connecting');
  if (later !== undefined) {
    say('idle agent on the relay', RELAY_TARGET_KIB, later.relay, `, after ${pt.idle!.seconds} s idle`);
    say(`idle SDK client (${Math.ceil(n / c)} per process)`, SDK_TARGET_KIB, later.sdk, `, after ${pt.idle!.seconds} s idle`);
  }
  const out = opt.out ?? join(fileURLToPath(new URL('..', import.meta.url)), 'results', 'idle.json');
  mkdirSync(join(out, '..'), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ node: process.version, date: new Date().toISOString(), agents: n, children: c, warm, store, rows, targets }, null, 2)}\n`);
  console.log(`wrote ${out}`);
}

const fail = (err: unknown): void => {
  console.error(`bench idle: ${err instanceof Error ? err.message : String(err)}`);
  for (const p of children) p.kill('SIGKILL');
  process.exit(1);
};
if (opt.child !== undefined) {
  const spec = JSON.parse(opt.spec ?? '{}') as never;
  const role = opt.child;
  const p = role === 'relay-postern' ? relayChild('postern', spec) : role === 'relay-ws' ? relayChild('ws', spec) : agentsChild(spec);
  p.catch(fail);
} else main().then(() => process.exit(0), fail);
