// The anchors: NATS (a hub and a leaf node that dials out to it) and Mosquitto (a hub broker and
// a second broker that dials out to it with a bridge), run from the Debian packages nats-server
// and mosquitto. This module finds (and as root installs, bounded in time) the programs, picks
// free loopback ports, writes the config files, and runs one server as a child of the calling
// process while reading its memory and CPU from /proc. See bench/README.md.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { MemoryReport } from './load.js';

export type AnchorProgram = 'nats-server' | 'mosquitto';
/** The Debian package that brings each program (the same name). */
const PACKAGE: Record<AnchorProgram, string> = { 'nats-server': 'nats-server', mosquitto: 'mosquitto' };
/** apt-get install may take this long (it waits up to half of it for another apt's lock). */
const INSTALL_MS = 180_000;
/** apt-get update, when the package lists are stale or absent. */
const UPDATE_MS = 120_000;

/** The full path of `name` on PATH or in the sbin directories (mosquitto lives in /usr/sbin). */
export function findProgram(name: string): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/bin', '/bin'];
  for (const d of dirs) {
    if (d === '') continue;
    const p = join(d, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

interface ShResult {
  code: number | null;
  out: string;
}

function sh(cmd: string, args: string[], timeoutMs: number, env: Record<string, string>): Promise<ShResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024, env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: unknown }) | null;
      const code = e === null ? 0 : typeof e.code === 'number' ? e.code : typeof e.code === 'string' ? 127 : null;
      resolve({ code, out: `${stdout}${stderr}${typeof e?.code === 'string' ? e.message : ''}` });
    });
  });
}

function lastLine(s: string): string {
  return s.trim().split('\n').filter((l) => l.trim() !== '').pop() ?? '(no output)';
}

/** Installs Debian packages; undefined on success, else why not. */
async function aptInstall(packages: string[]): Promise<string | undefined> {
  const apt = findProgram('apt-get');
  if (apt === undefined) return 'apt-get is not available to install them';
  // No service start from the package's maintainer scripts where that can be asked for (RUNLEVEL=1).
  const env = { DEBIAN_FRONTEND: 'noninteractive', RUNLEVEL: '1' };
  const install = (): Promise<ShResult> =>
    sh(apt, ['install', '-y', '--no-install-recommends', '-o', `DPkg::Lock::Timeout=${INSTALL_MS / 2000}`, ...packages], INSTALL_MS, env);
  let r = await install();
  if (r.code === 0) return undefined;
  // Stale or missing package lists (a fresh container): refresh once, try again.
  const update = await sh(apt, ['update', '-o', `DPkg::Lock::Timeout=${UPDATE_MS / 2000}`], UPDATE_MS, env);
  if (update.code !== 0) return `apt-get update failed (${update.code === null ? 'timed out' : `exit ${update.code}`}): ${lastLine(update.out)}`;
  r = await install();
  if (r.code === 0) return undefined;
  return `apt-get install ${packages.join(' ')} failed (${r.code === null ? 'timed out' : `exit ${r.code}`}): ${lastLine(r.out)}`;
}

export type Programs = { ok: true; paths: Partial<Record<AnchorProgram, string>>; installed: string[] } | { ok: false; missing: string };

/** Finds the programs and, as root on a Debian-like system, installs what is missing. Never throws. */
export async function anchorPrograms(wanted: AnchorProgram[]): Promise<Programs> {
  const locate = (): { paths: Partial<Record<AnchorProgram, string>>; absent: AnchorProgram[] } => {
    const paths: Partial<Record<AnchorProgram, string>> = {};
    const absent: AnchorProgram[] = [];
    for (const w of wanted) {
      const p = findProgram(w);
      if (p === undefined) absent.push(w);
      else paths[w] = p;
    }
    return { paths, absent };
  };
  let { paths, absent } = locate();
  if (absent.length === 0) return { ok: true, paths, installed: [] };
  const names = (xs: AnchorProgram[]): string => xs.map((x) => `${x} (Debian package ${PACKAGE[x]})`).join(', ');
  if (process.platform !== 'linux') return { ok: false, missing: `missing ${names(absent)}; installing needs Linux with apt-get (this is ${process.platform})` };
  const uid = process.getuid?.() ?? -1;
  if (uid !== 0) return { ok: false, missing: `missing ${names(absent)}; installing them needs root (running as uid ${uid}): apt-get install ${absent.map((x) => PACKAGE[x]).join(' ')}` };
  const packages = [...new Set(absent.map((x) => PACKAGE[x]))];
  const why = await aptInstall(packages);
  ({ paths, absent } = locate());
  if (absent.length > 0) return { ok: false, missing: `missing ${names(absent)}; ${why ?? 'installed, yet still not found'}` };
  return { ok: true, paths, installed: packages };
}

/** A loopback port that was free a moment ago (the server is started on it right after). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface ServerSpec {
  program: string;
  /** Arguments; `{conf}` is replaced by the config file's path. */
  args: string[];
  config: string;
  /** The server is up when this loopback port accepts a TCP connection. */
  port: number;
}

/** NATS: the hub listens for leaf nodes; the leaf dials out to it (leafnodes.remotes). */
export function natsConfigs(p: { hubClient: number; hubLeaf: number; leafClient: number }): { hub: string; leaf: string } {
  return {
    hub: `listen: "127.0.0.1:${p.hubClient}"\nleafnodes {\n  listen: "127.0.0.1:${p.hubLeaf}"\n}\n`,
    leaf: `listen: "127.0.0.1:${p.leafClient}"\nleafnodes {\n  remotes: [ { url: "nats://127.0.0.1:${p.hubLeaf}" } ]\n}\n`,
  };
}

/**
 * Mosquitto: the leaf broker dials out to the hub with a bridge that pulls `bench/in/#` in and
 * pushes `bench/out/#` out, both at QoS 1. In memory (persistence false); per-client queues
 * unbounded (max_queued_messages 0: the default 1000 drops QoS 1 messages to a slower
 * subscriber, which a reliable system must not), in-flight QoS 1 messages per client 1000 (the
 * default is 20).
 */
export function mosquittoConfigs(p: { hub: number; leaf: number }): { hub: string; leaf: string } {
  const common = 'allow_anonymous true\npersistence false\nmax_queued_messages 0\nmax_inflight_messages 1000\nlog_dest stderr\nlog_type error\nlog_type warning\n';
  return {
    hub: `listener ${p.hub} 127.0.0.1\n${common}`,
    leaf:
      `listener ${p.leaf} 127.0.0.1\n${common}` +
      `connection hub\naddress 127.0.0.1:${p.hub}\ntopic bench/in/# in 1\ntopic bench/out/# out 1\n` +
      'cleansession true\ntry_private true\nbridge_protocol_version mqttv311\nrestart_timeout 1\n',
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const clockTicks = ((): number => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** One server process, a child of this process; memory and CPU read from /proc. */
export class RunningServer {
  readonly proc: ChildProcess;
  readonly #dir: string;
  #peakRss = 0;
  readonly #sampler: NodeJS.Timeout;
  #log = '';

  private constructor(proc: ChildProcess, dir: string) {
    this.proc = proc;
    this.#dir = dir;
    proc.stdout?.on('data', (d: Buffer) => (this.#log = (this.#log + d.toString()).slice(-2000)));
    proc.stderr?.on('data', (d: Buffer) => (this.#log = (this.#log + d.toString()).slice(-2000)));
    this.#sampler = setInterval(() => {
      const r = this.#status('VmRSS');
      if (r > this.#peakRss) this.#peakRss = r;
    }, 100);
    this.#sampler.unref();
    // If this process goes, so does the server (also on process.exit from a disconnect).
    process.once('exit', () => this.kill());
  }

  static async start(spec: ServerSpec, name: string): Promise<RunningServer> {
    const dir = mkdtempSync(join(tmpdir(), `postern-bench-${name}-`));
    const conf = join(dir, `${name}.conf`);
    writeFileSync(conf, spec.config);
    const proc = spawn(spec.program, spec.args.map((a) => (a === '{conf}' ? conf : a)), { stdio: ['ignore', 'pipe', 'pipe'] });
    const s = new RunningServer(proc, dir);
    const stop = Date.now() + 10_000;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`${name} exited at start (${String(proc.exitCode ?? proc.signalCode)}): ${lastLine(s.#log)}`);
      if (await canConnect(spec.port)) return s;
      if (Date.now() > stop) {
        s.kill();
        throw new Error(`${name} not listening on 127.0.0.1:${spec.port} within 10 s: ${lastLine(s.#log)}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** A field of /proc/PID/status in kB, as bytes (0 when gone). */
  #status(field: string): number {
    try {
      const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${this.proc.pid}/status`, 'utf8'));
      return m === null ? 0 : Number(m[1]) * 1024;
    } catch {
      return 0;
    }
  }

  /** Peak RSS: the larger of the 100 ms samples and VmHWM (the kernel's high-water mark, what maxRSS reports). */
  memory(): MemoryReport {
    const MiB = 1024 * 1024;
    const now = this.#status('VmRSS');
    if (now > this.#peakRss) this.#peakRss = now;
    return { peakRssMiB: this.#peakRss / MiB, maxRssMiB: this.#status('VmHWM') / MiB, rssNowMiB: now / MiB };
  }

  /** User + system CPU of the server so far, microseconds. */
  cpuUs(): number {
    try {
      const stat = readFileSync(`/proc/${this.proc.pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return ((Number(f[11]) + Number(f[12])) * 1e6) / clockTicks;
    } catch {
      return 0;
    }
  }

  get log(): string {
    return this.#log;
  }

  kill(): void {
    clearInterval(this.#sampler);
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
