// Run by sqlite-crash.test.ts: node crash-child.js FILE SEED FROM-STEP [CRASH-SPEC]. Opens the
// store, checks that it holds the model's state after FROM-STEP steps, then runs steps and
// prints each step number once its commit resolved, until it is killed (by the test, or by
// itself at an armed crash point).
import { armCrashPoint } from '@postern/core';
import { SqliteStore } from '@postern/store-sqlite';
import { matches, modelAt, runStep } from './workload.js';

const [file, seedArg, fromArg, crashAt] = process.argv.slice(2) as [string, string, string, string?];
const seed = Number(seedArg);
const model = modelAt(seed, Number(fromArg));
const store = new SqliteStore(file, { sync: 'normal' });
if (!matches(await store.recover(), model)) {
  process.stderr.write(`the store does not hold the state after step ${model.step}\n`);
  process.exit(3);
}
if (crashAt !== undefined) armCrashPoint(crashAt, () => process.kill(process.pid, 'SIGKILL'));
for (;;) {
  await runStep(store, model);
  process.stdout.write(`${model.step}\n`);
}
