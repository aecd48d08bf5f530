// A child process of the lab, usually inside one of its namespaces (`ip netns exec NS ...`, which
// execs the program: the child's pid is the program's own). Output is collected and can be
// waited on; standard input is a pipe the test may write lines to.
import { spawn, type ChildProcess } from 'node:child_process';
import { basename } from 'node:path';

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

type Stream = 'stdout' | 'stderr';

/** Variables that would change what a postern process does, or where it connects. */
const SCRUB = ['POSTERN_SECRET', 'POSTERN_TOKEN', 'POSTERN_DEBUG', 'POSTERN_CRASH_AT', 'POSTERN_DATA', 'NODE_OPTIONS'];
const PROXY_VARS = ['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'ALL_PROXY'];

/**
 * The admin token of every router the lab starts (POSTERN_ADMIN_TOKEN in every lab process): the
 * tests read a router's counters from its /healthz with it (without it: liveness only).
 */
export const LAB_ADMIN_TOKEN = 'lab-admin-token-0123456789';

/** This environment without POSTERN_* settings and proxy variables (the lab says which proxy). */
export function labEnv(extra: Readonly<Record<string, string>> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of [...SCRUB, ...PROXY_VARS, ...PROXY_VARS.map((v) => v.toLowerCase())]) delete env[k];
  // Every option of every postern command may come from a POSTERN_ variable.
  for (const k of Object.keys(env)) if (k.startsWith('POSTERN_') && !k.startsWith('POSTERN_LAB_')) delete env[k];
  return { ...env, POSTERN_ADMIN_TOKEN: LAB_ADMIN_TOKEN, ...extra };
}

export class LabProc {
  readonly child: ChildProcess;
  /** How describe() names it, e.g. `lan$ postern gateway --relay ...`. */
  readonly label: string;
  stdout = '';
  stderr = '';
  exit: Exit | undefined;
  readonly exited: Promise<Exit>;
  /** Milliseconds since the epoch when it was started. */
  readonly startedAt = Date.now();
  readonly #watchers = new Set<() => void>();

  /** Runs `argv` (inside namespace `netns` when given) with cwd `cwd`. */
  constructor(argv: readonly string[], options: { netns?: string; ip?: string; cwd: string; env?: Readonly<Record<string, string>>; label: string }) {
    const [cmd, ...args] = options.netns === undefined ? argv : [options.ip ?? 'ip', 'netns', 'exec', options.netns, ...argv];
    this.label = options.label;
    this.child = spawn(cmd!, args, { cwd: options.cwd, env: labEnv(options.env), stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdin!.on('error', () => undefined); // EPIPE when it exits while the test writes
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

  get running(): boolean {
    return this.exit === undefined;
  }

  /** Writes to its standard input (ignored once it exited). */
  write(text: string): void {
    if (this.exit === undefined && this.child.stdin!.writable) this.child.stdin!.write(text);
  }

  /** Closes its standard input. */
  endInput(): void {
    this.child.stdin!.end();
  }

  /** Complete lines of a stream, empty ones left out. */
  lines(stream: Stream = 'stdout'): string[] {
    const all = this[stream].split('\n');
    if (this.exit === undefined) all.pop();
    return all.filter((l) => l.trim() !== '');
  }

  /** What it printed (the last `tail` lines of each stream), for failure messages. */
  describe(tail = 30): string {
    const cut = (s: string): string => {
      const l = s.split('\n');
      return l.length > tail ? [`... (${l.length - tail} lines before)`, ...l.slice(-tail)].join('\n') : s;
    };
    const status = this.exit === undefined ? 'running' : `exit ${String(this.exit.code)} signal ${String(this.exit.signal)}`;
    return `${this.label} (${status})\n--- stdout:\n${cut(this.stdout)}\n--- stderr:\n${cut(this.stderr)}\n---`;
  }

  /** The first match of `re` in a stream at or after character `from`; rejects on timeout or exit. */
  waitFor(stream: Stream, re: RegExp, timeoutMs = 10_000, from = 0): Promise<RegExpExecArray> {
    return this.#until(() => re.exec(this[stream].slice(from)) ?? undefined, `${stream} to match ${String(re)}`, timeoutMs, true);
  }

  /** Resolves when `check` returns a value; rejects on timeout. */
  until<T>(check: () => T | undefined, what: string, timeoutMs = 10_000): Promise<T> {
    return this.#until(check, what, timeoutMs, false);
  }

  /** Waits for the exit; on timeout kills it and rejects with its output. */
  async waitExit(timeoutMs = 10_000): Promise<Exit> {
    try {
      return await this.#until(() => this.exit, 'exit', timeoutMs, false);
    } catch (e) {
      await this.kill();
      throw e;
    }
  }

  /** Sends `signal` (if still running) and waits, bounded, until it is gone. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<Exit | undefined> {
    if (this.exit === undefined) this.child.kill(signal);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), 5000)));
    let e = await Promise.race([this.exited, late]);
    if (e === undefined) {
      this.child.kill('SIGKILL');
      e = await Promise.race([this.exited, late]);
    }
    clearTimeout(timer);
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

/** `node SCRIPT ARGS` as a label: the script's file name, not its path. */
export function nodeLabel(netns: string | undefined, script: string, args: readonly string[]): string {
  return `${netns ?? 'host'}$ ${basename(script, '.js')} ${args.join(' ')}`;
}
