#!/usr/bin/env node
// Runs every compiled test file with node's own test runner (no runner to install).
// Usage: node scripts/run-tests.mjs [substring ...]  (only files whose path contains one)
//        POSTERN_TEST_EXCLUDE=a,b leaves out files whose path contains one of those
// Files named *.alone.test.js (loads that take both cores, e.g. 10,000 connections) run after
// the others, one at a time, so they do not starve the timing of tests beside them.
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
const run = (files, concurrency) =>
  files.length === 0 ? 0 : (spawnSync(process.execPath, ['--test', `--test-concurrency=${concurrency}`, '--test-timeout=300000', ...files], { stdio: 'inherit', cwd: root }).status ?? 1);
const alone = chosen.filter((f) => f.endsWith('.alone.test.js'));
const together = run(chosen.filter((f) => !alone.includes(f)), 2);
const after = run(alone, 1);
process.exit(together !== 0 ? together : after);
