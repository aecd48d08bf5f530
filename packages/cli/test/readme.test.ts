// The README's walkthrough works exactly as written (issue 13 item 9): its ```sh blocks run in
// order in one bash shell, with the hosts on loopback and its ports on free ones, `postern` being
// this repository's built executable; the output must show what the README says it shows.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';

const root = fileURLToPath(new URL('../../../../', import.meta.url));
const HEADING = '## Walkthrough';

/** The ```sh blocks of the README section under HEADING, up to the next `## ` heading, in order. */
export function walkthroughBlocks(readme: string): string[] {
  const start = readme.indexOf(`\n${HEADING}\n`);
  assert.ok(start >= 0, `README.md has no "${HEADING}" section`);
  const rest = readme.slice(start + HEADING.length + 2);
  const end = rest.search(/^## /m);
  const section = end < 0 ? rest : rest.slice(0, end);
  return [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1] ?? '');
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe('README walkthrough', () => {
  const dir = mkdtempSync(join(tmpdir(), 'postern-readme-'));
  let pgid = 0;
  after(() => {
    // bash runs in its own process group: this ends the routers it left in the background too
    if (pgid !== 0) {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs in one shell as written, a message each way', { timeout: 60_000 }, async () => {
    const blocks = walkthroughBlocks(readFileSync(join(root, 'README.md'), 'utf8'));
    assert.ok(blocks.length >= 3, `expected the walkthrough's sh blocks, found ${blocks.length}`);
    const relayPort = await freePort();
    const gatewayPort = await freePort();
    const script = blocks
      .join('\n')
      .replaceAll('relay.example.com', '127.0.0.1')
      .replaceAll('10.0.0.5', '127.0.0.1')
      .replaceAll('0.0.0.0', '127.0.0.1')
      .replaceAll(':7443', `:${relayPort}`)
      .replaceAll(':7000', `:${gatewayPort}`);

    // `postern` is this repository's built executable, first on PATH
    const bin = join(dir, 'bin');
    const cwd = join(dir, 'shell');
    mkdirSync(bin);
    mkdirSync(cwd);
    const shim = join(bin, 'postern');
    writeFileSync(shim, `#!/bin/sh\nexec '${process.execPath}' '${join(root, 'packages/postern/bin/postern.js')}' "$@"\n`);
    chmodSync(shim, 0o755);
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('POSTERN_')) env[k] = v;
    env['PATH'] = `${bin}:${process.env['PATH'] ?? ''}`;
    env['HOME'] = join(dir, 'home');
    env['XDG_STATE_HOME'] = join(dir, 'state');

    const child = spawn('bash', ['-e', '-c', script], { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    pgid = child.pid ?? 0;
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => {
        process.kill(-pgid, 'SIGKILL');
      }, 50_000);
      child.on('close', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    const all = `stdout:\n${out}\nstderr:\n${err}`;
    assert.equal(code, 0, `the walkthrough failed (exit ${code})\n${all}`);
    // what the README shows each command print
    assert.match(out, new RegExp(`postern relay: domain "relay" listening on ws://127\\.0\\.0\\.1:${relayPort}`), all);
    assert.match(out, new RegExp(`postern gateway: domain "acme" listening on ws://127\\.0\\.0\\.1:${gatewayPort}`), all);
    assert.match(out, /postern gateway: uplink to ws:\/\/127\.0\.0\.1:\d+ is up/, all);
    assert.match(out, /postern send: 1 of 1 message accepted as bob@relay/, all);
    assert.match(out, /^bob@relay: hello from outside$/m, all);
    assert.match(out, /postern send: 1 of 1 message accepted as alice@acme/, all);
    assert.match(out, /^alice@acme: hello from inside$/m, all);
    assert.match(err, /postern listen: connected as alice@acme/, all);
    assert.match(err, /postern listen: connected as bob@relay/, all);
    assert.match(out, /INFO {2}relay: stopped in \d+ ms; it held no message/, all);
    // the secret and the tokens are private files (umask 077), else postern would refuse the secret
    for (const f of ['relay.secret', 'acme.token', 'bob.token']) assert.equal(statSync(join(cwd, f)).mode & 0o777, 0o600, f);
    const gatewayLog = readFileSync(join(cwd, 'gateway.log'), 'utf8');
    assert.match(gatewayLog, /gateway: stopped in \d+ ms/, gatewayLog);
  });
});
