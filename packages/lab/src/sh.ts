// Runs system commands (ip, iptables, tc, apt-get) for the lab: bounded in time, output captured,
// a failure thrown with the command line and what it printed.
import { execFile } from 'node:child_process';

export interface ShResult {
  stdout: string;
  stderr: string;
  /** Exit status; null when killed (timeout). */
  code: number | null;
}

export interface ShOptions {
  /** Killed (SIGKILL) after this long. @default 30000 */
  timeoutMs?: number;
  /** Resolve with the result instead of throwing on a non-zero exit. */
  allowFail?: boolean;
  /** Variables on top of this process's environment. */
  env?: Readonly<Record<string, string>>;
}

export class LabCommandError extends Error {
  constructor(
    readonly command: string,
    readonly result: ShResult,
  ) {
    const why = result.code === null ? 'was killed (timeout)' : `exited ${result.code}`;
    super(`lab: \`${command}\` ${why}: ${(result.stderr.trim() || result.stdout.trim()).slice(-800)}`);
    this.name = 'LabCommandError';
  }
}

export function sh(cmd: string, args: readonly string[], options: ShOptions = {}): Promise<ShResult> {
  const { timeoutMs = 30_000, allowFail = false, env } = options;
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024, env: env === undefined ? process.env : { ...process.env, ...env } },
      (err, stdout, stderr) => {
        const errno = err as (NodeJS.ErrnoException & { code?: unknown }) | null;
        // A spawn failure (ENOENT) has a string code and no exit status.
        if (errno !== null && typeof errno.code === 'string') {
          const r: ShResult = { stdout, stderr: `${stderr}${errno.message}`, code: 127 };
          return allowFail ? resolve(r) : reject(new LabCommandError([cmd, ...args].join(' '), r));
        }
        const code = errno === null ? 0 : typeof errno.code === 'number' ? errno.code : null;
        const r: ShResult = { stdout, stderr, code };
        if (code !== 0 && !allowFail) reject(new LabCommandError([cmd, ...args].join(' '), r));
        else resolve(r);
      },
    );
  });
}
