// The chaos suite's world: relay <- fault proxy <- gateway, each router a `postern` process on a
// fixed port with its own --data dir (so it can be killed and restarted in place), senders on
// the relay and receivers on the gateway as agent processes (agent.ts).
//
// A process that dies when the test did not kill it (or arm it to crash) is a failure: every
// wait here checks for one and throws it with that process's output.
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FaultProxy } from '@postern/testing';
import { Proc, listeningOn, sleep } from '../procs.js';
import type { Received, Sent } from './checker.js';

const AGENT = fileURLToPath(new URL('./agent.js', import.meta.url));

export const DOMAIN = 'acme';
export const RECEIVERS = ['r1', 'r2'] as const;
export const SENDERS = ['s1', 's2', 's3'] as const;
const TARGETS = RECEIVERS.map((r) => `${r}@${DOMAIN}`);

/** After the faults: give up waiting once nothing moved for this long. */
const QUIET_MS = 15_000;
/** After the faults: give up waiting after this long in any case. */
const MAX_SETTLE_MS = 60_000;
/** After everything arrived: wait this much more for late duplicates. */
const GRACE_MS = 1000;
/** Router options that make a dead tunnel noticed within seconds (a blackhole sends no RST). */
const ROUTER_FLAGS = ['--log-level', 'warn', '--ping-interval', '1000'];

export type Role = 'relay' | 'gateway';

export interface TopologyOptions {
  /** The relay's --secret. */
  secret: string;
  /** Domain token for the gateway. */
  gatewayToken: string;
  /** Agent token per sender name, for the relay. */
  senderTokens: Readonly<Record<string, string>>;
  /** Messages per sender. */
  count: number;
  /** Messages per second per sender. */
  rate: number;
  /**
   * Start this router armed: POSTERN_CRASH_AT=spec on its first start. When it has crashed there
   * it is restarted unarmed, after crashRestartDelayMs.
   */
  crashAt?: { role: Role; spec: string };
  crashRestartDelayMs?: number;
}

interface SenderState {
  name: string;
  proc: Proc;
  address: string | undefined;
  outcomes: Map<number, { ok: true } | { ok: false; code: string }>;
  done: boolean;
}

interface ReceiverState {
  name: string;
  proc: Proc;
  address: string | undefined;
  got: Received[];
}

/** Reads a process's complete stdout lines incrementally as JSON. */
class LineReader {
  #pos = 0;
  constructor(readonly proc: Proc) {}

  read(each: (o: Record<string, unknown>, line: string) => void): void {
    const out = this.proc.stdout;
    const end = out.lastIndexOf('\n') + 1;
    if (end <= this.#pos) return;
    const chunk = out.slice(this.#pos, end);
    this.#pos = end;
    for (const line of chunk.split('\n')) {
      if (line.trim() === '') continue;
      let o: unknown;
      try {
        o = JSON.parse(line);
      } catch {
        throw new Error(`${this.proc.program} printed a line that is not JSON: ${line}\n${describeTail(this.proc)}`);
      }
      each(o as Record<string, unknown>, line);
    }
  }
}

function tail(text: string, lines: number): string {
  const all = text.split('\n');
  return (all.length > lines ? [`... (${all.length - lines} lines before)`, ...all.slice(-lines)] : all).join('\n');
}

/** describe() with only the tails of the output: agents print a line per message. */
export function describeTail(p: Proc, lines = 20): string {
  const status = p.exit === undefined ? 'running' : `exit ${String(p.exit.code)} signal ${String(p.exit.signal)}`;
  return `${p.program} ${p.args.join(' ')} (${status})\n--- stdout:\n${tail(p.stdout, lines)}\n--- stderr:\n${tail(p.stderr, 40)}\n---`;
}

/** `n` distinct loopback ports nobody listens on (bound together, then released). */
async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const srv = createServer();
      servers.push(srv);
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(0, '127.0.0.1', resolve);
      });
    }
    return servers.map((s) => (s.address() as { port: number }).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

export class Topology {
  readonly proxy: FaultProxy;
  readonly relayPort: number;
  readonly gatewayPort: number;
  readonly #dir: string;
  readonly #o: TopologyOptions;
  readonly #routers: Partial<Record<Role, Proc>> = {};
  /** Every router process started, dead ones too, for failure messages. */
  readonly #routerProcs: Proc[] = [];
  /** Processes whose exit is no failure: killed by the test, or armed to crash. */
  readonly #mayExit = new Set<Proc>();
  readonly #senders: SenderState[] = [];
  readonly #receivers: ReceiverState[] = [];
  readonly #readers = new Map<Proc, LineReader>();
  /** Router starts after the first, per role. */
  readonly restarts: Record<Role, number> = { relay: 0, gateway: 0 };
  #failure: Error | undefined;
  #closed = false;
  /** The router process started with POSTERN_CRASH_AT. */
  #armed: Proc | undefined;
  /** Settles when the armed router has crashed as it should and was restarted unarmed. */
  #crashRecovered: Promise<void> | undefined;

  private constructor(o: TopologyOptions, dir: string, relayPort: number, gatewayPort: number, proxy: FaultProxy) {
    this.#o = o;
    this.#dir = dir;
    this.relayPort = relayPort;
    this.gatewayPort = gatewayPort;
    this.proxy = proxy;
  }

  /** Starts the routers (the gateway's uplink up through the proxy) and the receivers. */
  static async create(o: TopologyOptions): Promise<Topology> {
    const dir = await mkdtemp(join(tmpdir(), 'postern-chaos-'));
    let t: Topology | undefined;
    try {
      const [relayPort, gatewayPort] = (await freePorts(2)) as [number, number];
      const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port: relayPort } });
      t = new Topology(o, dir, relayPort, gatewayPort, proxy);
      await t.#start();
      return t;
    } catch (e) {
      if (t !== undefined) await t.close();
      else await rm(dir, { recursive: true, force: true });
      throw e;
    }
  }

  async #start(): Promise<void> {
    await Promise.all([mkdir(join(this.#dir, 'relay')), mkdir(join(this.#dir, 'gateway'))]);
    const armed = this.#o.crashAt;
    await this.#startRouter('relay', armed?.role === 'relay' ? armed.spec : undefined);
    const gw = await this.#startRouter('gateway', armed?.role === 'gateway' ? armed.spec : undefined);
    if (armed !== undefined) {
      this.#armed = this.#routers[armed.role];
      this.#crashRecovered = this.#recoverFromCrash(armed.role, armed.spec);
    }
    // An armed router may crash as early as this; the agents keep trying until it is back.
    await gw.waitFor('stdout', /postern gateway: uplink to .* is up/, 10_000).catch((e: unknown) => {
      if (armed === undefined) throw e;
    });
    await Promise.all(RECEIVERS.map((r) => this.#startReceiver(r)));
  }

  get relayUrl(): string {
    return `ws://127.0.0.1:${this.relayPort}`;
  }

  get gatewayUrl(): string {
    return `ws://127.0.0.1:${this.gatewayPort}`;
  }

  /** Starts the senders; they begin sending at once. */
  async startTraffic(): Promise<void> {
    await Promise.all(SENDERS.map((s) => this.#startSender(s)));
  }

  /** Throws the first unexpected death, if any. */
  check(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** Sleeps, then throws if something died meanwhile. */
  async pause(ms: number): Promise<void> {
    await sleep(ms);
    this.check();
  }

  /** SIGKILLs a router and waits until it is gone. */
  async kill(role: Role): Promise<void> {
    const p = this.#routers[role];
    if (p === undefined || p.exit !== undefined) return;
    this.#mayExit.add(p);
    await p.kill('SIGKILL');
  }

  /** Starts a router again, on the same port and data dir, unarmed; waits until it listens. */
  async restart(role: Role): Promise<void> {
    const old = this.#routers[role];
    if (old !== undefined && old.exit === undefined) throw new Error(`restart(${role}) while it runs`);
    this.restarts[role]++;
    await this.#startRouter(role, undefined);
  }

  /** Restarts whichever router is not running. */
  async ensureRunning(): Promise<void> {
    await this.#crashRecovered;
    this.check();
    for (const role of ['relay', 'gateway'] as const) {
      const p = this.#routers[role];
      if (p === undefined || p.exit !== undefined) await this.restart(role);
    }
  }

  /**
   * Waits until the armed router (TopologyOptions.crashAt) has killed itself at its crash point
   * and was restarted unarmed; throws if it did not crash within `timeoutMs` from now.
   */
  async crashed(timeoutMs: number): Promise<void> {
    const armed = this.#o.crashAt;
    const p = this.#armed;
    if (armed === undefined || p === undefined || this.#crashRecovered === undefined) throw new Error('no router is armed');
    const done = await Promise.race([this.#crashRecovered.then(() => true), sleep(timeoutMs).then(() => false)]);
    this.check();
    if (!done) {
      if (p.exit === undefined) throw new Error(`the ${armed.role} never reached crash point ${armed.spec} within ${timeoutMs} ms\n${describeTail(p)}`);
      await this.#crashRecovered; // crashed in time; its restart is bounded by #startRouter
    }
  }

  /** Waits for the armed router to crash, checks that it died at its point, restarts it unarmed. */
  async #recoverFromCrash(role: Role, spec: string): Promise<void> {
    const p = this.#armed!;
    const exit = await p.exited;
    if (this.#closed) return;
    const point = spec.split(':')[0]!;
    if (exit.signal !== 'SIGKILL' || !p.stderr.includes(`postern: crash point ${point} reached`)) {
      this.#failure ??= new Error(`the ${role} armed with ${spec} died otherwise\n${describeTail(p)}`);
      return;
    }
    try {
      await sleep(this.#o.crashRestartDelayMs ?? 0);
      if (!this.#closed) await this.restart(role);
    } catch (e) {
      this.#failure ??= e instanceof Error ? e : new Error(String(e));
    }
  }

  /** What the senders reported so far, one entry per message they were told to send. */
  sent(): Sent[] {
    this.#read();
    const out: Sent[] = [];
    for (const s of this.#senders) {
      for (let n = 1; n <= this.#o.count; n++) {
        const o = s.outcomes.get(n);
        const base = { s: s.name, n, from: s.address ?? `${s.name}@?`, to: TARGETS[(n - 1) % TARGETS.length]! };
        if (o === undefined) out.push({ ...base, outcome: 'pending' });
        else if (o.ok) out.push({ ...base, outcome: 'accepted' });
        else out.push({ ...base, outcome: 'failed', code: o.code });
      }
    }
    return out;
  }

  /** What the receivers printed so far, each receiver's in its order. */
  received(): Received[] {
    this.#read();
    return this.#receivers.flatMap((r) => r.got);
  }

  /**
   * Waits until every sender has settled every send and every accepted message was received,
   * or nothing moved for QUIET_MS; then GRACE_MS more for late duplicates.
   * Resolves with whether everything settled, and how long it took.
   */
  async settle(): Promise<{ settled: boolean; ms: number }> {
    const t0 = Date.now();
    let lastSig = '';
    let lastMove = t0;
    let settled = false;
    for (;;) {
      this.check();
      const sent = this.sent();
      const received = this.received();
      const got = new Set(received.map((r) => `${r.s}#${r.n}`));
      const allDone = this.#senders.every((s) => s.done);
      if (allDone && sent.every((m) => m.outcome !== 'accepted' || got.has(`${m.s}#${m.n}`))) {
        settled = true;
        break;
      }
      const sig = `${this.#senders.map((s) => s.outcomes.size).join(',')}/${received.length}`;
      const now = Date.now();
      if (sig !== lastSig) {
        lastSig = sig;
        lastMove = now;
      } else if (now - lastMove >= QUIET_MS) {
        break;
      }
      if (now - t0 >= MAX_SETTLE_MS) break;
      await sleep(100);
    }
    const ms = Date.now() - t0;
    await this.pause(GRACE_MS);
    return { settled, ms };
  }

  /** What every router (dead ones too) and agent printed, in short, for failure messages. */
  describe(): string {
    const procs = [...this.#routerProcs, ...this.#senders.map((s) => s.proc), ...this.#receivers.map((r) => r.proc)];
    return procs.map((p) => describeTail(p, 3)).join('\n');
  }

  /** Kills every process of this world, closes the proxy, deletes the data dirs. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const procs = [...Object.values(this.#routers), ...this.#senders.map((s) => s.proc), ...this.#receivers.map((r) => r.proc)];
    for (const p of procs) this.#mayExit.add(p);
    await Promise.all(procs.map((p) => p.kill('SIGKILL')));
    await this.proxy.close();
    await rm(this.#dir, { recursive: true, force: true });
  }

  async #startRouter(role: Role, crashAt: string | undefined): Promise<Proc> {
    const listen = `127.0.0.1:${role === 'relay' ? this.relayPort : this.gatewayPort}`;
    const data = join(this.#dir, role);
    const args =
      role === 'relay'
        ? ['relay', '--listen', listen, '--secret', this.#o.secret, '--data', data, ...ROUTER_FLAGS]
        : ['gateway', '--relay', this.proxy.url, '--domain', DOMAIN, '--token', this.#o.gatewayToken, '--listen', listen, '--data', data, ...ROUTER_FLAGS];
    const p = new Proc(args, crashAt === undefined ? {} : { env: { POSTERN_CRASH_AT: crashAt } });
    if (crashAt !== undefined) this.#mayExit.add(p);
    this.#routers[role] = p;
    this.#routerProcs.push(p);
    this.#watch(p, `the ${role}`);
    await listeningOn(p, 10_000).catch((e: unknown) => {
      if (crashAt === undefined || p.exit === undefined) throw e; // else: crashed already, see #recoverFromCrash
    });
    return p;
  }

  async #startReceiver(name: string): Promise<void> {
    const proc = new Proc(['receive', this.gatewayUrl, name], { script: AGENT });
    const r: ReceiverState = { name, proc, address: undefined, got: [] };
    this.#receivers.push(r);
    this.#watch(proc, `receiver ${name}`);
    this.#readers.set(proc, new LineReader(proc));
    await proc.waitFor('stdout', /"ev":"ready"/, 10_000);
  }

  async #startSender(name: string): Promise<void> {
    const token = this.#o.senderTokens[name] ?? '';
    const args = ['send', this.relayUrl, name, token, String(this.#o.count), String(this.#o.rate), TARGETS.join(',')];
    const proc = new Proc(args, { script: AGENT });
    this.#senders.push({ name, proc, address: undefined, outcomes: new Map(), done: false });
    this.#watch(proc, `sender ${name}`);
    this.#readers.set(proc, new LineReader(proc));
    await proc.waitFor('stdout', /"ev":"ready"/, 10_000);
  }

  #watch(p: Proc, what: string): void {
    void p.exited.then(() => {
      if (this.#mayExit.has(p) || this.#failure !== undefined) return;
      this.#failure = new Error(`${what} died unexpectedly\n${describeTail(p)}`);
    });
  }

  #read(): void {
    for (const s of this.#senders) {
      this.#readers.get(s.proc)!.read((o, line) => {
        if (o['ev'] === 'ready') s.address = String(o['address']);
        else if (o['ev'] === 'ok') s.outcomes.set(Number(o['n']), { ok: true });
        else if (o['ev'] === 'fail') s.outcomes.set(Number(o['n']), { ok: false, code: String(o['code']) });
        else if (o['ev'] === 'done') s.done = true;
        else throw new Error(`sender ${s.name} printed an unknown line: ${line}`);
      });
    }
    for (const r of this.#receivers) {
      this.#readers.get(r.proc)!.read((o, line) => {
        if (o['ev'] === 'ready') {
          r.address = String(o['address']);
          return;
        }
        if (o['ev'] !== 'msg') throw new Error(`receiver ${r.name} printed an unknown line: ${line}`);
        let s: string | undefined;
        let n: number | undefined;
        try {
          const b = JSON.parse(String(o['body'])) as { s?: unknown; n?: unknown };
          if (typeof b.s === 'string' && Number.isSafeInteger(b.n)) [s, n] = [b.s, b.n as number];
        } catch {
          // unparsable: counted as unexpected
        }
        r.got.push({ receiver: r.address ?? `${r.name}@${DOMAIN}`, from: String(o['from']), to: String(o['to']), s, n });
      });
    }
  }
}
