import assert from 'node:assert/strict';
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

// What a user gets from the registry: every published package packed with `npm pack` (which runs
// its prepack build), installed from the tarballs into empty directories with no network, then
// used as a user would: `npx postern demo`, an ESM script on @postern/client alone, and a
// TypeScript consumer compiled against the installed typings.

const root = fileURLToPath(new URL('../../../../', import.meta.url));
/** Published, in dependency order; `postern` is the package that installs the executable. */
const PUBLISHED = ['protocol', 'core', 'transport-ws', 'transport-http', 'store-sqlite', 'router', 'client', 'cli', 'postern'];
/** What installing @postern/client alone may bring: its own packages, ws and ws's optional addon. */
const CLIENT_CLOSURE = ['@postern/client', '@postern/core', '@postern/protocol', '@postern/transport-ws', '@postern/transport-http', 'ws', 'bufferutil', 'node-gyp-build'];

interface Packed {
  name: string;
  version: string;
  filename: string;
  integrity: string;
  files: Array<{ path: string }>;
}

interface LockEntry {
  name?: string;
  version?: string;
  resolved?: string;
  link?: boolean;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  [k: string]: unknown;
}

interface Manifest {
  name: string;
  version: string;
  license?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  bin?: Record<string, string>;
  engines?: Record<string, string>;
}

function run(cmd: string, args: string[], cwd: string, timeout = 120_000): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout, env: { ...process.env, npm_config_update_notifier: 'false' } });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** The repository's lock entry a package at `from` gets for `dep`: node's lookup, walking up. */
function resolveIn(lock: Record<string, LockEntry>, from: string, dep: string): string | undefined {
  let base = from;
  for (;;) {
    const candidate = `${base === '' ? '' : `${base}/`}node_modules/${dep}`;
    if (lock[candidate] !== undefined) return candidate;
    if (base === '') return undefined;
    const i = base.lastIndexOf('/node_modules/');
    base = i < 0 ? '' : base.slice(0, i);
  }
}

/**
 * A package-lock.json for a project depending on `wanted` tarballs: our packages from the
 * tarballs, third-party ones exactly as the repository's lock has them. With it, `npm ci
 * --offline` needs nothing but the tarballs that `npm ci` put in the cache: no registry
 * metadata, which `npm ci` does not fetch (so `npm install --offline` of ranges would fail on a
 * fresh clone).
 */
function lockFor(wanted: Packed[], all: Map<string, { packed: Packed; manifest: Manifest }>, tgzDir: string): { pkg: object; lock: object } {
  const repoLock = (JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> }).packages;
  const packages: Record<string, LockEntry> = {};
  const rootDeps = Object.fromEntries(wanted.map((p) => [p.name, `file:${join(tgzDir, p.filename)}`]));
  packages[''] = { name: 'pack-test', dependencies: rootDeps };
  const queue: Array<[string, string]> = [];
  for (const p of wanted) {
    const { manifest } = all.get(p.name)!;
    const entry: LockEntry = { version: manifest.version, resolved: `file:${join(tgzDir, p.filename)}`, integrity: p.integrity, license: manifest.license };
    for (const k of ['dependencies', 'optionalDependencies', 'bin', 'engines'] as const) if (manifest[k] !== undefined) entry[k] = manifest[k];
    packages[`node_modules/${p.name}`] = entry;
    for (const d of [...Object.keys(manifest.dependencies ?? {}), ...Object.keys(manifest.optionalDependencies ?? {})]) {
      if (d.startsWith('@postern/')) {
        assert.ok(wanted.some((w) => w.name === d), `${p.name} depends on ${d}, which is not installed with it`);
        continue;
      }
      assert.equal(repoLock[`${manifest.name.replace(/^@postern\//, 'packages/')}/node_modules/${d}`], undefined, `${d} is nested under ${p.name} in the repository`);
      queue.push(['', d]);
    }
  }
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    const [from, dep] = next;
    const at = resolveIn(repoLock, from, dep);
    assert.ok(at !== undefined, `${dep} (needed from "${from}") is not in package-lock.json`);
    if (packages[at] !== undefined) continue;
    const entry: LockEntry = { ...repoLock[at]! };
    // Flags of the repository's tree (dev-only there); here everything is a dependency.
    delete entry.dev;
    delete entry.devOptional;
    delete entry.peer;
    assert.notEqual(entry.link, true, `${at} is a link in the repository`);
    // The repository's lock leaves out `resolved` for registry packages; without it npm would
    // ask the registry (or its cached metadata) where the tarball is. The cache holds the
    // tarball by its integrity: name the standard URL.
    if (entry.resolved === undefined && typeof entry.version === 'string') {
      const name = typeof entry.name === 'string' ? entry.name : at.slice(at.lastIndexOf('node_modules/') + 'node_modules/'.length);
      entry.resolved = `https://registry.npmjs.org/${name}/-/${name.slice(name.lastIndexOf('/') + 1)}-${entry.version}.tgz`;
    }
    packages[at] = entry;
    for (const d of [...Object.keys(entry.dependencies ?? {}), ...Object.keys(entry.optionalDependencies ?? {})]) queue.push([at, d]);
  }
  return {
    pkg: { name: 'pack-test', version: '0.0.0', private: true, type: 'module', dependencies: rootDeps },
    lock: { name: 'pack-test', version: '0.0.0', lockfileVersion: 3, requires: true, packages },
  };
}

/** Installs `wanted` into a new empty directory, offline. */
function install(base: string, dirName: string, wanted: Packed[], all: Map<string, { packed: Packed; manifest: Manifest }>, tgzDir: string): string {
  const dir = join(base, dirName);
  mkdirSync(dir);
  const { pkg, lock } = lockFor(wanted, all, tgzDir);
  writeFileSync(join(dir, 'package.json'), JSON.stringify(pkg, null, 2));
  writeFileSync(join(dir, 'package-lock.json'), JSON.stringify(lock, null, 2));
  // --ignore-scripts: none of our packages has an install script. The one third-party addon
  // built on install, better-sqlite3 (Node-API 9, for Node 20), would compile from source for
  // a minute: it gets the binary the repository's `npm ci` built instead, the same version for
  // the same Node. (ws's bufferutil and better-sqlite3 13 load prebuilt binaries they ship.)
  run('npm', ['ci', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], dir);
  const addon = 'node_modules/better-sqlite3/build/Release/better_sqlite3.node';
  if (existsSync(join(dir, 'node_modules/better-sqlite3'))) {
    const ours = JSON.parse(readFileSync(join(root, 'node_modules/better-sqlite3/package.json'), 'utf8')) as { version: string };
    const theirs = JSON.parse(readFileSync(join(dir, 'node_modules/better-sqlite3/package.json'), 'utf8')) as { version: string };
    if (existsSync(join(root, addon)) && ours.version === theirs.version) {
      mkdirSync(dirname(join(dir, addon)), { recursive: true });
      copyFileSync(join(root, addon), join(dir, addon));
    } else {
      run('npm', ['rebuild', 'better-sqlite3', '--offline'], dir, 300_000);
    }
  }
  return dir;
}

/** Top-level package names in `dir`/node_modules (scoped ones as @scope/name). */
function installed(dir: string): string[] {
  const nm = join(dir, 'node_modules');
  const names: string[] = [];
  for (const e of readdirSync(nm)) {
    if (e.startsWith('.')) continue;
    if (e.startsWith('@')) for (const s of readdirSync(join(nm, e))) names.push(`${e}/${s}`);
    else names.push(e);
  }
  return names.sort();
}

describe('published packages, packed and installed from their tarballs (offline)', () => {
  let base: string;
  let tgzDir: string;
  const all = new Map<string, { packed: Packed; manifest: Manifest }>();
  let full: string;
  let clientOnly: string;

  before(() => {
    base = mkdtempSync(join(tmpdir(), 'postern-pack-'));
    tgzDir = join(base, 'tgz');
    mkdirSync(tgzDir);
    const r = run('npm', ['pack', '--json', '--pack-destination', tgzDir, ...PUBLISHED.flatMap((p) => ['-w', `packages/${p}`])], root, 300_000);
    const packed = JSON.parse(r.stdout.slice(r.stdout.indexOf('['))) as Packed[];
    for (const p of packed) {
      const manifest = JSON.parse(readFileSync(join(root, 'packages', PUBLISHED.find((d) => p.name === (d === 'postern' ? 'postern' : `@postern/${d}`))!, 'package.json'), 'utf8')) as Manifest;
      all.set(p.name, { packed: p, manifest });
    }
    const tarballs = [...all.values()].map((v) => v.packed);
    full = install(base, 'full', tarballs, all, tgzDir);
    const client = all.get('@postern/client')!;
    const closure = tarballs.filter((p) => p.name === client.packed.name || Object.hasOwn(client.manifest.dependencies ?? {}, p.name) || p.name === '@postern/protocol' || p.name === '@postern/core');
    clientOnly = install(base, 'client-only', closure, all, tgzDir);
  });

  after(() => {
    if (base !== undefined) rmSync(base, { recursive: true, force: true });
  });

  it('packs every published package with its README, LICENSE, typings and sources, and no tests', () => {
    assert.deepEqual([...all.keys()].sort(), ['@postern/cli', '@postern/client', '@postern/core', '@postern/protocol', '@postern/router', '@postern/store-sqlite', '@postern/transport-http', '@postern/transport-ws', 'postern']);
    for (const { packed, manifest } of all.values()) {
      const files = packed.files.map((f) => f.path);
      for (const f of ['package.json', 'README.md', 'LICENSE']) assert.ok(files.includes(f), `${packed.name} lacks ${f}`);
      assert.deepEqual(files.filter((f) => /(^|\/)test\/|tsbuildinfo/.test(f)), [], `${packed.name} ships tests or build state`);
      const m = manifest as Manifest & Record<string, unknown>;
      assert.equal(m.license, 'MIT');
      assert.deepEqual(m.publishConfig, { access: 'public' });
      assert.ok((m.repository as { directory?: string } | undefined)?.directory?.startsWith('packages/'), `${packed.name}: repository.directory`);
      assert.ok(typeof m.homepage === 'string' && typeof (m.bugs as { url?: string } | undefined)?.url === 'string', `${packed.name}: homepage, bugs`);
      if (packed.name === 'postern') continue;
      assert.ok(files.includes('dist/src/index.d.ts') || files.includes('dist/src/index.node.d.ts'), `${packed.name} lacks typings`);
      // The browser entry's typings, and the one-file build a page loads without a bundler (prepack makes it).
      if (packed.name === '@postern/client') for (const f of ['dist/src/index.browser.d.ts', 'dist/browser/postern.min.js']) assert.ok(files.includes(f), `${packed.name} lacks ${f}`);
      // Source maps point at ../../src: the sources ship with them.
      for (const map of files.filter((f) => f.endsWith('.js.map'))) assert.ok(files.includes(map.replace(/^dist\/(.*)\.js\.map$/, '$1.ts')), `${packed.name}: ${map} without its source`);
    }
  });

  it('installs the postern command: `npx postern demo --seconds 2` carries messages both ways', () => {
    const r = run('npx', ['--offline', '--no', 'postern', 'demo', '--seconds', '2'], full, 60_000);
    const m = /stopped: (\d+) messages crossed inward, (\d+) outward, (\d+) failed/.exec(r.stdout);
    assert.ok(m !== null, `no summary in:\n${r.stdout}\n${r.stderr}`);
    assert.ok(Number(m[1]) > 0 && Number(m[2]) > 0, m[0]);
    assert.equal(m[3], '0');
  });

  it('installs @postern/client with its dependencies and nothing else', () => {
    const names = installed(clientOnly);
    assert.deepEqual(names.filter((n) => !CLIENT_CLOSURE.includes(n)), [], `installed with @postern/client: ${names.join(', ')}`);
    assert.ok(names.includes('ws'));
  });

  it('round-trips a message through an installed relay with an ESM script that imports only @postern/client', async () => {
    const relay = spawn(process.execPath, [join(full, 'node_modules/postern/bin/postern.js'), 'relay', '--listen', '127.0.0.1:0', '--memory'], { cwd: full, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let output = '';
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the relay did not start:\n${output}`)), 20_000);
        const onData = (d: Buffer): void => {
          output += d.toString();
          const m = /ws:\/\/127\.0\.0\.1:\d+/.exec(output);
          if (m !== null) {
            clearTimeout(timer);
            resolve(m[0]);
          }
        };
        relay.stdout.on('data', onData);
        relay.stderr.on('data', onData);
        relay.once('exit', (code) => reject(new Error(`the relay exited (${code}):\n${output}`)));
      });
      writeFileSync(
        join(clientOnly, 'roundtrip.mjs'),
        `import { connect, errorCodeOf, WireCode } from '@postern/client';
const [url] = process.argv.slice(2);
const bob = await connect({ url, name: 'bob' });
const alice = await connect({ url, name: 'alice' });
const { id } = await alice.send('bob', 'hello from the tarball');
for await (const m of bob) {
  if (m.id !== id || m.text() !== 'hello from the tarball' || m.from !== alice.address) throw new Error('wrong message');
  break;
}
await Promise.all([alice.close(), bob.close()]);
console.log('round trip ok', errorCodeOf(WireCode.NO_ROUTE));
`,
      );
      const r = run(process.execPath, ['roundtrip.mjs', url], clientOnly, 30_000);
      assert.match(r.stdout, /round trip ok ERR_NO_ROUTE/);
    } finally {
      relay.kill();
    }
  });

  it('compiles a TypeScript consumer naming every export of @postern/client against the installed typings', () => {
    const consumer = readFileSync(join(root, 'packages/cli/test/fixtures/consumer.ts'), 'utf8');
    // Every export of the installed entry is named by the consumer, so that it covers the surface.
    // Asked of the compiler, so that `export *` and re-exports count.
    const entry = join(clientOnly, 'node_modules/@postern/client/dist/src/index.node.d.ts');
    const program = ts.createProgram([entry], { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, noEmit: true });
    const checker = program.getTypeChecker();
    const moduleSymbol = checker.getSymbolAtLocation(program.getSourceFile(entry)!)!;
    const exported = checker.getExportsOfModule(moduleSymbol).map((x) => x.getName());
    assert.ok(exported.includes('Undeliverable') && exported.includes('errorCodeOf') && exported.includes('connect'), exported.join(', '));
    for (const name of exported) assert.match(consumer, new RegExp(`\\b${name}\\b`), `the consumer does not use ${name}`);
    writeFileSync(join(clientOnly, 'consumer.ts'), consumer);
    writeFileSync(
      join(clientOnly, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          target: 'ES2022',
          lib: ['ES2022'],
          types: ['node'],
          typeRoots: [join(root, 'node_modules/@types')],
          noEmit: true,
          skipLibCheck: false,
        },
        files: ['consumer.ts'],
      }),
    );
    run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], clientOnly, 120_000);
  });
});
