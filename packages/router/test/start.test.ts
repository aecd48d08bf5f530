// startRouter() refuses to start, with one clear error and nothing left behind, on a bad domain
// or a store it cannot load; onFatal is for a router that was running.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { startRouter } from '@postern/router';
import { SqliteStore, sqliteModulePath } from '@postern/store-sqlite';

const require = createRequire(import.meta.url);

describe('startRouter refusing to start', () => {
  const root = mkdtempSync(join(tmpdir(), 'postern-start-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  it('checks the domain before it creates the data dir', async () => {
    const dataDir = join(root, 'bad-domain');
    await assert.rejects(startRouter({ domain: 'a/../b', dataDir }), { code: 'ERR_CONFIG' });
    assert.equal(existsSync(dataDir), false);
  });

  it('refuses an uplink URL no dial could use, instead of retrying it for ever', async () => {
    for (const url of ['foo://127.0.0.1:7443', 'not a url', '']) {
      await assert.rejects(startRouter({ domain: 'acme', uplinks: [{ url, token: 't' }] }), (e: unknown) => {
        assert.equal((e as { code?: string }).code, 'ERR_CONFIG');
        assert.match((e as Error).message, /uplink/);
        return true;
      });
    }
  });

  it('fails with ERR_CONFIG naming the store when it cannot be loaded, without calling onFatal', async () => {
    const dataDir = join(root, 'corrupt');
    const store = new SqliteStore(join(dataDir, 'router.db'));
    await store.close();
    const Database = require(sqliteModulePath) as new (file: string) => { exec(sql: string): void; close(): void };
    const db = new Database(join(dataDir, 'router.db'));
    db.exec("INSERT INTO messages (seq, held, data) VALUES (1, 1, x'010203')");
    db.close();
    let fatal: unknown;
    await assert.rejects(startRouter({ domain: 'acme', dataDir, onFatal: (e) => (fatal = e) }), (e: unknown) => {
      assert.equal((e as { code?: string }).code, 'ERR_CONFIG');
      assert.match((e as Error).message, /cannot load the store in .*corrupt: the store row 1 is corrupt/);
      return true;
    });
    assert.equal(fatal, undefined);
    // The file is not left locked: a fixed store opens again.
    const again = new SqliteStore(join(dataDir, 'router.db'));
    await again.close();
  });
});
