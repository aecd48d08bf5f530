import { PosternError } from '@postern/protocol';
import { UsageError } from './usage-error.js';

export function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

/**
 * An error's message as one line: OpenSSL's `C0...:error:0A00010B:SSL routines:...:wrong version
 * number:../deps/openssl/...:355:` becomes `wrong version number`, lines are joined, and a cause
 * repeated by each layer (`a: b: b`) is said once.
 */
export function oneLine(message: string): string {
  const text = message
    .replace(/[0-9A-F]*:error:[0-9A-F]+:[^:]*:[^:]*:([^:\n]+):[^\s]*/g, '$1')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/^at /.test(l))
    .join('; ');
  const parts = text.split(': ');
  return parts.filter((x, i) => parts.indexOf(x) === i || x.length < 4).join(': ');
}

/**
 * Every error of every command ends here: one line on stderr, never a stack trace (POSTERN_DEBUG=1
 * prints one first). Usage: `postern: CMD: what [ERR_USAGE]`, exit 2. Runtime: `postern: error:
 * what [CODE]`, exit 1.
 */
export function printError(err: unknown): number {
  if (process.env['POSTERN_DEBUG']) process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
  if (err instanceof UsageError) {
    process.stderr.write(`postern: ${oneLine(err.message)} [ERR_USAGE]\n`);
    return 2;
  }
  const code = err instanceof PosternError ? err.code : typeof (err as { code?: unknown })?.code === 'string' ? (err as { code: string }).code : undefined;
  process.stderr.write(`postern: error: ${oneLine(err instanceof Error ? err.message : String(err))}${code === undefined ? '' : ` [${code}]`}\n`);
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
