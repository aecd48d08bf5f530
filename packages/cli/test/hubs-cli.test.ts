// Hubs, presence and chat from the command line (issue 10): postern hub behind a gateway, a
// message by name only from outside, watch, set and chat, both ways from one name. Real
// processes on loopback.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { afterEach, describe, it } from 'node:test';
import { BIN, REPO_ROOT, killAll, run, start, startGateway, startRelay, type Proc } from './procs.js';

afterEach(killAll);

async function ok(args: string[]): Promise<string> {
  const p = await run(args);
  assert.equal(p.exit?.code, 0, p.describe());
  return p.stdout.trim();
}

/** A hub of acme dialing `gateway`, in memory; resolves once it listens and its gateway link is up. */
async function startHub(gateway: string, token: string): Promise<{ proc: Proc; url: string }> {
  const proc = start('hub', '--gateway', gateway, '--domain', 'acme', '--token', token, '--listen', '127.0.0.1:0', '--memory');
  const m = await proc.waitFor('stdout', /postern hub: domain "acme" listening on (ws:\/\/127\.0\.0\.1:\d+)/);
  await proc.waitFor('stdout', /postern hub: linked to /);
  return { proc, url: m[1]! };
}

/** `postern chat` with a pipe on standard input. */
class Chat {
  readonly child;
  out = '';
  err = '';
  constructor(url: string, name: string) {
    this.child = spawn(process.execPath, [BIN, 'chat', '--connect', url, '--as', name], { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, HTTP_PROXY: '', HTTPS_PROXY: '', http_proxy: '', https_proxy: '' } });
    this.child.stdout.setEncoding('utf8').on('data', (s: string) => (this.out += s));
    this.child.stderr.setEncoding('utf8').on('data', (s: string) => (this.err += s));
  }

  type(line: string): void {
    this.child.stdin.write(`${line}\n`);
  }

  async until(stream: 'out' | 'err', re: RegExp, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!re.test(this[stream])) {
      if (Date.now() > deadline) throw new Error(`chat: no ${String(re)} in ${stream}:\n${this.out}\n--- stderr:\n${this.err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async quit(): Promise<number | null> {
    this.type('/quit');
    return new Promise((resolve) => this.child.once('close', (code) => resolve(code)));
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }
}

describe('postern hub, watch, set and chat', () => {
  it('token --hub makes a hub token; a hub with a wrong one is refused at start with one line', async () => {
    const bad = await run(['token', '--secret', 's', '--domain', 'acme', '--hub', '--peer']);
    assert.equal(bad.exit?.code, 2);
    assert.match(bad.stderr, /--hub makes a hub's token: no --peer, no --name/);
    const relay = await startRelay('--secret', 'rs');
    const gw = await startGateway(relay.url, 'acme', await ok(['token', '--secret', 'rs', '--domain', 'acme']), '127.0.0.1:0', '--secret', 'gs');
    const wrong = await ok(['token', '--secret', 'gs', '--domain', 'acme']); // a domain token, not a hub token
    const hub = start('hub', '--gateway', gw.url, '--domain', 'acme', '--token', wrong, '--listen', '127.0.0.1:0', '--memory');
    const exit = await hub.waitExit(15_000);
    assert.equal(exit.code, 1, hub.describe());
    assert.match(hub.stderr, /the gateway refused this hub: .*hub token/);
  });

  it('an outside sender reaches alice on the second hub by name; watch and set show her presence and properties; chat talks both ways from one name', async () => {
    const relay = await startRelay('--secret', 'rs');
    const gw = await startGateway(relay.url, 'acme', await ok(['token', '--secret', 'rs', '--domain', 'acme']), '127.0.0.1:0', '--secret', 'gs');
    const hubToken = await ok(['token', '--secret', 'gs', '--domain', 'acme', '--hub']);
    const hub1 = await startHub(gw.url, hubToken);
    const hub2 = await startHub(gw.url, hubToken);
    const alice = new Chat(hub2.url, 'alice');
    const bob = new Chat(hub1.url, 'bob');
    try {
      await alice.until('err', /connected as alice@acme/);
      await bob.until('err', /connected as bob@acme/);
      // From outside, by name only, with a receipt.
      const sent = await run(['send', '--connect', relay.url, '--to', 'alice@acme', '--receipt', 'hello from outside']);
      assert.equal(sent.exit?.code, 0, sent.describe());
      await alice.until('out', /^_[a-z2-7]{16}@relay: hello from outside$/m);
      // A name nobody has is refused (the gateway says so; the relay passes it back as a report).
      const nobody = await run(['send', '--connect', relay.url, '--to', 'nobody@acme', '--receipt', 'x']);
      assert.equal(nobody.exit?.code, 1);
      assert.match(nobody.stderr, /ERR_UNKNOWN_RECIPIENT/);
      // Bob watches alice; alice publishes a status; chat both ways between the hubs.
      bob.type('/watch alice');
      await bob.until('out', /^\* alice@acme online since \S+$/m);
      alice.type('/set status=here');
      await bob.until('out', /^\* alice@acme online since \S+ status="here"$/m);
      bob.type('/to alice@acme');
      bob.type('hi alice');
      await alice.until('out', /^bob@acme: hi alice$/m);
      alice.type('/reply');
      alice.type('hi bob');
      await bob.until('out', /^alice@acme: hi bob$/m);
      // From outside: refused until alice allows it.
      const refused = await run(['watch', '--connect', relay.url, '--json', 'alice@acme']);
      assert.equal(refused.exit?.code, 1);
      assert.match(refused.stderr, /alice@acme: \[ERR_FORBIDDEN\]/);
      alice.type('/allow *@relay');
      await alice.until('err', /watchers allowed/);
      const watched = await run(['watch', '--connect', relay.url, '--json', '--count', '1', 'alice@acme']);
      assert.equal(watched.exit?.code, 0, watched.describe());
      const e = JSON.parse(watched.stdout.trim()) as { address: string; state: string; since: string; properties: Record<string, string> };
      assert.equal(e.address, 'alice@acme');
      assert.equal(e.state, 'online');
      assert.deepEqual(e.properties, { status: 'here' });
      assert.ok(Math.abs(Date.parse(e.since) - Date.now()) < 60_000);
      assert.equal(await alice.quit(), 0);
      await bob.until('out', /^\* alice@acme offline since \S+ status="here"$/m);
      // set, for a name that is not connected: kept at its hub, seen by watchers.
      const set = await run(['set', '--connect', hub1.url, '--as', 'carol', 'status=away', 'note=back monday', '--allow', '*@relay']);
      assert.equal(set.exit?.code, 0, set.describe());
      const carol = await run(['watch', '--connect', relay.url, '--json', '--count', '1', 'carol@acme']);
      assert.equal(carol.exit?.code, 0, carol.describe());
      assert.deepEqual(JSON.parse(carol.stdout.trim()), { address: 'carol@acme', state: 'offline', since: (JSON.parse(carol.stdout.trim()) as { since: string }).since, properties: { status: 'away', note: 'back monday' } });
      const usage = await run(['set', '--connect', hub1.url, '--as', 'carol', 'novalue']);
      assert.equal(usage.exit?.code, 2);
      assert.match(usage.stderr, /properties are KEY=VALUE, got "novalue"/);
      assert.equal(await bob.quit(), 0);
    } finally {
      alice.kill();
      bob.kill();
    }
  });
});
