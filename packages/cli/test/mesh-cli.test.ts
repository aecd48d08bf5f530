// The mesh from the command line (issue 9): keys, grants, relays of two operators peering with
// --peer and --trust, messages and anonymous messages across them. Real processes, loopback.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, describe, it } from 'node:test';
import { killAll, listeningOn, run, start, startGateway, startListen, type Proc, withGuests } from './procs.js';

afterEach(killAll);
const dir = mkdtempSync(join(tmpdir(), 'postern-mesh-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const NODE_ID = /postern relay: node (N[A-Z2-7]{55}) /;

async function ok(args: string[]): Promise<string> {
  const p = await run(args);
  assert.equal(p.exit?.code, 0, p.describe());
  return p.stdout.trim();
}

async function startPeer(domain: string, secret: string, ...extra: string[]): Promise<{ proc: Proc; url: string; node: string }> {
  const proc = start('relay', ...withGuests(['--listen', '127.0.0.1:0', '--domain', domain, '--secret', secret, ...extra]));
  const { url } = await listeningOn(proc);
  const m = await proc.waitFor('stdout', NODE_ID);
  return { proc, url, node: m[1]! };
}

describe('postern key and grants', () => {
  it('makes keys of each kind, keeps seeds private, shows public keys, and refuses to overwrite a seed', async () => {
    for (const [type, prefix] of [['operator', 'O'], ['domain', 'A'], ['node', 'N']] as const) {
      const file = join(dir, `${type}.seed`);
      const pub = await ok(['key', 'new', '--type', type, '--out', file]);
      assert.match(pub, new RegExp(`^${prefix}[A-Z2-7]{55}$`));
      assert.equal(statSync(file).mode & 0o777, 0o600, 'the seed is readable by its owner only');
      assert.match(readFileSync(file, 'utf8'), new RegExp(`^# postern ${type} key ${pub}\\nS${prefix}[A-Z2-7]{56}\\n$`));
      assert.equal(await ok(['key', 'show', file]), pub);
      const again = await run(['key', 'new', '--type', type, '--out', file]);
      assert.equal(again.exit?.code, 1);
      assert.match(again.stderr, /exists; a seed is not overwritten/);
    }
    const bad = await run(['key', 'new', '--type', 'user']);
    assert.equal(bad.exit?.code, 2);
    assert.match(bad.stderr, /^postern: key: --type must be operator, domain or node, got "user" \[ERR_USAGE\]$/m);
  });

  it('signs grants for a router node key, and refuses keys of the wrong kind with one line', async () => {
    const seed = join(dir, 'acme.seed');
    const domainKey = await ok(['key', 'new', '--type', 'domain', '--out', seed]);
    const node = (await ok(['key', 'new', '--type', 'node'])).split('\n')[1]!;
    const grant = await ok(['token', '--key', seed, '--domain', 'acme', '--node', node, '--ttl', '1h']);
    const payload = JSON.parse(Buffer.from(grant.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    assert.deepEqual({ iss: payload['iss'], sub: payload['sub'], dom: payload['dom'] }, { iss: domainKey, sub: node, dom: ['acme'] });
    assert.equal(typeof payload['exp'], 'number');
    const wrong = await run(['token', '--key', seed, '--domain', 'acme', '--node', domainKey]);
    assert.equal(wrong.exit?.code, 2);
    assert.match(wrong.stderr, /--node takes a router's node id/);
    // One character changed (the last one carries few bits of the checksum and is often A already).
    const typo = await run(['token', '--key', seed, '--domain', 'acme', '--node', `${node.slice(0, -2)}${node.at(-2) === 'B' ? 'C' : 'B'}${node.at(-1)!}`]);
    assert.equal(typo.exit?.code, 2);
    assert.match(typo.stderr, /is not a public key \(check for a typo\)/);
  });
});

describe('relays of two operators, from the command line', () => {
  it('peer with exchanged node keys; agents behind their gateways write to each other, also anonymously', async () => {
    // Node keys made first, so each operator can name the other's before either starts.
    const k1 = join(dir, 'r1.seed');
    const k2 = join(dir, 'r2.seed');
    const n1 = await ok(['key', 'new', '--type', 'node', '--out', k1]);
    const n2 = await ok(['key', 'new', '--type', 'node', '--out', k2]);
    const r1 = await startPeer('r1', 'secret-1', '--node-key', k1, '--trust', `${n2}=r2,globex`);
    assert.equal(r1.node, n1);
    const r2 = await startPeer('r2', 'secret-2', '--node-key', k2, '--trust', `${n1}=r1,acme`, '--peer', r1.url);
    await r2.proc.waitFor('stderr', /peer connected/);
    const ga = await startGateway(r1.url, 'acme', await ok(['token', '--secret', 'secret-1', '--domain', 'acme']));
    const gb = await startGateway(r2.url, 'globex', await ok(['token', '--secret', 'secret-2', '--domain', 'globex']));
    await ga.proc.waitFor('stdout', /postern gateway: node N[A-Z2-7]{55}/);

    const bob = await startListen('--connect', gb.url, '--as', 'bob', '--json', '--count', '2');
    const send = await run(['send', '--connect', ga.url, '--as', 'alice', '--to', 'bob@globex', '--receipt', 'hello globex']);
    assert.equal(send.exit?.code, 0, send.describe());
    const anon = await run(['send', '--connect', ga.url, '--as', 'carol', '--to', 'bob@globex', '--anonymous', '--receipt', 'guess who']);
    assert.equal(anon.exit?.code, 0, anon.describe());
    assert.match(anon.stdout, /delivered as an anonymous sender/);
    await bob.waitExit(10_000);
    const got = bob.lines('stdout').map((l) => JSON.parse(l) as { from: string; body: string; id: string });
    assert.deepEqual(got.map((m) => m.body), ['hello globex', 'guess who']);
    assert.equal(got[0]!.from, 'alice@acme');
    assert.match(got[1]!.from, /^~[a-z2-7]{26}@r1$/, 'wrapped by r1: neither carol nor acme shows');

    // Carol listens under her name; bob answers the handle; it reaches her.
    const carol = await startListen('--connect', ga.url, '--as', 'carol', '--json', '--count', '1');
    const reply = await run(['send', '--connect', gb.url, '--as', 'bob', '--to', got[1]!.from, 'answer to a handle']);
    assert.equal(reply.exit?.code, 0, reply.describe());
    await carol.waitExit(10_000);
    assert.equal((JSON.parse(carol.lines('stdout')[0]!) as { body: string }).body, 'answer to a handle');

    // A pseudonym: dave can be written to first, without his name or organisation.
    const dave = await startListen('--connect', ga.url, '--as', 'dave', '--pseudonym', '--pseudonym-ttl', '1h', '--count', '1');
    const p = await dave.waitFor('stderr', /postern listen: pseudonym (~[a-z2-7]{26}@r1) \(until /);
    const first = await run(['send', '--connect', gb.url, '--to', p[1]!, 'hello stranger']);
    assert.equal(first.exit?.code, 0, first.describe());
    await dave.waitExit(10_000);
    assert.match(dave.stdout, /: hello stranger$/m);
  });

  it('refuses a peer its operator did not name, and says why on both sides', async () => {
    const r1 = await startPeer('r1', 'secret-1');
    const r2 = await startPeer('r2', 'secret-2', '--peer', r1.url);
    const refused = await r2.proc.waitFor('stderr', /WARN {2}relay: peer refused .*reason="([^"]+)"/);
    assert.match(refused[1]!, /is not a peer of this router: its operator names it with --trust N/);
    // Two relays with the same domain cannot peer: each needs its own.
    const r3 = await startPeer('relay', 'secret-3', '--trust', `${r1.node}=r1`);
    const r4 = await startPeer('relay', 'secret-4', '--trust', `${r3.node}=relay`, '--peer', r3.url);
    await r4.proc.waitFor('stderr', /peer refused .*both routers serve domain \\"relay\\": give each relay its own --domain/);
  });
});
