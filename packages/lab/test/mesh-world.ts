// The mesh world (issue 9): two organisations, each behind its own firewall, whose gateways dial
// relays of different operators that peer across the outside network.
//
//   lan (NAT)     gateway acme ── wss ──▶ r1 (outside 10.77.0.2)
//                                          │ peer (wss, node keys; no shared secret)
//   strict        gateway globex ─ tinyproxy ─ wss ─▶ r2 (outside2 10.77.0.3)
//   (proxy only)                           │ peer
//                                          r3 (outside3 10.77.0.4)
//
// Who trusts whom, as operators of different relays would set it up:
// - every router has a fixed node key (`--node-key`, written here from createKeyPair('node'));
// - each relay trusts the other relays' node keys for the relays' domains (--trust N...=r2,r3);
// - each relay trusts each organisation's domain key for its domain (--trust A...=acme); a
//   gateway presents a grant from its domain's key for its own node key (--token), which is also
//   the proof carried with its routes, so relays further away check acme's routes themselves;
// - each relay has its own secret, for the tokens of its own agents only.
// Relays keep their state in --data (a stopped relay keeps what it holds); gateways in memory.
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createKeyPair, issueGrant, type KeyPair } from '@postern/router';
import { LAB, type Lab, type Lan, type LabProc, type OutsideHost } from '../src/index.js';
import { PING_MS, SECRET, registerRelay, relayHealth, sleep, type RelayHealth } from './world.js';

export type RelayName = 'r1' | 'r2' | 'r3';
export type Org = 'acme' | 'globex';

export const RELAY_NAMES: readonly RelayName[] = ['r1', 'r2', 'r3'];
export const RELAY_HOST: Readonly<Record<RelayName, OutsideHost>> = { r1: 'outside', r2: 'outside2', r3: 'outside3' };
/** acme sits behind the NAT, globex in the LAN whose only way out is the proxy. */
export const ORG_LAN: Readonly<Record<Org, Lan>> = { acme: 'lan', globex: 'strict' };
export const PROXY_URL = `http://${LAB.proxyUser}:${LAB.proxyPassword}@${LAB.router('strict')}:${LAB.proxyPort}`;

export const relayUrl = (r: RelayName): string => `wss://${LAB.outsideAddress(RELAY_HOST[r])}:${LAB.relayPort}`;
export const relaySecret = (r: RelayName): string => `${SECRET}-${r}`;

export interface MeshRelayOptions {
  /** Relays this one dials as peers (--peer); the others may dial it. */
  peers?: readonly RelayName[];
  /** More --trust flags (e.g. a rogue's node key for its own domain). */
  trust?: readonly string[];
}

let meshes = 0;

/** Keys, grants and processes of one test's mesh; processes go with the lab's afterEach. */
export class Mesh {
  /** Node keys of the relays and of each organisation's gateway. */
  readonly nodes: Readonly<Record<RelayName | Org, KeyPair>>;
  /** Each organisation's domain key (A...): it signs its gateway's grant. */
  readonly owners: Readonly<Record<Org, KeyPair>>;
  readonly relays = new Map<RelayName, LabProc>();
  readonly gateways = new Map<Org, LabProc>();
  readonly lab: Lab;
  /** This mesh's directory in the lab's: key files and the relays' data. */
  readonly dir: string;

  private constructor(lab: Lab, dir: string) {
    this.lab = lab;
    this.dir = dir;
    this.nodes = { r1: createKeyPair('node'), r2: createKeyPair('node'), r3: createKeyPair('node'), acme: createKeyPair('node'), globex: createKeyPair('node') };
    this.owners = { acme: createKeyPair('domain'), globex: createKeyPair('domain') };
  }

  static async create(lab: Lab): Promise<Mesh> {
    const mesh = new Mesh(lab, join(lab.dir, `mesh-${++meshes}`));
    await mkdir(mesh.dir, { recursive: true });
    for (const [who, kp] of Object.entries(mesh.nodes)) await mesh.writeKey(who, kp);
    for (const r of RELAY_NAMES) registerRelay(relayUrl(r), relaySecret(r), r);
    return mesh;
  }

  /** Writes a seed file as `postern key new` would; returns its path. */
  async writeKey(name: string, kp: KeyPair): Promise<string> {
    const file = this.keyFile(name);
    await writeFile(file, `# ${kp.kind} key of ${name}: ${kp.publicKey}\n${kp.seed}\n`, { mode: 0o600 });
    return file;
  }

  keyFile(name: string): string {
    return join(this.dir, `${name}.seed`);
  }

  /** The trust every relay of the mesh gives: the other relays for the relays' domains, the owners for their domains. */
  trustOf(r: RelayName): string[] {
    const others = RELAY_NAMES.filter((o) => o !== r);
    return [
      ...others.flatMap((o) => ['--trust', `${this.nodes[o].publicKey}=${others.join(',')}`]),
      ...(Object.keys(this.owners) as Org[]).flatMap((org) => ['--trust', `${this.owners[org].publicKey}=${org}`]),
    ];
  }

  /** Starts relay `r` on its outside host (wss with the lab CA); waits until it listens, checks its node id and certificate. */
  async startRelay(r: RelayName, o: MeshRelayOptions = {}): Promise<LabProc> {
    const host = RELAY_HOST[r];
    const cert = this.lab.certFor(host);
    const peers = (o.peers ?? []).flatMap((p) => ['--peer', relayUrl(p)]);
    const p = this.lab.postern(
      host,
      'relay',
      '--listen', `${LAB.outsideAddress(host)}:${LAB.relayPort}`,
      '--domain', r,
      '--data', join(this.dir, r),
      '--node-key', this.keyFile(r),
      '--secret', relaySecret(r),
      '--allow-guests', '--guest-rate', '0', '--guest-byte-rate', '0', '--guest-stored-bytes', '1073741824', '--max-guest-stored-bytes', '1073741824',
      '--tls-cert', cert.certPath,
      '--tls-key', cert.keyPath,
      '--ping-interval', String(PING_MS),
      ...this.trustOf(r),
      ...(o.trust ?? []).flatMap((t) => ['--trust', t]),
      ...peers,
      ...(peers.length > 0 ? ['--ca', this.lab.tls.caPath] : []),
    );
    this.relays.set(r, p);
    await p.waitFor('stdout', /postern relay: domain "[^"]+" listening on wss:\/\//, 15_000);
    const node = await p.waitFor('stdout', /postern relay: node (N[A-Z2-7]{55})/, 5000);
    assert.equal(node[1], this.nodes[r].publicKey, `relay ${r} runs with another node key`);
    const fp = await p.waitFor('stdout', /TLS certificate SHA-256 ([0-9A-F:]+)/, 5000);
    assert.equal(fp[1], cert.fingerprint, `relay ${r} serves another certificate`);
    return p;
  }

  /** Stops relay `r` as an operator would (SIGTERM): it closes its links and keeps what it holds in --data. */
  async stopRelay(r: RelayName): Promise<void> {
    const p = this.relays.get(r);
    assert.ok(p !== undefined, `relay ${r} was not started`);
    const e = await p.kill('SIGTERM');
    assert.equal(e?.code, 0, `relay ${r} did not stop cleanly\n${p.describe()}`);
  }

  /**
   * Starts the gateway of `org` in its LAN, dialing `relays` (in that order); waits until every
   * uplink is connected. The globex gateway goes through the proxy.
   */
  async startGateway(org: Org, relays: readonly RelayName[], extra: readonly string[] = []): Promise<LabProc> {
    const lan = ORG_LAN[org];
    const grant = issueGrant(this.owners[org], { subject: this.nodes[org].publicKey, domains: [org] });
    const p = this.lab.postern(
      lan,
      'gateway',
      ...relays.flatMap((r) => ['--relay', relayUrl(r)]),
      '--domain', org,
      '--token', grant,
      '--node-key', this.keyFile(org),
      '--listen', `${LAB.host(lan)}:${LAB.gatewayPort}`,
      '--memory',
      '--ping-interval', String(PING_MS),
      '--ca', this.lab.tls.caPath,
      ...(lan === 'strict' ? ['--proxy', PROXY_URL] : []),
      ...extra,
    );
    this.gateways.set(org, p);
    await p.waitFor('stdout', /postern gateway: domain "[^"]+" listening on ws:\/\//, 15_000);
    for (const r of relays) await this.uplinkUp(org, r);
    return p;
  }

  /** Waits until the gateway of `org` logs its uplink to `r` connected (after character `from` of its stderr). */
  async uplinkUp(org: Org, r: RelayName, from = 0, timeoutMs = 30_000): Promise<void> {
    const gw = this.gateways.get(org)!;
    await gw.waitFor('stderr', new RegExp(`uplink connected url="${escape(relayUrl(r))}"`), timeoutMs, from);
  }

  /** The /healthz of relay `r`. */
  health(r: RelayName): Promise<RelayHealth> {
    return relayHealth(this.lab, RELAY_HOST[r]);
  }

  /** Polls relay `r`'s /healthz until `ok` holds; resolves with it, rejects with the last one after `timeoutMs`. */
  async waitHealth(r: RelayName, what: string, ok: (h: RelayHealth) => boolean, timeoutMs = 30_000): Promise<RelayHealth> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const h = await this.health(r);
      if (ok(h)) return h;
      if (Date.now() > deadline) throw new Error(`relay ${r}: timed out after ${timeoutMs} ms waiting for ${what}; /healthz stats: ${JSON.stringify(h.stats)}\n${this.relays.get(r)?.describe(20) ?? ''}`);
      await sleep(300);
    }
  }

  /** Waits until relays `a` and `b` both logged their peer link up (either may have dialed). */
  async peered(a: RelayName, b: RelayName, timeoutMs = 30_000): Promise<void> {
    const linked = new RegExp(`(peer connected url="${escape(relayUrl(b))}"|peer linked node="${this.nodes[b].publicKey}")`);
    const back = new RegExp(`(peer connected url="${escape(relayUrl(a))}"|peer linked node="${this.nodes[a].publicKey}")`);
    await this.relays.get(a)!.waitFor('stderr', linked, timeoutMs);
    await this.relays.get(b)!.waitFor('stderr', back, timeoutMs);
  }

  /** Every router's output, for failure messages. */
  describe(tail = 15): string {
    return [...this.relays.values(), ...this.gateways.values()].map((p) => p.describe(tail)).join('\n');
  }
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
