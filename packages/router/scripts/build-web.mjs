#!/usr/bin/env node
// Builds the dashboard (web/) into dist/web: typechecks web/src with the DOM library (apart
// from the package's Node build), bundles app.ts and login.ts into one minified module each,
// copies the pages and the stylesheet. The router serves exactly these files (src/dashboard/assets.ts).
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const pkg = fileURLToPath(new URL('..', import.meta.url));
const out = `${pkg}dist/web`;
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const check = spawnSync(process.execPath, [tsc, '-p', `${pkg}web/tsconfig.json`], { stdio: 'inherit' });
if (check.status !== 0) process.exit(check.status ?? 1);
mkdirSync(out, { recursive: true });
await build({
  entryPoints: { app: `${pkg}web/src/app.ts`, login: `${pkg}web/src/login.ts` },
  outdir: out,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022'],
  minify: true,
  legalComments: 'none',
  logLevel: 'warning',
});
for (const f of ['index.html', 'login.html', 'app.css']) copyFileSync(`${pkg}web/${f}`, `${out}/${f}`);
