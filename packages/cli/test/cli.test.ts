// The real `postern` executable, driven as child processes: relay, gateway, token, listen,
// send and demo, over loopback sockets. Every child is SIGKILLed in afterEach.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, describe, it } from 'node:test';
import WebSocket from 'ws';
import { connect, PosternError, type Client } from '@postern/client';
import { FrameDecoder, FrameType, WireCode, type Frame } from '@postern/protocol';
import { issueToken } from '@postern/router';
import { freePort, waitFor } from '@postern/testing';
import { killAll, listeningOn, run, sleep, start, startGateway, startListen, startRelay, type Proc, withGuests } from './procs.js';

const SECRET = 'cli-test-secret-0123456789abcdef';
const NO_STACK = /^\s+at /m;

afterEach(killAll);

interface Printed {
  id: string;
  from: string;
  to: string;
  body: string;
  volatile: boolean;
}

function parseJsonLines(p: Proc): Printed[] {
  return p.lines('stdout').map((l) => {
    const o = JSON.parse(l) as Printed;
    assert.equal(typeof o.id, 'string', `id in ${l}`);
    assert.equal(typeof o.from, 'string', `from in ${l}`);
    assert.equal(typeof o.to, 'string', `to in ${l}`);
    assert.equal(typeof o.body, 'string', `body in ${l}`);
    return o;
  });
}

async function cliToken(...args: string[]): Promise<string> {
  const p = await run(['token', ...args]);
  assert.equal(p.exit?.code, 0, p.describe());
  const t = p.stdout.trim();
  assert.match(t, /^[\w-]+\.[\w-]+\.[\w-]+$/, `a JWT on stdout: ${p.describe()}`);
  return t;
}

/** The address `postern send` says it sent as. */
function sentAs(p: Proc): string {
  const m = /accepted as (\S+)/.exec(p.stdout);
  assert.ok(m, `send names its address: ${p.describe()}`);
  return m[1]!;
}

describe('postern CLI, as processes', () => {
  it('crosses both ways: relay -> gateway -> agent, and agent -> gateway -> relay', async () => {
    const relay = await startRelay('--secret', SECRET);
    const [domainToken, bobToken] = await Promise.all([
      cliToken('--secret', SECRET, '--domain', 'acme'),
      cliToken('--secret', SECRET, '--domain', 'relay', '--name', 'bob'),
    ]);
    const gw = await startGateway(relay.url, 'acme', domainToken);

    // Inward: an anonymous agent on the relay sends to alice behind the gateway.
    const alice = await startListen('--connect', gw.url, '--as', 'alice', '--json', '--count', '3');
    const send = await run(['send', '--connect', relay.url, '--to', 'alice@acme', '--count', '3', 'hello']);
    assert.equal(send.exit?.code, 0, send.describe());
    assert.match(send.stdout, /3 of 3 messages accepted/);
    const sender = sentAs(send);
    assert.match(sender, /^_[^@]+@relay$/);
    const aliceExit = await alice.waitExit(10_000);
    assert.equal(aliceExit.code, 0, alice.describe());
    const got = parseJsonLines(alice);
    assert.deepEqual(
      got.map((m) => m.body),
      ['hello 1', 'hello 2', 'hello 3'],
      alice.describe(),
    );
    for (const m of got) {
      assert.equal(m.to, 'alice@acme');
      assert.equal(m.from, sender);
      assert.equal(m.volatile, false);
    }
    assert.equal(new Set(got.map((m) => m.id)).size, 3, 'three distinct ids');

    // Outward: carol inside the firewall replies to bob, who holds an agent token on the relay.
    const bob = await startListen('--connect', relay.url, '--as', 'bob', '--token', bobToken, '--json', '--count', '1');
    assert.match(bob.stderr, /connected as bob@relay/);
    const back = await run(['send', '--connect', gw.url, '--as', 'carol', '--to', 'bob@relay', 'back']);
    assert.equal(back.exit?.code, 0, back.describe());
    assert.equal(sentAs(back), 'carol@acme');
    assert.equal((await bob.waitExit(10_000)).code, 0, bob.describe());
    const [m, ...rest] = parseJsonLines(bob);
    assert.equal(rest.length, 0, bob.describe());
    assert.equal(m?.from, 'carol@acme');
    assert.equal(m?.to, 'bob@relay');
    assert.equal(m?.body, 'back');

    // Both routers are still up after their clients came and went.
    assert.equal(relay.proc.exit, undefined, relay.proc.describe());
    assert.equal(gw.proc.exit, undefined, gw.proc.describe());
  });

  it('send waits for acceptance by default, for delivery with --receipt; a relay killed and restarted delivers what it accepted', async () => {
    const data = mkdtempSync(join(tmpdir(), 'postern-relay-'));
    after(() => rmSync(data, { recursive: true, force: true }));
    // carol is provisioned (--known): messages to her wait before she ever connects.
    const relay = await startRelay('--data', data, '--known', 'carol');
    const nobody = await run(['send', '--connect', relay.url, '--to', 'nobody', 'hello?']);
    assert.equal(nobody.exit?.code, 1, nobody.describe());
    assert.match(nobody.stderr, /no agent "nobody@relay" is known here.*\[ERR_UNKNOWN_RECIPIENT\]/);
    // Nobody listens yet: accepted is all send can say, and it says it at once.
    const early = await run(['send', '--connect', relay.url, '--to', 'carol', '--count', '2', 'early']);
    assert.equal(early.exit?.code, 0, early.describe());
    assert.match(early.stdout, /2 of 2 messages accepted/);
    // The relay dies with them on its disk, and comes back on the same port.
    assert.equal((await relay.proc.kill('SIGKILL')).signal, 'SIGKILL');
    const proc = start('relay', '--listen', `127.0.0.1:${relay.port}`, '--data', data);
    const again = { proc, ...(await listeningOn(proc)) };
    const carol = await startListen('--connect', again.url, '--as', 'carol', '--count', '3');
    await carol.waitFor('stdout', /early 2/);
    const late = await run(['send', '--connect', again.url, '--to', 'carol', '--receipt', 'late']);
    assert.equal(late.exit?.code, 0, late.describe());
    assert.match(late.stdout, /1 of 1 message delivered/);
    assert.equal((await carol.waitExit(10_000)).code, 0);
    assert.deepEqual(carol.stdout.trim().split('\n').map((l) => l.replace(/^[^:]+: /, '')), ['early 1', 'early 2', 'late']);
    const both = await run(['send', '--connect', again.url, '--to', 'carol', '--receipt', '--volatile', 'x']);
    assert.equal(both.exit?.code, 2, both.describe());
  });

  it('survives a SIGKILLed gateway restarted on the same port mid-traffic', async () => {
    const relay = await startRelay('--secret', SECRET);
    const token = await issueToken(SECRET, { domain: 'acme' });
    // The restarted gateway keeps the data dir: what it had accepted is still there.
    const gwData = mkdtempSync(join(tmpdir(), 'postern-gw-'));
    after(() => rmSync(gwData, { recursive: true, force: true }));
    const gw1 = await startGateway(relay.url, 'acme', token, '127.0.0.1:0', '--data', gwData);
    const gwPort = gw1.port;
    const alice = await startListen('--connect', gw1.url, '--as', 'alice', '--json');

    const KILL_AT = 40;
    const WANT_AFTER = 30;
    const MAX_MESSAGES = 800;
    const DEADLINE = Date.now() + 20_000;
    type Outcome = { n: number; state: 'pending' } | { n: number; state: 'ok'; id: string } | { n: number; state: 'failed'; code: string };
    const outcomes: Outcome[] = [];
    const pending: Array<Promise<void>> = [];
    let restartedAt = Number.POSITIVE_INFINITY; // first message number sent after the restart began
    let gw2: Awaited<ReturnType<typeof startGateway>> | undefined;
    let restarting: Promise<void> | undefined;
    let restartError: Error | undefined;
    let sender: Client | undefined;
    try {
      sender = await connect({ url: relay.url, sendTimeoutMs: 4000, connectTimeoutMs: 5000 });
      const c = sender;
      const resolvedAfter = (): number => outcomes.filter((o) => o.state === 'ok' && o.n >= restartedAt).length;
      for (let n = 1; n <= MAX_MESSAGES && Date.now() < DEADLINE && resolvedAfter() < WANT_AFTER; n++) {
        if (restartError !== undefined) throw restartError;
        outcomes.push({ n, state: 'pending' });
        pending.push(
          c.send('alice@acme', `m${n}`).then(
            (r) => void (outcomes[n - 1] = { n, state: 'ok', id: r.id }),
            (e: unknown) => void (outcomes[n - 1] = { n, state: 'failed', code: e instanceof PosternError ? e.code : String(e) }),
          ),
        );
        if (n === KILL_AT) {
          // Traffic must have been flowing before the cut.
          await waitFor(() => outcomes.filter((x) => x.state === 'ok').length >= 20, '20 sends acknowledged before the kill', 5000);
          const e = await gw1.proc.kill('SIGKILL');
          assert.equal(e.signal, 'SIGKILL');
          restarting = sleep(1000)
            .then(async () => {
              restartedAt = outcomes.length + 1;
              gw2 = await startGateway(relay.url, 'acme', token, `127.0.0.1:${gwPort}`, '--data', gwData);
            })
            .catch((err: unknown) => void (restartError = err instanceof Error ? err : new Error(String(err))));
        }
        await sleep(20);
      }
      assert.ok(restarting, 'the gateway was killed');
      await restarting;
      if (restartError !== undefined) throw restartError;
      await Promise.all(pending); // each settles within sendTimeoutMs
    } finally {
      await sender?.close();
    }

    const ok = outcomes.filter((o): o is Extract<Outcome, { state: 'ok' }> => o.state === 'ok');
    const failed = outcomes.filter((o): o is Extract<Outcome, { state: 'failed' }> => o.state === 'failed');
    const byCode: Record<string, number> = {};
    for (const f of failed) byCode[f.code] = (byCode[f.code] ?? 0) + 1;
    const okAfter = ok.filter((o) => o.n >= restartedAt).length;
    console.log(
      `gateway restart: ${outcomes.length} sent, ${ok.length} resolved (${okAfter} after the restart), ` +
        `${failed.length} failed ${JSON.stringify(byCode)}; restart began before message ${restartedAt}`,
    );
    assert.equal(outcomes.filter((o) => o.state === 'pending').length, 0, 'every send settled');
    assert.ok(okAfter >= WANT_AFTER, `at least ${WANT_AFTER} sends resolved after the restart, got ${okAfter}\n${alice.describe()}`);
    // The relay accepts while the gateway is down and delivers when it is back: nothing fails.
    assert.deepEqual(failed, [], 'no send failed');

    // Every acknowledged message was printed, exactly once. (A failed one may have been printed:
    // its ack can be lost with the gateway.)
    await alice.until(
      () => {
        const ids = new Set(parseJsonLines(alice).map((m) => m.id));
        return ok.every((o) => ids.has(o.id)) || undefined;
      },
      'the listener to print every acknowledged message',
      5000,
    ).catch(() => undefined);
    const printed = parseJsonLines(alice);
    const printedIds = printed.map((m) => m.id);
    assert.equal(new Set(printedIds).size, printedIds.length, `no duplicates among printed ids: ${printedIds.join(' ')}`);
    const printedSet = new Set(printedIds);
    const missing = ok.filter((o) => !printedSet.has(o.id)).map((o) => o.n);
    assert.deepEqual(missing, [], 'every resolved send was printed by the listener');
    const sentIds = new Map(ok.map((o) => [o.id, o.n]));
    for (const m of printed) {
      assert.equal(m.to, 'alice@acme');
      const n = sentIds.get(m.id);
      if (n !== undefined) assert.equal(m.body, `m${n}`, `body of ${m.id}`);
      else assert.match(m.body, /^m\d+$/);
    }
    const printedFailed = printed.filter((m) => !sentIds.has(m.id)).length;
    console.log(`gateway restart: listener printed ${printed.length}, of which ${printedFailed} were sends that failed`);

    // The listener reconnected by itself and is still running.
    assert.match(alice.stderr, /postern listen: connection lost \(.*\); reconnecting in \d+ ms/, alice.describe());
    const connects = alice.stderr.match(/postern listen: connected as alice@acme/g) ?? [];
    assert.ok(connects.length >= 2, `connected again after the restart\n${alice.describe()}`);
    assert.equal(alice.exit, undefined, alice.describe());
    assert.ok(gw2, 'the gateway was restarted');
    assert.equal(gw2.port, gwPort, 'restarted on the same port');
    assert.equal(gw2.proc.exit, undefined, gw2.proc.describe());
  });

  it('a relay with --secret refuses agents without a token unless --allow-guests, and an open one says at start that it is open', async () => {
    // start() directly: startRelay() lets guests in for the other tests.
    const closed = start('relay', '--listen', '127.0.0.1:0', '--secret', SECRET, '--memory');
    const at = await listeningOn(closed);
    const refused = await run(['send', '--connect', at.url, '--to', 'bob@relay', 'hi'], 8000);
    assert.equal(refused.exit?.code, 1, refused.describe());
    assert.match(refused.stderr, /postern: error: .*requires a token \(its operator may let agents without one in as guests: --allow-guests\): ask the router's operator for one .*\[ERR_AUTH_FAILED\]$/m, refused.describe());
    assert.doesNotMatch(closed.stdout + closed.stderr, /open: /, 'no open line with a secret');
    const guests = start('relay', '--listen', '127.0.0.1:0', '--secret', SECRET, '--memory', '--allow-guests', '--known', 'bob');
    const g = await listeningOn(guests);
    await guests.waitFor('stderr', /guests: agents without a token connect with an id and no name, under the guest quotas/);
    const sent = await run(['send', '--connect', g.url, '--to', 'bob@relay', 'hi'], 8000);
    assert.equal(sent.exit?.code, 0, sent.describe());
    const open = start('relay', '--listen', '127.0.0.1:0', '--memory');
    await listeningOn(open);
    await open.waitFor('stderr', /open: agents connect without a token and may claim any name \(give --secret to require tokens\)/);
    const usage = await run(['relay', '--listen', '127.0.0.1:0', '--memory', '--allow-guests'], 8000);
    assert.equal(usage.exit?.code, 2, usage.describe());
    assert.match(usage.stderr, /--allow-guests needs --secret/, usage.describe());
  });

  it('refuses bad credentials with one line and a non-zero exit', async () => {
    const relay = await startRelay('--secret', SECRET);
    const [forged, acme, carol] = await Promise.all([
      cliToken('--secret', 'some-other-secret', '--domain', 'acme'),
      cliToken('--secret', SECRET, '--domain', 'acme'),
      cliToken('--secret', SECRET, '--domain', 'relay', '--name', 'carol'),
    ]);
    const t0 = Date.now();
    const [badSig, badDomain, badName] = await Promise.all([
      // Default logging: log lines may come too, but the refusal is one `postern: error:` line.
      run(['gateway', '--relay', relay.url, '--domain', 'acme', '--token', forged, '--listen', '127.0.0.1:0'], 8000),
      // With logging down to errors, stderr is that one line alone.
      run(['gateway', '--relay', relay.url, '--domain', 'beta', '--token', acme, '--listen', '127.0.0.1:0', '--log-level', 'error'], 8000),
      run(['listen', '--connect', relay.url, '--as', 'bob', '--token', carol], 8000),
    ]);
    assert.ok(Date.now() - t0 < 8000, 'all three gave up within a few seconds');

    for (const [p, code] of [
      [badSig, 'ERR_AUTH_FAILED'],
      [badDomain, 'ERR_DOMAIN_NOT_ALLOWED'],
    ] as const) {
      assert.notEqual(p.exit?.code, 0, p.describe());
      assert.equal(p.exit?.signal, null, p.describe());
      assert.doesNotMatch(p.stderr, NO_STACK, p.describe());
      const errors = p.lines('stderr').filter((l) => l.startsWith('postern: error:'));
      assert.equal(errors.length, 1, p.describe());
      assert.match(errors[0]!, /refused/, p.describe());
      assert.ok(errors[0]!.includes(code), p.describe());
    }
    assert.equal(badDomain.lines('stderr').length, 1, `only the refusal on stderr: ${badDomain.describe()}`);
    assert.match(badDomain.stderr, /"beta"/);

    assert.notEqual(badName.exit?.code, 0, badName.describe());
    assert.equal(badName.exit?.signal, null, badName.describe());
    assert.doesNotMatch(badName.stderr, NO_STACK, badName.describe());
    assert.equal(badName.lines('stderr').length, 1, badName.describe());
    assert.match(badName.stderr, /^postern: error: .*"bob".*\[ERR_NAME_NOT_ALLOWED\]$/m, badName.describe());
    assert.equal(badName.stdout, '', badName.describe());

    assert.equal(relay.proc.exit, undefined, relay.proc.describe());
  });

  it('closes a connection that sends garbage with CLOSE(PROTOCOL) and keeps serving', async () => {
    const relay = await startRelay();
    const garbage = [
      Uint8Array.of(0, 0, 0, 4, 0xff, 0xfe, 0xfd, 0xfc), // a frame of unknown type
      Uint8Array.of(0, 0, 0, 0, 1, 2, 3), // a frame of length 0
    ];
    for (const bytes of garbage) {
      const ws = new WebSocket(relay.url);
      const frames: Frame[] = [];
      const decoder = new FrameDecoder();
      try {
        const closed = new Promise<number>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`no close within 5 s; frames: ${JSON.stringify(frames)}`)), 5000);
          ws.on('open', () => ws.send(bytes));
          ws.on('message', (data: WebSocket.RawData) => {
            const chunks = Array.isArray(data) ? data : [Buffer.from(data as ArrayBuffer)];
            for (const b of chunks) decoder.push(new Uint8Array(b.buffer, b.byteOffset, b.byteLength), (f) => frames.push(f));
          });
          ws.on('close', (code) => {
            clearTimeout(timer);
            resolve(code);
          });
          ws.on('error', (err) => {
            clearTimeout(timer);
            reject(err);
          });
        });
        await closed;
      } finally {
        ws.terminate();
      }
      const close = frames.find((f) => f.type === FrameType.CLOSE);
      assert.ok(close && close.type === FrameType.CLOSE, `a CLOSE frame: ${JSON.stringify(frames)}`);
      assert.equal(close.code, WireCode.PROTOCOL, `CLOSE code: ${JSON.stringify(close)}`);
      assert.equal(frames.at(-1), close, 'CLOSE is the last frame');
    }

    assert.equal(relay.proc.exit, undefined, relay.proc.describe());
    const dora = await startListen('--connect', relay.url, '--as', 'dora', '--count', '1');
    const send = await run(['send', '--connect', relay.url, '--to', 'dora', 'still here']);
    assert.equal(send.exit?.code, 0, send.describe());
    assert.equal((await dora.waitExit(10_000)).code, 0, dora.describe());
    assert.equal(dora.stdout, `${sentAs(send)}: still here\n`);
    assert.equal(relay.proc.exit, undefined, relay.proc.describe());
  });

  it('listen warns when the relay came back without the store it had: its session was not recovered', async () => {
    const relay = await startRelay('--secret', SECRET, '--memory');
    const token = await issueToken(SECRET, { domain: 'relay', name: 'alice' });
    const alice = await startListen('--connect', relay.url, '--as', 'alice', '--token', token);
    await relay.proc.kill('SIGKILL');
    // The same secret and port, but its messages and sessions went with the process (--memory).
    const again = start('relay', ...withGuests(['--listen', `127.0.0.1:${relay.port}`, '--secret', SECRET, '--memory']));
    await listeningOn(again);
    const m = await alice.waitFor('stderr', /postern listen: warning: the router did not recover this session \(its store was lost or replaced\): messages it held for (\S+) may be lost/, 15_000);
    assert.equal(m[1], 'alice@relay');
    assert.match(alice.stderr, /connected as alice@relay\n[^]*connected as alice@relay\n/, alice.describe());
    assert.doesNotMatch(alice.stderr, /\(resumed\)/, alice.describe());
  });

  it('token: agent tokens expire after 90 days unless --ttl says otherwise; every token names its secret (kid)', async () => {
    const claims = (t: string): Record<string, unknown> => JSON.parse(Buffer.from(t.trim().split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    const agent = await run(['token', '--secret', SECRET, '--domain', 'acme', '--name', 'alice']);
    assert.equal(agent.exit?.code, 0, agent.describe());
    const c = claims(agent.stdout);
    assert.equal((c.exp as number) - (c.iat as number), 90 * 86400);
    assert.equal(claims((await run(['token', '--secret', SECRET, '--domain', 'acme', '--name', 'alice', '--ttl', 'never'])).stdout).exp, undefined);
    assert.equal(claims((await run(['token', '--secret', SECRET, '--domain', 'acme'])).stdout).exp, undefined, 'a domain token: no default expiry');
    assert.equal((claims((await run(['token', '--secret', SECRET, '--domain', 'acme', '--name', 'bob', '--ttl', '1h'])).stdout).exp as number) - Math.floor(Date.now() / 1000) <= 3600, true);
    const header = JSON.parse(Buffer.from(agent.stdout.split('.')[0]!, 'base64url').toString()) as { kid?: string };
    assert.match(header.kid ?? '', /^[A-Za-z0-9_-]{8}$/);
  });

  it('relay --allow-origin: pages of other origins get 403 (logged once), the allowed origin and programs get through; a bad origin is a usage error', async () => {
    const relay = await startRelay('--memory', '--allow-origin', 'https://chat.example.com');
    const status = (origin?: string): Promise<number> =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(relay.url, origin === undefined ? {} : { origin });
        ws.on('open', () => {
          ws.terminate();
          resolve(101);
        });
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.on('error', reject);
      });
    assert.deepEqual([await status('https://evil.example'), await status('https://evil.example'), await status('https://chat.example.com'), await status()], [403, 403, 101, 101]);
    await waitFor(() => /refused a web page of an origin not allowed.*evil\.example/.test(relay.proc.stderr), 'the refusal logged');
    assert.equal(relay.proc.stderr.match(/refused a web page/g)?.length, 1, relay.proc.describe());
    // The CLI itself sends no Origin.
    const send = await run(['send', '--connect', relay.url, '--to', 'nobody', '--volatile', 'hi']);
    assert.doesNotMatch(send.stderr, /403/, send.describe());
    const bad = await run(['relay', '--listen', '127.0.0.1:0', '--memory', '--allow-origin', 'https://chat.example.com/app']);
    assert.equal(bad.exit?.code, 2, bad.describe());
    assert.match(bad.stderr, /--allow-origin: an allowed origin is a scheme, a host and an optional port/);
  });

  describe('usage errors', () => {
    const usageError = (p: Proc, command: string): void => {
      assert.equal(p.exit?.code, 2, p.describe());
      assert.doesNotMatch(p.stderr, NO_STACK, p.describe());
      assert.equal(p.stdout, '', p.describe());
      const lines = p.lines('stderr');
      assert.equal(lines.length, 1, `one line: ${p.describe()}`);
      assert.match(lines[0]!, new RegExp(`^postern: ${command}: .*\\[ERR_USAGE\\]$`), p.describe());
    };

    it('an unknown flag exits 2 with one line and a pointer to --help, or a suggestion for a near miss', async () => {
      const cmds = ['relay', 'gateway', 'hub', 'token', 'listen', 'send', 'chat', 'watch', 'set', 'demo', 'key'];
      const ps = await Promise.all(cmds.map((c) => run([c, '--bogus-flag'])));
      ps.forEach((p, i) => {
        usageError(p, cmds[i]!);
        assert.match(p.stderr, new RegExp(`unknown option --bogus-flag \\(see postern ${cmds[i]} --help\\)`), p.describe());
      });
      const near = await run(['relay', '--listne', '127.0.0.1:0']);
      usageError(near, 'relay');
      assert.equal(near.stderr, 'postern: relay: unknown option --listne: did you mean --listen? [ERR_USAGE]\n');
      const cmd = await run(['rely']);
      assert.equal(cmd.exit?.code, 2, cmd.describe());
      assert.equal(cmd.stderr, 'postern: unknown command "rely": did you mean relay? [ERR_USAGE]\n');
    });

    it('a bad value names the option and the value; a negative number is a value, not an option', async () => {
      const cases: Array<[string[], string, string]> = [
        [['listen', '--connect', 'ws://127.0.0.1:9', '--as', 'a', '--count', '-1'], 'listen', '--count must be a whole number >= 1, got "-1"'],
        [['relay', '--listen', '127.0.0.1:0', '--memory', '--domain', 'Bad_Domain'], 'relay', '--domain must be a domain'],
        [['relay', '--listen', '127.0.0.1'], 'relay', '--listen must be HOST:PORT'],
        [['relay', '--listen', '127.0.0.1:0', '--memory', '--max-frame', '8MB'], 'relay', '--max-frame must use KiB, MiB or GiB'],
        [['relay', '--listen', '127.0.0.1:0', '--memory', '--max-age', 'soon'], 'relay', '--max-age must be a duration like 500ms'],
        [['send', '--connect', 'ws://127.0.0.1:9', '--to', 'a@b', '--timeout', '5 parsecs', 'hi'], 'send', '--timeout must be a duration'],
        [['relay', '--listen', '127.0.0.1:0', '--memory', '--log-level', 'loud'], 'relay', '--log-level must be debug, info, warn, error or silent, got "loud"'],
        [['token', '--secret', 'x', '--domain', 'a', '--ttl', '5 days'], 'token', '--ttl must be a duration'],
      ];
      const ps = await Promise.all(cases.map(([args]) => run(args)));
      ps.forEach((p, i) => {
        usageError(p, cases[i]![1]);
        assert.ok(p.stderr.includes(cases[i]![2]), p.describe());
      });
    });

    it('a missing required flag exits 2 naming it', async () => {
      const cases: Array<[string[], string, string]> = [
        [['relay'], 'relay', '--listen'],
        [['gateway', '--relay', 'ws://127.0.0.1:9', '--token', 't', '--listen', '127.0.0.1:0'], 'gateway', '--domain'],
        [['token', '--domain', 'acme'], 'token', '--secret'],
        [['listen', '--connect', 'ws://127.0.0.1:9'], 'listen', '--as'],
        [['send', '--to', 'a@b', 'hi'], 'send', '--connect'],
        [['hub', '--domain', 'acme', '--listen', '127.0.0.1:0'], 'hub', '--gateway'],
        [['chat', '--connect', 'ws://127.0.0.1:9'], 'chat', '--as'],
        [['watch', 'alice@acme'], 'watch', '--connect'],
        [['set', '--connect', 'ws://127.0.0.1:9', 'a=b'], 'set', '--as'],
      ];
      const ps = await Promise.all(cases.map(([args]) => run(args)));
      ps.forEach((p, i) => {
        const [, cmd, flag] = cases[i]!;
        usageError(p, cmd);
        assert.ok(p.stderr.includes(`${flag} `) && p.stderr.includes('required'), p.describe());
      });
    });

    it('a time longer than a timer can wait exits 2 instead of firing at once', async () => {
      const cases: Array<[string[], string]> = [
        [['relay', '--listen', '127.0.0.1:0', '--memory', '--handshake-timeout', '3000000000'], 'relay'],
        [['listen', '--connect', 'ws://127.0.0.1:9', '--as', 'x', '--connect-timeout', '3000000000'], 'listen'],
      ];
      const ps = await Promise.all(cases.map(([args]) => run(args)));
      ps.forEach((p, i) => {
        usageError(p, cases[i]![1]);
        assert.match(p.stderr, /from 1 to 2147483647/, p.describe());
      });
    });

    it('a bad flag value (listen address, name, empty --data) exits 2 before anything starts', async () => {
      const cases: Array<[string[], string, RegExp]> = [
        [['relay', '--listen', '7000', '--memory'], 'relay', /--listen must be HOST:PORT/],
        [['relay', '--listen', '127.0.0.1:0', '--data', ''], 'relay', /--data needs a directory/],
        [['listen', '--connect', 'ws://127.0.0.1:9', '--as', 'Bad Name'], 'listen', /--as must be a name/],
      ];
      const ps = await Promise.all(cases.map(([args]) => run(args)));
      ps.forEach((p, i) => {
        usageError(p, cases[i]![1]);
        assert.match(p.stderr, cases[i]![2], p.describe());
      });
    });

    it('a flag missing its value exits 2 with one line', async () => {
      // `--connect` directly followed by another flag: the value was forgotten.
      const p = await run(['send', '--connect', '--to', 'a@b', 'hi']);
      usageError(p, 'send');
    });

    it('send to a port nobody listens on exits 1 with ERR_TRANSPORT', async () => {
      const port = await freePort();
      const p = await run(['send', '--connect', `ws://127.0.0.1:${port}`, '--to', 'a@b', 'hi']);
      assert.equal(p.exit?.code, 1, p.describe());
      assert.doesNotMatch(p.stderr, NO_STACK, p.describe());
      const lines = p.lines('stderr');
      assert.equal(lines.length, 1, p.describe());
      assert.match(lines[0]!, /ERR_TRANSPORT|cannot connect/, p.describe());
      assert.ok(lines[0]!.includes(String(port)), p.describe());
    });

    it('every command has --help listing its flags', async () => {
      const flags: Record<string, string[]> = {
        relay: ['--listen', '--domain', '--secret', '--secret-file', '--allow-guests', '--log-level', '--max-frame', '--help'],
        gateway: ['--relay', '--domain', '--token', '--listen', '--secret', '--log-level', '--help'],
        token: ['--secret', '--domain', '--name', '--ttl', '--help'],
        listen: ['--connect', '--as', '--token', '--token-file', '--json', '--count', '--connect-timeout', '--config', '--help'],
        send: ['--connect', '--to', '--as', '--token', '--count', '--volatile', '--timeout', '--connect-timeout', '--quiet', '--help'],
        demo: ['--rate', '--seconds', '--help'],
        hub: ['--gateway', '--domain', '--token', '--listen', '--secret', '--help'],
        chat: ['--connect', '--as', '--token', '--to', '/to', '/watch', '/set', '/allow', '--help'],
        watch: ['--connect', '--as', '--json', '--count', '--help'],
        set: ['--connect', '--as', '--allow', '--help'],
      };
      const cmds = Object.keys(flags);
      const ps = await Promise.all([...cmds.map((c) => run([c, '--help'])), run(['--help'])]);
      ps.slice(0, cmds.length).forEach((p, i) => {
        const c = cmds[i]!;
        assert.equal(p.exit?.code, 0, p.describe());
        assert.equal(p.stderr, '', p.describe());
        assert.match(p.stdout, new RegExp(`^Usage: postern ${c} `), p.describe());
        for (const f of flags[c]!) assert.ok(p.stdout.includes(f), `${c} --help mentions ${f}`);
      });
      const top = ps[cmds.length]!;
      assert.equal(top.exit?.code, 0, top.describe());
      for (const c of cmds) assert.ok(top.stdout.includes(`  ${c} `), `postern --help lists ${c}`);
    });
  });

  it('demo runs by itself and shows messages crossing both ways', async () => {
    const p = await run(['demo', '--seconds', '3', '--rate', '100'], 15_000);
    assert.equal(p.exit?.code, 0, p.describe());
    assert.doesNotMatch(p.stderr, NO_STACK, p.describe());
    const m = /stopped: (\d+) messages crossed inward, (\d+) outward, (\d+) failed/.exec(p.stdout);
    assert.ok(m, p.describe());
    const [inward, outward, failed] = [Number(m[1]), Number(m[2]), Number(m[3])];
    console.log(`demo: ${inward} inward, ${outward} outward, ${failed} failed`);
    assert.ok(inward > 0, p.describe());
    assert.ok(outward > 0, p.describe());
    assert.equal(failed, 0, p.describe());
    assert.match(p.stdout, /external->internal \d+ .*internal->external \d+/, 'a live count line');
    assert.match(p.stdout, /^presence: carol@acme online status=free$/m, 'bob watches carol, homed on the hub');
  });
});
