// The configuration model of the CLI: durations and sizes, precedence (flag > env > file >
// default), config files and their errors, secret files, `config check`, the docs table and the
// completions; units in-process, the rest through the real `postern` executable.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, describe, it } from 'node:test';
import { formatDuration, formatSize, parse, parseDuration, parseSize, suggest, type OptionTable } from '../src/options.js';
import { formatProgress, formatTiming } from '../src/progress.js';
import { UsageError } from '../src/usage-error.js';
import { BIN, killAll, listeningOn, Proc, REPO_ROOT, run, start } from './procs.js';

afterEach(killAll);

const dir = mkdtempSync(join(tmpdir(), 'postern-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function file(text: string, mode = 0o600): string {
  const f = join(dir, `f${++n}`);
  writeFileSync(f, text);
  chmodSync(f, mode);
  return f;
}

/** The claims of a JWT printed by `postern token`. */
function claims(jwt: string): { exp?: number; iat: number; dom: string } {
  return JSON.parse(Buffer.from(jwt.trim().split('.')[1]!, 'base64url').toString()) as { exp?: number; iat: number; dom: string };
}
function kid(jwt: string): string {
  return (JSON.parse(Buffer.from(jwt.trim().split('.')[0]!, 'base64url').toString()) as { kid: string }).kid;
}

function oneUsageLine(p: Proc, re: RegExp): void {
  assert.equal(p.exit?.code, 2, p.describe());
  const lines = p.lines('stderr');
  assert.equal(lines.length, 1, p.describe());
  assert.match(lines[0]!, /\[ERR_USAGE\]$/, p.describe());
  assert.match(lines[0]!, re, p.describe());
}

describe('durations and sizes', () => {
  it('parses durations with units; a plain number keeps the flag unit', () => {
    assert.equal(parseDuration('500ms', 'ms'), 500);
    assert.equal(parseDuration('30s', 'ms'), 30_000);
    assert.equal(parseDuration('15m', 'ms'), 900_000);
    assert.equal(parseDuration('24h', 'ms'), 86_400_000);
    assert.equal(parseDuration('7d', 's'), 604_800);
    assert.equal(parseDuration('1.5s', 'ms'), 1500);
    assert.equal(parseDuration('2500', 'ms'), 2500);
    assert.equal(parseDuration('3600', 's'), 3600);
    assert.equal(typeof parseDuration('500ms', 's'), 'string', 'half a second is not whole seconds');
    assert.equal(typeof parseDuration('5 parsecs', 'ms'), 'string');
    assert.equal(typeof parseDuration('-1s', 'ms'), 'string');
    assert.equal(formatDuration(86_400_000, 'ms'), '1d');
    assert.equal(formatDuration(20_000, 'ms'), '20s');
    assert.equal(formatDuration(1500, 'ms'), '1500ms');
    assert.equal(formatDuration(7200, 's'), '2h');
  });

  it('parses sizes in 1024-based units; KB/MB are refused as ambiguous', () => {
    assert.equal(parseSize('64KiB'), 65_536);
    assert.equal(parseSize('8MiB'), 8 * 1024 * 1024);
    assert.equal(parseSize('1GiB'), 1024 ** 3);
    assert.equal(parseSize('512B'), 512);
    assert.equal(parseSize('1048576'), 1_048_576);
    assert.match(String(parseSize('8MB')), /ambiguous/);
    assert.match(String(parseSize('8K')), /ambiguous/);
    assert.equal(typeof parseSize('lots'), 'string');
    assert.equal(formatSize(67_108_864), '64MiB');
    assert.equal(formatSize(1000), '1000');
  });

  it('suggests near misses only', () => {
    assert.equal(suggest('listne', ['listen', 'domain']), 'listen');
    assert.equal(suggest('max-ag', ['max-age', 'max-queue']), 'max-age');
    assert.equal(suggest('zzzzzz', ['listen', 'domain']), undefined);
  });

  it('formats the progress line and the timing of the summary', () => {
    const c = { sent: 1200, done: 1100, failed: 2, doneWord: 'accepted' as const, elapsedMs: 2000 };
    assert.equal(formatProgress(c), 'postern send: sent 1200  accepted 1100  failed 2  550/s');
    assert.equal(formatTiming(c), ' in 2.0 s (550/s)');
    assert.equal(formatProgress({ ...c, doneWord: 'sent', done: 3, elapsedMs: 1000 }), 'postern send: sent 1200  failed 2  3.0/s');
  });
});

describe('precedence: flag > env > file > default (in-process)', () => {
  const table: OptionTable = {
    'max-age': { type: 'string', kind: 'duration', unit: 'ms', min: 1, default: '24h' },
    listen: { type: 'string', multiple: true },
    memory: { type: 'boolean' },
    secret: { type: 'string', secret: true },
  };
  const cfg = file('max-age = "1h"\nlisten = ["a:1", "b:2"]\n[relay]\nmemory = true\n');

  it('takes each layer in turn, and says where from', () => {
    const none = parse('relay', [], table, false, {});
    assert.equal(none.values['max-age'], undefined);
    const fromFile = parse('relay', ['--config', cfg], table, false, {});
    assert.equal(fromFile.values['max-age'], '3600000');
    assert.deepEqual(fromFile.values.listen, ['a:1', 'b:2']);
    assert.equal(fromFile.values.memory, true);
    assert.equal(fromFile.sources['max-age']?.from, 'file');
    const fromEnv = parse('relay', ['--config', cfg], table, false, { POSTERN_MAX_AGE: '2m', POSTERN_LISTEN: 'c:3,d:4', POSTERN_MEMORY: 'false' });
    assert.equal(fromEnv.values['max-age'], '120000');
    assert.deepEqual(fromEnv.values.listen, ['c:3', 'd:4']);
    assert.equal(fromEnv.values.memory, undefined, 'an explicit false in the environment beats the file');
    assert.deepEqual(fromEnv.sources['max-age'], { from: 'env', where: '$POSTERN_MAX_AGE' });
    const scoped = parse('relay', [], table, false, { POSTERN_MAX_AGE: '2m', POSTERN_RELAY_MAX_AGE: '3m' });
    assert.equal(scoped.values['max-age'], '180000', 'the command-scoped variable wins');
    const fromFlag = parse('relay', ['--config', cfg, '--max-age', '5000', '--listen', 'e:5'], table, false, { POSTERN_MAX_AGE: '2m', POSTERN_CONFIG: '/nonexistent' });
    assert.equal(fromFlag.values['max-age'], '5000');
    assert.deepEqual(fromFlag.values.listen, ['e:5'], 'a repeatable flag replaces the lists below it');
  });

  it('a secret file beats a lower layer, and the same layer twice is an error', () => {
    const sf = file('s3cret\n');
    const p = parse('relay', ['--secret-file', sf], table, false, { POSTERN_SECRET: 'from-env' });
    assert.equal(p.values.secret, 's3cret');
    assert.throws(() => parse('relay', [], table, false, { POSTERN_SECRET: 'from-env', POSTERN_SECRET_FILE: sf }), UsageError);
  });
});

describe('postern configuration, as processes', () => {
  it('token: --ttl from flag > env > file > default (a plain number: seconds)', async () => {
    const cfg = file('ttl = "2h"\n[token]\ndomain = "acme"\nsecret = "file-secret-0123456789abcdef"\n');
    const cases: Array<[string[], Record<string, string>, number | undefined]> = [
      [['token', '--config', cfg, '--name', 'bob', '--ttl', '60'], { POSTERN_TTL: '3h' }, 60],
      [['token', '--config', cfg, '--name', 'bob'], { POSTERN_TTL: '3h' }, 3 * 3600],
      [['token', '--config', cfg, '--name', 'bob'], {}, 2 * 3600],
      [['token', '--domain', 'acme', '--secret', 'x', '--name', 'bob'], {}, 90 * 86400],
    ];
    const ps = cases.map(([args, env]) => new Proc(args, { env }));
    await Promise.all(ps.map((p) => p.waitExit(15_000)));
    ps.forEach((p, i) => {
      assert.equal(p.exit?.code, 0, p.describe());
      const c = claims(p.stdout);
      assert.equal(c.dom, 'acme');
      assert.equal(c.exp! - c.iat, cases[i]![2], p.describe());
    });
  });

  it('a secret from --secret-file signs like --secret, never shows in the process arguments, and a world-readable one is refused', async () => {
    const secret = 'file-only-secret-0123456789abcdef';
    const sf = file(`${secret}\n`);
    const [viaFile, viaFlag] = await Promise.all([run(['token', '--domain', 'acme', '--secret-file', sf]), run(['token', '--domain', 'acme', '--secret', secret])]);
    assert.equal(viaFile.exit?.code, 0, viaFile.describe());
    assert.equal(kid(viaFile.stdout), kid(viaFlag.stdout), 'the same secret signed both');
    const relay = start('relay', '--listen', '127.0.0.1:0', '--memory', '--secret-file', sf);
    await listeningOn(relay);
    const cmdline = readFileSync(`/proc/${relay.pid}/cmdline`, 'utf8');
    assert.ok(cmdline.includes('--secret-file'), cmdline);
    assert.ok(!cmdline.includes(secret), 'the secret is not in the arguments');
    const open = file(`${secret}\n`, 0o644);
    oneUsageLine(await run(['token', '--domain', 'acme', '--secret-file', open]), /--secret-file .* is readable by every user: chmod/);
  });

  it('config errors: one line naming the file and key, with a suggestion; exit 2', async () => {
    const typo = file('[relay]\nlistne = ["127.0.0.1:0"]\n');
    const section = file('[relya]\nlisten = ["127.0.0.1:0"]\n');
    const top = file('max-agee = "1h"\n');
    const type = file('[relay]\nmemory = "yes"\n');
    const notToml = file('[relay\nlisten = 1\n');
    const badValue = file('[relay]\nlisten = ["127.0.0.1:0"]\nmax-frame = "8MB"\n');
    const ps = await Promise.all([
      run(['relay', '--config', typo]),
      run(['relay', '--config', section]),
      run(['listen', '--config', top]),
      run(['relay', '--config', type]),
      run(['config', 'check', '--config', notToml]),
      run(['relay', '--config', badValue]),
      run(['relay', '--config', join(dir, 'missing.toml')]),
    ]);
    oneUsageLine(ps[0], new RegExp(`^postern: config ${typo}: unknown key \\[relay\\] listne \\(relay has no --listne\\): did you mean listen\\?`));
    oneUsageLine(ps[1], /unknown key \[relya\] .*did you mean relay\?/);
    oneUsageLine(ps[2], /unknown key max-agee: did you mean max-age\?/);
    oneUsageLine(ps[3], /\[relay\] memory must be true or false/);
    oneUsageLine(ps[4], /line \d+: .*not valid TOML/);
    oneUsageLine(ps[5], /^postern: relay: .*: \[relay\] max-frame must use KiB, MiB or GiB/);
    oneUsageLine(ps[6], /cannot read it: no such file/);
  });

  it('a bad environment value names the variable', async () => {
    const p = new Proc(['relay', '--listen', '127.0.0.1:0', '--memory'], { env: { POSTERN_MAX_AGE: 'forever' } });
    await p.waitExit(15_000);
    oneUsageLine(p, /^postern: relay: \$POSTERN_MAX_AGE must be a duration/);
  });

  it('config check prints the settings with their sources, secrets masked', async () => {
    const secret = 'check-secret-0123456789abcdef';
    const sf = file(`${secret}\n`);
    const cfg = file(`log-level = "warn"\n[relay]\nlisten = ["127.0.0.1:0"]\nsecret-file = "${sf}"\nmax-age = 3600000\nmax-frame = "64KiB"\n`);
    const p = new Proc(['config', 'check', '--config', cfg], { env: { POSTERN_HOP_LIMIT: '4', POSTERN_PREVIOUS_SECRETS: 'old-one,older-one' } });
    await p.waitExit(15_000);
    assert.equal(p.exit?.code, 0, p.describe());
    assert.ok(!p.stdout.includes(secret) && !p.stdout.includes('old-one'), `secrets masked: ${p.stdout}`);
    const lines = p.stdout.split('\n');
    const has = (re: RegExp): void => assert.ok(lines.some((l) => re.test(l)), `${re}: ${p.stdout}`);
    has(/^\[relay\]$/);
    has(/^secret = "\*{8}"  # file: .*\[relay\] secret-file /);
    has(/^previous-secret = \["\*{8}", "\*{8}"\]  # env: \$POSTERN_PREVIOUS_SECRETS$/);
    has(/^max-age = "1h"  # file: /);
    has(/^max-frame = "64KiB"  # file: /);
    has(/^log-level = "warn"  # file: .*: log-level$/);
    has(/^hop-limit = 4  # env: \$POSTERN_HOP_LIMIT$/);
    has(/^# max-queue-bytes = "64MiB"  # default$/);
    // Cross-option checks of the router run too.
    const half = file('[relay]\ntls-cert = "/nonexistent.crt"\n');
    oneUsageLine(await run(['config', 'check', '--config', half]), /give --tls-cert and --tls-key together/);
  });

  it('a gateway does not take $POSTERN_SECRET (the relay\'s) and says so; with its own secret it says agents need tokens', async () => {
    const env = { POSTERN_SECRET: 'relay-secret-0123456789abcdef' };
    const gw = new Proc(['gateway', '--relay', 'ws://127.0.0.1:9', '--domain', 'acme', '--listen', '127.0.0.1:0', '--memory'], { env });
    const at = await listeningOn(gw);
    assert.match(gw.stdout, /\$POSTERN_SECRET is the relay's and is not used here: agents connecting here need no token/);
    const alice = new Proc(['listen', '--connect', at.url, '--as', 'alice', '--count', '1'], { env });
    await alice.waitFor('stderr', /connected as alice@acme/);
    const sf = file('lan-secret-0123456789abcdef\n');
    const gw2 = new Proc(['gateway', '--relay', 'ws://127.0.0.1:9', '--domain', 'acme', '--listen', '127.0.0.1:0', '--memory', '--secret-file', sf]);
    const at2 = await listeningOn(gw2);
    assert.match(gw2.stdout, /agents connecting here need a token for a name .*from --secret-file/);
    const bob = await run(['listen', '--connect', at2.url, '--as', 'bob']);
    assert.equal(bob.exit?.code, 1, bob.describe());
    assert.equal(bob.lines('stderr').length, 1, bob.describe());
    assert.match(bob.stderr, /: ask the router's operator for one \('postern token --domain DOMAIN --name bob' with its --secret\) and give it with --token-file FILE or \$POSTERN_TOKEN \[ERR_(AUTH_FAILED|NAME_NOT_ALLOWED)\]$/m);
  });

  it('send shows no progress when stderr is not a terminal, and its summary is unchanged', async () => {
    const relay = start('relay', '--listen', '127.0.0.1:0', '--memory');
    const at = await listeningOn(relay);
    const sink = start('listen', '--connect', at.url, '--as', 'sink', '--count', '50');
    await sink.waitFor('stderr', /connected as/);
    const p = await run(['send', '--connect', at.url, '--to', 'sink', '--count', '50', 'x']);
    assert.equal(p.exit?.code, 0, p.describe());
    assert.equal(p.stderr, '', p.describe());
    assert.match(p.stdout, /^postern send: 50 of 50 messages accepted as \S+\n$/);
    const q = await run(['send', '--connect', at.url, '--to', 'sink', '--count', '5', '--quiet', 'x']);
    assert.equal(q.stdout + q.stderr, '', q.describe());
  });

  it('send on a terminal rewrites a progress line and times its summary', { skip: spawnSync('script', ['--version']).status === 0 ? false : 'no script(1)' }, async () => {
    const relay = start('relay', '--listen', '127.0.0.1:0', '--memory');
    const at = await listeningOn(relay);
    const sink = start('listen', '--connect', at.url, '--as', 'sink');
    await sink.waitFor('stderr', /connected as/);
    const cmd = [process.execPath, BIN, 'send', '--connect', at.url, '--to', 'sink', '--count', '20000', 'x'].map((a) => `'${a}'`).join(' ');
    // script(1) runs the command on a pseudo-terminal: stdout and stderr are both the terminal.
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = spawn('script', ['-qec', cmd, '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, POSTERN_CONFIG: '' } });
      let output = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
      child.on('close', (c) => resolve({ code: c, output }));
    });
    assert.equal(code, 0, output);
    assert.match(output, /\r\x1b\[Kpostern send: sent \d+ {2}accepted \d+ {2}failed 0 {2}[\d.]+\/s/, JSON.stringify(output.slice(0, 300)));
    assert.match(output, /postern send: 20000 of 20000 messages accepted as \S+ in [\d.]+ s \([\d.]+\/s\)/, JSON.stringify(output.slice(-300)));
  });

  it('--version, -V, help COMMAND and completions', async () => {
    const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'packages/cli/package.json'), 'utf8')) as { version: string }).version;
    const [v, V, help, bad, bash, zsh, fish, noShell] = await Promise.all([
      run(['--version']),
      run(['-V']),
      run(['help', 'listen']),
      run(['help', 'lisen']),
      run(['completion', 'bash']),
      run(['completion', 'zsh']),
      run(['completion', 'fish']),
      run(['completion', 'tcsh']),
    ]);
    assert.equal(v.stdout, `postern ${version}\n`);
    assert.equal(V.stdout, v.stdout);
    assert.match(help.stdout, /^Usage: postern listen /);
    assert.match(help.stdout, /--connect-timeout DURATION/);
    oneUsageLine(bad, /unknown command "lisen": did you mean listen\?/);
    oneUsageLine(noShell, /completion: say bash, zsh or fish/);
    for (const p of [bash, zsh, fish]) assert.equal(p.exit?.code, 0, p.describe());
    assert.match(bash.stdout, /complete -F _postern postern/);
    assert.match(bash.stdout, /--max-queue-bytes/);
    assert.match(bash.stdout, /--log-level\) COMPREPLY=\(\$\(compgen -W 'debug info warn error silent'/);
    assert.match(zsh.stdout, /^#compdef postern/);
    assert.match(fish.stdout, /complete -c postern -n '__fish_seen_subcommand_from relay' -l listen/);
    const syntax = (shell: string, script: string): void => {
      const f = file(script);
      execFileSync(shell, ['-n', f]);
    };
    syntax('bash', bash.stdout);
    if (spawnSync('zsh', ['--version']).status === 0) syntax('zsh', zsh.stdout);
    if (spawnSync('fish', ['--version']).status === 0) execFileSync('fish', ['--no-execute', file(fish.stdout)]);
  });

  it('docs/CONFIG.md holds the table of every option of every command, as `postern config table` prints it', async () => {
    const p = await run(['config', 'table']);
    assert.equal(p.exit?.code, 0, p.describe());
    const doc = readFileSync(join(REPO_ROOT, 'docs/CONFIG.md'), 'utf8');
    const m = /<!-- options-table:start -->\n([\s\S]*?)<!-- options-table:end -->/.exec(doc);
    assert.ok(m, 'docs/CONFIG.md has the table markers');
    assert.equal(m[1], p.stdout, 'docs/CONFIG.md is out of date: regenerate the table with `postern config table`');
    // Every option has a meaning (an option added to a table without help text fails here).
    for (const row of m[1].trim().split('\n').slice(2)) assert.doesNotMatch(row, /\| {2}\|$/, `an option without help: ${row}`);
    // Every option in every command's help is a row (and the other way round, by construction).
    for (const cmd of ['relay', 'gateway', 'hub', 'token', 'key', 'listen', 'send', 'chat', 'watch', 'set', 'demo']) {
      const h = await run([cmd, '--help']);
      for (const [, flag] of h.stdout.matchAll(/^ {2}(?:-\w, )?--([a-z][a-z-]*)/gm)) {
        assert.match(m[1], new RegExp(`^\\| \`--${flag}\` \\|[^\\n]*\\b(${cmd}|all)\\b`, 'm'), `docs/CONFIG.md lists --${flag} of ${cmd}`);
      }
    }
  });
});
