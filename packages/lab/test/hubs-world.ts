// The hubs world (issue 10): organisations whose agents are homed on hubs behind their gateways
// (the domain's bridgeheads), across the lab's firewalls.
//
//   outside   relay 10.77.0.2:7443 (wss, lab CA; outside agents as NAME@relay)
//                ▲                         ▲
//   lan (NAT)  gateway acme 10.77.1.2:7000 │ (and a second one, :7010, when asked)
//                ▲ ws          ▲ ws        │
//              hub 1           hub 2       │  own addresses 10.77.1.3:7101 and 10.77.1.4:7102
//                                          │  (added to the LAN host), hub tokens from the
//                                          │  gateways' shared secret (postern token --hub)
//   strict     gateway globex 10.77.2.2:7000 ── tinyproxy ──┘
//   (proxy only)  ▲ ws
//              hub globex 10.77.2.2:7101: the gateway trusts its node key (--trust N...=globex)
//
// Gateways of acme and the hubs keep their state in --data (a killed one restarts with what it
// held); globex's routers run in memory. Agents on hubs present no token (hubs here check none).
// acme's gateways have fixed node keys, gateway 1 the lower id: the relay prefers it (routes of
// equal length go to the lower node id) and so do the hubs (it is their first --gateway).
// Taps (tap.ts), when asked: one between acme's gateway(s) and the relay (transparent, in the
// relay's host, TLS-inspecting), and one per hub link inside the LAN (each hub dials its
// gateway through a recording proxy on the LAN host, port gatewayPort + 1 + hub + 10 * gateway).
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createKeyPair, issueToken, type KeyPair } from '@postern/router';
import { LAB, findProgram, sh, type Lab, type LabProc, type Site } from '../src/index.js';
import { PING_MS, RELAY_URL, SECRET, relayHealth, relayToken, sleep, startRelay } from './world.js';

/** The secret acme's gateways share: it signs the hubs' tokens. */
export const ACME_SECRET = 'acme-bridgehead-secret-0123456789';
export const GLOBEX_PROXY = `http://${LAB.proxyUser}:${LAB.proxyPassword}@${LAB.router('strict')}:${LAB.proxyPort}`;

/** acme's gateways (bridgeheads), on the LAN host. */
export const ACME_GATEWAYS = [`ws://${LAB.host('lan')}:${LAB.gatewayPort}`, `ws://${LAB.host('lan')}:${LAB.gatewayPort + 10}`] as const;
/** acme's hubs: addresses of their own in the LAN, and ports no other router uses. */
export const ACME_HUB_IPS = ['10.77.1.3', '10.77.1.4'] as const;
export const ACME_HUB_PORTS = [7101, 7102] as const;
export const acmeHubUrl = (i: number): string => `ws://${ACME_HUB_IPS[i]!}:${ACME_HUB_PORTS[i]!}`;
export const GLOBEX_GATEWAY = `ws://${LAB.host('strict')}:${LAB.gatewayPort}`;
export const GLOBEX_HUB = `ws://${LAB.host('strict')}:7101`;

/** What the tests read of a router's /healthz. */
export interface RouterHealth {
  node: string;
  stats: Record<string, number>;
  uplinks?: Array<{ url: string; connected: boolean }>;
}

export interface HubsWorldOptions {
  /** acme gateways: 1, or 2 (bridgeheads both; every hub dials both). @default 1 */
  gateways?: 1 | 2;
  /** globex's gateway (through the proxy) and one hub, in the strict LAN. @default false */
  globex?: boolean;
  /** A tap between acme's gateway(s) and the relay (`outerTap`): everything from fw to the relay's port. @default false */
  outerTap?: boolean;
  /** A tap on each hub's link to each gateway (`hubTaps`): the hubs dial the taps. @default false */
  hubTaps?: boolean;
}

const addressed = new WeakSet<Lab>();
let worlds = 0;

/** The routers of one test; its processes go with the lab's afterEach. */
export class HubsWorld {
  relay!: LabProc;
  readonly gateways: Array<LabProc | undefined> = [];
  readonly hubs: Array<LabProc | undefined> = [];
  /** Node ids the hubs printed at start ("postern hub: node N..."). */
  readonly hubNodes: string[] = [];
  globexGateway: LabProc | undefined;
  globexHub: LabProc | undefined;
  readonly globexHubKey = createKeyPair('node');
  /** acme's gateways' node keys, the lower id first. */
  readonly gatewayKeys: readonly KeyPair[] = [createKeyPair('node'), createKeyPair('node')].sort((a, b) => (a.publicKey < b.publicKey ? -1 : 1));
  readonly gatewayCount: number;
  /** The tap between acme's gateway(s) and the relay (with `outerTap`). */
  outerTap: LabProc | undefined;
  /** The taps on the hubs' links, `hubTaps[hub][gateway]` (with `hubTaps`). */
  readonly hubTaps: LabProc[][] = [];

  private constructor(
    readonly lab: Lab,
    readonly dir: string,
    readonly o: HubsWorldOptions,
  ) {
    this.gatewayCount = o.gateways ?? 1;
  }

  /** Starts the relay, acme's gateway(s) and two hubs (and globex's, when asked); resolves once every link is up. */
  static async create(lab: Lab, o: HubsWorldOptions = {}): Promise<HubsWorld> {
    const w = new HubsWorld(lab, join(lab.dir, `hubs-${++worlds}`), o);
    await mkdir(w.dir, { recursive: true });
    await hubAddresses(lab);
    for (const [i, kp] of w.gatewayKeys.entries()) await writeFile(w.gatewayKeyFile(i), `# ${kp.kind} key of acme gateway ${i + 1}: ${kp.publicKey}\n${kp.seed}\n`, { mode: 0o600 });
    if (o.outerTap === true) {
      w.outerTap = await lab.tap('outside', { port: LAB.relayPort + 1, target: { host: LAB.outside, port: LAB.relayPort }, tls: lab.certFor('outside'), redirectFrom: LAB.fwOutside });
    }
    if (o.hubTaps === true) {
      for (let h = 0; h < 2; h++) {
        const taps: LabProc[] = [];
        for (let g = 0; g < w.gatewayCount; g++) {
          const gw = new URL(ACME_GATEWAYS[g]!);
          taps.push(await lab.tap('lan', { port: Number(new URL(w.hubGatewayUrls(h)[g]!).port), target: { host: gw.hostname, port: Number(gw.port) } }));
        }
        w.hubTaps.push(taps);
      }
    }
    w.relay = await startRelay(lab);
    const gws = Array.from({ length: w.gatewayCount }, (_, i) => w.startGateway(i));
    await Promise.all([...gws, ...(o.globex === true ? [w.#startGlobex()] : [])]);
    await Promise.all([w.startHub(0), w.startHub(1)]);
    return w;
  }

  /** (Re)starts acme gateway `i` with its --data; waits until it listens and its uplink is up. */
  async startGateway(i: number): Promise<LabProc> {
    const url = new URL(ACME_GATEWAYS[i]!);
    const p = this.lab.postern(
      'lan', 'gateway',
      '--relay', RELAY_URL,
      '--domain', 'acme',
      '--token', await issueToken(SECRET, { domain: 'acme' }),
      '--secret', ACME_SECRET,
      '--allow-guests', '--guest-rate', '0', '--guest-byte-rate', '0', '--guest-stored-bytes', '1073741824', '--max-guest-stored-bytes', '1073741824',
      '--listen', `${url.hostname}:${url.port}`,
      '--data', join(this.dir, `gateway-${i + 1}`),
      '--node-key', this.gatewayKeyFile(i),
      '--ping-interval', String(PING_MS),
      '--ca', this.lab.tls.caPath,
    );
    this.gateways[i] = p;
    await p.waitFor('stdout', /postern gateway: domain "acme" listening on ws:\/\//, 15_000);
    await p.waitFor('stdout', /postern gateway: uplink to .* is up/, 20_000);
    return p;
  }

  gatewayKeyFile(i: number): string {
    return join(this.dir, `gateway-${i + 1}.seed`);
  }

  /** The gateway URLs hub `i` dials, in order: the gateways', or with `hubTaps` its taps'. */
  hubGatewayUrls(i: number): string[] {
    return ACME_GATEWAYS.slice(0, this.gatewayCount).map((g, k) => (this.o.hubTaps === true ? `ws://${LAB.host('lan')}:${LAB.gatewayPort + 1 + i + 10 * k}` : g));
  }

  /** (Re)starts acme hub `i` (dialing every acme gateway) with its --data; waits until it linked to each. */
  async startHub(i: number): Promise<LabProc> {
    const gws = this.hubGatewayUrls(i);
    const p = this.lab.postern(
      'lan', 'hub',
      ...gws.flatMap((g) => ['--gateway', g]),
      '--domain', 'acme',
      '--token', await issueToken(ACME_SECRET, { domain: 'acme', hub: true }),
      '--listen', `${ACME_HUB_IPS[i]!}:${ACME_HUB_PORTS[i]!}`,
      '--data', join(this.dir, `hub-${i + 1}`),
      '--ping-interval', String(PING_MS),
    );
    this.hubs[i] = p;
    const node = await p.waitFor('stdout', /postern hub: node (N[A-Z2-7]{55})/, 15_000);
    if (this.hubNodes[i] !== undefined) assert.equal(node[1], this.hubNodes[i], `hub ${i + 1} came back with another node id`);
    this.hubNodes[i] = node[1]!;
    for (const g of gws) await this.bridgeheadUp(p, g);
    return p;
  }

  /** Waits until hub process `hub` logs its link to gateway `url` up (after character `from` of its stderr). */
  async bridgeheadUp(hub: LabProc, url: string, from = 0, timeoutMs = 20_000): Promise<void> {
    await hub.waitFor('stderr', new RegExp(`bridgehead connected url="${escape(url)}"`), timeoutMs, from);
  }

  async #startGlobex(): Promise<void> {
    const keyFile = join(this.dir, 'globex-hub.seed');
    const kp = this.globexHubKey;
    await writeFile(keyFile, `# ${kp.kind} key of globex-hub: ${kp.publicKey}\n${kp.seed}\n`, { mode: 0o600 });
    const gw = this.lab.postern(
      'strict', 'gateway',
      '--relay', RELAY_URL,
      '--domain', 'globex',
      '--token', await issueToken(SECRET, { domain: 'globex' }),
      '--trust', `${kp.publicKey}=globex`,
      '--listen', `${LAB.host('strict')}:${LAB.gatewayPort}`,
      '--memory',
      '--ping-interval', String(PING_MS),
      '--ca', this.lab.tls.caPath,
      '--proxy', GLOBEX_PROXY,
    );
    this.globexGateway = gw;
    await gw.waitFor('stdout', /postern gateway: uplink to .* is up/, 20_000);
    const hub = this.lab.postern(
      'strict', 'hub',
      '--gateway', GLOBEX_GATEWAY,
      '--domain', 'globex',
      '--node-key', keyFile,
      '--listen', new URL(GLOBEX_HUB).host,
      '--memory',
      '--ping-interval', String(PING_MS),
    );
    this.globexHub = hub;
    await this.bridgeheadUp(hub, GLOBEX_GATEWAY);
  }

  /** The /healthz of the router listening at `url` (ws://...) inside `site`. */
  health(site: Site, url: string): Promise<RouterHealth> {
    return routerHealth(this.lab, site, url);
  }

  /** acme gateway `i`'s /healthz. */
  gatewayHealth(i = 0): Promise<RouterHealth> {
    return this.health('lan', ACME_GATEWAYS[i]!);
  }

  /** acme hub `i`'s /healthz. */
  hubHealth(i: number): Promise<RouterHealth> {
    return this.health('lan', acmeHubUrl(i));
  }

  async relayHealth(): Promise<RouterHealth> {
    return (await relayHealth(this.lab)) as unknown as RouterHealth;
  }

  /** Polls `get` until `ok` holds; rejects with the last stats after `timeoutMs`. */
  async waitHealth(get: () => Promise<RouterHealth>, what: string, ok: (h: RouterHealth) => boolean, timeoutMs = 20_000): Promise<RouterHealth> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const h = await get().catch((e: Error) => ({ node: '', stats: {}, error: e.message }) as RouterHealth);
      if (h.node !== '' && ok(h)) return h;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last /healthz: ${JSON.stringify(h)}\n${this.describe(15)}`);
      await sleep(250);
    }
  }

  /** Every router's output, for failure messages. */
  describe(tail = 20): string {
    return [this.relay, ...this.gateways, ...this.hubs, this.globexGateway, this.globexHub]
      .filter((p): p is LabProc => p !== undefined)
      .map((p) => p.describe(tail))
      .join('\n');
  }
}

/** Gives the LAN host the hubs' own addresses (once per lab; they go with its namespaces). */
async function hubAddresses(lab: Lab): Promise<void> {
  if (addressed.has(lab)) return;
  const ip = findProgram('ip');
  assert.ok(ip !== undefined, 'ip not found');
  for (const a of ACME_HUB_IPS) await sh(ip, ['-n', lab.ns('lan'), 'addr', 'add', `${a}/24`, 'dev', 'e0']);
  addressed.add(lab);
}

const HEALTH_SCRIPT = `fetch(process.argv[1] + '/healthz', { signal: AbortSignal.timeout(5000), headers: { authorization: 'Bearer ' + process.env.POSTERN_ADMIN_TOKEN } }).then((r) => r.text()).then((t) => process.stdout.write(t), (e) => { process.stdout.write('error ' + e.message); process.exitCode = 1; })`;

/** GET /healthz of a plain http router at `url` (ws://HOST:PORT), from inside `site`. */
export async function routerHealth(lab: Lab, site: Site, url: string): Promise<RouterHealth> {
  const p = lab.node(site, '-e', HEALTH_SCRIPT, url.replace(/^ws/, 'http'));
  const e = await p.waitExit(10_000);
  if (e.code !== 0) throw new Error(`/healthz of ${url}: ${p.stdout.trim()} ${p.stderr.trim()}`);
  return JSON.parse(p.stdout) as RouterHealth;
}

/** Flags for an agent of the relay (on the outside host): its token and the lab CA. */
export async function relayAgent(lab: Lab, name: string): Promise<string[]> {
  return ['--token', await relayToken(name), '--ca', lab.tls.caPath];
}

/** One presence event a `watch --json` printed, and when the test saw it. */
export interface Seen {
  state: string;
  /** When it came online, was last seen, or became unreachable (ISO 8601, whole seconds). */
  since: string;
  properties: Record<string, string>;
  at: number;
}

/**
 * `postern watch --json` lines as they arrive, each with the time the test read it.
 */
export class Watcher {
  readonly seen: Seen[] = [];
  #lines = 0;

  constructor(readonly name: string, readonly proc: LabProc) {
    proc.child.stdout!.on('data', () => this.#sync());
  }

  /** Takes the lines printed since the last call, stamped now. */
  #sync(): void {
    const lines = this.proc.lines();
    for (; this.#lines < lines.length; this.#lines++) {
      const o = JSON.parse(lines[this.#lines]!) as { state: string; since: string; properties: Record<string, string> };
      this.seen.push({ state: o.state, since: o.since, properties: o.properties, at: Date.now() });
    }
  }

  /** Waits for an event at index `from` or later that matches; resolves with it. */
  async next(what: string, ok: (s: Seen) => boolean, from: number, timeoutMs = 20_000): Promise<Seen> {
    return this.proc.until(
      () => {
        this.#sync();
        return this.seen.slice(from).find(ok);
      },
      `${this.name} to see ${what} (seen: ${this.format()})`,
      timeoutMs,
    );
  }

  /** The events seen: state, properties, since (time of day, UTC) and, with `t0`, when the test saw it (seconds after `t0`). */
  format(t0?: number): string {
    return this.seen.map((s) => `${s.state}${props(s.properties)} since ${s.since.slice(11, 19)}${t0 === undefined ? '' : ` (seen @${((s.at - t0) / 1000).toFixed(1)} s)`}`).join(' -> ');
  }
}

export function props(p: Record<string, string>): string {
  const e = Object.entries(p);
  return e.length === 0 ? '' : ` {${e.map(([k, v]) => `${k}=${v}`).join(',')}}`;
}

/** A view of several `listen --json` processes as one receiver (a name that moved between hubs), for verdict(). */
export function joined(...procs: LabProc[]): LabProc {
  return { lines: () => procs.flatMap((p) => p.lines()) } as unknown as LabProc;
}

export function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
