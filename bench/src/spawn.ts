// Bench children with the open-files limit raised. Node cannot raise its own soft limit, so the
// child starts as `sh -c 'ulimit -n ...; exec node ...'`: sh raises the limit (as far as the hard
// limit lets) and then becomes the node process, which keeps the IPC channel.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** This process's limit of open files: the soft one (what it may open now) or the hard one (what it may raise that to). */
export function openFilesLimit(which: 'soft' | 'hard' = 'soft'): number {
  const m = /Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/.exec(readFileSync('/proc/self/limits', 'utf8'));
  const v = m?.[which === 'soft' ? 1 : 2];
  return v === 'unlimited' ? Infinity : Number(v ?? 1024);
}

export interface SpawnNodeOptions {
  /** Open files the child needs: its soft limit is raised to this, or to the hard limit if that is lower; never lowered. */
  nofile: number;
  execArgv?: string[];
  env?: NodeJS.ProcessEnv;
}

/** `node [execArgv] script ...args` with an IPC channel (as `fork` gives) and the open-files limit raised. */
export function spawnNode(script: string, args: string[], o: SpawnNodeOptions): ChildProcess {
  const n = Math.ceil(o.nofile);
  const sh = `cur=$(ulimit -n); if [ "$cur" != unlimited ] && [ "$cur" -lt ${n} ]; then ulimit -n ${n} 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; fi; exec "$@"`;
  return spawn('/bin/sh', ['-c', sh, 'sh', process.execPath, ...(o.execArgv ?? []), script, ...args], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    ...(o.env === undefined ? {} : { env: o.env }),
  });
}
