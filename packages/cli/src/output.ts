import { PosternError } from '@postern/protocol';
import { UsageError } from './usage-error.js';

export function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** One clear line on stderr, never a stack trace (set POSTERN_DEBUG=1 for one). */
export function printError(err: unknown): number {
  if (process.env.POSTERN_DEBUG) process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
  if (err instanceof UsageError) {
    const cmd = /^(\w+): /.exec(err.message)?.[1];
    process.stderr.write(`postern: ${err.message}\n(see postern ${cmd === undefined ? '' : `${cmd} `}--help)\n`);
    return 2;
  }
  if (err instanceof PosternError) {
    process.stderr.write(`postern: error: ${err.message} [${err.code}]\n`);
    return 1;
  }
  process.stderr.write(`postern: error: ${err instanceof Error ? err.message : String(err)}\n`);
  return 1;
}

/** Resolves on the first SIGINT or SIGTERM. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (s: NodeJS.Signals): void => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(s);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}
