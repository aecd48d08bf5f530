import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from './usage-error.js';

type Options = NonNullable<ParseArgsConfig['options']>;

export interface Parsed {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/** parseArgs in strict mode, with its errors turned into one-line usage errors. */
export function parse(command: string, argv: string[], options: Options, allowPositionals = false): Parsed {
  try {
    const r = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals });
    return { values: r.values, positionals: r.positionals };
  } catch (err) {
    const e = err as Error & { code?: string };
    const option = /Option '(-[^']+)'/.exec(e.message)?.[1];
    // Node's messages run to several lines; the user gets one.
    const msg =
      e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && option !== undefined && /ambiguous|argument missing/.test(e.message)
        ? `${option} needs a value`
        : (e.message.split('\n')[0] ?? e.message).replace(/\. To specify a positional argument.*$/s, '');
    throw new UsageError(`${command}: ${msg}`);
  }
}

export function str(p: Parsed, name: string, env?: string): string | undefined {
  const v = p.values[name];
  if (typeof v === 'string') return v;
  if (env !== undefined) {
    const e = process.env[env];
    if (e !== undefined && e !== '') return e;
  }
  return undefined;
}

export function required(command: string, p: Parsed, name: string, env?: string): string {
  const v = str(p, name, env);
  if (v === undefined) throw new UsageError(`${command}: --${name} is required${env ? ` (or set ${env})` : ''}`);
  return v;
}


export function int(command: string, p: Parsed, name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = str(p, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`${command}: --${name} must be a whole number ${max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`}, got "${v}"`);
  }
  return n;
}

/** `90`, `90s`, `15m`, `12h`, `30d` as seconds. */
export function duration(command: string, p: Parsed, name: string): number | undefined {
  const v = str(p, name);
  if (v === undefined) return undefined;
  const m = /^(\d+)([smhd]?)$/.exec(v);
  if (!m) throw new UsageError(`${command}: --${name} must be a duration like 3600, 90s, 15m, 12h or 30d, got "${v}"`);
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
}

export function flag(p: Parsed, name: string): boolean {
  return p.values[name] === true;
}
