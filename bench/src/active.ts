// `node bench/dist/active.js` (the last part of `npm run bench`): 1,000 active agents behind one
// gateway (issue 12 item 4). A relay and a gateway for `acme` that dials it, each in a child process
// with its SQLite store, as in production; agents s0..s999 on the gateway (in --sender-procs
// processes) each send reliable messages at a paced rate to their own receiver r0..r999@relay (in
// --receiver-procs processes, connected to the relay). Per rate: aggregate delivered msg/s
// against offered, delivered/sent (every message must arrive once, in order), end-to-end latency,
// send() settle latency, and the routers' CPU and peak RSS. Prints a table and writes
// bench/results/active.json. See bench/README.md.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { formatProfile, summarizeProfile, type ProfileSummary } from './cpuprofile.js';
import type { FleetCollected, FleetPacedArgs, FleetPacedResult } from './fleet.js';
import { Children, type Peer } from './ipc.js';
import { summarize, type Collected, type MemoryReport } from './load.js';
import { fmt, git } from './report.js';
import { openFilesLimit, spawnNode } from './spawn.js';

const benchDir = fileURLToPath(new URL('..', import.meta.url));
const childScript = fileURLToPath(new URL('./child.js', import.meta.url));

const { values: opt } = parseArgs({
  options: {
    agents: { type: 'string', default: '1000' },
    rates: { type: 'string', default: '5,10,20' },
    rate: { type: 'string' },
    size: { type: 'string', default: '64' },
    'warmup-s': { type: 'string', default: '2' },
    'duration-s': { type: 'string', default: '10' },
    'sender-procs': { type: 'string', default: '2' },
    'receiver-procs': { type: 'string', default: '1' },
    'budget-s': { type: 'string', default: '180' },
    profile: { type: 'boolean', default: false },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opt.help) {
  console.log(`Usage: node bench/dist/active.js [options]
  --agents N          sending agents on the gateway, and as many receiving agents on the relay [1000]
  --rates R,...       messages a second per sending agent, one round each, in this order [5,10,20]
  --rate R            one round at R (same as --rates R)
  --size B            body bytes (at least 17: send time, sequence, kind, sender) [64]
  --warmup-s S        sent but not measured, at the start of each round [2]
  --duration-s S      the measured window of each round [10]
  --sender-procs P    processes the sending agents are spread over [2]
  --receiver-procs P  processes the receiving agents are spread over [1]
  --budget-s S        kill every child and fail after S seconds [180]
  --profile           --cpu-prof on the relay and the gateway; prints their hot spots
  --out FILE          results file [bench/results/active.json]`);
  process.exit(0);
}

const num = (s: string | undefined, name: string, min = 0): number => {
  const x = Number(s);
  if (!Number.isFinite(x) || x < min) throw new Error(`--${name} must be a number >= ${min}`);
  return x;
};

const CONFIG = {
  agents: Math.round(num(opt.agents, 'agents', 1)),
  rates: (opt.rate ?? opt.rates ?? '').split(',').map((r) => num(r, 'rates', 0.01)),
  size: num(opt.size, 'size', 17),
  warmupMs: num(opt['warmup-s'], 'warmup-s') * 1000,
  durationMs: num(opt['duration-s'], 'duration-s', 0.1) * 1000,
  senderProcs: Math.round(num(opt['sender-procs'], 'sender-procs', 1)),
  receiverProcs: Math.round(num(opt['receiver-procs'], 'receiver-procs', 1)),
  /** Connections each agents process opens at once. */
  connectConcurrency: 32,
  /** After the last send: how long sends may take to settle, and messages to arrive (nothing new for idle, or max). */
  settleWaitMs: 15_000,
  collectIdleMs: 3000,
  collectMaxMs: 20_000,
};
const budgetMs = num(opt['budget-s'], 'budget-s', 1) * 1000;

// ---------------------------------------------------------------- processes

const children = new Children();
const dataDirs: string[] = [];
// A router killed before it could exit leaves its data dir behind.
children.onKill(() => {
  for (const d of dataDirs) rmSync(d, { recursive: true, force: true });
});

const profileDir = opt.profile ? join(benchDir, 'results', 'profiles') : undefined;

/** A child.js role, its open-files limit raised to hold `files` (as far as the hard limit lets); profiled with --profile. */
function start(role: string, files: number, profiled = false): Promise<Peer> {
  const execArgv = profiled && profileDir !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=active-${role}.cpuprofile`] : [];
  return children.start(role, spawnNode(childScript, [role], { nofile: files + 1024, execArgv }));
}

interface Group {
  peer: Peer;
  first: number;
  count: number;
}

/** `n` agents split over `procs` processes of `role`, each connected by `init`. */
async function startAgents(role: string, n: number, procs: number, init: (first: number, count: number) => unknown): Promise<{ groups: Group[]; connectMs: number }> {
  const per = Math.ceil(n / procs);
  const groups: Group[] = [];
  for (let first = 0; first < n; first += per) groups.push({ peer: await start(role, per), first, count: Math.min(per, n - first) });
  const t0 = Date.now();
  await Promise.all(groups.map((g) => g.peer.call('init', init(g.first, g.count), 120_000)));
  return { groups, connectMs: Date.now() - t0 };
}

// ---------------------------------------------------------------- one round

type Latency = Collected['latency'];

interface Round
  extends Pick<FleetPacedResult, 'sent' | 'settled' | 'failed' | 'unsettled' | 'errors' | 'failedSample'>,
    Pick<FleetCollected, 'missing' | 'missingSample' | 'duplicates' | 'reordered' | 'misrouted' | 'unexpected'> {
  rate: number;
  /** agents x rate. */
  offeredPerSec: number;
  /** Sends scheduled in the measured window, per second (below offered when the senders fell behind). */
  sentPerSec: number;
  /** Messages received in the measured window, per second, all receivers. */
  deliveredPerSec: number;
  /** Distinct messages received (sent - missing). */
  delivered: number;
  /** Missing messages while the receivers still received when the wait ended (late, not known lost). */
  stillArriving: boolean;
  latency: Latency;
  settle: Latency;
  /** The senders' worst lag behind their schedule, ms. */
  maxLagMs: number;
  /** From the last send to the last message received, ms. */
  drainMs: number;
  /** CPU (user + system) over the measured window, % of one core. */
  cpuPercent: { relay: number; gateway: number; senders: number; receivers: number };
  /** The same per message delivered in the window, µs: less sensitive to other load than msg/s. */
  cpuUsPerMsg: { relay: number; gateway: number; all: number };
  /**
   * The whole machine over the window (/proc/stat), % of one core: busy (any process, the kernel's
   * network work for loopback included), waiting for I/O, stolen by the hypervisor; `othersPercent`
   * is busy minus this bench's processes.
   */
  machine: { cores: number; busyPercent: number; othersPercent: number; iowaitPercent: number; stealPercent: number };
  /** Event-loop delay over the window, ms (the agents' figure: the worst of their processes). */
  loopDelay: { relay: LoopDelay; gateway: LoopDelay; agents: LoopDelay };
  memory: { relay: MemoryReport; gateway: MemoryReport };
  /** Disconnects the SDK clients saw, and the gateway's uplink drops, in this round. */
  senderDisconnects: number;
  receiverDisconnects: number;
  uplinkDowns: number;
  lastErrors: string[];
  relayStats: Record<string, unknown>;
  gatewayStats: Record<string, unknown>;
}

interface Topology {
  relay: Peer;
  gateway: Peer;
  senders: Group[];
  receivers: Group[];
}

const hr = (): bigint => process.hrtime.bigint();

async function sleepUntil(ns: bigint): Promise<void> {
  for (let w = Number(ns - hr()) / 1e6; w > 0; w = Number(ns - hr()) / 1e6) await sleep(Math.min(w, 100));
}

/** The machine's CPU time so far, µs: busy (user, nice, system, irq, softirq, steal), iowait, steal. */
function machineUs(): { busy: number; iowait: number; steal: number } {
  const f = (/^cpu\s+(.*)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1] ?? '').split(/\s+/).map(Number);
  // Fields in USER_HZ (100 a second on Linux): user nice system idle iowait irq softirq steal.
  const us = (i: number): number => (f[i] ?? 0) * 10_000;
  return { busy: us(0) + us(1) + us(2) + us(5) + us(6) + us(7), iowait: us(4), steal: us(7) };
}

async function cpuUs(peers: Peer[]): Promise<number> {
  const xs = await Promise.all(peers.map((p) => p.call<number>('cpu', null, 5000)));
  return xs.reduce((x, y) => x + y, 0);
}

type Status = { disconnects: number; lastError: string };
type LoopDelay = { p50Ms: number; p99Ms: number; maxMs: number };

/** Resets the peers' event-loop delay histograms and returns the figures since the last reset (the worst peer's). */
async function loopDelay(peers: Peer[]): Promise<LoopDelay> {
  const xs = await Promise.all(peers.map((p) => p.call<LoopDelay>('loop', null, 5000)));
  return { p50Ms: Math.max(...xs.map((x) => x.p50Ms)), p99Ms: Math.max(...xs.map((x) => x.p99Ms)), maxMs: Math.max(...xs.map((x) => x.maxMs)) };
}
type GatewayStats = Record<string, unknown> & { uplinkEvents?: { down: number; lastError: string } };

/** The counters worth keeping from a router's stats (not its 1,000 links). */
function routerFigures(s: Record<string, unknown>): Record<string, unknown> {
  const keep = ['connections', 'agents', 'msgsIn', 'msgsDelivered', 'msgsForwarded', 'msgsDropped', 'nacksSent', 'protocolErrors', 'pauses', 'connectionsRefused', 'rateLimited', 'senderQuotaRefused', 'storeFailures', 'storeRefused', 'queues', 'seenKeys', 'uplinkEvents'];
  return Object.fromEntries(keep.filter((k) => k in s).map((k) => [k, s[k]]));
}

async function statuses(groups: Group[]): Promise<Status[]> {
  return Promise.all(groups.map((g) => g.peer.call<Status>('stats', null, 5000)));
}

async function round(t: Topology, rate: number): Promise<Round> {
  const { agents, warmupMs, durationMs } = CONFIG;
  const before = { senders: await statuses(t.senders), receivers: await statuses(t.receivers), gateway: await t.gateway.call<GatewayStats>('stats', null, 5000) };
  const startNs = hr() + 500_000_000n;
  const fromNs = startNs + BigInt(Math.round(warmupMs * 1e6));
  const toNs = fromNs + BigInt(Math.round(durationMs * 1e6));
  await Promise.all(t.receivers.map((g) => g.peer.call('arm', { fromNs: fromNs.toString(), toNs: toNs.toString() }, 5000)));
  const args: FleetPacedArgs = { rate, size: CONFIG.size, startNs: startNs.toString(), warmupMs, durationMs, settleWaitMs: CONFIG.settleWaitMs };
  const sending = Promise.all(t.senders.map((g) => g.peer.call<FleetPacedResult>('paced', args, 500 + warmupMs + durationMs + CONFIG.settleWaitMs + 30_000)));
  sending.catch(() => undefined);
  // CPU over the measured window, of each router and of the agents' processes together.
  const who = { relay: [t.relay], gateway: [t.gateway], senders: t.senders.map((g) => g.peer), receivers: t.receivers.map((g) => g.peer) };
  await sleepUntil(fromNs);
  const agentsPeers = [...who.senders, ...who.receivers];
  await Promise.all([loopDelay(who.relay), loopDelay(who.gateway), loopDelay(agentsPeers)]);
  const m0 = machineUs();
  const own0 = process.cpuUsage();
  const c0 = { relay: await cpuUs(who.relay), gateway: await cpuUs(who.gateway), senders: await cpuUs(who.senders), receivers: await cpuUs(who.receivers) };
  const w0 = hr();
  await sleepUntil(toNs);
  const c1 = { relay: await cpuUs(who.relay), gateway: await cpuUs(who.gateway), senders: await cpuUs(who.senders), receivers: await cpuUs(who.receivers) };
  const own1 = process.cpuUsage(own0);
  const m1 = machineUs();
  const loop = { relay: await loopDelay(who.relay), gateway: await loopDelay(who.gateway), agents: await loopDelay(agentsPeers) };
  const wallUs = Number(hr() - w0) / 1000;
  const share = (us: number): number => Math.round((1000 * us) / wallUs) / 10;
  const cpuPercent = { relay: share(c1.relay - c0.relay), gateway: share(c1.gateway - c0.gateway), senders: share(c1.senders - c0.senders), receivers: share(c1.receivers - c0.receivers) };
  const ours = c1.relay - c0.relay + c1.gateway - c0.gateway + c1.senders - c0.senders + c1.receivers - c0.receivers + own1.user + own1.system;
  const machine = { cores: os.cpus().length, busyPercent: share(m1.busy - m0.busy), othersPercent: share(m1.busy - m0.busy - ours), iowaitPercent: share(m1.iowait - m0.iowait), stealPercent: share(m1.steal - m0.steal) };

  const sent = await sending;
  // Sends per agent, by agent index; then each receivers process waits for its agents' share.
  const perAgent = new Array<number>(agents).fill(0);
  t.senders.forEach((g, i) => sent[i]!.perAgent.forEach((n, j) => (perAgent[g.first + j] = n)));
  const got = await Promise.all(
    t.receivers.map((g) => g.peer.call<FleetCollected>('collect', { expected: perAgent.slice(g.first, g.first + g.count), idleMs: CONFIG.collectIdleMs, maxWaitMs: CONFIG.collectMaxMs }, CONFIG.collectMaxMs + 10_000)),
  );
  const after = { senders: await statuses(t.senders), receivers: await statuses(t.receivers) };
  const relayStats = await t.relay.call<Record<string, unknown>>('stats', null, 5000);
  const gatewayStats = await t.gateway.call<GatewayStats>('stats', null, 5000);
  const sum = <T>(xs: T[], f: (x: T) => number): number => xs.reduce((a, x) => a + f(x), 0);
  const errors: Record<string, number> = {};
  for (const s of sent) for (const [k, v] of Object.entries(s.errors)) errors[k] = (errors[k] ?? 0) + v;
  const lastSend = sent.reduce((m, s) => (BigInt(s.lastSendNs) > m ? BigInt(s.lastSendNs) : m), 0n);
  const lastRecv = got.reduce((m, g) => (BigInt(g.lastNs) > m ? BigInt(g.lastNs) : m), 0n);
  const disconnects = (a: Status[], b: Status[]): number => sum(a, (x) => x.disconnects) - sum(b, (x) => x.disconnects);
  const lastErrors = [...after.senders, ...after.receivers, { lastError: gatewayStats.uplinkEvents?.lastError ?? '' }].map((s) => s.lastError).filter((e) => e !== '');
  const total = sum(sent, (s) => s.sent);
  const missing = sum(got, (g) => g.missing);
  return {
    rate,
    offeredPerSec: agents * rate,
    sentPerSec: (sum(sent, (s) => s.timed) * 1000) / durationMs,
    deliveredPerSec: (sum(got, (g) => g.inWindow) * 1000) / durationMs,
    sent: total,
    settled: sum(sent, (s) => s.settled),
    failed: sum(sent, (s) => s.failed),
    unsettled: sum(sent, (s) => s.unsettled),
    errors,
    failedSample: sent.flatMap((s) => s.failedSample).slice(0, 10),
    delivered: total - missing,
    missing,
    stillArriving: got.some((g) => g.ended === 'max-wait'),
    missingSample: got.flatMap((g) => g.missingSample).slice(0, 10),
    duplicates: sum(got, (g) => g.duplicates),
    reordered: sum(got, (g) => g.reordered),
    misrouted: sum(got, (g) => g.misrouted),
    unexpected: sum(got, (g) => g.unexpected),
    latency: summarize(got.flatMap((g) => g.latencyUs)),
    settle: summarize(sent.flatMap((s) => s.settleUs)),
    maxLagMs: Math.max(...sent.map((s) => s.maxLagMs)),
    drainMs: lastRecv > 0n && lastSend > 0n ? Number(lastRecv - lastSend) / 1e6 : NaN,
    cpuPercent,
    cpuUsPerMsg: perMsg(cpuPercent, sum(got, (g) => g.inWindow) / (durationMs / 1000)),
    machine,
    loopDelay: loop,
    memory: { relay: await t.relay.call<MemoryReport>('memory', null, 5000), gateway: await t.gateway.call<MemoryReport>('memory', null, 5000) },
    senderDisconnects: disconnects(after.senders, before.senders),
    receiverDisconnects: disconnects(after.receivers, before.receivers),
    uplinkDowns: (gatewayStats.uplinkEvents?.down ?? 0) - (before.gateway.uplinkEvents?.down ?? 0),
    lastErrors: [...new Set(lastErrors)],
    relayStats: routerFigures(relayStats),
    gatewayStats: routerFigures(gatewayStats),
  };
}

// ---------------------------------------------------------------- report

function perMsg(c: Round['cpuPercent'], msgPerSec: number): Round['cpuUsPerMsg'] {
  // % of one core = 10,000 µs of CPU a second.
  const us = (pct: number): number => (msgPerSec > 0 ? Math.round((pct * 10_000 * 10) / msgPerSec) / 10 : NaN);
  return { relay: us(c.relay), gateway: us(c.gateway), all: us(c.relay + c.gateway + c.senders + c.receivers) };
}

const ms = (us: number | undefined): string => fmt(us === undefined ? undefined : us / 1000, 1);
const peakMiB = (m: MemoryReport): number => Math.max(m.peakRssMiB, m.maxRssMiB);

function table(rounds: Round[]): string {
  const head = ['msg/s per agent', 'offered msg/s', 'sent msg/s', 'delivered msg/s', 'delivered/sent', 'e2e p50 / p99 / max ms', 'send() p99 ms', 'CPU % relay / gateway / agents / machine', 'CPU µs/msg relay / gateway / all', 'stall ms relay / gateway / agents', 'peak RSS MiB relay / gateway'];
  const body = rounds.map((r) => [
    fmt(r.rate, r.rate % 1 === 0 ? 0 : 1),
    fmt(r.offeredPerSec),
    fmt(r.sentPerSec),
    fmt(r.deliveredPerSec),
    `${r.delivered}/${r.sent}`,
    `${ms(r.latency?.p50Us)} / ${ms(r.latency?.p99Us)} / ${ms(r.latency?.maxUs)}`,
    ms(r.settle?.p99Us),
    `${fmt(r.cpuPercent.relay)} / ${fmt(r.cpuPercent.gateway)} / ${fmt(r.cpuPercent.senders + r.cpuPercent.receivers)} / ${fmt(r.machine.busyPercent)} of ${r.machine.cores * 100}`,
    `${fmt(r.cpuUsPerMsg.relay)} / ${fmt(r.cpuUsPerMsg.gateway)} / ${fmt(r.cpuUsPerMsg.all)}`,
    `${fmt(r.loopDelay.relay.maxMs)} / ${fmt(r.loopDelay.gateway.maxMs)} / ${fmt(r.loopDelay.agents.maxMs)}`,
    `${fmt(peakMiB(r.memory.relay))} / ${fmt(peakMiB(r.memory.gateway))}`,
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((x, i) => x.padStart(w[i]!)).join('  ');
  return [line(head), w.map((x) => '-'.repeat(x)).join('  '), ...body.map(line)].join('\n');
}

/** Everything that went wrong in a round, one line each: nothing hides behind the table. */
function problems(r: Round): string[] {
  const out: string[] = [];
  const at = `at ${fmt(r.rate)} msg/s per agent`;
  if (r.missing > 0) {
    const why = r.stillArriving ? `still arriving when the wait of ${CONFIG.collectMaxMs / 1000} s after the last send ended: late, not known lost` : `nothing arrived for ${CONFIG.collectIdleMs / 1000} s: lost or stuck`;
    out.push(`${at}: ${r.missing} of ${r.sent} messages not received (${why}), e.g. ${r.missingSample.join(', ')}`);
  }
  if (r.failed > 0) out.push(`${at}: ${r.failed} send() calls failed (${Object.entries(r.errors).map(([k, v]) => `${k} ${v}`).join(', ')}), e.g. ${r.failedSample.join('; ')}`);
  if (r.unsettled > 0) out.push(`${at}: ${r.unsettled} send() calls neither resolved nor failed ${CONFIG.settleWaitMs / 1000} s after the last send`);
  for (const [k, what] of [['duplicates', 'duplicates'], ['reordered', 'out of order'], ['misrouted', 'at the wrong agent'], ['unexpected', 'with a sequence number never sent']] as const) {
    if (r[k] > 0) out.push(`${at}: ${r[k]} messages ${what}`);
  }
  if (r.senderDisconnects + r.receiverDisconnects + r.uplinkDowns > 0) {
    out.push(`${at}: disconnects: ${r.senderDisconnects} sending agents, ${r.receiverDisconnects} receiving agents, ${r.uplinkDowns} gateway uplink (last errors: ${r.lastErrors.join('; ') || '-'})`);
  }
  if (r.sentPerSec < r.offeredPerSec * 0.98) out.push(`${at}: the senders could not keep up: sent ${fmt(r.sentPerSec)} of ${fmt(r.offeredPerSec)} msg/s offered`);
  // Sends are stamped when send() is called, so a stalled sender's delay is not in the latency: say so.
  if (r.maxLagMs > 100) out.push(`${at}: a sending process's loop ran up to ${fmt(r.maxLagMs)} ms behind its schedule (event-loop stalls; not counted in the latency)`);
  if (r.machine.othersPercent > 40) out.push(`${at}: other work used ${fmt(r.machine.othersPercent)} % of one core during the window (beyond this bench's processes; the kernel's loopback network work counts here too): these figures are noisier than a quiet machine's`);
  if (r.deliveredPerSec < r.sentPerSec * 0.95) out.push(`${at}: saturated: delivered ${fmt(r.deliveredPerSec)} msg/s of ${fmt(r.sentPerSec)} sent in the window; the rest arrived up to ${fmt(r.drainMs / 1000, 1)} s after the last send`);
  return out;
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const budget = setTimeout(() => {
    console.error(`bench active: over the budget of ${budgetMs / 1000} s; killing every child`);
    children.killAll();
    process.exit(1);
  }, budgetMs);
  budget.unref();
  const started = Date.now();
  const { agents } = CONFIG;
  const hard = openFilesLimit('hard');
  if (hard < agents + 256) throw new Error(`the open-files hard limit (${hard}) is below what a router holding ${agents} agents needs (${agents + 256})`);
  const loadBefore = os.loadavg();
  console.log(
    `bench active: node ${process.version}, ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'unknown'}, commit ${git(['rev-parse', '--short', 'HEAD'])}; ` +
      `${agents} agents on the gateway (${CONFIG.senderProcs} processes) -> ${agents} on the relay (${CONFIG.receiverProcs}); ${CONFIG.size} B reliable; ` +
      `rounds at ${CONFIG.rates.join(', ')} msg/s per agent, ${CONFIG.warmupMs / 1000} s warm-up + ${CONFIG.durationMs / 1000} s measured; load average ${loadBefore.map((x) => x.toFixed(2)).join(' ')}`,
  );
  const secret = randomBytes(24).toString('base64url');
  // Every agent connects from 127.0.0.1: the per-address limits are lifted (as idle.js does).
  const limits = { maxConnections: agents + 1000, maxConnectionsPerAddress: 1_000_000, connectRatePerAddress: 1_000_000 };
  const rounds: Round[] = [];
  let connect: { receiversMs: number; sendersMs: number } | undefined;
  let idleMemory: { relay: MemoryReport; gateway: MemoryReport } | undefined;
  try {
    if (profileDir !== undefined) {
      rmSync(profileDir, { recursive: true, force: true });
      mkdirSync(profileDir, { recursive: true });
      writeFileSync(join(profileDir, '.gitignore'), '*\n');
    }
    const relay = await start('relay', agents, true);
    const r = await relay.call<{ url: string; dataDir: string }>('init', { secret, limits }, 15_000);
    dataDirs.push(r.dataDir);
    const gateway = await start('gateway', agents, true);
    const g = await gateway.call<{ url: string; dataDir: string }>('init', { secret, relayUrl: r.url, limits }, 15_000);
    dataDirs.push(g.dataDir);
    const rx = await startAgents('fleet-receiver', agents, CONFIG.receiverProcs, (first, count) => ({ url: r.url, first, count, concurrency: CONFIG.connectConcurrency, secret }));
    const tx = await startAgents('fleet-sender', agents, CONFIG.senderProcs, (first, count) => ({ url: g.url, first, count, concurrency: CONFIG.connectConcurrency }));
    connect = { receiversMs: rx.connectMs, sendersMs: tx.connectMs };
    await sleep(500);
    idleMemory = { relay: await relay.call<MemoryReport>('memory', null, 5000), gateway: await gateway.call<MemoryReport>('memory', null, 5000) };
    console.log(
      `  connected ${agents} receiving agents to the relay in ${fmt(rx.connectMs / 1000, 1)} s, ${agents} sending agents to the gateway in ${fmt(tx.connectMs / 1000, 1)} s ` +
        `(${CONFIG.connectConcurrency} at once per process); RSS now: relay ${fmt(idleMemory.relay.rssNowMiB)} MiB, gateway ${fmt(idleMemory.gateway.rssNowMiB)} MiB`,
    );
    const t: Topology = { relay, gateway, senders: tx.groups, receivers: rx.groups };
    for (const rate of CONFIG.rates) {
      const t0 = Date.now();
      const x = await round(t, rate);
      rounds.push(x);
      console.log(
        `  ${fmt(rate)} msg/s per agent: offered ${fmt(x.offeredPerSec)}, delivered ${fmt(x.deliveredPerSec)} msg/s, ${x.delivered}/${x.sent} delivered, ` +
          `e2e p50 ${ms(x.latency?.p50Us)} ms p99 ${ms(x.latency?.p99Us)} ms, send() p99 ${ms(x.settle?.p99Us)} ms (${((Date.now() - t0) / 1000).toFixed(1)} s)`,
      );
    }
  } finally {
    await children.stop([...children.live].reverse());
    children.killAll();
  }
  console.log(`\n${table(rounds)}\n`);
  let profiles: ProfileSummary[] | undefined;
  if (profileDir !== undefined) {
    profiles = readdirSync(profileDir)
      .filter((f) => f.endsWith('.cpuprofile'))
      .sort()
      .map((f) => summarizeProfile(join(profileDir, f)));
    for (const p of profiles) console.log(`${formatProfile(p)}\n`);
  }
  const notes = rounds.flatMap(problems);
  for (const n of notes) console.log(`problem ${n}`);
  if (notes.length === 0) console.log('every message arrived once and in order; no send failed; no disconnects');
  const result = {
    commit: git(['rev-parse', '--short', 'HEAD']),
    dirty: git(['status', '--porcelain', '--untracked-files=no']) !== '',
    node: process.version,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cpus: os.cpus().length,
    date: new Date().toISOString(),
    durationS: (Date.now() - started) / 1000,
    loadavg: { before: loadBefore, after: os.loadavg() },
    config: CONFIG,
    connect,
    idleMemory,
    rounds,
    problems: notes,
    fatals: children.fatals,
    profiles,
  };
  const out = opt.out ?? join(benchDir, 'results', 'active.json');
  mkdirSync(join(out, '..'), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`wrote ${out} (${result.durationS.toFixed(0)} s)`);
  // Late messages on an overloaded machine are reported, not failed; lost, failed, doubled, reordered or misrouted ones fail.
  const lost = rounds.some((r) => (r.missing > 0 && !r.stillArriving) || r.failed > 0 || r.duplicates > 0 || r.reordered > 0 || r.misrouted > 0 || r.unexpected > 0);
  return lost || children.fatals.length > 0 ? 1 : 0;
}

main().then(
  (code) => {
    children.killAll();
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(`bench active: ${err instanceof Error ? err.message : String(err)}`);
    children.killAll();
    process.exitCode = 1;
  },
);
