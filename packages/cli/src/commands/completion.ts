import { kindOf, visible, type OptionTable } from '../options.js';
import { out } from '../output.js';
import { UsageError } from '../usage-error.js';

export const help = `Usage: postern completion bash|zsh|fish

Prints a completion script for the shell: commands, each command's options, and the values of
options that take one of a few words. Generated from the same option tables as the help.

Example:
  postern completion bash > /etc/bash_completion.d/postern
  postern completion zsh > "\${fpath[1]}/_postern"
  postern completion fish > ~/.config/fish/completions/postern.fish`;

export interface CompletionCommand {
  name: string;
  summary: string;
  table: OptionTable;
}

const sq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

function enums(table: OptionTable): Array<[string, readonly string[]]> {
  return visible(table).filter(([, s]) => kindOf(s) === 'enum').map(([n, s]) => [n, s.values ?? []]);
}

export function bashCompletion(cmds: readonly CompletionCommand[]): string {
  const names = cmds.map((c) => c.name).join(' ');
  const cases = cmds
    .map((c) => {
      const opts = visible(c.table).map(([n]) => `--${n}`).join(' ');
      const values = enums(c.table).map(([n, v]) => `      --${n}) COMPREPLY=($(compgen -W ${sq(v.join(' '))} -- "$cur")); return ;;`).join('\n');
      return `    ${c.name})\n      opts=${sq(opts)}\n      case "$prev" in\n${values}${values === '' ? '' : '\n'}      esac\n      ;;`;
    })
    .join('\n');
  return `# bash completion for postern (postern completion bash)
_postern() {
  local cur prev cmd opts
  cur="\${COMP_WORDS[COMP_CWORD]}"
  prev="\${COMP_WORDS[COMP_CWORD-1]}"
  cmd="\${COMP_WORDS[1]}"
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W ${sq(`${names} --help --version`)} -- "$cur"))
    return
  fi
  opts=''
  case "$cmd" in
${cases}
    help) COMPREPLY=($(compgen -W ${sq(names)} -- "$cur")); return ;;
    completion) COMPREPLY=($(compgen -W 'bash zsh fish' -- "$cur")); return ;;
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}
complete -F _postern postern
`;
}

export function zshCompletion(cmds: readonly CompletionCommand[]): string {
  const described = cmds.map((c) => sq(`${c.name}:${c.summary}`)).join(' ');
  const cases = cmds
    .map((c) => {
      const values = enums(c.table).map(([n, v]) => `        --${n}) compadd -- ${v.join(' ')}; return ;;`).join('\n');
      const opts = visible(c.table).map(([n]) => `--${n}`).join(' ');
      return `    ${c.name})\n      case $words[CURRENT-1] in\n${values}${values === '' ? '' : '\n'}      esac\n      opts=(${opts}) ;;`;
    })
    .join('\n');
  return `#compdef postern
# zsh completion for postern (postern completion zsh)
_postern() {
  local -a cmds opts
  cmds=(${described})
  if (( CURRENT == 2 )); then
    _describe 'command' cmds
    return
  fi
  case $words[2] in
${cases}
    completion) compadd -- bash zsh fish; return ;;
  esac
  if [[ $words[CURRENT] == -* ]]; then
    compadd -- $opts
  else
    _files
  fi
}
compdef _postern postern
`;
}

export function fishCompletion(cmds: readonly CompletionCommand[]): string {
  const fq = (s: string): string => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  const lines = ['# fish completion for postern (postern completion fish)', 'complete -c postern -f'];
  for (const c of cmds) lines.push(`complete -c postern -n __fish_use_subcommand -a ${c.name} -d ${fq(c.summary)}`);
  for (const c of cmds) {
    for (const [n, s] of visible(c.table)) {
      const text = (typeof s.help === 'string' ? s.help : (s.help?.[0] ?? '')).replace(/[;:,]$/, '');
      const values = kindOf(s) === 'enum' ? ` -a ${fq((s.values ?? []).join(' '))}` : s.type === 'string' ? ' -r -F' : '';
      lines.push(`complete -c postern -n ${fq(`__fish_seen_subcommand_from ${c.name}`)} -l ${n}${values} -d ${fq(text)}`);
    }
  }
  lines.push(`complete -c postern -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'`);
  return `${lines.join('\n')}\n`;
}

export function completion(argv: readonly string[], cmds: readonly CompletionCommand[]): number {
  const [shell, ...rest] = argv;
  if (shell === '--help' || shell === '-h') return out(help), 0;
  if (rest.length > 0 || shell === undefined || !['bash', 'zsh', 'fish'].includes(shell)) {
    throw new UsageError(`completion: say bash, zsh or fish${shell === undefined ? '' : `, not "${[shell, ...rest].join(' ')}"`}`);
  }
  process.stdout.write(shell === 'bash' ? bashCompletion(cmds) : shell === 'zsh' ? zshCompletion(cmds) : fishCompletion(cmds));
  return 0;
}
