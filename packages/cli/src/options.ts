// The one configuration model of the CLI. Every command declares one option table; from it come
// the parseArgs options, the help lines, the environment variables, the config file keys, the
// docs table (docs/CONFIG.md), the shell completions and `postern config check`.
// Precedence: flag > environment > config file > default.
import { readFileSync, statSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { parse as parseToml } from 'smol-toml';
import { UsageError } from './usage-error.js';

/** What a value means: how it is parsed, checked and shown. */
export type Kind = 'string' | 'boolean' | 'int' | 'duration' | 'size' | 'enum';

/**
 * One option of a command. The first two fields are node:util parseArgs' own, so a plain
 * `{ type: 'string' }` entry is a valid option (a string, with env and config support, no help).
 */
export interface OptionSpec {
  type: 'string' | 'boolean';
  /** Repeatable; an array in a config file; a `sep`-separated list in the environment. */
  multiple?: boolean;
  short?: string;
  /** Default: `string` for type string, `boolean` for type boolean. */
  kind?: Kind;
  /** The value's placeholder in help: `HOST:PORT`. */
  arg?: string;
  /** Help text, one string per line (wrapped by hand). */
  help?: string | readonly string[];
  /** Shown as `[default]` in help, in the docs table and by `config check`. */
  default?: string;
  /** A duration's unit when given as a plain number, and the unit the command receives. */
  unit?: 'ms' | 's';
  min?: number;
  max?: number;
  /** The values of an enum. */
  values?: readonly string[];
  /** Masked by `config check`; gets a `--NAME-file FILE` companion. */
  secret?: boolean;
  /** false: only $POSTERN_<COMMAND>_<OPTION>, not the shared $POSTERN_<OPTION> (nor the aliases). */
  genericEnv?: false;
  /** Older environment variable names still read (after the generated ones). */
  envAliases?: readonly string[];
  /** How a list is split in an environment variable [,]. */
  sep?: string;
  /** A line printed in help before this option (a group heading). */
  heading?: string;
  /** An old name kept working: the value goes to this option, with a warning. Flag only. */
  deprecatedFor?: string;
  /** Set on the generated `--NAME-file` options: the secret option they fill. */
  fileFor?: string;
}

export type OptionTable = Readonly<Record<string, OptionSpec>>;

export type Source = 'flag' | 'env' | 'file' | 'default';

export interface Parsed {
  command: string;
  /** Strings (numbers normalised: a duration in its unit, a size in bytes), booleans, lists. */
  values: Record<string, string | boolean | string[] | undefined>;
  /** Where each set value came from: `--x`, `$POSTERN_X`, `FILE: [relay] x`. */
  sources: Record<string, { from: Source; where: string }>;
  positionals: string[];
}

const MAX_INT = Number.MAX_SAFE_INTEGER;

/** Options every command takes besides its own. */
const COMMON: OptionTable = {
  config: { type: 'string', arg: 'FILE', help: 'read options from this TOML file (docs/CONFIG.md) [$POSTERN_CONFIG]' },
  help: { type: 'boolean', short: 'h', help: 'this help' },
};

/** Options that never come from the environment or a config file. */
const CLI_ONLY = new Set(['config', 'help']);

/** The table as parsed: the command's options, `--NAME-file` for each secret, --config, --help. */
export function fullTable(table: OptionTable): OptionTable {
  const out: Record<string, OptionSpec> = {};
  for (const [name, spec] of Object.entries(table)) {
    out[name] = spec;
    if (spec.secret === true) {
      out[`${name}-file`] = {
        type: 'string',
        arg: 'FILE',
        fileFor: name,
        ...(spec.genericEnv === false ? { genericEnv: false as const } : {}),
        help: spec.multiple === true ? [`like --${name}, one per line of FILE: keeps them out of ps`] : [`read --${name} from FILE (trimmed): keeps it out of ps`],
      };
    }
  }
  return { ...out, ...COMMON };
}

/** Options shown in help, docs and completions (not the deprecated names). */
export function visible(table: OptionTable): Array<[string, OptionSpec]> {
  return Object.entries(fullTable(table)).filter(([, s]) => s.deprecatedFor === undefined);
}

export function kindOf(spec: OptionSpec): Kind {
  return spec.kind ?? (spec.type === 'boolean' ? 'boolean' : 'string');
}

/** `POSTERN_MAX_AGE` for `max-age`; `POSTERN_RELAY_MAX_AGE` for one command only. */
export function envName(name: string, command?: string): string {
  const n = name.toUpperCase().replace(/-/g, '_');
  return command === undefined ? `POSTERN_${n}` : `POSTERN_${command.toUpperCase()}_${n}`;
}

/** The environment variables read for an option, highest first. */
export function envNames(command: string, name: string, spec: OptionSpec): string[] {
  if (CLI_ONLY.has(name) || spec.deprecatedFor !== undefined) return [];
  if (spec.genericEnv === false) return [envName(name, command)];
  return [envName(name, command), envName(name), ...(spec.envAliases ?? [])];
}

// ---- values: durations, sizes, numbers --------------------------------------------------------

const DURATION_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/**
 * `500ms`, `30s`, `15m`, `24h`, `7d` (or a plain number, in `unit`) as a whole number of `unit`.
 * Returns an error text for a bad value.
 */
export function parseDuration(text: string, unit: 'ms' | 's'): number | string {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(text);
  if (!m) return `must be a duration like ${unit === 'ms' ? '500ms, 30s, 15m, 24h or 7d (a plain number: milliseconds)' : '90s, 15m, 12h or 30d (a plain number: seconds)'}`;
  const suffix = (m[2]?.toLowerCase() ?? unit) as keyof typeof DURATION_MS;
  const v = (Number(m[1]) * DURATION_MS[suffix]) / DURATION_MS[unit];
  if (!Number.isSafeInteger(v)) return unit === 's' ? 'must be whole seconds' : 'must be whole milliseconds';
  return v;
}

const SIZE_UNITS = { b: 1, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 } as const;

/** `64KiB`, `8MiB`, `1GiB`, `512B` or a plain number of bytes. KB/MB/GB are refused as ambiguous. */
export function parseSize(text: string): number | string {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = (m?.[2] ?? '').toLowerCase();
  if (m && /^[kmg]b?$/.test(unit)) return `must use KiB, MiB or GiB (1024-based): "${m[2]}" is ambiguous`;
  if (!m || !(unit === '' || unit in SIZE_UNITS)) return 'must be a size like 65536, 64KiB, 8MiB or 1GiB';
  const v = Number(m[1]) * SIZE_UNITS[(unit || 'b') as keyof typeof SIZE_UNITS];
  if (!Number.isSafeInteger(v)) return 'must be a whole number of bytes';
  return v;
}

/** A duration in `unit` as the shortest exact text: 86400000 ms -> `24h`. */
export function formatDuration(v: number, unit: 'ms' | 's'): string {
  const ms = v * DURATION_MS[unit];
  for (const u of ['d', 'h', 'm', 's'] as const) if (ms !== 0 && ms % DURATION_MS[u] === 0) return `${ms / DURATION_MS[u]}${u}`;
  return `${ms}ms`;
}

export function formatSize(v: number): string {
  for (const u of ['GiB', 'MiB', 'KiB'] as const) {
    const f = SIZE_UNITS[u.toLowerCase() as 'gib'];
    if (v !== 0 && v % f === 0) return `${v / f}${u}`;
  }
  return `${v}`;
}

function rangeText(spec: OptionSpec, show: (n: number) => string = String): string {
  const min = spec.min ?? 0;
  const max = spec.max ?? MAX_INT;
  return max === MAX_INT ? `>= ${show(min)}` : `from ${show(min)} to ${show(max)}`;
}

/** Checks and normalises one value (a number to its digits); the error text names `label`. */
function normalise(label: string, spec: OptionSpec, raw: string): string {
  const kind = kindOf(spec);
  const bad = (why: string): never => {
    throw new UsageError(`${label} ${why}, got "${raw}"`);
  };
  if (kind === 'enum') {
    if (!(spec.values ?? []).includes(raw)) bad(`must be ${orList(spec.values ?? [])}`);
    return raw;
  }
  if (kind !== 'int' && kind !== 'duration' && kind !== 'size') return raw;
  let n: number;
  if (kind === 'int') {
    n = /^\s*-?\d+\s*$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isSafeInteger(n)) bad(`must be a whole number ${rangeText(spec, String)}`);
  } else {
    const r = kind === 'size' ? parseSize(raw) : parseDuration(raw, spec.unit ?? 'ms');
    if (typeof r === 'string') bad(r);
    n = r as number;
  }
  if (n < (spec.min ?? 0) || n > (spec.max ?? MAX_INT)) {
    const unit = kind === 'duration' ? ` ${spec.unit ?? 'ms'}` : kind === 'size' ? ' bytes' : '';
    bad(`must be ${kind === 'int' ? 'a whole number ' : ''}${rangeText(spec, String)}${unit}`);
  }
  return String(n);
}

function orList(xs: readonly string[]): string {
  return xs.length <= 1 ? xs.join('') : `${xs.slice(0, -1).join(', ')} or ${xs[xs.length - 1]}`;
}

// ---- suggestions --------------------------------------------------------------------------------

/** Edit distance, a swap of two neighbours (relya, relay) counting as one edit. */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = d[i]!;
      row[j] = Math.min(d[i - 1]![j]! + 1, row[j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/** The closest of `names` to `word`, when close enough to be a typo. */
export function suggest(word: string, names: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const n of names) {
    const d = n.startsWith(word) && word.length >= 3 ? 0.5 : distance(word, n);
    if (d < bestD) [best, bestD] = [n, d];
  }
  return bestD <= (word.length <= 3 ? 1 : Math.min(3, Math.max(2, Math.floor(word.length / 3)))) ? best : undefined;
}

// ---- the config file ----------------------------------------------------------------------------

type CommandTables = Readonly<Record<string, OptionTable>>;
let commandTables: CommandTables = {};

/** The option tables of every command: the config file is checked against all of them. */
export function registerCommands(tables: CommandTables): void {
  commandTables = tables;
}

export function registeredCommands(): CommandTables {
  return commandTables;
}

/** A config file: top-level keys (for every command that has the option) and `[command]` sections. */
export interface ConfigFile {
  path: string;
  top: Record<string, unknown>;
  sections: Record<string, Record<string, unknown>>;
}

function fileOptions(table: OptionTable): Map<string, OptionSpec> {
  return new Map(Object.entries(fullTable(table)).filter(([n, s]) => !CLI_ONLY.has(n) && s.deprecatedFor === undefined));
}

/** Reads and checks a whole config file: unknown keys and sections are usage errors, with a suggestion. */
export function loadConfig(path: string, tables: CommandTables = commandTables): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new UsageError(`config ${path}: cannot read it: ${e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.code === 'EISDIR' ? 'is a directory' : (e.code ?? e.message)}`);
  }
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text);
  } catch (err) {
    const e = err as Error & { line?: number; column?: number };
    // smol-toml's message carries a code frame over several lines: keep the first.
    const first = (e.message.split('\n')[0] ?? '').replace(/^Invalid TOML document: /, '');
    throw new UsageError(`config ${path}: line ${e.line ?? '?'}: ${first} (not valid TOML)`);
  }
  const allNames = new Map<string, OptionSpec[]>();
  for (const t of Object.values(tables)) for (const [n, s] of fileOptions(t)) allNames.set(n, [...(allNames.get(n) ?? []), s]);
  const cfg: ConfigFile = { path, top: {}, sections: {} };
  for (const [key, value] of Object.entries(doc)) {
    const table = tables[key];
    if (table !== undefined && isPlainTable(value)) {
      const known = fileOptions(table);
      for (const [k, v] of Object.entries(value)) {
        const spec = known.get(k);
        if (spec === undefined) throw unknownKey(path, `[${key}] ${k}`, k, known.keys(), ` (${key} has no --${k})`);
        checkType(path, `[${key}] ${k}`, spec, v);
      }
      cfg.sections[key] = value;
      continue;
    }
    if (isPlainTable(value)) throw unknownKey(path, `[${key}]`, key, Object.keys(tables), ' (a section is named after a command)');
    const specs = allNames.get(key);
    if (specs === undefined) throw unknownKey(path, key, key, allNames.keys(), '');
    for (const s of specs) checkType(path, key, s, value);
    cfg.top[key] = value;
  }
  return cfg;
}

function isPlainTable(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function unknownKey(path: string, where: string, key: string, names: Iterable<string>, why: string): UsageError {
  const s = suggest(key, names);
  return new UsageError(`config ${path}: unknown key ${where}${why}${s === undefined ? '' : `: did you mean ${s}?`}`);
}

/** A TOML value of the right shape: booleans for switches, arrays for repeatable options. */
function checkType(path: string, where: string, spec: OptionSpec, v: unknown): void {
  const bad = (what: string): never => {
    throw new UsageError(`config ${path}: ${where} must be ${what}`);
  };
  const kind = kindOf(spec);
  if (kind === 'boolean') {
    if (typeof v !== 'boolean') bad('true or false');
    return;
  }
  const one = (x: unknown): void => {
    if (typeof x === 'string') return;
    if (typeof x === 'number' && (kind === 'int' || kind === 'duration' || kind === 'size') && Number.isInteger(x)) return;
    bad(kind === 'int' ? 'a whole number' : kind === 'duration' ? 'a duration ("30s") or a whole number' : kind === 'size' ? 'a size ("8MiB") or a whole number' : 'a string');
  };
  if (spec.multiple === true && Array.isArray(v)) v.forEach(one);
  else if (Array.isArray(v)) bad(`one value, not an array (--${where.replace(/^\[\w+\] /, '')} is not repeatable)`);
  else one(v);
}

// ---- parsing ----------------------------------------------------------------------------------

type Raw = string | boolean | string[];

function envValue(variable: string, spec: OptionSpec, text: string): Raw {
  if (spec.type === 'boolean') {
    if (/^(1|true|yes|on)$/i.test(text)) return true;
    if (/^(0|false|no|off)$/i.test(text)) return false;
    throw new UsageError(`$${variable} must be true or false (1/0), got "${text}"`);
  }
  if (spec.multiple === true) return text.split(spec.sep ?? ',').map((x) => x.trim()).filter((x) => x !== '');
  return text;
}

function fileValue(v: unknown): Raw {
  if (typeof v === 'boolean') return v;
  if (Array.isArray(v)) return v.map((x) => String(x));
  return String(v);
}

/** `--count -1`: parseArgs takes `-1` for an option; pass it as the value, so the check names it. */
function joinNegativeValues(argv: readonly string[], table: OptionTable): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = argv[i + 1];
    const spec = a.startsWith('--') ? table[a.slice(2)] : undefined;
    if (spec?.type === 'string' && next !== undefined && /^-\d/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

function usageFromParseArgs(command: string, err: Error & { code?: string }, table: OptionTable): UsageError {
  const option = /Option '(-[^' ]+)/.exec(err.message)?.[1] ?? /option '(-[^' ]+)/i.exec(err.message)?.[1];
  if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && option !== undefined) {
    const s = option.startsWith('--') ? suggest(option.slice(2), visible(table).map(([n]) => n)) : undefined;
    return new UsageError(`${command}: unknown option ${option}${s === undefined ? ` (see postern ${command} --help)` : `: did you mean --${s}?`}`);
  }
  if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && option !== undefined) {
    if (/ambiguous|argument missing/.test(err.message)) return new UsageError(`${command}: ${option} needs a value`);
    if (/does not take an argument/.test(err.message)) return new UsageError(`${command}: ${option} takes no value`);
  }
  if (err.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    const arg = /argument: '([^']*)'/.exec(err.message)?.[1] ?? /'([^']*)'/.exec(err.message)?.[1];
    return new UsageError(`${command}: unexpected argument${arg === undefined ? '' : ` "${arg}"`} (options start with --)`);
  }
  return new UsageError(`${command}: ${(err.message.split('\n')[0] ?? err.message).replace(/\. To specify .*$/s, '')}`);
}

/** Where a value came from, for messages: `--x`, `$POSTERN_X`, `relay.toml: [relay] x`. */
function label(p: Parsed, name: string): string {
  return p.sources[name]?.where ?? `--${name}`;
}

/**
 * Parses a command's arguments with its table, then fills what the flags left unset from the
 * environment, then from the config file (`--config FILE` or $POSTERN_CONFIG). Values are checked
 * and normalised by kind; secrets given as files are read. Every mistake is a one-line UsageError.
 */
export function parse(command: string, argv: readonly string[], table: OptionTable, allowPositionals = false, env: NodeJS.ProcessEnv = process.env): Parsed {
  const full = fullTable(table);
  const pa: NonNullable<ParseArgsConfig['options']> = {};
  for (const [n, s] of Object.entries(full)) pa[n] = { type: s.type, ...(s.multiple === true ? { multiple: true } : {}), ...(s.short === undefined ? {} : { short: s.short }) };
  let r: { values: Record<string, unknown>; positionals: string[] };
  try {
    r = parseArgs({ args: joinNegativeValues(argv, full), options: pa, strict: true, allowPositionals });
  } catch (err) {
    throw usageFromParseArgs(command, err as Error & { code?: string }, full);
  }
  const p: Parsed = { command, values: {}, sources: {}, positionals: r.positionals };
  if (r.values.help === true) {
    p.values.help = true;
    return p;
  }
  const flags = r.values as Record<string, Raw | undefined>;
  for (const [n, s] of Object.entries(full)) {
    if (s.deprecatedFor === undefined || flags[n] === undefined) continue;
    if (flags[s.deprecatedFor] !== undefined) throw new UsageError(`${command}: give --${s.deprecatedFor}, not also --${n}`);
    process.stderr.write(`postern ${command}: warning: --${n} is now --${s.deprecatedFor} (same meaning); the old name will go\n`);
    flags[s.deprecatedFor] = flags[n];
    delete flags[n];
  }
  const configPath = typeof flags.config === 'string' ? flags.config : env['POSTERN_CONFIG'] || undefined;
  // A command that is not registered (tests, `config`) is checked against its own table only.
  const cfg = configPath === undefined ? undefined : loadConfig(configPath, Object.keys(commandTables).length > 0 ? commandTables : { [command]: table });
  if (configPath !== undefined) p.values.config = configPath;
  if (configPath !== undefined) p.sources.config = { from: typeof flags.config === 'string' ? 'flag' : 'env', where: typeof flags.config === 'string' ? '--config' : '$POSTERN_CONFIG' };
  for (const [n, s] of Object.entries(full)) {
    if (CLI_ONLY.has(n) || s.deprecatedFor !== undefined) continue;
    let v: Raw | undefined = flags[n];
    let src: Parsed['sources'][string] | undefined = v === undefined ? undefined : { from: 'flag', where: `--${n}` };
    if (v === undefined) {
      for (const e of envNames(command, n, s)) {
        const t = env[e];
        if (t === undefined || t === '') continue;
        v = envValue(e, s, t);
        src = { from: 'env', where: `$${e}` };
        break;
      }
    }
    if (v === undefined && cfg !== undefined) {
      const inSection = cfg.sections[command]?.[n];
      const fv = inSection ?? cfg.top[n];
      if (fv !== undefined) {
        v = fileValue(fv);
        src = { from: 'file', where: `${cfg.path}: ${inSection !== undefined ? `[${command}] ` : ''}${n}` };
      }
    }
    if (v === undefined || v === false) continue;
    p.values[n] = v;
    p.sources[n] = src!;
  }
  resolveSecretFiles(p, full);
  for (const [n, s] of Object.entries(full)) {
    const v = p.values[n];
    if (v === undefined || typeof v === 'boolean') continue;
    const where = `${command}: ${label(p, n)}`;
    p.values[n] = Array.isArray(v) ? v.map((x) => normalise(where, s, x)) : normalise(where, s, v);
  }
  return p;
}

const RANK: Record<Source, number> = { flag: 3, env: 2, file: 1, default: 0 };

/** `--x-file F` (from any layer) becomes `--x`, unless `--x` came from a higher layer. */
function resolveSecretFiles(p: Parsed, full: OptionTable): void {
  for (const [n, s] of Object.entries(full)) {
    const target = s.fileFor;
    const file = p.values[n];
    if (target === undefined || typeof file !== 'string') continue;
    const fileRank = RANK[p.sources[n]!.from];
    const direct = p.sources[target];
    if (direct !== undefined && RANK[direct.from] === fileRank) throw new UsageError(`${p.command}: give ${direct.where} or ${p.sources[n]!.where}, not both`);
    if (direct !== undefined && RANK[direct.from] > fileRank) continue;
    p.values[target] = readSecretFile(p.command, label(p, n), file, full[target]?.multiple === true);
    p.sources[target] = { from: p.sources[n]!.from, where: `${label(p, n)} ${file}` };
  }
}

/**
 * A secret's file: trimmed (one value per line for a repeatable option, `#` comments skipped).
 * A file that anyone may read is refused, as ssh refuses such a private key.
 */
export function readSecretFile(command: string, flag: string, file: string, multiple: boolean): string | string[] {
  let text: string;
  try {
    if (process.platform !== 'win32' && (statSync(file).mode & 0o004) !== 0) {
      throw new UsageError(`${command}: ${flag} ${file} is readable by every user: chmod o-r (or 600) it first`);
    }
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof UsageError) throw err;
    const e = err as NodeJS.ErrnoException;
    throw new UsageError(`${command}: cannot read ${flag} ${file}: ${e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.code === 'EISDIR' ? 'is a directory' : (e.code ?? e.message)}`);
  }
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  if (lines.length === 0) throw new UsageError(`${command}: ${flag} ${file} is empty`);
  if (multiple) return lines;
  if (lines.length > 1) throw new UsageError(`${command}: ${flag} ${file} holds more than one line`);
  return lines[0]!;
}

// ---- reading values -----------------------------------------------------------------------------

export function str(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === 'string' ? v : undefined;
}

/** A number option (int, duration in its unit, size in bytes), already checked against its range. */
export function num(p: Parsed, name: string): number | undefined {
  const v = str(p, name);
  return v === undefined ? undefined : Number(v);
}

export function list(p: Parsed, name: string): string[] | undefined {
  const v = p.values[name];
  return Array.isArray(v) ? v : typeof v === 'string' ? [v] : undefined;
}

export function flag(p: Parsed, name: string): boolean {
  return p.values[name] === true;
}

/** Where the option came from, for messages (`--x`, `$POSTERN_X`, `FILE: [cmd] x`), or undefined when unset. */
export function sourceOf(p: Parsed, name: string): Parsed['sources'][string] | undefined {
  return p.sources[name];
}

export function required(p: Parsed, name: string): string {
  const v = str(p, name);
  if (v === undefined) throw new UsageError(`${p.command}: --${name} is required`);
  return v;
}

// ---- help ---------------------------------------------------------------------------------------

function defaultShown(spec: OptionSpec): string | undefined {
  return spec.default;
}

/** The `Options:` lines of a command's help, descriptions from column `width`. */
export function optionsHelp(table: OptionTable, width = 26): string {
  const lines: string[] = [];
  for (const [name, spec] of visible(table)) {
    if (spec.heading !== undefined) lines.push(`  ${spec.heading}`);
    const head = `  ${spec.short === undefined ? '' : `-${spec.short}, `}--${name}${spec.type === 'boolean' ? '' : ` ${spec.arg ?? argOf(spec)}`}`;
    const text = [...(typeof spec.help === 'string' ? [spec.help] : (spec.help ?? ['(no description)']))];
    const d = defaultShown(spec);
    if (d !== undefined) text[text.length - 1] = `${text[text.length - 1]} [${d}]`;
    if (head.length < width) lines.push(`${head.padEnd(width)}${text[0]}`);
    else lines.push(head, `${' '.repeat(width)}${text[0]}`);
    for (const t of text.slice(1)) lines.push(`${' '.repeat(width)}${t}`);
  }
  return lines.join('\n');
}

function argOf(spec: OptionSpec): string {
  switch (kindOf(spec)) {
    case 'int':
      return 'N';
    case 'duration':
      return 'DURATION';
    case 'size':
      return 'SIZE';
    case 'enum':
      return (spec.values ?? []).join('|');
    default:
      return 'VALUE';
  }
}

/** The closing lines of every command's help. */
export function configHelp(command: string, table: OptionTable): string {
  const example = Object.keys(table).find((n) => table[n]!.type === 'string' && table[n]!.secret !== true) ?? 'OPTION';
  return `Every option may also be set in the environment ($POSTERN_<OPTION>, e.g. $${envName(example)}, or
$${envName('OPTION', command).replace('_OPTION', '_<OPTION>')} for ${command} only) or in a --config file; a flag wins over the
environment, which wins over the file. See docs/CONFIG.md.`;
}

/** `Usage ...` text before the options, the options from the table, `after` below them. */
export function helpText(command: string, before: string, table: OptionTable, after = '', width = 26): string {
  return `${before}\n\nOptions:\n${optionsHelp(table, width)}\n\n${configHelp(command, table)}${after === '' ? '' : `\n\n${after}`}`;
}

/** How a value is shown by `config check` and the docs: durations and sizes in units, secrets masked. */
export function showValue(spec: OptionSpec, v: string | boolean | string[]): string {
  if (spec.secret === true) return Array.isArray(v) ? `[${v.map(() => '"********"').join(', ')}]` : '"********"';
  const one = (x: string): string => {
    const k = kindOf(spec);
    if (k === 'duration') return JSON.stringify(formatDuration(Number(x), spec.unit ?? 'ms'));
    if (k === 'size') return JSON.stringify(formatSize(Number(x)));
    if (k === 'int') return x;
    return JSON.stringify(x);
  };
  if (typeof v === 'boolean') return String(v);
  return Array.isArray(v) ? `[${v.map(one).join(', ')}]` : one(v);
}
