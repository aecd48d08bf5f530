// Drives the compiled `postern` binary as child processes: spawn, watch output, wait, kill.
// Every child is tracked so that `killAll()` in an after hook leaves no stray process.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TEST_GUEST_FLAGS } from '@postern/testing';

/** This file compiles to packages/cli/dist/test/procs.js; the repo root is four levels up. */
export const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
export const BIN = join(REPO_ROOT, 'packages/cli/dist/src/bin.js');

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const live = new Set<Proc>();

/** The environment without variables that would change what a command does. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  const vars = ['POSTERN_SECRET', 'POSTERN_TOKEN', 'POSTERN_ADMIN_TOKEN', 'POSTERN_DEBUG', 'POSTERN_CRASH_AT', 'POSTERN_DATA', 'NODE_OPTIONS'];
  // A proxy from the machine's environment would carry the tests' loopback traffic.
  const proxies = ['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'no_proxy'];
  for (const k of [...vars, ...proxies]) delete env[k];
  // Every option of every command may come from a POSTERN_ variable.
  for (const k of Object.keys(env)) if (k.startsWith('POSTERN_')) delete env[k];
  return env;
}

type Stream = 'stdout' | 'stderr';

export interface ProcOptions {
  /** A node script to run instead of the `postern` binary. */
  script?: string;
  /** Variables to set on top of the clean environment. */
  env?: Readonly<Record<string, string>>;
}

export class Proc {
  readonly child: ChildProcess;
  readonly args: readonly string[];
  /** How describe() names the program. */
  readonly program: string;
  stdout = '';
  stderr = '';
  exit: Exit | undefined;
  readonly exited: Promise<Exit>;
  readonly #watchers = new Set<() => void>();

  constructor(args: readonly string[], options: ProcOptions = {}) {
    this.args = args;
    const script = options.script ?? BIN;
    this.program = options.script === undefined ? 'postern' : basename(script);
    const env = { ...cleanEnv(), ...options.env };
    this.child = spawn(process.execPath, [script, ...args], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(this);
    this.child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      this.stdout += s;
      this.#notify();
    });
    this.child.stderr!.setEncoding('utf8').on('data', (s: string) => {
      this.stderr += s;
      this.#notify();
    });
    this.exited = new Promise<Exit>((resolve) => {
      // 'close' rather than 'exit': all output has been read by then.
      this.child.once('close', (code, signal) => {
        this.exit = { code, signal };
        live.delete(this);
        this.#notify();
        resolve(this.exit);
      });
      this.child.once('error', (err) => {
        this.stderr += `spawn error: ${err.message}\n`;
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** Non-empty lines of stdout or stderr; while it runs, only the lines already ended. */
  lines(stream: Stream = 'stdout'): string[] {
    const all = this[stream].split('\n');
    if (this.exit === undefined) all.pop();
    return all.filter((l) => l.trim() !== '');
  }

  /** What the process printed, for assertion messages. */
  describe(): string {
    const status = this.exit === undefined ? 'running' : `exit ${String(this.exit.code)} signal ${String(this.exit.signal)}`;
    return `${this.program} ${this.args.join(' ')} (${status})\n--- stdout:\n${this.stdout}--- stderr:\n${this.stderr}---`;
  }

  /** Resolves with the first match of `re` in the stream; rejects on timeout or exit first. */
  waitFor(stream: Stream, re: RegExp, timeoutMs = 10_000): Promise<RegExpExecArray> {
    return this.#until(
      () => {
        const m = re.exec(this[stream]);
        return m ?? undefined;
      },
      `${stream} to match ${String(re)}`,
      timeoutMs,
      true,
    );
  }

  /** Resolves when `check` returns a value; rejects on timeout. */
  until<T>(check: () => T | undefined, what: string, timeoutMs = 10_000): Promise<T> {
    return this.#until(check, what, timeoutMs, false);
  }

  /** Waits for the exit; on timeout kills the process and rejects with its output. */
  async waitExit(timeoutMs = 10_000): Promise<Exit> {
    await this.#until(() => this.exit, 'exit', timeoutMs, false).catch(async (err: unknown) => {
      await this.kill();
      throw err;
    });
    return this.exit!;
  }

  /** Sends `signal` (if still running) and waits, bounded, for the process to be gone. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<Exit> {
    if (this.exit === undefined) this.child.kill(signal);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), 5000)));
    const e = await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (e === undefined) {
      this.child.kill('SIGKILL');
      return this.exited;
    }
    return e;
  }

  #notify(): void {
    for (const w of [...this.#watchers]) w();
  }

  #until<T>(check: () => T | undefined, what: string, timeoutMs: number, failOnExit: boolean): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#watchers.delete(test);
      };
      const test = (): void => {
        const v = check();
        if (v !== undefined) {
          done();
          resolve(v);
        } else if (failOnExit && this.exit !== undefined) {
          done();
          reject(new Error(`exited while waiting for ${what}\n${this.describe()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${this.describe()}`));
      }, timeoutMs);
      this.#watchers.add(test);
      test();
    });
  }
}

/** Starts `postern ARGS` and leaves it running. */
export function start(...args: string[]): Proc {
  return new Proc(withData(args));
}

/**
 * Routers get a fresh temporary --data dir unless the test gives one (or --memory): the
 * default dir under $HOME is one per domain, and tests run routers of the same domain at once.
 */
export function withData(args: readonly string[]): string[] {
  const router = args[0] === 'relay' || args[0] === 'gateway';
  if (!router || args.includes('--data') || args.includes('--memory') || args.includes('--help') || args.includes('-h')) return [...args];
  const dir = mkdtempSync(join(tmpdir(), `postern-${args[0]}-`));
  dataDirs.push(dir);
  return [...args, '--data', dir];
}

const dataDirs: string[] = [];

/** Removes the --data dirs made by `withData` (after the routers using them are gone). */
export function removeDataDirs(): void {
  for (const d of dataDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** Runs `postern ARGS` to completion (bounded). */
export async function run(args: readonly string[], timeoutMs = 15_000): Promise<Proc> {
  const p = new Proc(withData(args));
  await p.waitExit(timeoutMs);
  return p;
}

/** SIGKILLs every child still running; for after/finally hooks. */
export async function killAll(): Promise<void> {
  await Promise.all([...live].map((p) => p.kill('SIGKILL')));
  removeDataDirs();
}

const LISTENING = /postern (?:relay|gateway): domain "[^"]+" listening on ws:\/\/127\.0\.0\.1:(\d+)/;

/** Waits for a relay or gateway's `listening on` line; returns its URL and port. */
export async function listeningOn(p: Proc, timeoutMs = 10_000): Promise<{ url: string; port: number }> {
  const m = await p.waitFor('stdout', LISTENING, timeoutMs);
  const port = Number(m[1]);
  return { url: `ws://127.0.0.1:${port}`, port };
}

/**
 * A router started with a secret by these tests lets agents without a token in as guests, with
 * the guest limits lifted (the tests measure delivery; quota tests set their own).
 */
export function withGuests(args: readonly string[]): string[] {
  return args.includes('--secret') && !args.includes('--allow-guests') ? [...args, ...TEST_GUEST_FLAGS] : [...args];
}

/** Starts a relay on an ephemeral port and waits until it listens (see withGuests). */
export async function startRelay(...extra: string[]): Promise<{ proc: Proc; url: string; port: number }> {
  const proc = start('relay', '--listen', '127.0.0.1:0', ...withGuests(extra));
  return { proc, ...(await listeningOn(proc)) };
}

/** Starts a gateway and waits until it listens and its uplink is up (see withGuests). */
export async function startGateway(
  relayUrl: string,
  domain: string,
  token: string,
  listen = '127.0.0.1:0',
  ...extra: string[]
): Promise<{ proc: Proc; url: string; port: number }> {
  const proc = start('gateway', '--relay', relayUrl, '--domain', domain, '--token', token, '--listen', listen, ...withGuests(extra));
  const at = await listeningOn(proc);
  await proc.waitFor('stdout', /postern gateway: uplink to .* is up/);
  return { proc, ...at };
}

/** Starts `postern listen` and waits until it reports being connected. */
export async function startListen(...args: string[]): Promise<Proc> {
  const proc = start('listen', ...args);
  await proc.waitFor('stderr', /postern listen: connected as /);
  return proc;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
