// `npm run bench`: the baseline ws forwarder against the Postern firewall path, each role in
// its own process, driven over IPC. Prints a table and writes bench/results/latest.json.
// See bench/README.md for what is measured and how to read it.
import { execFileSync, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { formatProfile, summarizeProfile, type ProfileSummary } from './cpuprofile.js';
import { Peer } from './ipc.js';
import type { Collected, MemoryReport, PacedResult, ThroughputArgs, ThroughputResult } from './load.js';

const benchDir = fileURLToPath(new URL('..', import.meta.url));
const childScript = fileURLToPath(new URL('./child.js', import.meta.url));
const repoDir = join(benchDir, '..');

const { values: opt } = parseArgs({
  options: {
    cases: { type: 'string', default: 'a,b,c,d' },
    sizes: { type: 'string', default: '64,1024' },
    n64: { type: 'string', default: '300000' },
    n1k: { type: 'string', default: '100000' },
    'cap-s': { type: 'string', default: '20' },
    'cap-reliable-s': { type: 'string', default: '10' },
    repeat: { type: 'string', default: '3' },
    'window-kib': { type: 'string', default: '2048' },
    'latency-s': { type: 'string', default: '3' },
    rate: { type: 'string', default: '5000' },
    'budget-s': { type: 'string', default: '175' },
    'dedup-window': { type: 'string' },
    'zero-mask': { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (opt.help) {
  console.log(`Usage: node bench/dist/run.js [options]
  --cases a,b,c,d   a = baseline ws forwarder, b = Postern volatile, c = Postern reliable,
                    d = Postern volatile with the gateway's uplink on HTTP long-poll
  --sizes 64,1024   payload sizes in bytes
  --n64 N --n1k N   throughput message counts (64 B, 1 KiB) [300000, 100000]
  --cap-s S         time cap per throughput run [20]
  --cap-reliable-s S  time cap per throughput run of cases c and d [10]
  --repeat N        throughput runs per row for a and b (c and d: one); the median is reported [3]
  --window-kib K    extra flow-controlled throughput run for a and b: at most K KiB of
                    payload sent and not yet received (0 = skip that run) [2048]
  --latency-s S     paced run length after a 0.5 s warm-up [3]
  --rate R          paced rate, msg/s [5000]
  --budget-s S      kill everything and fail after S seconds [175]
  --dedup-window N  the receiving agent's dedupWindow (diagnostic; default: the SDK's)
  --zero-mask       what-if: WebSocket clients (senders, receivers) send with an all-zero
                    mask, which ws then skips on both ends (diagnostic)
  --profile         --cpu-prof on every process of each case; prints the hot spots
  --out FILE        results file [bench/results/latest.json, or profile.json with --profile]`);
  process.exit(0);
}

const num = (s: string | undefined, name: string): number => {
  const x = Number(s);
  if (!Number.isFinite(x) || x < 0) throw new Error(`--${name} must be a number`);
  return x;
};

const CONFIG = {
  sizes: (opt.sizes ?? '').split(',').map((s) => num(s, 'sizes')),
  count: { 64: num(opt.n64, 'n64'), 1024: num(opt.n1k, 'n1k') } as Record<number, number>,
  capMs: num(opt['cap-s'], 'cap-s') * 1000,
  capReliableMs: num(opt['cap-reliable-s'], 'cap-reliable-s') * 1000,
  repeat: Math.max(1, Math.round(num(opt.repeat, 'repeat'))),
  highWaterBytes: 4 * 1024 * 1024,
  batch: 1000,
  inFlight: 2000,
  windowBytes: num(opt['window-kib'], 'window-kib') * 1024,
  warmupFraction: 0.1,
  paced: { rate: num(opt.rate, 'rate'), warmupMs: 500, durationMs: num(opt['latency-s'], 'latency-s') * 1000 },
  dedupWindow: opt['dedup-window'] === undefined ? undefined : num(opt['dedup-window'], 'dedup-window'),
  zeroMask: opt['zero-mask'] ?? false,
  profile: opt.profile ?? false,
};

interface CaseDef {
  id: 'a' | 'b' | 'c' | 'd';
  label: string;
  /** Processes between sender and receiver, in start order. */
  middle: string[];
  sender: string;
  receiver: string;
}

const CASES: CaseDef[] = [
  { id: 'a', label: 'BASELINE ws forwarder', middle: ['forwarder'], sender: 'ws-sender', receiver: 'ws-receiver' },
  { id: 'b', label: 'POSTERN volatile', middle: ['relay', 'gateway'], sender: 'agent-sender', receiver: 'agent-receiver' },
  { id: 'c', label: 'POSTERN-RELIABLE (extra)', middle: ['relay', 'gateway'], sender: 'agent-sender', receiver: 'agent-receiver' },
  { id: 'd', label: 'POSTERN volatile, uplink on long-poll', middle: ['relay', 'gateway'], sender: 'agent-sender', receiver: 'agent-receiver' },
];

interface Measured {
  sender: ThroughputResult;
  receiver: Collected;
  loss: number;
  /** CPU time (user + system) each process used during the run, ms. */
  cpuMs: Record<string, number>;
  /** All processes' CPU time per delivered message, microseconds: less sensitive to other load than msg/s. */
  cpuUsPerMsg: number;
}

interface RunSummary {
  msgPerSec: number;
  received: number;
  sent: number;
  cpuUsPerMsg: number;
}

function summary(m: Measured): RunSummary {
  return { msgPerSec: Math.round(m.receiver.msgPerSec), received: m.receiver.received, sent: m.sender.sent, cpuUsPerMsg: Math.round(m.cpuUsPerMsg * 10) / 10 };
}

/** The run with the median msg/s (the lower middle one for an even count). */
function median(ms: Measured[]): Measured {
  const sorted = [...ms].sort((x, y) => x.receiver.msgPerSec - y.receiver.msgPerSec);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

interface Row {
  case: CaseDef['id'];
  label: string;
  size: number;
  throughput?: Measured;
  /** Same, with the end-to-end window (cases a and b). */
  windowed?: Measured;
  /** Every repetition, when there were several: msg/s, delivered, sent. */
  runs?: { plain: RunSummary[]; windowed: RunSummary[] };
  latency?: { sender: PacedResult; receiver: Collected; loss: number };
  memory: Record<string, MemoryReport>;
  stats: Record<string, unknown>;
  error?: string;
}

// ---------------------------------------------------------------- processes

const live = new Set<Peer>();
const fatals: string[] = [];

function killAllNow(): void {
  for (const p of live) if (p.alive) p.proc.kill('SIGKILL');
}

async function stopAll(peers: Peer[]): Promise<void> {
  await Promise.all(
    peers.map(async (p) => {
      if (p.alive) {
        const exited = new Promise<void>((r) => p.proc.once('exit', () => r()));
        await p.call('exit', null, 2000).catch(() => undefined);
        await Promise.race([exited, sleep(3000, undefined, { ref: false })]);
        if (p.alive) p.proc.kill('SIGKILL');
      }
      live.delete(p);
    }),
  );
}

process.on('exit', killAllNow);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    killAllNow();
    process.exit(130);
  });
}

async function spawn(role: string, tag: string, profileDir: string | undefined): Promise<Peer> {
  const execArgv = profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${tag}-${role}.cpuprofile`];
  const env = { ...process.env, BENCH_ZERO_MASK: CONFIG.zeroMask ? '1' : '0' };
  const proc = fork(childScript, [role], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv, env });
  const peer = new Peer(role, proc);
  live.add(peer);
  peer.on('fatal', (m) => {
    fatals.push(String(m));
    console.error(String(m));
  });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${role} did not start within 10 s`)), 10_000);
    peer.on('ready', () => {
      clearTimeout(t);
      resolve();
    });
    proc.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`${role} exited during start (code ${String(code)})`));
    });
  });
  return peer;
}

// ---------------------------------------------------------------- one case, one size

interface Topology {
  middle: Peer[];
  sender: Peer;
  receiver: Peer;
  all: Peer[];
}

async function startTopology(c: CaseDef, size: number, profileDir: string | undefined): Promise<Topology> {
  const tag = `${c.id}-${size}`;
  const all: Peer[] = [];
  try {
    if (c.id === 'a') {
      const fwd = await spawn('forwarder', tag, profileDir);
      all.push(fwd);
      const { url } = await fwd.call<{ url: string }>('init', null, 10_000);
      const receiver = await spawn(c.receiver, tag, profileDir);
      all.push(receiver);
      await receiver.call('init', { url }, 10_000);
      const sender = await spawn(c.sender, tag, profileDir);
      all.push(sender);
      await sender.call('init', { url }, 10_000);
      return { middle: [fwd], sender, receiver, all };
    }
    const secret = randomBytes(24).toString('base64url');
    const relay = await spawn('relay', tag, profileDir);
    all.push(relay);
    const { url: relayUrl } = await relay.call<{ url: string }>('init', { secret }, 10_000);
    const gateway = await spawn('gateway', tag, profileDir);
    all.push(gateway);
    // Case d: the tunnel between gateway and relay is HTTP long-poll (the agents stay on WebSocket).
    const { url: gatewayUrl } = await gateway.call<{ url: string }>('init', { secret, relayUrl, transport: c.id === 'd' ? 'http' : 'ws' }, 15_000);
    const receiver = await spawn(c.receiver, tag, profileDir);
    all.push(receiver);
    await receiver.call('init', { url: gatewayUrl, dedupWindow: CONFIG.dedupWindow }, 15_000);
    const sender = await spawn(c.sender, tag, profileDir);
    all.push(sender);
    await sender.call('init', { url: relayUrl, to: 'alice@acme', reliable: c.id === 'c' }, 15_000);
    return { middle: [relay, gateway], sender, receiver, all };
  } catch (err) {
    await stopAll(all);
    throw err;
  }
}

async function throughput(t: Topology, size: number, n: number, window: number, capMs: number): Promise<Measured> {
  await t.sender.call('probe', null, 15_000);
  await t.receiver.call('arm', { progress: window > 0 }, 5000);
  t.receiver.on('progress', (count) => t.sender.notify('credit', count));
  const args: ThroughputArgs = {
    n,
    size,
    capMs,
    highWaterBytes: CONFIG.highWaterBytes,
    inFlight: CONFIG.inFlight,
    batch: CONFIG.batch,
    window,
  };
  const cpu0 = await cpuOf(t);
  const sender = await t.sender.call<ThroughputResult>('throughput', args, capMs + 20_000);
  const receiver = await t.receiver.call<Collected>('collect', { expected: sender.sent, idleMs: 1000, maxWaitMs: 10_000 }, 15_000);
  const cpu1 = await cpuOf(t);
  const cpuMs: Record<string, number> = {};
  let total = 0;
  for (const [role, us] of Object.entries(cpu1)) {
    const d = us - (cpu0[role] ?? 0);
    cpuMs[role] = Math.round(d / 100) / 10;
    total += d;
  }
  return { sender, receiver, loss: sender.sent - receiver.received, cpuMs, cpuUsPerMsg: receiver.received > 0 ? total / receiver.received : 0 };
}

async function cpuOf(t: Topology): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const p of t.all) out[p.role] = await p.call<number>('cpu', null, 5000);
  return out;
}

async function latency(t: Topology, size: number): Promise<{ sender: PacedResult; receiver: Collected; loss: number }> {
  await t.sender.call('probe', null, 15_000);
  await t.receiver.call('arm', { progress: false }, 5000);
  const p = CONFIG.paced;
  const sender = await t.sender.call<PacedResult>('paced', { rate: p.rate, size, warmupMs: p.warmupMs, durationMs: p.durationMs }, p.warmupMs + p.durationMs + 15_000);
  const receiver = await t.receiver.call<Collected>('collect', { expected: sender.sent, idleMs: 1000, maxWaitMs: 5000 }, 10_000);
  return { sender, receiver, loss: sender.sent - receiver.received };
}

async function runCase(c: CaseDef, size: number, profileDir: string | undefined): Promise<Row> {
  const row: Row = { case: c.id, label: c.label, size, memory: {}, stats: {} };
  const n = CONFIG.count[size] ?? 100_000;
  let t: Topology | undefined;
  try {
    t = await startTopology(c, size, profileDir);
    // c and d are extra rows: one run each, no windowed run, the shorter cap (the time budget).
    const extra = c.id === 'c' || c.id === 'd';
    const window = extra || CONFIG.windowBytes === 0 ? 0 : Math.max(64, Math.floor(CONFIG.windowBytes / size));
    const cap = extra ? CONFIG.capReliableMs : CONFIG.capMs;
    const repeat = extra ? 1 : CONFIG.repeat;
    await throughput(t, size, Math.round(n * CONFIG.warmupFraction), window, cap); // JIT warm-up, discarded
    // Alternate plain and windowed runs so that drift on a shared machine hits both alike.
    const plain: Measured[] = [];
    const windowed: Measured[] = [];
    for (let i = 0; i < repeat; i++) {
      plain.push(await throughput(t, size, n, 0, cap));
      if (window > 0) windowed.push(await throughput(t, size, n, window, cap));
    }
    row.throughput = median(plain);
    row.windowed = windowed.length === 0 ? undefined : median(windowed);
    if (repeat > 1) row.runs = { plain: plain.map(summary), windowed: windowed.map(summary) };
    await sleep(300);
    row.latency = await latency(t, size);
    for (const p of t.all) {
      row.memory[p.role] = await p.call<MemoryReport>('memory', null, 5000);
      row.stats[p.role] = await p.call('stats', null, 5000).catch(() => undefined);
    }
  } catch (err) {
    row.error = err instanceof Error ? err.message : String(err);
    console.error(`case ${c.id} ${size} B failed: ${row.error}`);
  } finally {
    if (t !== undefined) await stopAll(t.all);
  }
  return row;
}

// ---------------------------------------------------------------- report

function fmt(x: number | undefined, digits = 0): string {
  if (x === undefined || !Number.isFinite(x)) return '-';
  return x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function middleRss(r: Row): string {
  const c = CASES.find((x) => x.id === r.case);
  if (c === undefined) return '-';
  return c.middle
    .map((m) => {
      const mem = r.memory[m];
      return mem === undefined ? `${m} -` : `${m} ${fmt(Math.max(mem.peakRssMiB, mem.maxRssMiB), 1)}`;
    })
    .join(' / ');
}

function delivered(m: Measured | undefined): string {
  return m === undefined ? '-' : `${m.receiver.received}/${m.sender.sent}`;
}

function table(rows: Row[]): string {
  const head = ['case', 'size', 'msg/s', 'delivered/sent', 'msg/s e2e-window', 'delivered/sent', 'CPU us/msg', 'p50 us', 'p99 us', 'peak RSS MiB (middle)'];
  const body = rows.map((r) => [
    `${r.case} ${r.label}`,
    r.size === 1024 ? '1 KiB' : `${r.size} B`,
    r.throughput === undefined ? 'FAILED' : fmt(r.throughput.receiver.msgPerSec),
    delivered(r.throughput),
    fmt(r.windowed?.receiver.msgPerSec),
    delivered(r.windowed),
    fmt(r.throughput?.cpuUsPerMsg, 1),
    fmt(r.latency?.receiver.latency?.p50Us),
    fmt(r.latency?.receiver.latency?.p99Us),
    middleRss(r),
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((x, i) => (i >= 2 && i <= 8 ? x.padStart(w[i]!) : x.padEnd(w[i]!))).join('  ');
  return [line(head), w.map((x) => '-'.repeat(x)).join('  '), ...body.map(line)].join('\n');
}

function rate(rows: Row[], c: string, size: number, windowed: boolean): number | undefined {
  const r = rows.find((x) => x.case === c && x.size === size);
  return (windowed ? r?.windowed : r?.throughput)?.receiver.msgPerSec;
}

function ratios(rows: Row[]): Record<string, number | undefined> {
  const out: Record<string, number | undefined> = {};
  const div = (x: number | undefined, y: number | undefined): number | undefined => (x !== undefined && y !== undefined && y > 0 ? x / y : undefined);
  for (const size of CONFIG.sizes) {
    out[`b/a@${size}`] = div(rate(rows, 'b', size, false), rate(rows, 'a', size, false));
    out[`b/a@${size} e2e-window`] = div(rate(rows, 'b', size, true), rate(rows, 'a', size, true));
    out[`c/b@${size}`] = div(rate(rows, 'c', size, false), rate(rows, 'b', size, false));
    out[`d/b@${size}`] = div(rate(rows, 'd', size, false), rate(rows, 'b', size, false));
  }
  return out;
}

/** Every run that lost messages, and every link a router dropped, so that no loss hides behind a median. */
function lossNotes(rows: Row[]): string[] {
  const out: string[] = [];
  for (const r of rows) {
    const runs = r.runs ?? { plain: r.throughput === undefined ? [] : [summary(r.throughput)], windowed: r.windowed === undefined ? [] : [summary(r.windowed)] };
    const lost = [...runs.plain.map((x) => ({ ...x, kind: 'plain' })), ...runs.windowed.map((x) => ({ ...x, kind: 'e2e-window' }))].filter((x) => x.received < x.sent);
    const gw = r.stats.gateway as { uplinkEvents?: { down: number; lastError: string } } | undefined;
    const down = gw?.uplinkEvents?.down ?? 0;
    if (lost.length === 0 && down === 0 && (r.latency?.loss ?? 0) === 0) continue;
    const parts = lost.map((x) => `${x.kind} run lost ${x.sent - x.received} of ${x.sent}`);
    if ((r.latency?.loss ?? 0) > 0) parts.push(`latency run lost ${r.latency?.loss}`);
    if (down > 0) parts.push(`gateway uplink dropped ${down}x (${gw?.uplinkEvents?.lastError ?? '?'})`);
    out.push(`loss: ${r.case} ${r.size} B: ${parts.join('; ')}`);
  }
  return out;
}

function git(args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: repoDir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const started = Date.now();
  const chosen = CASES.filter((c) => (opt.cases ?? '').split(',').includes(c.id));
  let profileDir: string | undefined;
  if (CONFIG.profile) {
    profileDir = join(benchDir, 'results', 'profiles');
    rmSync(profileDir, { recursive: true, force: true });
    mkdirSync(profileDir, { recursive: true });
    writeFileSync(join(profileDir, '.gitignore'), '*\n');
  }
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  const loadBefore = os.loadavg();
  if ((loadBefore[0] ?? 0) > 0.5) {
    console.log(`bench: note: load average is ${loadBefore.map((x) => x.toFixed(2)).join(' ')} before starting; other processes share these cores, so expect noise`);
  }
  console.log(`bench: node ${process.version}, ${os.cpus().length} x ${cpu}, commit ${git(['rev-parse', '--short', 'HEAD'])}`);
  console.log(
    `bench: throughput ${CONFIG.sizes.map((s) => `${CONFIG.count[s] ?? '?'} x ${s} B`).join(', ')} ` +
      `(cap ${CONFIG.capMs / 1000} s, c and d: ${CONFIG.capReliableMs / 1000} s; median of ${CONFIG.repeat} runs for a and b); ` +
      `latency ${CONFIG.paced.rate} msg/s for ${CONFIG.paced.durationMs / 1000} s after ${CONFIG.paced.warmupMs} ms warm-up\n`,
  );
  const rows: Row[] = [];
  for (const c of chosen) {
    for (const size of CONFIG.sizes) {
      const t0 = Date.now();
      if (t0 - started > budgetMs * 0.8) {
        rows.push({ case: c.id, label: c.label, size, memory: {}, stats: {}, error: 'skipped: 80% of the time budget used' });
        console.log(`  ${c.id} ${c.label}, ${size} B: skipped (time budget)`);
        continue;
      }
      const row = await runCase(c, size, profileDir);
      rows.push(row);
      const tp = row.throughput;
      const wd = row.windowed;
      const spread = (xs: RunSummary[] | undefined): string =>
        xs === undefined || xs.length < 2 ? '' : ` [${xs.map((x) => `${fmt(x.msgPerSec / 1000)}k${x.received < x.sent ? ` lost ${x.sent - x.received}` : ''}`).join(', ')}]`;
      console.log(
        `  ${c.id} ${c.label}, ${size} B: ${tp === undefined ? 'failed' : `${fmt(tp.receiver.msgPerSec)} msg/s, ${delivered(tp)} delivered${spread(row.runs?.plain)}`}` +
          `${wd === undefined ? '' : `; e2e-window ${fmt(wd.receiver.msgPerSec)} msg/s, ${delivered(wd)}${spread(row.runs?.windowed)}`}` +
          `${row.latency?.receiver.latency === undefined ? '' : `; p50 ${fmt(row.latency.receiver.latency.p50Us)} us, p99 ${fmt(row.latency.receiver.latency.p99Us)} us`}` +
          ` (${((Date.now() - t0) / 1000).toFixed(1)} s)`,
      );
    }
  }
  const r = ratios(rows);
  console.log(`\n${table(rows)}\n`);
  for (const size of CONFIG.sizes) {
    console.log(
      `throughput b/a (Postern volatile / baseline) at ${size} B: ${fmt(r[`b/a@${size}`], 2)}` +
        `   (with the end-to-end window: ${fmt(r[`b/a@${size} e2e-window`], 2)})`,
    );
  }
  for (const size of CONFIG.sizes) {
    console.log(`throughput c/b (Postern reliable / volatile)  at ${size} B: ${fmt(r[`c/b@${size}`], 2)}`);
  }
  for (const size of CONFIG.sizes) {
    console.log(`throughput d/b (uplink long-poll / WebSocket) at ${size} B: ${fmt(r[`d/b@${size}`], 2)}`);
  }
  for (const line of lossNotes(rows)) console.log(line);
  // The issues' targets, each a ratio measured in this run.
  const targets = [
    { metric: 'b/a@64', goal: 1.5, what: 'b/a (volatile / baseline)' },
    { metric: 'c/b@64', goal: 0.25, what: 'c/b (reliable / volatile)' },
  ].flatMap(({ metric, goal, what }) => {
    const value = r[metric];
    if (value === undefined) return [];
    console.log(`target ${what} >= ${goal} at 64 B: ${value >= goal ? 'met' : 'NOT met'} (${fmt(value, 2)})`);
    return [{ metric, goal, value, met: value >= goal }];
  });

  let profiles: ProfileSummary[] | undefined;
  if (profileDir !== undefined) {
    profiles = readdirSync(profileDir)
      .filter((f) => f.endsWith('.cpuprofile'))
      .sort()
      .map((f) => summarizeProfile(join(profileDir, f)));
    for (const p of profiles) console.log(`\n${formatProfile(p)}`);
  }

  const result = {
    commit: git(['rev-parse', '--short', 'HEAD']),
    dirty: git(['status', '--porcelain', '--untracked-files=no']) !== '',
    node: process.version,
    cpu,
    cpus: os.cpus().length,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    date: new Date().toISOString(),
    durationS: (Date.now() - started) / 1000,
    loadavg: { before: loadBefore, after: os.loadavg() },
    config: CONFIG,
    ratios: r,
    targets,
    rows,
    fatals,
    profiles,
  };
  const out = opt.out ?? join(benchDir, 'results', CONFIG.profile ? 'profile.json' : 'latest.json');
  mkdirSync(join(out, '..'), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`\nwrote ${out} (${result.durationS.toFixed(0)} s)`);
  return rows.some((x) => x.error !== undefined) || fatals.length > 0 ? 1 : 0;
}

const budgetMs = num(opt['budget-s'], 'budget-s') * 1000;
const budget = setTimeout(() => {
  console.error(`bench: over the budget of ${opt['budget-s']} s; killing every child`);
  killAllNow();
  process.exit(1);
}, budgetMs);
budget.unref();

main().then(
  (code) => {
    killAllNow();
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err);
    killAllNow();
    process.exitCode = 1;
  },
);
