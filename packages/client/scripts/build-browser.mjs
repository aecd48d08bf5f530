#!/usr/bin/env node
// Bundles the browser entry (dist/src/index.browser.js, built by `tsc -b`) into one minified ES
// module, dist/browser/postern.min.js, that a page loads with <script type="module"> and no
// bundler or import map. esbuild with platform 'browser' fails on any node: builtin or `ws`
// that the entry would pull in. Prints the size, minified and gzipped.
import { build } from 'esbuild';
import { readFileSync, renameSync, writeFileSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const pkg = fileURLToPath(new URL('..', import.meta.url));
const outfile = `${pkg}dist/browser/postern.min.js`;
const { version } = JSON.parse(readFileSync(`${pkg}package.json`, 'utf8'));

const result = await build({
  entryPoints: [`${pkg}dist/src/index.browser.js`],
  outfile,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  // Browsers with WebSocket, fetch, AbortSignal and class private fields: all current ones.
  target: ['es2022'],
  minify: true,
  // The workspace packages' `exports` have no browser condition of their own: their `.`
  // entries are the browser-safe ones (their Node code is under `./node`).
  conditions: ['browser'],
  banner: { js: `/* @postern/client ${version} (browser), MIT */` },
  legalComments: 'none',
  logLevel: 'warning',
  write: false,
});

// Written whole, then renamed: a test serving the file never reads half of it.
const code = result.outputFiles[0].contents;
mkdirSync(`${pkg}dist/browser`, { recursive: true });
writeFileSync(`${outfile}.${process.pid}.tmp`, code);
renameSync(`${outfile}.${process.pid}.tmp`, outfile);
// Its typings are the browser entry's (for `@postern/client/postern.min.js`).
writeFileSync(`${pkg}dist/browser/postern.min.d.ts`, "export * from '../src/index.browser.js';\n");
// On stderr: `npm pack --json` runs this as prepack, and its stdout is the JSON.
console.error(`${outfile.slice(pkg.length)}: ${code.length} bytes minified, ${gzipSync(code, { level: 9 }).length} gzipped`);
