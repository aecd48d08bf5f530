// What the lab suites share: building the lab once per file (or skipping/failing with what is
// missing), postern routers and agents inside its namespaces, reliable traffic fed at a rate,
// and the verdict on what arrived (exactly once, in order per sender).
// The relay serves TLS only (wss://, https://) with the lab CA's certificate; whatever dials it
// trusts that CA with --ca (the nows LAN trusts its middlebox's inspection CA instead), unless
// the caller pins the certificate with --fingerprint. Gateways serve their LAN in plain ws://.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, afterEach, before, describe, it, type TestContext } from 'node:test';
import { Lab, LAB, POSTERN_BIN, prerequisites, type Lan, type LabProc, type OutsideHost, type Site, type Tool } from '../src/index.js';
import { issueToken } from '@postern/router';

export const SECRET = 'lab-secret-0123456789abcdef';
/** A dead link is noticed within two of these (the issue's liveness item). */
export const PING_MS = 2000;
export const RELAY_URL = `wss://${LAB.outside}:${LAB.relayPort}`;
export const gatewayUrl = (lan: Lan): string => `ws://${LAB.host(lan)}:${LAB.gatewayPort}`;

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

type LabTest = (name: string, timeoutMs: number, fn: (t: TestContext, lab: Lab) => Promise<void>) => void;

/**
 * A describe() whose tests share one lab, built in `before` (installing what is missing, as
 * root) and torn down in `after`, which also fails if a namespace is left. When the lab cannot
 * be built, each test fails with what is missing if CI is set, else is skipped with it.
 */
export function labSuite(title: string, options: { lans: readonly Lan[]; tools?: readonly Tool[]; outsideHosts?: 1 | 2 | 3 }, body: (test: LabTest) => void): void {
  describe(title, () => {
    let lab: Lab | undefined;
    let missing: string | undefined;
    before(
      async () => {
        const pre = await prerequisites(options.tools);
        if (!pre.ok) {
          missing = pre.missing;
          return;
        }
        const t0 = Date.now();
        lab = await Lab.build({ tools: pre.tools, lans: options.lans, ...(options.outsideHosts === undefined ? {} : { outsideHosts: options.outsideHosts }) });
        const extra = [
          pre.installed.length > 0 ? `installed ${pre.installed.join(', ')}` : '',
          lab.staleRemoved.length > 0 ? `removed leftovers ${lab.staleRemoved.join(', ')}` : '',
        ].filter((s) => s !== '');
        console.log(`lab: built ${[...lab.outsideHosts, 'fw', ...options.lans].map((s) => lab!.ns(s as Site)).join(', ')} in ${Date.now() - t0} ms${extra.length > 0 ? `; ${extra.join('; ')}` : ''}`);
      },
      { timeout: 600_000 }, // apt-get may take up to 480 s (prereqs.ts)
    );
    afterEach(async () => {
      await lab?.heal();
      await lab?.killProcesses();
    });
    after(async () => {
      const left = await lab?.close();
      assert.deepEqual(left ?? [], [], 'lab namespaces left behind');
    });
    body((name, timeoutMs, fn) => {
      it(name, { timeout: timeoutMs }, async (t) => {
        if (missing !== undefined) {
          if ((process.env['CI'] ?? '') !== '') assert.fail(missing);
          t.skip(missing);
          return;
        }
        await fn(t, lab!);
      });
    });
  });
}

/** Whether `postern COMMAND --help` mentions every one of `flags` (features other work adds). */
export function cliHas(command: string, ...flags: string[]): boolean {
  const r = spawnSync(process.execPath, [POSTERN_BIN, command, '--help'], { encoding: 'utf8', timeout: 15_000 });
  return flags.every((f) => new RegExp(`^\\s*${f}\\b`, 'm').test(`${r.stdout}${r.stderr}`));
}


/** Starts the relay (TLS) on the outside host; waits until it listens and checks it serves the lab's certificate. */
export async function startRelay(lab: Lab): Promise<LabProc> {
  const { relayCert, relayKey, relayFingerprint } = lab.tls;
  const p = lab.postern('outside', 'relay', '--listen', `${LAB.outside}:${LAB.relayPort}`, '--tls-cert', relayCert, '--tls-key', relayKey, '--secret', SECRET, '--allow-guests', '--guest-rate', '0', '--guest-byte-rate', '0', '--guest-stored-bytes', '1073741824', '--max-guest-stored-bytes', '1073741824', '--memory', '--ping-interval', String(PING_MS));
  await p.waitFor('stdout', /postern relay: domain "[^"]+" listening on wss:\/\//, 15_000);
  const fp = await p.waitFor('stdout', /TLS certificate SHA-256 ([0-9A-F:]+)/, 5000);
  assert.equal(fp[1], relayFingerprint, 'the relay announced another certificate');
  return p;
}

/**
 * How `site` trusts the relay: the lab CA, or in the nows LAN the middlebox's inspection CA
 * (it is the middlebox that answers there). Nothing when `extra` already says (--ca, --fingerprint).
 */
export function relayTrust(lab: Lab, site: Site, extra: readonly string[] = []): string[] {
  if (extra.includes('--ca') || extra.includes('--fingerprint')) return [];
  return ['--ca', site === 'nows' ? lab.tls.inspectionCaPath : lab.tls.caPath];
}

/** Relays by URL: the secret their agent tokens are signed with, and their domain. */
const RELAYS = new Map<string, { secret: string; domain: string }>([[RELAY_URL, { secret: SECRET, domain: 'relay' }]]);

/** Makes agents that dial `url` (startListen, sendOne, Stream) present a token signed with `secret` for `domain`. */
export function registerRelay(url: string, secret: string, domain: string): void {
  RELAYS.set(url, { secret, domain });
}

/** What dialing `url` from `site` needs: a token and trust for a relay, nothing for a gateway. */
async function relayAccess(lab: Lab, site: Site, url: string, name: string, extra: readonly string[] = []): Promise<string[]> {
  const r = RELAYS.get(url);
  return r === undefined ? [] : ['--token', await issueToken(r.secret, { domain: r.domain, name }), ...relayTrust(lab, site, extra)];
}

/** The /healthz of the relay on outside host `host` (over https, trusting the lab CA, from that host). */
export async function relayHealth(lab: Lab, host: OutsideHost = 'outside'): Promise<RelayHealth> {
  const line = await lab.probe(host, 'body', LAB.outsideAddress(host), String(LAB.relayPort), '/healthz', '5000', lab.tls.caPath);
  const m = /^status 200 (.*)$/.exec(line);
  assert.ok(m !== null, `the relay's /healthz: ${line}`);
  return JSON.parse(m[1]!) as RelayHealth;
}

/** The part of a router's /healthz the tests read. */
export interface RelayHealth {
  stats: { agents: number; downlinks: number; uplinks: number; peers: number; msgsForwarded: number; domains: number; routesRefused: number; forbidden: number; anonymous: number; anonymousWrapped: number; pinned: number };
  longPollSessions: number;
}

/**
 * Starts a gateway for `domain` in `lan` (its uplink trusting the relay as relayTrust() says);
 * waits until it listens and (unless told not to) its uplink is up.
 */
export async function startGateway(lab: Lab, lan: Lan, domain: string, extra: readonly string[] = [], waitUp = true): Promise<LabProc> {
  const token = await issueToken(SECRET, { domain });
  const p = lab.postern(lan, 'gateway', '--relay', RELAY_URL, '--domain', domain, '--token', token, '--listen', `${LAB.host(lan)}:${LAB.gatewayPort}`, '--memory', '--ping-interval', String(PING_MS), ...relayTrust(lab, lan, extra), ...extra);
  await p.waitFor('stdout', /postern gateway: domain "[^"]+" listening on ws:\/\//, 15_000);
  if (waitUp) await p.waitFor('stdout', /postern gateway: uplink to .* is up/, 20_000);
  return p;
}

/** A token for NAME on the relay (its agents need one; gateways here check none). */
export function relayToken(name: string): Promise<string> {
  return issueToken(SECRET, { domain: 'relay', name });
}

/** `postern listen --json` as NAME at `url`, inside `site`; waits until it is connected. */
export async function startListen(lab: Lab, site: Site, url: string, name: string, extra: readonly string[] = []): Promise<LabProc> {
  const access = await relayAccess(lab, site, url, name, extra);
  const p = lab.postern(site, 'listen', '--connect', url, '--as', name, '--json', ...access, ...extra);
  await p.waitFor('stderr', /postern listen: connected as /, 20_000);
  return p;
}

/** Runs `postern send --connect URL --to TO --as NAME TEXT` inside `site` to its end; asserts exit 0. */
export async function sendOne(lab: Lab, site: Site, url: string, name: string, to: string, text: string, extra: readonly string[] = []): Promise<LabProc> {
  const access = await relayAccess(lab, site, url, name, extra);
  const p = lab.postern(site, 'send', '--connect', url, '--to', to, '--as', name, ...access, ...extra, text);
  const e = await p.waitExit(30_000);
  assert.equal(e.code, 0, `send failed\n${p.describe()}`);
  return p;
}

interface Got {
  from: string;
  body: string;
}

/** What a `listen --json` printed so far (a line that is not JSON counts as a message from '?'). */
export function received(p: LabProc): Got[] {
  return p.lines().map((l) => {
    try {
      const o = JSON.parse(l) as { from: string; body: string };
      return { from: o.from, body: o.body };
    } catch {
      return { from: '?', body: l };
    }
  });
}

/** Waits until `p` printed a message whose body is `body`; returns it. */
export function waitMessage(p: LabProc, body: string, timeoutMs = 20_000): Promise<Got> {
  return p.until(() => received(p).find((m) => m.body === body), `a message "${body}"`, timeoutMs);
}

/**
 * A `postern send` fed lines "NAME n" (n = 1, 2, ...) on standard input at `rate` a second, from
 * start() until stop(); each is a reliable message to `to`.
 */
export class Stream {
  sent = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  private constructor(
    readonly name: string,
    readonly to: string,
    readonly proc: LabProc,
  ) {}

  /** `extra`: more flags for `send` (e.g. --receipt: each message waits for its delivery). */
  static async open(lab: Lab, site: Site, url: string, name: string, to: string, extra: readonly string[] = []): Promise<Stream> {
    const access = await relayAccess(lab, site, url, name, extra);
    return new Stream(name, to, lab.postern(site, 'send', '--connect', url, '--to', to, '--as', name, ...access, ...extra, '--quiet'));
  }

  start(rate: number): void {
    const t0 = Date.now();
    this.#timer = setInterval(() => {
      const due = Math.floor(((Date.now() - t0) * rate) / 1000) + 1;
      while (this.sent < due) this.proc.write(`${this.name} ${++this.sent}\n`);
    }, 20);
  }

  /** Stops feeding; resolves when `send` has had every message accepted and exited 0. */
  async stop(timeoutMs = 60_000): Promise<void> {
    clearInterval(this.#timer);
    this.proc.endInput();
    const e = await this.proc.waitExit(timeoutMs);
    assert.equal(e.code, 0, `send ${this.name}: not every message was accepted\n${this.proc.describe()}`);
  }
}

export interface Verdict {
  sent: number;
  received: number;
  lost: number;
  duplicated: number;
  reordered: number;
  unexpected: number;
}

/**
 * What happened to stream `s` at receiver `p`: every n in 1..sent must arrive exactly once, from
 * `from`, each after all lower ones (the checker of the chaos suite, for one pair).
 */
export function verdict(s: Stream, p: LabProc, from: string): Verdict {
  const counts = new Map<number, number>();
  let unexpected = 0;
  let reordered = 0;
  let top = 0;
  for (const m of received(p)) {
    const match = /^(\S+) (\d+)$/.exec(m.body);
    if (match === null || match[1] !== s.name) continue; // another stream's
    const n = Number(match[2]);
    if (m.from !== from || n < 1 || n > s.sent) {
      unexpected++;
      continue;
    }
    const c = (counts.get(n) ?? 0) + 1;
    counts.set(n, c);
    if (c === 1 && n < top) reordered++;
    top = Math.max(top, n);
  }
  let lost = 0;
  let duplicated = 0;
  for (let n = 1; n <= s.sent; n++) {
    const c = counts.get(n) ?? 0;
    if (c === 0) lost++;
    if (c > 1) duplicated++;
  }
  return { sent: s.sent, received: [...counts.values()].reduce((a, b) => a + b, 0), lost, duplicated, reordered, unexpected };
}

export function clean(v: Verdict): boolean {
  return v.lost === 0 && v.duplicated === 0 && v.reordered === 0 && v.unexpected === 0;
}

export function formatVerdict(v: Verdict): string {
  return `${v.received}/${v.sent} (lost ${v.lost}, dup ${v.duplicated}, reordered ${v.reordered}, unexpected ${v.unexpected})`;
}

/** Waits until every stream's messages all arrived at its receiver (or `timeoutMs`), then 1 s more for late duplicates. */
export async function settle(pairs: ReadonlyArray<[Stream, LabProc, string]>, timeoutMs = 60_000): Promise<Verdict[]> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (pairs.every(([s, p, from]) => verdict(s, p, from).received >= s.sent)) break;
    await sleep(100);
  }
  await sleep(1000);
  return pairs.map(([s, p, from]) => verdict(s, p, from));
}
