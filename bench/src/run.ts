// `npm run bench`: the baseline ws forwarder against the Postern firewall path, each role in
// its own process, driven over IPC. Prints a table and writes bench/results/latest.json.
// See bench/README.md for what is measured and how to read it.
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { anchorPrograms, findProgram, freePort, mosquittoConfigs, natsConfigs, type AnchorProgram, type ServerSpec } from './anchors.js';
import { formatProfile, summarizeProfile, type ProfileSummary } from './cpuprofile.js';
import { Children, type Peer } from './ipc.js';
import { fmt, git } from './report.js';
import type { Collected, MemoryReport, PacedResult, ThroughputArgs, ThroughputResult } from './load.js';

const benchDir = fileURLToPath(new URL('..', import.meta.url));
const childScript = fileURLToPath(new URL('./child.js', import.meta.url));

const { values: opt } = parseArgs({
  options: {
    cases: { type: 'string', default: 'a,b,c,d,n,m' },
    sizes: { type: 'string', default: '64,1024' },
    n64: { type: 'string', default: '300000' },
    n1k: { type: 'string', default: '100000' },
    'cap-s': { type: 'string', default: '20' },
    'cap-reliable-s': { type: 'string', default: '10' },
    repeat: { type: 'string', default: '3' },
    'window-kib': { type: 'string', default: '2048' },
    'latency-s': { type: 'string', default: '3' },
    rate: { type: 'string', default: '5000' },
    'budget-s': { type: 'string', default: '480' },
    'soak-s': { type: 'string', default: '60' },
    'dedup-window': { type: 'string' },
    'zero-mask': { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (opt.help) {
  console.log(`Usage: node bench/dist/run.js [options]
  --cases a,b,c,d,n,m  a = baseline ws forwarder, b = Postern volatile, c = Postern reliable,
                    d = Postern volatile with the gateway's uplink on HTTP long-poll,
                    n = NATS leaf node (anchor), m = Mosquitto QoS 1 with a bridge (anchor);
                    n and m need nats-server / mosquitto (installed with apt-get as root when
                    missing; skipped with a message otherwise)
  --sizes 64,1024   payload sizes in bytes
  --n64 N --n1k N   throughput message counts (64 B, 1 KiB) [300000, 100000]
  --cap-s S         time cap per throughput run [20]
  --cap-reliable-s S  time cap per throughput run of cases c, d and m [10]
  --repeat N        throughput runs per row for a, b and n (c, d and m: one); the median is reported [3]
  --window-kib K    extra flow-controlled throughput run for a, b and n: at most K KiB of
                    payload sent and not yet received (0 = skip that run) [2048]
  --latency-s S     paced run length after a 0.5 s warm-up [3]
  --rate R          paced rate, msg/s [5000]
  --soak-s S        with case c: a run of case c at 64 B at full rate for S seconds, sampling the
                    relay's and gateway's RSS every second (issue 12: RSS stays flat); 0 skips [60]
  --budget-s S      kill everything and fail after S seconds (not counting an install of the
                    anchors' packages) [480]
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
  soakMs: num(opt['soak-s'], 'soak-s') * 1000,
};

interface CaseDef {
  id: 'a' | 'b' | 'c' | 'd' | 'n' | 'm';
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
  { id: 'n', label: 'NATS leaf node (anchor)', middle: ['nats-hub', 'nats-leaf'], sender: 'nats-sender', receiver: 'nats-receiver' },
  { id: 'm', label: 'Mosquitto QoS 1, bridge (anchor)', middle: ['mosquitto-hub', 'mosquitto-leaf'], sender: 'mqtt-sender', receiver: 'mqtt-receiver' },
];

/** Cases with one throughput run, no e2e-window run, and the shorter cap (reliable, or slow). */
const EXTRA = new Set<CaseDef['id']>(['c', 'd', 'm']);

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

const children = new Children();
const fatals = children.fatals;
/** Server programs (nats-server, mosquitto) run by wrapper children: killed too, should a wrapper die first. */
const serverPids = new Set<number>();

children.onKill(() => {
  for (const pid of serverPids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  serverPids.clear();
});
const killAllNow = (): void => children.killAll();
const stopAll = (peers: Peer[]): Promise<void> => children.stop(peers);

async function spawn(role: string, tag: string, profileDir: string | undefined): Promise<Peer> {
  const execArgv = profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${tag}-${role}.cpuprofile`];
  const env = { ...process.env, BENCH_ZERO_MASK: CONFIG.zeroMask ? '1' : '0' };
  return children.start(role, fork(childScript, [role], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv, env }));
}

// ---------------------------------------------------------------- one case, one size

interface Topology {
  middle: Peer[];
  sender: Peer;
  receiver: Peer;
  all: Peer[];
}

/** Paths of nats-server and mosquitto, once found (or installed). */
const programs: Partial<Record<AnchorProgram, string>> = {};

async function startServer(role: string, tag: string, spec: ServerSpec, all: Peer[]): Promise<Peer> {
  const p = await spawn(role, tag, undefined);
  all.push(p);
  const { pid } = await p.call<{ pid: number }>('init', spec, 15_000);
  serverPids.add(pid);
  p.proc.once('exit', () => setTimeout(() => serverPids.delete(pid), 1000).unref());
  return p;
}

async function startTopology(c: CaseDef, size: number, profileDir: string | undefined): Promise<Topology> {
  const tag = `${c.id}-${size}`;
  const all: Peer[] = [];
  try {
    if (c.id === 'n' || c.id === 'm') {
      // The inside server (leaf) dials out to the hub; the sender is on the hub, the receiver on the leaf.
      let hub: Peer;
      let leaf: Peer;
      let hubUrl: string;
      let leafUrl: string;
      if (c.id === 'n') {
        const ports = { hubClient: await freePort(), hubLeaf: await freePort(), leafClient: await freePort() };
        const conf = natsConfigs(ports);
        const program = programs['nats-server'] ?? 'nats-server';
        hub = await startServer('nats-hub', tag, { program, args: ['-c', '{conf}'], config: conf.hub, port: ports.hubClient }, all);
        leaf = await startServer('nats-leaf', tag, { program, args: ['-c', '{conf}'], config: conf.leaf, port: ports.leafClient }, all);
        hubUrl = `nats://127.0.0.1:${ports.hubClient}`;
        leafUrl = `nats://127.0.0.1:${ports.leafClient}`;
      } else {
        const ports = { hub: await freePort(), leaf: await freePort() };
        const conf = mosquittoConfigs(ports);
        const program = programs.mosquitto ?? 'mosquitto';
        hub = await startServer('mosquitto-hub', tag, { program, args: ['-c', '{conf}'], config: conf.hub, port: ports.hub }, all);
        leaf = await startServer('mosquitto-leaf', tag, { program, args: ['-c', '{conf}'], config: conf.leaf, port: ports.leaf }, all);
        hubUrl = `mqtt://127.0.0.1:${ports.hub}`;
        leafUrl = `mqtt://127.0.0.1:${ports.leaf}`;
      }
      const receiver = await spawn(c.receiver, tag, profileDir);
      all.push(receiver);
      await receiver.call('init', { url: leafUrl }, 15_000);
      const sender = await spawn(c.sender, tag, profileDir);
      all.push(sender);
      await sender.call('init', { url: hubUrl }, 15_000);
      return { middle: [hub, leaf], sender, receiver, all };
    }
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
    // c, d and m are extra rows: one run each, no windowed run, the shorter cap (the time budget).
    const extra = EXTRA.has(c.id);
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

// ---------------------------------------------------------------- soak: RSS over a long run

interface Soak {
  seconds: number;
  delivered: number;
  sent: number;
  msgPerSec: number;
  /** [seconds since start, relay RSS MiB, gateway RSS MiB], one per second. */
  samples: Array<[number, number, number]>;
  /**
   * Per router: mean RSS over the middle third of the run (after warm-up) and over the last third
   * (means, not points: RSS saws up and down with each garbage collection), and the growth between.
   */
  growth: Record<string, { midMiB: number; lastMiB: number; growthMiB: number; growthPct: number; mibPerMillion: number }>;
  error?: string;
}

/**
 * Case c at 64 B, at full rate, for CONFIG.soakMs: RSS of the relay and the gateway every second.
 * Flat means no growth per message: what the routers hold at the end of the first third (their
 * working set, after warm-up) is what they hold at the end, within 10 %.
 */
async function soak(): Promise<Soak | undefined> {
  const c = CASES.find((x) => x.id === 'c')!;
  let t: Topology | undefined;
  const samples: Array<[number, number, number]> = [];
  try {
    t = await startTopology(c, 64, undefined);
    const [relay, gateway] = t.middle as [Peer, Peer];
    await t.sender.call('probe', null, 15_000);
    await t.receiver.call('arm', { progress: false }, 5000);
    const t0 = Date.now();
    const rss = async (p: Peer): Promise<number> => (await p.call<MemoryReport>('memory', null, 5000)).rssNowMiB;
    let running = true;
    const sampler = (async () => {
      while (running) {
        samples.push([(Date.now() - t0) / 1000, await rss(relay), await rss(gateway)]);
        await sleep(1000);
      }
    })();
    const args: ThroughputArgs = { n: 50_000_000, size: 64, capMs: CONFIG.soakMs, highWaterBytes: CONFIG.highWaterBytes, inFlight: CONFIG.inFlight, batch: CONFIG.batch, window: 0 };
    const sender = await t.sender.call<ThroughputResult>('throughput', args, CONFIG.soakMs + 30_000);
    running = false;
    await sampler;
    const receiver = await t.receiver.call<Collected>('collect', { expected: sender.sent, idleMs: 1000, maxWaitMs: 15_000 }, 20_000);
    const seconds = (Date.now() - t0) / 1000;
    const growth: Soak['growth'] = {};
    const span = samples.at(-1)?.[0] ?? 0;
    const mid = samples.filter((x) => x[0] >= span / 3 && x[0] < (2 * span) / 3);
    const last = samples.filter((x) => x[0] >= (2 * span) / 3);
    if (mid.length > 0 && last.length > 0) {
      // Messages between the middles of the two windows: what the growth is spread over.
      const between = receiver.received / 3;
      ([['relay', 1], ['gateway', 2]] as const).forEach(([role, i]) => {
        const mean = (xs: typeof samples): number => xs.reduce((a, x) => a + x[i], 0) / xs.length;
        const g = mean(last) - mean(mid);
        growth[role] = { midMiB: mean(mid), lastMiB: mean(last), growthMiB: g, growthPct: (100 * g) / mean(mid), mibPerMillion: between > 0 ? (g * 1e6) / between : 0 };
      });
    }
    return { seconds, delivered: receiver.received, sent: sender.sent, msgPerSec: receiver.received / seconds, samples, growth };
  } catch (err) {
    const error = err instanceof Error ? err.message : String(err);
    console.error(`soak failed: ${error}`);
    return { seconds: 0, delivered: 0, sent: 0, msgPerSec: 0, samples, growth: {}, error };
  } finally {
    if (t !== undefined) await stopAll(t.all);
  }
}

// ---------------------------------------------------------------- report

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
    out[`b/n@${size}`] = div(rate(rows, 'b', size, false), rate(rows, 'n', size, false));
    out[`c/m@${size}`] = div(rate(rows, 'c', size, false), rate(rows, 'm', size, false));
  }
  return out;
}

function p99(rows: Row[], c: string, size: number): number | undefined {
  return rows.find((x) => x.case === c && x.size === size)?.latency?.receiver.latency?.p99Us;
}

interface Target {
  metric: string;
  what: string;
  op: '>=' | '<=';
  goal: number;
  value: number;
  met: boolean;
  /** The figures the value comes from, as printed. */
  figures: string;
}

/**
 * Every target of issues 2, 3 and 12 that this run measures, each from this run's figures.
 * A target whose case was asked for but has no figure (failed, skipped) is printed as not
 * measured; one whose case was not asked for is left out.
 */
function targets(rows: Row[], r: Record<string, number | undefined>, chosen: Set<string>, skipped: Map<string, string>, soaked: Soak | undefined): { met: Target[]; notMeasured: Array<{ what: string; why: string }> } {
  const out: Target[] = [];
  const notMeasured: Array<{ what: string; why: string }> = [];
  const sizeName = (size: number): string => (size === 1024 ? '1 KiB' : `${size} B`);
  const msgs = (c: string, size: number): string => `${c} ${fmt(rate(rows, c, size, false))} msg/s`;
  const add = (cases: string[], what: string, metric: string, op: '>=' | '<=', goal: number, value: number | undefined, figures: () => string): void => {
    if (!cases.every((c) => chosen.has(c) || skipped.has(c))) return;
    if (value === undefined) {
      const why = cases.map((c) => (skipped.has(c) ? `case ${c} skipped: ${skipped.get(c)}` : rows.some((x) => x.case === c && x.error === undefined) ? '' : `case ${c} has no figure`)).filter((x) => x !== '');
      const because = why.length > 0 ? why.join('; ') : 'a figure is missing';
      console.log(`target ${what}: not measured (${because})`);
      notMeasured.push({ what, why: because });
      return;
    }
    const met = op === '>=' ? value >= goal : value <= goal;
    const f = figures();
    console.log(`target ${what}: ${met ? 'met' : 'NOT met'} (${f})`);
    out.push({ metric, what, op, goal, value, met, figures: f });
  };
  const ratio = (x: string, y: string, size: number): (() => string) => () => `${x}/${y} ${fmt(r[`${x}/${y}@${size}`], 2)}: ${msgs(x, size)}, ${msgs(y, size)}`;
  // Issues 2 and 3.
  add(['a', 'b'], 'b/a (volatile / baseline) >= 1.5 at 64 B', 'b/a@64', '>=', 1.5, r['b/a@64'], ratio('b', 'a', 64));
  add(['b', 'c'], 'c/b (reliable / volatile) >= 0.25 at 64 B', 'c/b@64', '>=', 0.25, r['c/b@64'], ratio('c', 'b', 64));
  // Issue 12.
  for (const size of CONFIG.sizes) {
    add(['c', 'm'], `c (reliable) >= 3x Mosquitto QoS 1 at ${sizeName(size)}`, `c/m@${size}`, '>=', 3, r[`c/m@${size}`], ratio('c', 'm', size));
  }
  add(['b', 'c'], 'c/b (reliable / volatile) >= 0.5 at 64 B', 'c/b@64 (issue 12)', '>=', 0.5, r['c/b@64'], ratio('c', 'b', 64));
  for (const size of CONFIG.sizes) {
    add(['b', 'n'], `b (volatile) >= 1.0x NATS leaf at ${sizeName(size)}`, `b/n@${size}`, '>=', 1, r[`b/n@${size}`], ratio('b', 'n', size));
  }
  const rateName = `${fmt(CONFIG.paced.rate)} msg/s`;
  for (const size of CONFIG.sizes) {
    const b = p99(rows, 'b', size);
    const n = p99(rows, 'n', size);
    add(['b', 'n'], `p99 at ${rateName}: b <= NATS leaf at ${sizeName(size)}`, `p99 b/n@${size}`, '<=', 1, b !== undefined && n !== undefined && n > 0 ? b / n : undefined, () => `b ${fmt(b)} us, n ${fmt(n)} us`);
  }
  for (const size of CONFIG.sizes) {
    const c = p99(rows, 'c', size);
    add(['c'], `p99 at ${rateName}: c <= 2 ms at ${sizeName(size)}`, `p99 c@${size} us`, '<=', 2000, c, () => `c ${fmt(c)} us`);
  }
  if (soaked !== undefined) {
    const what = `memory: RSS flat over a ${fmt(CONFIG.soakMs / 1000)} s run of c at full rate (mean RSS of the last third <= that of the middle third + 10 %, relay and gateway)`;
    const worst = Math.max(...Object.values(soaked.growth).map((g) => g.growthPct));
    add(['c'], what, 'soak growth %', '<=', 10, soaked.error === undefined && Number.isFinite(worst) ? worst : undefined, () =>
      Object.entries(soaked.growth)
        .map(([role, g]) => `${role} ${fmt(g.midMiB)} -> ${fmt(g.lastMiB)} MiB (${g.growthPct >= 0 ? '+' : ''}${fmt(g.growthPct, 1)} %)`)
        .join(', ') + `; ${fmt(soaked.msgPerSec)} msg/s, ${soaked.delivered}/${soaked.sent} delivered`,
    );
  }
  console.log('target memory of idle agents and SDK clients (issue 12): printed by bench/dist/idle.js, which npm run bench runs next');
  return { met: out, notMeasured };
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

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  let chosen = CASES.filter((c) => (opt.cases ?? '').split(',').includes(c.id));
  // The anchors' servers: found, or installed (as root, apt-get, bounded); else their cases are skipped.
  const skipped = new Map<string, string>();
  const need = new Map<AnchorProgram, CaseDef['id']>();
  if (chosen.some((c) => c.id === 'n')) need.set('nats-server', 'n');
  if (chosen.some((c) => c.id === 'm')) need.set('mosquitto', 'm');
  if (need.size > 0) {
    const t0 = Date.now();
    const p = await anchorPrograms([...need.keys()]);
    if (p.ok) {
      Object.assign(programs, p.paths);
      if (p.installed.length > 0) console.log(`bench: installed ${p.installed.join(', ')} with apt-get (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
    } else {
      for (const [program, id] of need) {
        const path = findProgram(program);
        if (path !== undefined) {
          programs[program] = path;
          continue;
        }
        skipped.set(id, p.missing);
        console.log(`bench: case ${id} (${CASES.find((c) => c.id === id)?.label ?? id}) SKIPPED: ${p.missing}`);
      }
      chosen = chosen.filter((c) => !skipped.has(c.id));
    }
  }
  armBudget();
  const started = Date.now();
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
      `(cap ${CONFIG.capMs / 1000} s, c, d and m: ${CONFIG.capReliableMs / 1000} s; median of ${CONFIG.repeat} runs for a, b and n); ` +
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
  let soaked: Soak | undefined;
  if (CONFIG.soakMs > 0 && chosen.some((c) => c.id === 'c')) {
    const t0 = Date.now();
    soaked = await soak();
    console.log(`  soak: c at 64 B for ${fmt(CONFIG.soakMs / 1000)} s: ${fmt(soaked?.msgPerSec)} msg/s, ${soaked?.delivered}/${soaked?.sent} delivered (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
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
  for (const size of CONFIG.sizes) {
    console.log(`throughput b/n (Postern volatile / NATS leaf) at ${size} B: ${fmt(r[`b/n@${size}`], 2)}`);
  }
  for (const size of CONFIG.sizes) {
    console.log(`throughput c/m (Postern reliable / Mosquitto QoS 1) at ${size} B: ${fmt(r[`c/m@${size}`], 2)}`);
  }
  for (const line of lossNotes(rows)) console.log(line);
  // The issues' targets, each computed from this run's figures.
  console.log('');
  if (soaked !== undefined) {
    const every = Math.max(1, Math.round(soaked.samples.length / 12));
    console.log(`soak RSS (s: relay / gateway MiB): ${soaked.samples.filter((_, i) => i % every === 0 || i === soaked.samples.length - 1).map(([s, a, b]) => `${fmt(s)}: ${fmt(a)} / ${fmt(b)}`).join(', ')}`);
    for (const [role, g] of Object.entries(soaked.growth)) console.log(`soak ${role}: mean RSS ${fmt(g.midMiB)} MiB over the middle third, ${fmt(g.lastMiB)} MiB over the last: ${fmt(g.growthMiB, 1)} MiB, ${fmt(g.mibPerMillion, 2)} MiB per million messages`);
  }
  const t = targets(rows, r, new Set(chosen.map((c) => c.id)), skipped, soaked);

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
    soak: soaked,
    targets: t.met,
    targetsNotMeasured: t.notMeasured,
    skippedCases: Object.fromEntries(skipped),
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
/** The time budget starts once the anchors' programs are there (an install is bounded on its own). */
function armBudget(): void {
  const budget = setTimeout(() => {
    console.error(`bench: over the budget of ${opt['budget-s']} s; killing every child`);
    killAllNow();
    process.exit(1);
  }, budgetMs);
  budget.unref();
}

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
