// Credentials that can be rotated and revoked (issue 11, item 7): several secrets at once, each
// token naming its secret by key id, and a revocation list read again when it changes, which
// refuses a token at once and closes the connections made with it. Real routers, real SDK clients.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import { connect, PosternError, type ClientStatus } from '@postern/client';
import type { Logger } from '@postern/core';
import { issueToken, secretKeyId, startRouter, tokenId } from '@postern/router';
import { waitFor } from '@postern/testing';
import { createHash } from 'node:crypto';

const quiet: Logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

async function refusal(url: string, token: string, name: string): Promise<string> {
  try {
    const c = await connect({ url, token, name, reconnect: false });
    await c.close();
    return 'accepted';
  } catch (err) {
    return err instanceof PosternError ? `${err.code} ${err.message}` : String(err);
  }
}

describe('credentials: rotation and revocation', () => {
  const dir = mkdtempSync(join(tmpdir(), 'postern-cred-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('accepts tokens of the current and the previous secrets, each picked by its key id, and refuses others saying which key they need', async () => {
    const r = await startRouter({ domain: 'acme', listen: ['127.0.0.1:0'], secret: 'new-secret', previousSecrets: ['old-secret'], logger: quiet });
    after(() => r.close());
    assert.equal(await refusal(r.url, await issueToken('new-secret', { domain: 'acme', name: 'alice' }), 'alice'), 'accepted');
    assert.equal(await refusal(r.url, await issueToken('old-secret', { domain: 'acme', name: 'bob' }), 'bob'), 'accepted', 'a token of the secret being rotated out');
    const stranger = await refusal(r.url, await issueToken('other-secret', { domain: 'acme', name: 'eve' }), 'eve');
    assert.equal(stranger, `ERR_AUTH_FAILED the token was signed with a secret this router does not hold (key id ${secretKeyId('other-secret')})`);
    // A token from before key ids (no kid) is tried against every secret.
    const key = new Uint8Array(createHash('sha256').update('postern-token:old-secret').digest());
    const legacy = await new SignJWT({ dom: 'acme', name: 'carol' }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuer('postern').setIssuedAt().sign(key);
    assert.equal(await refusal(r.url, legacy, 'carol'), 'accepted');
  });

  it('refuses a revoked token, and closes connections made with one when the list changes, without a restart', async () => {
    const file = join(dir, 'revoked');
    const early = await issueToken('s3cret', { domain: 'acme', name: 'mallory' });
    writeFileSync(file, `# revoked tokens\n${early}\n`);
    const infos: string[] = [];
    const logger: Logger = { ...quiet, info: (_e: string, m: string, f?: object) => infos.push(`${m} ${JSON.stringify(f)}`) };
    const r = await startRouter({ domain: 'acme', listen: ['127.0.0.1:0'], secret: 's3cret', revokedFile: file, logger });
    after(() => r.close());
    assert.equal(await refusal(r.url, early, 'mallory'), 'ERR_AUTH_FAILED the token was revoked');
    const bobToken = await issueToken('s3cret', { domain: 'acme', name: 'bob' });
    const bob = await connect({ url: r.url, token: bobToken, name: 'bob', backoff: { initialMs: 50, maxMs: 200 } });
    const alice = await connect({ url: r.url, token: await issueToken('s3cret', { domain: 'acme', name: 'alice' }), name: 'alice' });
    after(() => alice.close());
    const statuses: ClientStatus[] = [];
    bob.onStatus((s) => statuses.push(s));
    // Listed by its SHA-256 this time.
    writeFileSync(file, `${early}\n${tokenId(bobToken)}  # bob's laptop was stolen\n`);
    await waitFor(() => statuses.some((s) => s.type === 'closed'), 'bob to be cut off', 10_000);
    const closed = statuses.find((s) => s.type === 'closed');
    assert.equal(closed?.type === 'closed' ? `${closed.error?.code} ${closed.error?.message}` : '', 'ERR_AUTH_FAILED the token was revoked');
    assert.ok(alice.connected, 'nobody else is touched');
    assert.match(infos.find((l) => l.startsWith('revocation list read')) ?? '', /"revoked":2,"closed":1/);
    // Taken off the list: welcome again.
    writeFileSync(file, `${early}\n`);
    await waitFor(() => infos.filter((l) => l.startsWith('revocation list read')).length >= 2, 'the list read again', 10_000);
    assert.equal(await refusal(r.url, bobToken, 'bob'), 'accepted');
  });
});
