import { fullTable, helpText, kindOf, loadConfig, parse, registeredCommands, showValue, str, type OptionSpec, type OptionTable, type Parsed } from '../options.js';
import { out } from '../output.js';
import { UsageError } from '../usage-error.js';

export const options: OptionTable = {
  command: { type: 'string', arg: 'COMMAND', help: 'show the settings of this command [each command with a section in the file]' },
};

export const help = helpText(
  'config',
  `Usage: postern config check [--config FILE] [--command COMMAND]
       postern config table

  check  reads FILE (or $POSTERN_CONFIG) as a command would: an unknown key, a value of the
         wrong type or a bad duration or size exits 2 with one line naming the file and key.
         Then prints the settings a command would run with: from its flags' environment
         variables, the file or the defaults, each with where it came from; secrets masked.
  table  prints the table of every option of every command (docs/CONFIG.md)`,
  options,
  `Example:
  postern config check --config /etc/postern/relay.toml --command relay`,
  21,
);

/** Per command: a check beyond the option table (cross-field rules, files named by options). */
export type Checker = (p: Parsed) => void;
let checkers: Readonly<Record<string, Checker>> = {};
export function registerCheckers(c: Readonly<Record<string, Checker>>): void {
  checkers = c;
}

export function config(argv: string[]): Promise<number> {
  return Promise.resolve().then(() => configSync(argv));
}

function configSync(argv: string[]): number {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h') return out(help), sub === undefined ? 2 : 0;
  if (sub === 'table') {
    out(optionsTable());
    return 0;
  }
  if (sub !== 'check') throw new UsageError(`config: say check or table, not "${sub}"`);
  const p = parse('config', rest, options);
  if (p.values.help) return out(help), 0;
  const path = str(p, 'config') ?? process.env['POSTERN_CONFIG'];
  if (path === undefined || path === '') throw new UsageError('config: check needs --config FILE (or $POSTERN_CONFIG)');
  const tables = registeredCommands();
  const file = loadConfig(path, tables);
  const wanted = str(p, 'command');
  if (wanted !== undefined && tables[wanted] === undefined) throw new UsageError(`config: --command must be one of ${Object.keys(tables).join(', ')}, got "${wanted}"`);
  let cmds = wanted !== undefined ? [wanted] : Object.keys(file.sections);
  if (cmds.length === 0) cmds = Object.keys(tables).filter((c) => Object.keys(file.top).some((k) => tables[c]![k] !== undefined));
  out(`# postern config check: ${path} is valid`);
  for (const c of cmds) {
    const table = tables[c]!;
    const cp = parse(c, ['--config', path], table, true);
    checkers[c]?.(cp);
    out(`\n[${c}]`);
    for (const [name, spec] of Object.entries(fullTable(table))) {
      if (spec.fileFor !== undefined || spec.deprecatedFor !== undefined || name === 'config' || name === 'help') continue;
      const v = cp.values[name];
      const src = cp.sources[name];
      if (v !== undefined && src !== undefined) out(`${name} = ${showValue(spec, v)}  # ${src.from}: ${src.where}`);
      else if (spec.default !== undefined) out(`# ${name} = ${JSON.stringify(spec.default)}  # default`);
    }
  }
  return 0;
}

function typeText(spec: OptionSpec): string {
  const k = kindOf(spec);
  const base =
    k === 'duration'
      ? `duration (plain number: ${spec.unit === 's' ? 'seconds' : 'ms'})`
      : k === 'size'
        ? 'size (plain number: bytes)'
        : k === 'enum'
          ? `one of ${(spec.values ?? []).join(', ')}`
          : k === 'int'
            ? 'whole number'
            : k;
  return `${base}${spec.multiple === true ? ', repeatable' : ''}${spec.secret === true ? ', secret' : ''}`;
}

function envText(name: string, spec: OptionSpec, cmds: string[]): string {
  if (name === 'config') return '`POSTERN_CONFIG`';
  if (name === 'help') return '';
  const upper = name.toUpperCase().replace(/-/g, '_');
  if (spec.genericEnv === false) return cmds.map((c) => `\`POSTERN_${c.toUpperCase()}_${upper}\``).join(', ');
  return [`\`POSTERN_${upper}\``, ...(spec.envAliases ?? []).map((a) => `\`${a}\``)].join(', ');
}

const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n\s*/g, ' ');

/** The docs table (docs/CONFIG.md): one row per option and meaning, the commands that have it. */
export function optionsTable(): string {
  const rows = new Map<string, { name: string; spec: OptionSpec; cmds: string[] }>();
  for (const [c, table] of Object.entries(registeredCommands())) {
    for (const [name, spec] of Object.entries(fullTable(table))) {
      if (spec.deprecatedFor !== undefined) continue;
      const key = JSON.stringify([name, kindOf(spec), spec.unit, spec.default, spec.multiple, spec.secret, spec.genericEnv, spec.values, spec.help]);
      const row = rows.get(key) ?? { name, spec, cmds: [] };
      row.cmds.push(c);
      rows.set(key, row);
    }
  }
  const lines = ['| option | commands | environment | file key | type | default | meaning |', '|---|---|---|---|---|---|---|'];
  const all = Object.keys(registeredCommands()).length;
  for (const r of [...rows.values()].sort((a, b) => a.name.localeCompare(b.name) || a.cmds[0]!.localeCompare(b.cmds[0]!))) {
    const cmds = r.cmds.length === all ? 'all' : r.cmds.join(', ');
    const fileKey = r.name === 'config' || r.name === 'help' ? '' : `\`${r.name}\``;
    lines.push(`| \`--${r.name}\` | ${cmds} | ${envText(r.name, r.spec, r.cmds)} | ${fileKey} | ${typeText(r.spec)} | ${cell(r.spec.default ?? '')} | ${cell(typeof r.spec.help === 'string' ? r.spec.help : (r.spec.help ?? []).join(' '))} |`);
  }
  return lines.join('\n');
}
