// SqliteStore killed (SIGKILL) in the middle of a workload that compacts its log all the time:
// after a restart it holds exactly the state after the last commit that resolved, or after the
// one in flight (which may have become durable before it could say so); never a mix, never
// anything resurrected. Armed at `store.mid-commit`, exactly the state before that commit.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SqliteStore } from '@postern/store-sqlite';
import { matches, modelAt } from './workload.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const child = fileURLToPath(new URL('./crash-child.js', import.meta.url));

/** Runs the child from step `from` until it dies (killed after `killAfterMs`, or by itself); returns the last step it finished. */
function run(file: string, seed: number, from: number, opts: { killAfterMs?: number; crashAt?: string }): Promise<{ steps: number; signal: string | null; stderr: string }> {
  const env = { ...process.env };
  delete env['NODE_TEST_CONTEXT'];
  const args = [child, file, String(seed), String(from), ...(opts.crashAt === undefined ? [] : [opts.crashAt])];
  const p = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  let timer: NodeJS.Timeout | undefined;
  // Counted from the child's first step, not from its start.
  const started = (): void => {
    if (timer !== undefined || opts.killAfterMs === undefined || out === '') return;
    timer = setTimeout(() => p.kill('SIGKILL'), opts.killAfterMs);
  };
  p.stdout.on('data', started);
  const cap = setTimeout(() => p.kill('SIGKILL'), 60_000);
  return new Promise((resolve) => {
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(cap);
      const lines = out.split('\n').filter((l) => l !== '');
      resolve({ steps: lines.length === 0 ? from : Number(lines[lines.length - 1]), signal: signal ?? (code === null ? null : `exit ${code}`), stderr: err });
    });
  });
}

async function recovered(file: string): Promise<Awaited<ReturnType<SqliteStore['recover']>>> {
  const s = new SqliteStore(file);
  try {
    return await s.recover();
  } finally {
    await s.close();
  }
}

describe('SqliteStore killed while it compacts', () => {
  it('holds the state of the last commit that resolved, or of the one in flight, after each of several kills', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'postern-crash-'));
    dirs.push(dir);
    const file = join(dir, 'router.db');
    const seed = 7;
    let from = 0;
    for (const ms of [900, 250, 1300, 40, 700]) {
      const r = await run(file, seed, from, { killAfterMs: ms });
      assert.equal(r.signal, 'SIGKILL', r.stderr);
      const state = await recovered(file);
      const done = modelAt(seed, r.steps);
      if (matches(state, done)) {
        from = r.steps;
      } else {
        assert.ok(matches(state, modelAt(seed, r.steps + 1)), `after step ${r.steps} the store holds neither its state nor the next step's`);
        from = r.steps + 1;
      }
    }
    // Enough steps that the log was compacted many times over (about 1.5 KiB live per step).
    assert.ok(from > 1500, `only ${from} steps ran`);
  });

  it('at store.mid-commit, holds exactly the state before the commit it died in', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'postern-crash-'));
    dirs.push(dir);
    const file = join(dir, 'router.db');
    const seed = 8;
    let from = 0;
    for (const n of [700, 1, 333]) {
      const r = await run(file, seed, from, { crashAt: `store.mid-commit:${n}` });
      assert.equal(r.signal, 'SIGKILL', r.stderr);
      assert.ok(matches(await recovered(file), modelAt(seed, r.steps)), `after a crash in the commit of step ${r.steps + 1}`);
      from = r.steps;
    }
  });
});
