import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Store } from '@postern/core';
import { SqliteStore, sqliteModule, sqliteModulePath } from '@postern/store-sqlite';
import { storeSuite } from '@postern/testing';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempFile(): string {
  const d = mkdtempSync(join(tmpdir(), 'postern-store-'));
  dirs.push(d);
  return join(d, 'data', 'router.db');
}

storeSuite('sqlite', {
  create: () => Promise.resolve<Store>(new SqliteStore(tempFile())),
  reopen: async (s) => {
    await s.close();
    return new SqliteStore((s as SqliteStore).file);
  },
});

describe('SqliteStore', () => {
  it('keeps what append() acknowledged when the process is killed with SIGKILL', () => {
    const file = tempFile();
    const entry = fileURLToPath(new URL('../src/index.js', import.meta.url));
    // The child appends, prints the seqs it was given, then kills itself without closing.
    const script = `
      const { SqliteStore } = await import(${JSON.stringify(entry)});
      const s = new SqliteStore(${JSON.stringify(file)});
      await s.recover();
      const m = (i) => ({ queue: 'q', from: 'a@b', id: 'k' + i, to: 'c@d', flags: 0, hops: 1, body: new TextEncoder().encode('v' + i), storedAt: 1, expiresAt: 0, cameFrom: '', via: '' });
      const seqs = await Promise.all(Array.from({ length: 100 }, (_, i) => s.append([m(i)])));
      process.stdout.write(JSON.stringify(seqs.flat()));
      process.kill(process.pid, 'SIGKILL');
    `;
    const env = { ...process.env };
    delete env.NODE_TEST_CONTEXT; // the child is a plain program, not a test file
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000, env });
    assert.equal(r.signal, 'SIGKILL');
    const acknowledged = JSON.parse(r.stdout) as number[];
    assert.equal(acknowledged.length, 100);
    const s = new SqliteStore(file);
    return s.recover().then(async (rec) => {
      assert.deepEqual(rec.messages.map((m) => m.seq), acknowledged);
      assert.equal(rec.seen.length, 100);
      await s.close();
    });
  });

  it('keeps non-ASCII ids and every field through a reopen', async () => {
    const s = new SqliteStore(tempFile());
    await s.recover();
    const m = { queue: 'agent:bob', from: 'ålice@acme', id: 'идентификатор-1', to: 'bob@acme', flags: 6, hops: 200, body: new Uint8Array([0, 255, 7]), storedAt: 1_700_000_000_123, expiresAt: 1_700_086_400_123, cameFrom: 'NÖDE', via: 'N2' };
    const [seq] = await s.append([m]);
    const file = s.file;
    await s.close();
    const again = new SqliteStore(file);
    const r = await again.recover();
    assert.deepEqual({ ...r.messages[0]!, body: [...r.messages[0]!.body] }, { ...m, seq, body: [0, 255, 7] });
    await again.close();
  });

  it('refuses a second process on the same file, naming the file', async () => {
    const file = tempFile();
    const s = new SqliteStore(file);
    await s.recover();
    const entry = fileURLToPath(new URL('../src/index.js', import.meta.url));
    const script = `
      const { SqliteStore } = await import(${JSON.stringify(entry)});
      try { new SqliteStore(${JSON.stringify(file)}); process.stdout.write('opened'); }
      catch (e) { process.stdout.write(e.code + ' ' + e.message); }
    `;
    const env = { ...process.env };
    delete env.NODE_TEST_CONTEXT;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000, env });
    assert.match(r.stdout, /^ERR_CONFIG .*in use by another process/);
    await s.close();
    const again = new SqliteStore(file);
    await again.close();
  });

  it('loads the Node-API build of better-sqlite3 where the runtime has Node-API 10, and survives the garbage collector finalizing statements', () => {
    const napi = Number(process.versions.napi);
    assert.equal(sqliteModule, napi >= 10 ? 'better-sqlite3-napi' : 'better-sqlite3');
    // better-sqlite3 12 on Node 24 aborted the process when a GC run from a microtask
    // finalized a statement (about every run of this child): make 100k garbage statements
    // between awaits, and expect a clean exit.
    const file = tempFile();
    mkdirSync(dirname(file), { recursive: true });
    const code = `const D=require(${JSON.stringify(sqliteModulePath)});const d=new D(${JSON.stringify(file)});` +
      `(async()=>{for(let k=0;k<20;k++){await null;for(let i=0;i<5000;i++)d.prepare('SELECT '+i)}` +
      `d.close();console.log(require(${JSON.stringify(join(dirname(dirname(sqliteModulePath)), 'package.json'))}).version)})()`;
    const child = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' });
    assert.equal(child.status, 0, `exit ${String(child.status)} signal ${String(child.signal)}: ${child.stderr}`);
    assert.match(child.stdout.trim(), napi >= 10 ? /^13\./ : /^12\./);
  });

  it('brings a schema 2 file to schema 3, keeping its messages and keys', async () => {
    const file = tempFile();
    mkdirSync(dirname(file), { recursive: true });
    // A schema 2 row: f64 storedAt, f64 expiresAt, u8 flags, u8 hops, four u16 lengths, the strings, the body.
    const strings = ['domain:acme', 'bob@relay', 'm1', 'alice@acme'];
    const row = Buffer.alloc(26 + strings.join('').length + 2);
    row.writeDoubleBE(1_000, 0);
    row.writeDoubleBE(99_000, 8);
    row[16] = 2;
    row[17] = 15;
    strings.forEach((x, i) => row.writeUInt16BE(x.length, 18 + 2 * i));
    row.write(strings.join(''), 26, 'latin1');
    row.set([7, 8], 26 + strings.join('').length);
    const code =
      `const D=require(${JSON.stringify(sqliteModulePath)});const d=new D(${JSON.stringify(file)});` +
      `d.exec('CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL); CREATE TABLE messages (seq INTEGER PRIMARY KEY, held INTEGER NOT NULL, data BLOB NOT NULL)');` +
      `d.prepare('INSERT INTO messages VALUES (5, 1, ?)').run(Buffer.from(${JSON.stringify(row.toString('hex'))}, 'hex'));` +
      `d.prepare('INSERT INTO messages VALUES (6, 0, ?)').run(Buffer.from(${JSON.stringify(row.toString('hex'))}, 'hex'));` +
      `d.pragma('user_version = 2');d.close()`;
    const raw = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' });
    assert.equal(raw.status, 0, raw.stderr);
    const s = new SqliteStore(file);
    const r = await s.recover();
    assert.deepEqual(
      r.messages.map((m) => ({ ...m, body: [...m.body] })),
      [{ seq: 5, queue: 'domain:acme', from: 'bob@relay', id: 'm1', to: 'alice@acme', flags: 2, hops: 15, body: [7, 8], storedAt: 1_000, expiresAt: 99_000, cameFrom: '', via: '' }],
    );
    assert.deepEqual(r.seen.map((k) => k.seq), [5, 6]);
    await s.repin([{ seq: 5, via: 'N1' }]);
    await s.close();
    const again = new SqliteStore(file);
    assert.equal((await again.recover()).messages[0]!.via, 'N1');
    await again.close();
  });

  it('refuses a bad option and a store written by a newer schema, with a clear error', () => {
    assert.throws(() => new SqliteStore(tempFile(), { sync: 'sometimes' as 'full' }), { code: 'ERR_CONFIG' });
    assert.throws(() => new SqliteStore(tempFile(), { commitIntervalMs: -1 }), { code: 'ERR_CONFIG' });
    const file = tempFile();
    const s = new SqliteStore(file);
    void s.close();
    // A path below a regular file cannot be created.
    assert.throws(() => new SqliteStore(join(file, 'below', 'a.db')), { code: 'ERR_CONFIG' });
    const newer = new SqliteStore(tempFile());
    const f2 = newer.file;
    void newer.close();
    const raw = spawnSync(process.execPath, ['-e', `const D=require(${JSON.stringify(sqliteModulePath)});const d=new D(${JSON.stringify(f2)});d.pragma('user_version = 99');d.close()`]);
    assert.equal(raw.status, 0, String(raw.stderr));
    assert.throws(() => new SqliteStore(f2), (e: Error & { code?: string }) => e.code === 'ERR_CONFIG' && /newer/.test(e.message));
  });
});
