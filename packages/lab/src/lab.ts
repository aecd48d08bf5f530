// The network lab: real firewalls for the tests, built from Linux network namespaces, veth links,
// iptables and tc, with addresses only inside the namespaces it makes (10.77.0.0/16; no default
// route leads to the machine's own network).
//
//   outside 10.77.0.2 ──── 10.77.0.1 ┐
//   (relay, TLS; outside host)        │ fw: NAT (MASQUERADE) for the LANs; FORWARD policy DROP:
//                                     │ from outside only ESTABLISHED,RELATED comes back in
//   lan     10.77.1.2 ──── 10.77.1.1 ┤ gateway + internal agents; forwarded to outside
//   strict  10.77.2.2 ──── 10.77.2.1 ┤ nothing forwarded: only tinyproxy on 10.77.2.1:8888
//                                     │ (Basic credentials; CONNECT only to the relay's port)
//   nows    10.77.3.2 ──── 10.77.3.1 ┘ nothing forwarded: TCP to the relay is redirected to our
//                                       middlebox on 10.77.3.1:8080, which inspects TLS (see
//                                       middlebox.ts): HTTP requests go on to the relay, WebSocket
//                                       upgrades and CONNECT get 403 (until middleboxUpgrades(true))
//
// With `outsideHosts` 2 or 3 the outside network has more hosts for more relays, joined by a
// bridge in the outside namespace (the internet between relays of different operators; fw is
// not on their path to each other):
//
//   fw 10.77.0.1 ── br0 (in outside) ─┬─ outside  10.77.0.2
//                                      ├─ outside2 10.77.0.3
//                                      └─ outside3 10.77.0.4
//
// TLS: build() makes two CAs with openssl in its temporary directory. The lab CA (`tls.caPath`)
// signs the relay's certificate for 10.77.0.2: clients trust it with --ca, or pin the relay's
// certificate (`tls.relayFingerprint`). The inspection CA (`tls.inspectionCaPath`) signs the
// middlebox's certificate for the same address: hosts in the nows LAN trust that one instead,
// as a company's machines trust its inspection box.
//
// Every outside host has its own certificate from the lab CA (`certFor(host)`), an iptables chain
// FAULTS on its INPUT and OUTPUT (cut() drops what it exchanges with another outside host) and a
// nat chain TAPS on PREROUTING (tap() redirects connections to a recording proxy, see tap.ts).
//
// Contract:
// - build() first removes what earlier runs left (namespaces `pl-<pid>-*` whose process is gone,
//   and this process's own), so it is idempotent; names are unique per process.
// - Everything lives inside the lab's namespaces: deleting them removes links, routes and rules.
//   close() kills every process in them, deletes them and checks that none is left; an `exit`
//   handler does the same if the process ends without close().
// - Faults (loss, outage, shape) apply to one LAN's path through fw, both ways, until heal();
//   so do cut() between two outside hosts, the redirections of tap() and middleboxUpgrades(true).
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeLabCa, type LabCert } from './pki.js';
import { LabProc, nodeLabel } from './proc.js';
import type { Tools } from './prereqs.js';
import { sh } from './sh.js';

/** This file compiles to packages/lab/dist/src/lab.js; the repo root is four levels up. */
export const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
export const POSTERN_BIN = join(REPO_ROOT, 'packages/cli/dist/src/bin.js');
const PROBE = fileURLToPath(new URL('./probe.js', import.meta.url));
const MIDDLEBOX = fileURLToPath(new URL('./middlebox.js', import.meta.url));
const TAP = fileURLToPath(new URL('./tap.js', import.meta.url));

export type Lan = 'lan' | 'strict' | 'nows';
/** Hosts on the outside network (relays run there): `outside` always, the others with `outsideHosts`. */
export type OutsideHost = 'outside' | 'outside2' | 'outside3';
export type Site = OutsideHost | 'fw' | Lan;

const OUTSIDE_HOSTS: readonly OutsideHost[] = ['outside', 'outside2', 'outside3'];

/** Third octet and fw's interface name of each LAN. */
const LANS: Record<Lan, { net: number; fwIf: string }> = {
  lan: { net: 1, fwIf: 'l0' },
  strict: { net: 2, fwIf: 's0' },
  nows: { net: 3, fwIf: 'n0' },
};
/** fw's interface to the outside network. */
const FW_OUT = 'o0';

/** Addresses and ports of the lab (the same in every lab: each lives in its own namespaces). */
export const LAB = Object.freeze({
  /** fw's address on the outside network: what the relay sees every LAN as (NAT). */
  fwOutside: '10.77.0.1',
  /** The outside host: the relay listens here. */
  outside: '10.77.0.2',
  /** The address of each outside host (10.77.0.2, .3, .4). */
  outsideAddress: (host: OutsideHost): string => `10.77.0.${OUTSIDE_HOSTS.indexOf(host) + 2}`,
  relayPort: 7443,
  /** The host in each LAN (gateways listen here). */
  host: (lan: Lan): string => `10.77.${LANS[lan].net}.2`,
  /** fw's address in each LAN (the LAN's default route; proxies listen here). */
  router: (lan: Lan): string => `10.77.${LANS[lan].net}.1`,
  gatewayPort: 7000,
  proxyPort: 8888,
  proxyUser: 'labuser',
  proxyPassword: 'lab-pw-7d1c',
  /** tinyproxy closes a tunnel idle this long (its Timeout): shorter than real ones, longer than the lab's pings. */
  proxyIdleTimeoutS: 6,
  middleboxPort: 8080,
});

/** The lab's certificates (PEM files in its temporary directory, gone after close()). */
export interface LabTls {
  /** The lab CA: what clients trust (--ca) to reach the relay. */
  caPath: string;
  /** The relay's certificate (for LAB.outside, signed by the lab CA) and key: --tls-cert, --tls-key. */
  relayCert: string;
  relayKey: string;
  /** SHA-256 of the relay's certificate, for --fingerprint. */
  relayFingerprint: string;
  /** The middlebox's CA: what hosts in the nows LAN trust instead (the middlebox presents its certificate for LAB.outside). */
  inspectionCaPath: string;
}

export interface LabOptions {
  /** Programs from prerequisites() (openssl among them); tinyproxy is needed when `lans` has 'strict'. */
  tools: Tools;
  /** LANs to build behind fw. @default ['lan'] */
  lans?: readonly Lan[];
  /** Hosts on the outside network: 1 (outside), 2 (and outside2) or 3 (and outside3). @default 1 */
  outsideHosts?: 1 | 2 | 3;
}

/** A recording proxy started by Lab.tap(). */
export interface TapOptions {
  /** The port it listens on, at the site's address. */
  port: number;
  /** Where it forwards each connection. */
  target: { host: string; port: number };
  /**
   * Terminate TLS with this certificate (an outside host's, see certFor) and speak TLS to the
   * target trusting the lab CA: it sees the plaintext, as a TLS-inspecting box does.
   */
  tls?: LabCert;
  /**
   * Make it transparent: TCP from this address to the target's port at the site's address is
   * redirected to the tap (iptables REDIRECT in the site's namespace, until heal()). Without it,
   * clients must dial the tap's port themselves.
   */
  redirectFrom?: string;
}

const NAME = /^pl-(\d+)-[a-z][a-z0-9]*$/;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The lab's namespaces that exist now: all of them, or those starting with `prefix`. */
export async function labNamespaces(ip: string, prefix = 'pl-'): Promise<string[]> {
  const r = await sh(ip, ['netns', 'list']);
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.startsWith(prefix) && NAME.test(n));
}

/** Kills every process inside `ns` (bounded wait), then deletes it. */
async function removeNamespace(ip: string, ns: string): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const r = await sh(ip, ['netns', 'pids', ns], { allowFail: true });
    const pids = r.stdout.split('\n').map(Number).filter((p) => p > 0);
    if (pids.length === 0 || Date.now() > deadline) break;
    for (const p of pids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    await sleep(50);
  }
  await sh(ip, ['netns', 'del', ns], { allowFail: true });
}

/** The same, synchronously, for an `exit` handler. */
function removeNamespaceSync(ip: string, ns: string): void {
  const r = spawnSync(ip, ['netns', 'pids', ns], { encoding: 'utf8' });
  for (const p of (r.stdout ?? '').split('\n').map(Number).filter((n) => n > 0)) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  spawnSync(ip, ['netns', 'del', ns]);
}

/** Removes namespaces of labs whose process is gone (or of this very process). Returns their names. */
export async function removeStale(ip: string): Promise<string[]> {
  const stale = (await labNamespaces(ip)).filter((n) => {
    const pid = Number(NAME.exec(n)![1]);
    return pid === process.pid || !alive(pid);
  });
  for (const ns of stale) await removeNamespace(ip, ns);
  return stale;
}

export class Lab {
  /** Namespace names start with this: `pl-<pid>-`. */
  readonly prefix = `pl-${process.pid}-`;
  readonly lans: readonly Lan[];
  /** The outside hosts built: `outside`, then `outside2` and `outside3` when asked for. */
  readonly outsideHosts: readonly OutsideHost[];
  /** Namespaces of earlier runs that build() removed. */
  staleRemoved: string[] = [];
  readonly #tools: Tools;
  readonly #procs = new Set<LabProc>();
  /** tinyproxy and the middlebox: they live as long as the lab. */
  readonly #services: LabProc[] = [];
  #dir = '';
  #tls: LabTls | undefined;
  readonly #hostCerts = new Map<OutsideHost, LabCert>();
  /** The middlebox's certificate and key files. */
  #middleboxCert: [string, string] = ['', ''];
  #upgradesAllowed = false;
  #made: string[] = [];
  #closed = false;
  readonly #onExit = (): void => {
    for (const ns of this.#made) removeNamespaceSync(this.#ip, ns);
  };

  private constructor(options: LabOptions) {
    this.#tools = options.tools;
    this.lans = options.lans ?? ['lan'];
    this.outsideHosts = OUTSIDE_HOSTS.slice(0, options.outsideHosts ?? 1);
  }

  /** Builds the lab (see the top of this file). On failure it removes what it made and throws. */
  static async build(options: LabOptions): Promise<Lab> {
    const lab = new Lab(options);
    try {
      await lab.#build();
      return lab;
    } catch (e) {
      await lab.close();
      throw e;
    }
  }

  get #ip(): string {
    return this.#tool('ip');
  }

  #tool(t: keyof Tools): string {
    const p = this.#tools[t];
    if (p === undefined) throw new Error(`lab: ${t} was not among the programs found by prerequisites()`);
    return p;
  }

  /** The lab's CAs and the relay's certificate. */
  get tls(): LabTls {
    if (this.#tls === undefined) throw new Error('lab: not built');
    return this.#tls;
  }

  /** The certificate (lab CA) of an outside host, for its address: what a relay there serves. */
  certFor(host: OutsideHost): LabCert {
    const c = this.#hostCerts.get(host);
    if (c === undefined) throw new Error(`lab: ${host} was not built`);
    return c;
  }

  /** The lab's temporary directory (gone after close()): for key files and data directories. */
  get dir(): string {
    if (this.#dir === '') throw new Error('lab: not built');
    return this.#dir;
  }

  /** The namespace name of a site. */
  ns(site: Site): string {
    return `${this.prefix}${site}`;
  }

  async #build(): Promise<void> {
    this.staleRemoved = await removeStale(this.#ip);
    process.on('exit', this.#onExit);
    this.#dir = await mkdtemp(join(tmpdir(), 'postern-lab-'));
    await this.#makeCertificates();
    const ip = (site: Site, ...args: string[]): Promise<unknown> => sh(this.#ip, ['-n', this.ns(site), ...args]);
    const sites: Site[] = [...this.outsideHosts, 'fw', ...this.lans];
    for (const s of sites) {
      await sh(this.#ip, ['netns', 'add', this.ns(s)]);
      this.#made.push(this.ns(s));
      await ip(s, 'link', 'set', 'lo', 'up');
    }
    // fw <-> outside. The outside network routes the whole lab range to fw, as if the internet
    // did: a connection from outside to a LAN address reaches fw, and fw alone stops it.
    await ip('fw', 'link', 'add', FW_OUT, 'type', 'veth', 'peer', 'name', 'e0', 'netns', this.ns('outside'));
    await ip('fw', 'addr', 'add', `${LAB.fwOutside}/24`, 'dev', FW_OUT);
    await ip('fw', 'link', 'set', FW_OUT, 'up');
    if (this.outsideHosts.length === 1) {
      await ip('outside', 'addr', 'add', `${LAB.outside}/24`, 'dev', 'e0');
      await ip('outside', 'link', 'set', 'e0', 'up');
    } else {
      // More hosts on the outside network: a bridge joins them and fw.
      await ip('outside', 'link', 'add', 'br0', 'type', 'bridge');
      await ip('outside', 'link', 'set', 'e0', 'master', 'br0');
      await ip('outside', 'link', 'set', 'e0', 'up');
      await ip('outside', 'addr', 'add', `${LAB.outside}/24`, 'dev', 'br0');
      await ip('outside', 'link', 'set', 'br0', 'up');
      for (const [i, host] of this.outsideHosts.slice(1).entries()) {
        const port = `v${i + 2}`;
        await ip('outside', 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'e0', 'netns', this.ns(host));
        await ip('outside', 'link', 'set', port, 'master', 'br0');
        await ip('outside', 'link', 'set', port, 'up');
        await ip(host, 'addr', 'add', `${LAB.outsideAddress(host)}/24`, 'dev', 'e0');
        await ip(host, 'link', 'set', 'e0', 'up');
        await ip(host, 'route', 'add', '10.77.0.0/16', 'via', LAB.fwOutside);
      }
    }
    await ip('outside', 'route', 'add', '10.77.0.0/16', 'via', LAB.fwOutside);
    for (const lan of this.lans) {
      const { fwIf } = LANS[lan];
      await ip('fw', 'link', 'add', fwIf, 'type', 'veth', 'peer', 'name', 'e0', 'netns', this.ns(lan));
      await ip('fw', 'addr', 'add', `${LAB.router(lan)}/24`, 'dev', fwIf);
      await ip('fw', 'link', 'set', fwIf, 'up');
      await ip(lan, 'addr', 'add', `${LAB.host(lan)}/24`, 'dev', 'e0');
      await ip(lan, 'link', 'set', 'e0', 'up');
      await ip(lan, 'route', 'add', 'default', 'via', LAB.router(lan));
    }
    await this.#firewall();
    for (const host of this.outsideHosts) {
      const ipt = (...args: string[]): Promise<string> => this.iptablesAt(host, ...args);
      await ipt('-N', 'FAULTS');
      await ipt('-A', 'INPUT', '-j', 'FAULTS');
      await ipt('-A', 'OUTPUT', '-j', 'FAULTS');
      await ipt('-t', 'nat', '-N', 'TAPS');
      await ipt('-t', 'nat', '-A', 'PREROUTING', '-j', 'TAPS');
    }
    if (this.lans.includes('strict')) await this.#startProxy();
    if (this.lans.includes('nows')) await this.#startMiddlebox();
  }

  async #makeCertificates(): Promise<void> {
    const openssl = this.#tool('openssl');
    const ca = await makeLabCa(openssl, this.#dir, 'lab-ca', 'Postern Lab CA');
    const relay = await ca.issue('relay', [`IP:${LAB.outside}`]);
    this.#hostCerts.set('outside', relay);
    for (const host of this.outsideHosts.slice(1)) this.#hostCerts.set(host, await ca.issue(host, [`IP:${LAB.outsideAddress(host)}`]));
    const inspection = await makeLabCa(openssl, this.#dir, 'inspection-ca', 'Lab Middlebox Inspection CA');
    this.#tls = { caPath: ca.caPath, relayCert: relay.certPath, relayKey: relay.keyPath, relayFingerprint: relay.fingerprint, inspectionCaPath: inspection.caPath };
    if (this.lans.includes('nows')) {
      const mb = await inspection.issue('middlebox', [`IP:${LAB.outside}`]);
      this.#middleboxCert = [mb.certPath, mb.keyPath];
    }
  }

  /** iptables in fw, one command each (iptables -w: wait for the xtables lock). */
  async iptables(...args: string[]): Promise<string> {
    return this.iptablesAt('fw', ...args);
  }

  /** iptables in any site. */
  async iptablesAt(site: Site, ...args: string[]): Promise<string> {
    return (await sh(this.#ip, ['netns', 'exec', this.ns(site), this.#tool('iptables'), '-w', ...args])).stdout;
  }

  async #firewall(): Promise<void> {
    // Forwarding is per namespace; the machine's own setting is untouched.
    const fwd = this.node('fw', '-e', "require('node:fs').writeFileSync('/proc/sys/net/ipv4/ip_forward', '1')");
    const e = await fwd.waitExit(10_000);
    if (e.code !== 0) throw new Error(`lab: could not enable forwarding in fw\n${fwd.describe()}`);
    const ipt = this.iptables.bind(this);
    await ipt('-P', 'FORWARD', 'DROP');
    await ipt('-N', 'FAULTS');
    await ipt('-N', 'INBOUND');
    await ipt('-A', 'FORWARD', '-j', 'FAULTS');
    await ipt('-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT');
    // New connections from outside: counted here, then dropped.
    await ipt('-A', 'FORWARD', '-i', FW_OUT, '-j', 'INBOUND');
    await ipt('-A', 'INBOUND', '-j', 'DROP');
    // fw itself takes nothing new from outside either (its proxies listen on the LAN side).
    await ipt('-A', 'INPUT', '-i', FW_OUT, '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT');
    await ipt('-A', 'INPUT', '-i', FW_OUT, '-j', 'DROP');
    for (const lan of this.lans) {
      const { net, fwIf } = LANS[lan];
      await ipt('-t', 'nat', '-A', 'POSTROUTING', '-s', `10.77.${net}.0/24`, '-o', FW_OUT, '-j', 'MASQUERADE');
      // Only the plain LAN is forwarded; strict and nows fall to the DROP policy.
      if (lan === 'lan') await ipt('-A', 'FORWARD', '-i', fwIf, '-o', FW_OUT, '-j', 'ACCEPT');
      if (lan === 'nows') {
        await ipt('-t', 'nat', '-A', 'PREROUTING', '-i', fwIf, '-p', 'tcp', '-d', LAB.outside, '--dport', String(LAB.relayPort), '-j', 'REDIRECT', '--to-ports', String(LAB.middleboxPort));
      }
    }
  }

  async #startProxy(): Promise<void> {
    const conf = join(this.#dir, 'tinyproxy.conf');
    await writeFile(
      conf,
      [
        `Port ${LAB.proxyPort}`,
        `Listen ${LAB.router('strict')}`,
        `Timeout ${LAB.proxyIdleTimeoutS}`,
        'MaxClients 100',
        `Allow ${LAB.router('strict').replace(/\.1$/, '.0')}/24`,
        `BasicAuth ${LAB.proxyUser} ${LAB.proxyPassword}`,
        `ConnectPort ${LAB.relayPort}`,
        'DisableViaHeader Yes',
        'LogLevel Info',
        '',
      ].join('\n'),
    );
    const p = this.#spawn('fw', [this.#tool('tinyproxy'), '-d', '-c', conf], `fw$ tinyproxy -d -c ${conf}`, false);
    this.#services.push(p);
    await p.until(() => (/Accepting connections/.test(p.stdout + p.stderr) ? true : undefined), 'tinyproxy to accept connections', 10_000);
  }

  async #startMiddlebox(): Promise<void> {
    const args = [LAB.router('nows'), String(LAB.middleboxPort), LAB.outside, String(LAB.relayPort), ...this.#middleboxCert, this.tls.caPath];
    const p = this.#spawn('fw', [process.execPath, MIDDLEBOX, ...args], nodeLabel('fw', MIDDLEBOX, args), false);
    this.#services.push(p);
    await p.waitFor('stdout', /middlebox: listening/, 10_000);
  }

  /** tinyproxy's output so far (it logs each CONNECT), or '' without the strict LAN. */
  get proxyLog(): string {
    const p = this.#services.find((s) => s.label.includes('tinyproxy'));
    return p === undefined ? '' : p.stdout + p.stderr;
  }

  /** The middlebox's lines so far, or [] without the nows LAN. */
  get middleboxLog(): string[] {
    return this.#services.find((s) => s.label.includes('middlebox'))?.lines() ?? [];
  }

  /**
   * Makes the middlebox let WebSocket upgrades through to the relay (true) or refuse them again
   * (false, how it starts); resolves once it said so. Connections it already tunnels stay up.
   */
  async middleboxUpgrades(allow: boolean): Promise<void> {
    const p = this.#services.find((s) => s.label.includes('middlebox'));
    if (p === undefined) throw new Error('lab: no middlebox (the nows LAN was not built)');
    const from = p.stdout.length;
    p.child.kill(allow ? 'SIGUSR1' : 'SIGUSR2');
    await p.waitFor('stdout', allow ? /middlebox: upgrades allowed/ : /middlebox: upgrades refused/, 5000, from);
    this.#upgradesAllowed = allow;
  }

  #spawn(site: Site, argv: readonly string[], label: string, tracked = true, env?: Readonly<Record<string, string>>): LabProc {
    if (this.#closed) throw new Error('lab: closed');
    const p = new LabProc(argv, { netns: this.ns(site), ip: this.#ip, cwd: REPO_ROOT, label, ...(env === undefined ? {} : { env }) });
    if (tracked) {
      this.#procs.add(p);
      void p.exited.then(() => this.#procs.delete(p));
    }
    return p;
  }

  /** `node ARGS` inside a site. */
  node(site: Site, ...args: string[]): LabProc {
    return this.#spawn(site, [process.execPath, ...args], `${site}$ node ${args.join(' ')}`);
  }

  /** `postern ARGS` (the built CLI) inside a site. */
  postern(site: Site, ...args: string[]): LabProc {
    return this.#spawn(site, [process.execPath, POSTERN_BIN, ...args], `${site}$ postern ${args.join(' ')}`);
  }

  /** `postern ARGS` inside a site with variables `env` set (e.g. HTTP_PROXY). */
  posternWithEnv(site: Site, env: Readonly<Record<string, string>>, ...args: string[]): LabProc {
    const vars = Object.entries(env).map(([k, v]) => `${k}=${v} `).join('');
    return this.#spawn(site, [process.execPath, POSTERN_BIN, ...args], `${site}$ ${vars}postern ${args.join(' ')}`, true, env);
  }

  /** Runs the probe script inside a site (see probe.ts); resolves with its one line. */
  async probe(site: Site, ...args: string[]): Promise<string> {
    const p = this.#spawn(site, [process.execPath, PROBE, ...args], nodeLabel(site, PROBE, args));
    const e = await p.waitExit(60_000);
    if (e.code !== 0) throw new Error(`lab: probe failed\n${p.describe()}`);
    return p.stdout.trim();
  }

  /** Remote addresses of the established TCP connections to local `port` inside a site. */
  async peers(site: Site, port: number): Promise<string[]> {
    const r = await sh(this.#ip, ['netns', 'exec', this.ns(site), this.#tool('ss'), '-Htn', 'state', 'established', `( sport = :${port} )`]);
    return r.stdout
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => l.trim().split(/\s+/).pop()!.replace(/:\d+$/, ''));
  }

  /** Packets fw dropped as new connections from outside, since it was built. */
  async inboundDrops(): Promise<number> {
    const out = await this.iptables('-n', '-v', '-x', '-L', 'INBOUND');
    const row = out.split('\n')[2]?.trim().split(/\s+/);
    return Number(row?.[0] ?? NaN);
  }

  /** Packets the fault rules (loss, outage) dropped since the last heal(). */
  async faultDrops(): Promise<number> {
    return this.#faultPackets('fw');
  }

  /** Packets matched by the rules of the FAULTS chain in `site`. */
  async #faultPackets(site: Site): Promise<number> {
    const out = await this.iptablesAt(site, '-n', '-v', '-x', '-L', 'FAULTS');
    return out
      .split('\n')
      .slice(2)
      .filter((l) => l.trim() !== '')
      .reduce((sum, l) => sum + Number(l.trim().split(/\s+/)[0]), 0);
  }

  /** Drops each packet between `lan` and outside with `probability`, both ways, until heal(). */
  async loss(probability: number, lan: Lan = 'lan'): Promise<void> {
    const stat = ['-m', 'statistic', '--mode', 'random', '--probability', String(probability)];
    await this.#faultBothWays(lan, stat);
  }

  /** Drops every packet between `lan` and outside, both ways, until heal(). */
  async outage(lan: Lan = 'lan'): Promise<void> {
    await this.#faultBothWays(lan, []);
  }

  async #faultBothWays(lan: Lan, match: string[]): Promise<void> {
    const fwIf = LANS[lan].fwIf;
    await this.iptables('-A', 'FAULTS', '-i', fwIf, '-o', FW_OUT, ...match, '-j', 'DROP');
    await this.iptables('-A', 'FAULTS', '-i', FW_OUT, '-o', fwIf, ...match, '-j', 'DROP');
  }

  /** Limits fw's links to outside and to `lan` to `rate` (tc tbf, e.g. '2mbit') each way. */
  async shape(rate: string, lan: Lan = 'lan'): Promise<void> {
    for (const dev of [FW_OUT, LANS[lan].fwIf]) {
      await sh(this.#ip, ['netns', 'exec', this.ns('fw'), this.#tool('tc'), 'qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', rate, 'burst', '32kb', 'latency', '200ms']);
    }
  }

  /**
   * Cuts the network between two outside hosts, both ways, until heal(): `b` drops every packet
   * from or to `a` (iptables in b's namespace). Their links with anything else stay up.
   */
  async cut(a: OutsideHost, b: OutsideHost): Promise<void> {
    await this.iptablesAt(b, '-A', 'FAULTS', '-s', LAB.outsideAddress(a), '-j', 'DROP');
    await this.iptablesAt(b, '-A', 'FAULTS', '-d', LAB.outsideAddress(a), '-j', 'DROP');
  }

  /** Packets the cut() rules of outside host `b` dropped since the last heal(). */
  async cutDrops(b: OutsideHost): Promise<number> {
    return this.#faultPackets(b);
  }

  /**
   * Starts a recording proxy (tap.ts) on an outside host or a LAN's host; resolves once it listens (and
   * its redirection is in place). Its output lists each connection and every chunk both ways:
   * read it with tapConnections() (wire.ts). It is stopped with the other processes.
   */
  async tap(site: OutsideHost | Lan, o: TapOptions): Promise<LabProc> {
    const outside = (this.outsideHosts as readonly string[]).includes(site);
    if (o.redirectFrom !== undefined && !outside) throw new Error('lab: a tap redirects connections in an outside host only');
    const host = outside ? LAB.outsideAddress(site as OutsideHost) : LAB.host(site as Lan);
    const args = [host, String(o.port), o.target.host, String(o.target.port), ...(o.tls === undefined ? [] : [o.tls.certPath, o.tls.keyPath, this.tls.caPath])];
    const p = this.#spawn(site, [process.execPath, TAP, ...args], nodeLabel(site, TAP, args));
    await p.waitFor('stdout', /^tap: listening/m, 10_000);
    if (o.redirectFrom !== undefined) {
      await this.iptablesAt(site, '-t', 'nat', '-A', 'TAPS', '-p', 'tcp', '-s', o.redirectFrom, '-d', o.target.host, '--dport', String(o.target.port), '-j', 'REDIRECT', '--to-ports', String(o.port));
    }
    return p;
  }

  /** Removes every fault (loss, outage, shaping, cuts, tap redirections) and has the middlebox refuse upgrades again. */
  async heal(): Promise<void> {
    await this.iptables('-F', 'FAULTS');
    for (const host of this.outsideHosts) {
      await this.iptablesAt(host, '-F', 'FAULTS');
      await this.iptablesAt(host, '-t', 'nat', '-F', 'TAPS');
    }
    if (this.#upgradesAllowed) await this.middleboxUpgrades(false);
    for (const dev of [FW_OUT, ...this.lans.map((l) => LANS[l].fwIf)]) {
      await sh(this.#ip, ['netns', 'exec', this.ns('fw'), this.#tool('tc'), 'qdisc', 'del', 'dev', dev, 'root'], { allowFail: true });
    }
  }

  /** SIGKILLs every process started with node()/postern()/probe() (not the lab's proxies). */
  async killProcesses(): Promise<void> {
    await Promise.all([...this.#procs].map((p) => p.kill('SIGKILL')));
  }

  /**
   * Kills everything in the lab, deletes its namespaces and temporary files. Resolves with the
   * names of this lab's namespaces still present afterwards (none, unless something is wrong).
   */
  async close(): Promise<string[]> {
    if (this.#closed) return [];
    this.#closed = true;
    await this.killProcesses();
    await Promise.all(this.#services.map((p) => p.kill('SIGKILL')));
    for (const ns of this.#made) await removeNamespace(this.#ip, ns);
    process.off('exit', this.#onExit);
    if (this.#dir !== '') await rm(this.#dir, { recursive: true, force: true });
    return labNamespaces(this.#ip, this.prefix);
  }
}
