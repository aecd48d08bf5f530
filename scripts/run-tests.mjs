#!/usr/bin/env node
// Runs every compiled test file with node's own test runner (no runner to install).
// Usage: node scripts/run-tests.mjs [substring ...]  (only files whose path contains one)
//        POSTERN_TEST_EXCLUDE=a,b leaves out files whose path contains one of those
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const filters = process.argv.slice(2);

function walk(dir, out) {
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (e.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const files = [];
for (const pkg of readdirSync(join(root, 'packages'))) walk(join(root, 'packages', pkg, 'dist', 'test'), files);
const exclude = (process.env.POSTERN_TEST_EXCLUDE ?? '').split(',').filter(Boolean);
const chosen = files
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .filter((f) => !exclude.some((s) => f.includes(s)))
  .sort();
if (chosen.length === 0) {
  console.error('run-tests: no test files found; run `tsc -b` first');
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', '--test-timeout=300000', ...chosen], {
  stdio: 'inherit',
  cwd: root,
});
process.exit(r.status ?? 1);
