// The chaos suite's world. By default: relay <- fault proxy <- gateway, each router a `postern`
// process on a fixed port with its own --data dir (so it can be killed and restarted in place),
// senders on the relay and receivers on the gateway as agent processes (agent.ts). A mesh world
// (TopologyOptions.mesh) has several relays instead, each with its own domain and node key,
// peered through a fault proxy per link, the gateway on one of them and the senders on any.
// A world of hubs (TopologyOptions.hubs, issue 10) has one relay, one or two gateways of DOMAIN
// (its bridgeheads, each dialing the relay through its own fault proxy) and hubs of DOMAIN that
// dial every gateway (through a fault proxy per gateway, shared by the hubs); the receivers are on the hubs and can be told to move between them, the
// senders on the relay (outside the domain) or on a hub.
//
// A process that dies when the test did not kill it (or arm it to crash) is a failure: every
// wait here checks for one and throws it with that process's output.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createKeyPair, issueToken } from '@postern/router';
import { FaultProxy } from '@postern/testing';
import { Proc, listeningOn, sleep } from '../procs.js';
import type { Received, Sent } from './checker.js';

const AGENT = fileURLToPath(new URL('./agent.js', import.meta.url));

export const DOMAIN = 'acme';
export const RECEIVERS = ['r1', 'r2'] as const;
export const SENDERS = ['s1', 's2', 's3'] as const;
export type Sender = (typeof SENDERS)[number];

/** After the faults: give up waiting once nothing moved for this long (default). */
const QUIET_MS = 15_000;
/** After the faults: give up waiting after this long in any case. */
const MAX_SETTLE_MS = 60_000;
/** After everything arrived: wait this much more for late duplicates. */
const GRACE_MS = 1000;
/** Router options that make a dead tunnel noticed within seconds (a blackhole sends no RST). */
/** The counters of /healthz are behind the admin token (the public one says liveness only). */
const ADMIN_TOKEN = 'chaos-admin-token-0123456789';
const ROUTER_FLAGS = ['--ping-interval', '1000', '--admin-token', ADMIN_TOKEN];
/** The default world's routers log warnings only; a mesh's also its links coming up. */
const LOG_LEVEL = 'warn';
const MESH_LOG_LEVEL = 'info';
/** A mesh must have linked up and exchanged its routes within this time of starting. */
const CONVERGE_MS = 20_000;
/** A hub's line once it listens (listeningOn() knows the relay's and the gateway's). */
const HUB_LISTENING = /postern hub: domain "[^"]+" listening on /;
/** A receiver told to move must be connected at its next hub within this time. */
const MOVE_MS = 30_000;

/** The routers of the default world. */
export type Role = 'relay' | 'gateway';
/** A router of any world: 'gateway', or the name of a relay. */
export type RouterName = string;

/** Relays peered with each other (see the file comment). A relay's name is its domain. */
export interface MeshOptions {
  /** Started in this order, each once it listens. */
  relays: readonly string[];
  /**
   * Peer links as [dialer, listener]: the dialer has `--peer` to the listener, through the link's
   * own fault proxy (the listener never dials back, so a cut proxy cuts the link). Each side
   * trusts the other with every relay's domain and DOMAIN. A dialer should come after its
   * listener in `relays`: a peer that is not listening yet when the first dial fails may get a
   * link over HTTP long-poll instead of WebSocket (--transport auto), which notices a cut only
   * by its silence.
   */
  links: ReadonlyArray<readonly [string, string]>;
  /** The relay the gateway dials (through `Topology.proxy`). */
  gatewayRelay: string;
  /** The relay each sender of SENDERS connects to. */
  senderRelays: Readonly<Record<(typeof SENDERS)[number], string>>;
}

/**
 * Hubs of DOMAIN behind its gateways (see the file comment). The gateways check the hubs' tokens
 * with a secret of their own (TopologyOptions.secret + '-acme'); the hubs have none: their agents
 * connect without a token, by name.
 */
export interface HubsOptions {
  /** Gateways (bridgeheads) of DOMAIN: 'gateway', and 'gateway2' with 2. */
  gateways: 1 | 2;
  /** Hubs of DOMAIN: 'hub1' ... 'hubN', started in this order, each dialing every gateway. */
  hubs: number;
  /** Where each sender of SENDERS connects: 'relay' (outside DOMAIN) or a hub. */
  senders: Readonly<Record<Sender, RouterName>>;
  /**
   * The receivers (names of DOMAIN; the senders send to them in turn) and the hubs each is on in
   * turn: it starts on the first, and moveReceiver() takes it to the next (round).
   */
  receivers: Readonly<Record<string, readonly RouterName[]>>;
}

export interface TopologyOptions {
  /** Every relay's --secret (agent and gateway tokens are signed with it). */
  secret: string;
  /** Messages per sender. */
  count: number;
  /** Messages per second per sender. */
  rate: number;
  /** Several relays instead of one. */
  mesh?: MeshOptions;
  /** Hubs behind one or two gateways instead (not with `mesh`). */
  hubs?: HubsOptions;
  /**
   * Start this router armed: POSTERN_CRASH_AT=spec on its first start. When it has crashed there
   * it is restarted unarmed, after crashRestartDelayMs.
   */
  crashAt?: { role: RouterName; spec: string };
  crashRestartDelayMs?: number;
  /** settle() gives up once nothing moved for this long. @default 15000 */
  quietMs?: number;
}

/** What /healthz tells of a router, the fields the suite reads. */
export interface RouterHealth {
  peers: number;
  downlinks: number;
  uplinks: number;
  domains: number;
  stored: number;
  pinned: number;
  queues: number;
  msgsForwarded: number;
  msgsDelivered: number;
  nacksSent: number;
  forbidden: number;
  routesRefused: number;
  routeLoops: number;
  /** Agents connected; hub links (at a gateway); the directory's names and ids. */
  agents: number;
  hubs: number;
  directory: number;
  /** Moves of names between hubs (begun at a gateway, or told to a hub), and those that timed out. */
  moves: number;
  movesTimedOut: number;
}

interface SenderState {
  name: string;
  proc: Proc;
  address: string | undefined;
  outcomes: Map<number, { ok: true } | { ok: false; code: string }>;
  done: boolean;
}

interface ReceiverState {
  name: string;
  proc: Proc;
  address: string | undefined;
  got: Received[];
  /** The routers it connects to in turn, and how many times it said it is connected ("ready"). */
  routers: readonly RouterName[];
  readies: number;
  /** Times it was told to move. */
  moves: number;
}

interface RelaySpec {
  name: string;
  port: number;
  /** Mesh only: the file holding its node key's seed, and its node id. */
  keyFile?: string;
  node?: string;
}

interface PeerLink {
  dialer: string;
  listener: string;
  proxy: FaultProxy;
  /** Cut or blackholed by the test. */
  down: boolean;
}

/** Reads a process's complete stdout lines incrementally as JSON. */
class LineReader {
  #pos = 0;
  constructor(readonly proc: Proc) {}

  read(each: (o: Record<string, unknown>, line: string) => void): void {
    const out = this.proc.stdout;
    const end = out.lastIndexOf('\n') + 1;
    if (end <= this.#pos) return;
    const chunk = out.slice(this.#pos, end);
    this.#pos = end;
    for (const line of chunk.split('\n')) {
      if (line.trim() === '') continue;
      let o: unknown;
      try {
        o = JSON.parse(line);
      } catch {
        throw new Error(`${this.proc.program} printed a line that is not JSON: ${line}\n${describeTail(this.proc)}`);
      }
      each(o as Record<string, unknown>, line);
    }
  }
}

function tail(text: string, lines: number): string {
  const all = text.split('\n');
  return (all.length > lines ? [`... (${all.length - lines} lines before)`, ...all.slice(-lines)] : all).join('\n');
}

/** describe() with only the tails of the output: agents print a line per message. */
export function describeTail(p: Proc, lines = 20): string {
  const status = p.exit === undefined ? 'running' : `exit ${String(p.exit.code)} signal ${String(p.exit.signal)}`;
  return `${p.program} ${p.args.join(' ')} (${status})\n--- stdout:\n${tail(p.stdout, lines)}\n--- stderr:\n${tail(p.stderr, 40)}\n---`;
}

/** `n` distinct loopback ports nobody listens on (bound together, then released). */
async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const srv = createServer();
      servers.push(srv);
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(0, '127.0.0.1', resolve);
      });
    }
    return servers.map((s) => (s.address() as { port: number }).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

/**
 * A FaultProxy on a port none of `reserved` (ports freePorts() handed out and let go, on which
 * routers start later): the kernel may hand a released port to the next listen(0).
 */
async function startProxy(reserved: ReadonlySet<number>, o: Parameters<typeof FaultProxy.start>[0]): Promise<FaultProxy> {
  const taken: FaultProxy[] = [];
  try {
    for (;;) {
      const p = await FaultProxy.start(o);
      if (!reserved.has(p.port)) return p;
      taken.push(p); // kept open until another port comes, so that it is not handed out again
    }
  } finally {
    await Promise.all(taken.map((p) => p.close()));
  }
}

/** The default world as a mesh of one relay, named and served as before. */
const SINGLE: MeshOptions = { relays: ['relay'], links: [], gatewayRelay: 'relay', senderRelays: { s1: 'relay', s2: 'relay', s3: 'relay' } };

/** A world of hubs: its gateways' names. */
function gatewayNames(o: TopologyOptions): RouterName[] {
  return o.hubs?.gateways === 2 ? ['gateway', 'gateway2'] : ['gateway'];
}

/** A world of hubs: its hubs' names. */
function hubNames(o: TopologyOptions): RouterName[] {
  return Array.from({ length: o.hubs?.hubs ?? 0 }, (_, i) => `hub${i + 1}`);
}

export class Topology {
  /** The (first) gateway's uplink: gateway -> proxy -> its relay. */
  readonly proxy: FaultProxy;
  readonly gatewayPort: number;
  readonly #dir: string;
  readonly #o: TopologyOptions;
  readonly #mesh: MeshOptions;
  readonly #relays: ReadonlyMap<string, RelaySpec>;
  readonly #links: readonly PeerLink[];
  /** Every gateway's uplink proxy, the proxy in front of each gateway for the hubs, and every gateway's and hub's port. */
  readonly #uplinks: ReadonlyMap<RouterName, FaultProxy>;
  readonly #hubLinks: ReadonlyMap<RouterName, FaultProxy>;
  readonly #ports: ReadonlyMap<RouterName, number>;
  readonly #gateways: readonly RouterName[];
  readonly #hubs: readonly RouterName[];
  /** The receivers' addresses, to which the senders send in turn. */
  readonly #targets: readonly string[];
  readonly #gatewayToken: string;
  readonly #hubToken: string;
  readonly #senderTokens: ReadonlyMap<string, string>;
  readonly #routers = new Map<RouterName, Proc>();
  /** Every router process started, dead ones too, for failure messages. */
  readonly #routerProcs: Proc[] = [];
  readonly #procNames = new Map<Proc, RouterName>();
  /** Processes whose exit is no failure: killed by the test, or armed to crash. */
  readonly #mayExit = new Set<Proc>();
  readonly #senders: SenderState[] = [];
  readonly #receivers: ReceiverState[] = [];
  readonly #readers = new Map<Proc, LineReader>();
  /** Router starts after the first, per router. */
  readonly restarts: Record<RouterName, number> = {};
  /** What the test did when (note()), for failure messages. */
  readonly #notes: string[] = [];
  #failure: Error | undefined;
  #closed = false;
  /** The router process started with POSTERN_CRASH_AT. */
  #armed: Proc | undefined;
  /** Settles when the armed router has crashed as it should and was restarted unarmed. */
  #crashRecovered: Promise<void> | undefined;

  private constructor(
    o: TopologyOptions,
    dir: string,
    relays: ReadonlyMap<string, RelaySpec>,
    links: readonly PeerLink[],
    ports: ReadonlyMap<RouterName, number>,
    uplinks: ReadonlyMap<RouterName, FaultProxy>,
    hubLinks: ReadonlyMap<RouterName, FaultProxy>,
    tokens: { gateway: string; hub: string; senders: ReadonlyMap<string, string> },
  ) {
    this.#o = o;
    this.#mesh = o.mesh ?? SINGLE;
    this.#dir = dir;
    this.#relays = relays;
    this.#links = links;
    this.#ports = ports;
    this.#uplinks = uplinks;
    this.#hubLinks = hubLinks;
    this.#gateways = gatewayNames(o);
    this.#hubs = hubNames(o);
    this.gatewayPort = ports.get('gateway')!;
    this.proxy = uplinks.get('gateway')!;
    this.#targets = (o.hubs === undefined ? RECEIVERS : Object.keys(o.hubs.receivers)).map((r) => `${r}@${DOMAIN}`);
    this.#gatewayToken = tokens.gateway;
    this.#hubToken = tokens.hub;
    this.#senderTokens = tokens.senders;
    for (const r of this.routerNames) this.restarts[r] = 0;
  }

  /**
   * Starts the routers (the gateway's uplink up through the proxy; a mesh linked up, its routes
   * known everywhere) and the receivers.
   */
  static async create(o: TopologyOptions): Promise<Topology> {
    const mesh = o.mesh ?? SINGLE;
    checkMesh(mesh);
    if (o.hubs !== undefined) checkHubs(o);
    const dir = await mkdtemp(join(tmpdir(), 'postern-chaos-'));
    const proxies: FaultProxy[] = [];
    let t: Topology | undefined;
    try {
      const gateways = gatewayNames(o);
      const hubs = hubNames(o);
      const ports = await freePorts(mesh.relays.length + gateways.length + hubs.length);
      // The routers start later on these ports: a proxy must not take one of them meanwhile.
      const reserved = new Set(ports);
      const routerPorts = new Map<RouterName, number>();
      for (const r of [...gateways, ...hubs]) routerPorts.set(r, ports.pop()!);
      const relays = new Map<string, RelaySpec>();
      for (const [i, name] of mesh.relays.entries()) {
        const spec: RelaySpec = { name, port: ports[i]! };
        if (o.mesh !== undefined) {
          const key = createKeyPair('node');
          spec.keyFile = join(dir, `${name}.node-key`);
          spec.node = key.publicKey;
          await writeFile(spec.keyFile, `# chaos: node key of ${name}\n${key.seed}\n`, { mode: 0o600 });
        }
        relays.set(name, spec);
      }
      const links: PeerLink[] = [];
      for (const [dialer, listener] of mesh.links) {
        const proxy = await startProxy(reserved, { target: { host: '127.0.0.1', port: relays.get(listener)!.port } });
        proxies.push(proxy);
        links.push({ dialer, listener, proxy, down: false });
      }
      const uplinks = new Map<RouterName, FaultProxy>();
      for (const g of gateways) {
        const proxy = await startProxy(reserved, { target: { host: '127.0.0.1', port: relays.get(mesh.gatewayRelay)!.port } });
        proxies.push(proxy);
        uplinks.set(g, proxy);
      }
      const hubLinks = new Map<RouterName, FaultProxy>();
      if (hubs.length > 0) {
        for (const g of gateways) {
          const proxy = await startProxy(reserved, { target: { host: '127.0.0.1', port: routerPorts.get(g)! } });
          proxies.push(proxy);
          hubLinks.set(g, proxy);
        }
      }
      const gateway = await issueToken(o.secret, { domain: DOMAIN });
      const hub = o.hubs === undefined ? '' : await issueToken(hubSecret(o), { domain: DOMAIN, hub: true });
      const senders = new Map<string, string>();
      for (const s of SENDERS) {
        // On a hub a sender needs no token (the hubs have no secret).
        const at = o.hubs === undefined ? mesh.senderRelays[s] : o.hubs.senders[s];
        if (relays.has(at)) senders.set(s, await issueToken(o.secret, { domain: at, name: s }));
      }
      t = new Topology(o, dir, relays, links, routerPorts, uplinks, hubLinks, { gateway, hub, senders });
      await t.#start();
      return t;
    } catch (e) {
      if (t !== undefined) await t.close();
      else {
        await Promise.all(proxies.map((p) => p.close()));
        await rm(dir, { recursive: true, force: true });
      }
      throw e;
    }
  }

  async #start(): Promise<void> {
    await Promise.all(this.routerNames.map((r) => mkdir(join(this.#dir, r))));
    const armed = this.#o.crashAt;
    for (const r of this.#relays.keys()) await this.#startRouter(r, armed?.role === r ? armed.spec : undefined);
    const gws = [];
    for (const g of this.#gateways) gws.push(await this.#startRouter(g, armed?.role === g ? armed.spec : undefined));
    if (armed !== undefined) {
      this.#armed = this.#routers.get(armed.role);
      this.#crashRecovered = this.#recoverFromCrash(armed.role, armed.spec);
    }
    // An armed router may crash as early as this; the agents keep trying until it is back.
    for (const gw of gws) {
      await gw.waitFor('stdout', /postern gateway: uplink to .* is up/, 10_000).catch((e: unknown) => {
        if (armed === undefined) throw e;
      });
    }
    for (const h of this.#hubs) await this.#startRouter(h, armed?.role === h ? armed.spec : undefined);
    if (this.#o.mesh !== undefined) await this.converged(CONVERGE_MS);
    if (this.#o.hubs !== undefined) {
      await this.hubsLinked(CONVERGE_MS);
      await Promise.all(Object.entries(this.#o.hubs.receivers).map(([r, at]) => this.#startReceiver(r, at)));
    } else {
      await Promise.all(RECEIVERS.map((r) => this.#startReceiver(r, ['gateway'])));
    }
  }

  /** The relays by name, then the gateways, then the hubs. */
  get routerNames(): RouterName[] {
    return [...this.#mesh.relays, ...this.#gateways, ...this.#hubs];
  }

  /** A router's own listener (no proxy in between). */
  urlOf(router: RouterName): string {
    return `ws://127.0.0.1:${this.#portOf(router)}`;
  }

  get gatewayUrl(): string {
    return this.urlOf('gateway');
  }

  /** Refuses the peer link between `a` and `b` (RST now, every redial refused) until restoreLink(). */
  cutLink(a: string, b: string): void {
    const l = this.#link(a, b);
    this.note(`cut ${l.dialer}-${l.listener}`);
    l.down = true;
    l.proxy.cut();
  }

  /** Swallows the peer link between `a` and `b` (no RST: noticed by its silence) until restoreLink(). */
  blackholeLink(a: string, b: string): void {
    const l = this.#link(a, b);
    this.note(`blackhole ${l.dialer}-${l.listener}`);
    l.down = true;
    l.proxy.blackhole();
  }

  /** Ends a cut or blackhole of the peer link between `a` and `b`. */
  restoreLink(a: string, b: string): void {
    const l = this.#link(a, b);
    this.note(`restore ${l.dialer}-${l.listener}`);
    l.down = false;
    l.proxy.restore();
  }

  /** Every fault proxy: the peer links', then the gateways' uplinks', then those in front of the gateways for the hubs. */
  get proxies(): FaultProxy[] {
    return [...this.#links.map((l) => l.proxy), ...this.#uplinks.values(), ...this.#hubLinks.values()];
  }

  /** A world of hubs: the fault proxy through which every hub dials `gateway`. */
  hubLinkProxy(gateway: RouterName): FaultProxy {
    const p = this.#hubLinks.get(gateway);
    if (p === undefined) throw new Error(`no hub links to ${gateway}`);
    return p;
  }

  /** Repairs every link: no delay, no slicing, no cut or blackhole. */
  heal(): void {
    for (const l of this.#links) {
      if (l.down) this.note(`heal ${l.dialer}-${l.listener}`);
      l.down = false;
    }
    for (const p of this.proxies) {
      p.setDelay(0);
      p.setSlice(0);
      p.restore();
    }
  }

  /** Starts the senders; they begin sending at once. */
  async startTraffic(): Promise<void> {
    await Promise.all(SENDERS.map((s) => this.#startSender(s)));
  }

  /** Records a fault the test injects, timestamped like the routers' log lines. */
  note(what: string): void {
    this.#notes.push(`${new Date().toISOString()} ${what}`);
  }

  /** Throws the first unexpected death, if any. */
  check(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** Sleeps, then throws if something died meanwhile. */
  async pause(ms: number): Promise<void> {
    await sleep(ms);
    this.check();
  }

  /** SIGKILLs a router and waits until it is gone. */
  async kill(router: RouterName): Promise<void> {
    const p = this.#routers.get(router);
    if (p === undefined || p.exit !== undefined) return;
    this.#mayExit.add(p);
    this.note(`SIGKILL ${router}`);
    await p.kill('SIGKILL');
  }

  /** Starts a router again, on the same port and data dir, unarmed; waits until it listens. */
  async restart(router: RouterName): Promise<void> {
    const old = this.#routers.get(router);
    if (old !== undefined && old.exit === undefined) throw new Error(`restart(${router}) while it runs`);
    this.restarts[router] = (this.restarts[router] ?? 0) + 1;
    this.note(`restart ${router}`);
    await this.#startRouter(router, undefined);
  }

  /** Restarts whichever router is not running. */
  async ensureRunning(): Promise<void> {
    await this.#crashRecovered;
    this.check();
    for (const r of this.routerNames) {
      const p = this.#routers.get(r);
      if (p === undefined || p.exit !== undefined) await this.restart(r);
    }
  }

  /**
   * Waits until every running relay of the mesh has a link to each peer whose link is not cut
   * (cutLink, blackholeLink) and a route to each domain it can reach over those links: the other
   * running relays' and DOMAIN (the gateway's relay's); throws with what each has after
   * `timeoutMs`. At once for a world of one relay.
   */
  async converged(timeoutMs: number): Promise<void> {
    if (this.#o.mesh === undefined) return;
    const running = (r: string): boolean => {
      const p = this.#routers.get(r);
      return p !== undefined && p.exit === undefined;
    };
    const up = this.#links.filter((l) => !l.down && running(l.dialer) && running(l.listener));
    const want = new Map<string, { peers: number; domains: number }>();
    for (const r of this.#relays.keys()) {
      if (!running(r)) continue;
      // Reachable over the links that are up (a breadth-first walk).
      const seen = new Set([r]);
      for (const at of seen) {
        for (const l of up) {
          const next = l.dialer === at ? l.listener : l.listener === at ? l.dialer : undefined;
          if (next !== undefined) seen.add(next);
        }
      }
      const gateway = seen.has(this.#mesh.gatewayRelay) && running('gateway') ? 1 : 0;
      want.set(r, { peers: up.filter((l) => l.dialer === r || l.listener === r).length, domains: seen.size - 1 + gateway });
    }
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.check();
      const health = await this.health();
      const short = [...want].filter(([r, w]) => {
        const h = health[r];
        return h === undefined || h.peers !== w.peers || h.domains !== w.domains;
      });
      if (short.length === 0) return;
      if (Date.now() > deadline) {
        const what = short.map(([r, w]) => `${r}: want peers=${w.peers} domains=${w.domains}, has ${formatHealth(health[r])}`).join('\n');
        throw new Error(`the mesh did not converge within ${timeoutMs} ms\n${what}\n${this.describe()}`);
      }
      await sleep(100);
    }
  }

  /**
   * A world of hubs: waits until the relay has a link from every running gateway and every
   * running gateway one from every running hub; throws with what each has after `timeoutMs`.
   */
  async hubsLinked(timeoutMs: number): Promise<void> {
    if (this.#o.hubs === undefined) return;
    const running = (r: RouterName): boolean => {
      const p = this.#routers.get(r);
      return p !== undefined && p.exit === undefined;
    };
    const gateways = this.#gateways.filter(running);
    const hubs = this.#hubs.filter(running).length;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.check();
      const health = await this.health();
      const relay = running('relay') ? health['relay']?.downlinks === gateways.length : true;
      if (relay && gateways.every((g) => health[g]?.hubs === hubs)) return;
      if (Date.now() > deadline) {
        throw new Error(`the hubs and gateways did not link up within ${timeoutMs} ms (want ${gateways.length} gateways at the relay, ${hubs} hubs at each)\n${await this.describeHealth()}\n${this.describe()}`);
      }
      await sleep(100);
    }
  }

  /** The router a receiver is connected to, or connecting to, now. */
  receiverAt(name: string): RouterName {
    const r = this.#receiver(name);
    return r.routers[r.moves % r.routers.length]!;
  }

  /**
   * Tells a receiver to move to its next router (HubsOptions.receivers): it closes its session
   * and connects as the same name there, retrying while the name is still taken. Resolves, with
   * the router, once it is connected there.
   */
  async moveReceiver(name: string): Promise<RouterName> {
    const r = this.#receiver(name);
    this.#read();
    if (r.readies !== r.moves + 1) throw new Error(`moveReceiver(${name}) while it is moving`);
    const from = this.receiverAt(name);
    r.moves++;
    const to = this.receiverAt(name);
    this.note(`move ${name} from ${from} to ${to}`);
    r.proc.child.kill('SIGUSR2');
    const deadline = Date.now() + MOVE_MS;
    for (;;) {
      await this.pause(20);
      this.#read();
      if (r.readies > r.moves) break;
      if (Date.now() > deadline) throw new Error(`receiver ${name} did not connect at ${to} within ${MOVE_MS} ms\n${describeTail(r.proc)}\n${this.describe()}`);
    }
    this.note(`${name} is at ${to}`);
    return to;
  }

  /** /healthz of every running router (undefined for those not running or not answering). */
  async health(): Promise<Record<RouterName, RouterHealth | undefined>> {
    const out: Record<RouterName, RouterHealth | undefined> = {};
    await Promise.all(
      this.routerNames.map(async (r) => {
        const p = this.#routers.get(r);
        if (p === undefined || p.exit !== undefined) return;
        try {
          const res = await fetch(`http://127.0.0.1:${this.#portOf(r)}/healthz`, { signal: AbortSignal.timeout(2000), headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
          out[r] = ((await res.json()) as { stats: RouterHealth }).stats;
        } catch {
          // not listening yet, or hung: reported as unknown
        }
      }),
    );
    return out;
  }

  /** Notes what each router holds now (stored/pinned), for failure messages. */
  async noteHealth(): Promise<void> {
    const health = await this.health();
    const held = this.routerNames.map((r) => {
      const h = health[r];
      return `${r}=${h === undefined ? '?' : `${h.stored}/${h.pinned}`}`;
    });
    this.note(`holding: ${held.join(' ')} (stored/pinned)`);
  }

  /** One line per router of what it holds and did, for failure messages. */
  async describeHealth(): Promise<string> {
    const health = await this.health();
    return this.routerNames.map((r) => `${r}: ${formatHealth(health[r])}`).join('\n');
  }

  /**
   * Waits until the armed router (TopologyOptions.crashAt) has killed itself at its crash point
   * and was restarted unarmed; throws if it did not crash within `timeoutMs` from now.
   */
  async crashed(timeoutMs: number): Promise<void> {
    const armed = this.#o.crashAt;
    const p = this.#armed;
    if (armed === undefined || p === undefined || this.#crashRecovered === undefined) throw new Error('no router is armed');
    const done = await Promise.race([this.#crashRecovered.then(() => true), sleep(timeoutMs).then(() => false)]);
    this.check();
    if (!done) {
      if (p.exit === undefined) throw new Error(`the ${armed.role} never reached crash point ${armed.spec} within ${timeoutMs} ms\n${describeTail(p)}`);
      await this.#crashRecovered; // crashed in time; its restart is bounded by #startRouter
    }
  }

  /** Waits for the armed router to crash, checks that it died at its point, restarts it unarmed. */
  async #recoverFromCrash(router: RouterName, spec: string): Promise<void> {
    const p = this.#armed!;
    const exit = await p.exited;
    if (this.#closed) return;
    const point = spec.split(':')[0]!;
    if (exit.signal !== 'SIGKILL' || !p.stderr.includes(`postern: crash point ${point} reached`)) {
      this.#failure ??= new Error(`the ${router} armed with ${spec} died otherwise\n${describeTail(p)}`);
      return;
    }
    try {
      await sleep(this.#o.crashRestartDelayMs ?? 0);
      if (!this.#closed) await this.restart(router);
    } catch (e) {
      this.#failure ??= e instanceof Error ? e : new Error(String(e));
    }
  }

  /** What the senders reported so far, one entry per message they were told to send. */
  sent(): Sent[] {
    this.#read();
    const out: Sent[] = [];
    for (const s of this.#senders) {
      for (let n = 1; n <= this.#o.count; n++) {
        const o = s.outcomes.get(n);
        const base = { s: s.name, n, from: s.address ?? `${s.name}@?`, to: this.#targets[(n - 1) % this.#targets.length]! };
        if (o === undefined) out.push({ ...base, outcome: 'pending' });
        else if (o.ok) out.push({ ...base, outcome: 'accepted' });
        else out.push({ ...base, outcome: 'failed', code: o.code });
      }
    }
    return out;
  }

  /** What the receivers printed so far, each receiver's in its order. */
  received(): Received[] {
    this.#read();
    return this.#receivers.flatMap((r) => r.got);
  }

  /**
   * Waits until every sender has settled every send and every accepted message was received,
   * or nothing moved for TopologyOptions.quietMs; then GRACE_MS more for late duplicates.
   * Resolves with whether everything settled, and how long it took.
   */
  async settle(): Promise<{ settled: boolean; ms: number }> {
    const quietMs = this.#o.quietMs ?? QUIET_MS;
    const t0 = Date.now();
    let lastSig = '';
    let lastMove = t0;
    let settled = false;
    for (;;) {
      this.check();
      const sent = this.sent();
      const received = this.received();
      const got = new Set(received.map((r) => `${r.s}#${r.n}`));
      const allDone = this.#senders.every((s) => s.done);
      if (allDone && sent.every((m) => m.outcome !== 'accepted' || got.has(`${m.s}#${m.n}`))) {
        settled = true;
        break;
      }
      const sig = `${this.#senders.map((s) => s.outcomes.size).join(',')}/${received.length}`;
      const now = Date.now();
      if (sig !== lastSig) {
        lastSig = sig;
        lastMove = now;
      } else if (now - lastMove >= quietMs) {
        break;
      }
      if (now - t0 >= MAX_SETTLE_MS) break;
      await sleep(100);
    }
    const ms = Date.now() - t0;
    await this.pause(GRACE_MS);
    return { settled, ms };
  }

  /** How many lines of every router's stderr (dead ones too) match `re`. */
  routerLogLines(re: RegExp): number {
    return this.#routerProcs.reduce((n, p) => n + p.stderr.split('\n').filter((l) => re.test(l)).length, 0);
  }

  /** What every router (dead ones too) and agent printed, in short, for failure messages. */
  describe(): string {
    const procs = [...this.#routerProcs, ...this.#senders.map((s) => s.proc), ...this.#receivers.map((r) => r.proc)];
    const nodes = [...this.#relays.values()].filter((r) => r.node !== undefined).map((r) => `${r.name}=${r.node!}`);
    const notes = this.#notes.length > 0 ? [`faults:\n${this.#notes.join('\n')}`] : [];
    return [...(nodes.length > 0 ? [`node ids: ${nodes.join(' ')}`] : []), ...notes, ...procs.map((p) => describeTail(p, 3))].join('\n');
  }

  /** Kills every process of this world, closes the proxies, deletes the data dirs. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const procs = [...this.#routers.values(), ...this.#senders.map((s) => s.proc), ...this.#receivers.map((r) => r.proc)];
    for (const p of procs) this.#mayExit.add(p);
    await Promise.all(procs.map((p) => p.kill('SIGKILL')));
    await Promise.all(this.proxies.map((p) => p.close()));
    await this.#keepLogs();
    await rm(this.#dir, { recursive: true, force: true });
  }

  /**
   * POSTERN_CHAOS_LOGS=DIR: every process's whole output (dead ones too), one file each, and the
   * faults, in a new directory under DIR. With POSTERN_CHAOS_LOG_LEVEL=debug, to see what the
   * routers did with each message.
   */
  async #keepLogs(): Promise<void> {
    const to = process.env['POSTERN_CHAOS_LOGS'];
    if (to === undefined || to === '') return;
    await mkdir(to, { recursive: true });
    const dir = await mkdtemp(join(to, 'run-'));
    const procs: Array<[string, Proc]> = [
      ...this.#routerProcs.map((p, i): [string, Proc] => [`${String(i).padStart(2, '0')}-${this.#procNames.get(p) ?? 'router'}`, p]),
      ...this.#senders.map((x): [string, Proc] => [`sender-${x.name}`, x.proc]),
      ...this.#receivers.map((x): [string, Proc] => [`receiver-${x.name}`, x.proc]),
    ];
    await Promise.all(procs.map(([name, p]) => writeFile(join(dir, `${name}.log`), `${p.program} ${p.args.join(' ')}\n--- stdout:\n${p.stdout}--- stderr:\n${p.stderr}`)));
    await writeFile(join(dir, 'faults.txt'), `${this.#notes.join('\n')}\n`);
    console.log(`chaos: logs kept in ${dir}`);
  }

  #link(a: string, b: string): PeerLink {
    const l = this.#links.find((x) => (x.dialer === a && x.listener === b) || (x.dialer === b && x.listener === a));
    if (l === undefined) throw new Error(`no peer link between ${a} and ${b}`);
    return l;
  }

  #receiver(name: string): ReceiverState {
    const r = this.#receivers.find((x) => x.name === name);
    if (r === undefined) throw new Error(`no receiver ${name}`);
    return r;
  }

  #portOf(router: RouterName): number {
    const port = this.#ports.get(router);
    if (port !== undefined) return port;
    const r = this.#relays.get(router);
    if (r === undefined) throw new Error(`no router ${router}`);
    return r.port;
  }

  #routerArgs(router: RouterName): string[] {
    const listen = `127.0.0.1:${this.#portOf(router)}`;
    const data = join(this.#dir, router);
    const log = ['--log-level', process.env['POSTERN_CHAOS_LOG_LEVEL'] ?? (this.#o.mesh === undefined && this.#o.hubs === undefined ? LOG_LEVEL : MESH_LOG_LEVEL)];
    const uplink = this.#uplinks.get(router);
    if (uplink !== undefined) {
      // A bridgehead of hubs checks their tokens with its own secret.
      const secret = this.#o.hubs === undefined ? [] : ['--secret', hubSecret(this.#o)];
      return ['gateway', '--relay', uplink.url, '--domain', DOMAIN, '--token', this.#gatewayToken, ...secret, '--listen', listen, '--data', data, ...log, ...ROUTER_FLAGS];
    }
    if (this.#hubs.includes(router)) {
      const gateways = this.#gateways.flatMap((g) => ['--gateway', this.hubLinkProxy(g).url]);
      return ['hub', ...gateways, '--domain', DOMAIN, '--token', this.#hubToken, '--listen', listen, '--data', data, ...log, ...ROUTER_FLAGS];
    }
    const args = ['relay', '--listen', listen, '--secret', this.#o.secret, '--data', data, ...log, ...ROUTER_FLAGS];
    const me = this.#relays.get(router)!;
    if (me.keyFile === undefined) return args;
    args.push('--domain', router, '--node-key', me.keyFile);
    const domains = [...this.#relays.keys(), DOMAIN].join(',');
    for (const l of this.#links) {
      if (l.dialer === router) args.push('--peer', l.proxy.url);
      const other = l.dialer === router ? l.listener : l.listener === router ? l.dialer : undefined;
      if (other !== undefined) args.push('--trust', `${this.#relays.get(other)!.node!}=${domains}`);
    }
    return args;
  }

  async #startRouter(router: RouterName, crashAt: string | undefined): Promise<Proc> {
    const p = new Proc(this.#routerArgs(router), crashAt === undefined ? {} : { env: { POSTERN_CRASH_AT: crashAt } });
    if (crashAt !== undefined) this.#mayExit.add(p);
    this.#routers.set(router, p);
    this.#routerProcs.push(p);
    this.#procNames.set(p, router);
    this.#watch(p, `the ${router}`);
    const listening = this.#hubs.includes(router) ? p.waitFor('stdout', HUB_LISTENING, 10_000) : listeningOn(p, 10_000);
    await listening.catch((e: unknown) => {
      if (crashAt === undefined || p.exit === undefined) throw e; // else: crashed already, see #recoverFromCrash
    });
    return p;
  }

  async #startReceiver(name: string, routers: readonly RouterName[]): Promise<void> {
    const proc = new Proc(['receive', routers.map((r) => this.urlOf(r)).join(','), name], { script: AGENT });
    const r: ReceiverState = { name, proc, address: undefined, got: [], routers, readies: 0, moves: 0 };
    this.#receivers.push(r);
    this.#watch(proc, `receiver ${name}`);
    this.#readers.set(proc, new LineReader(proc));
    await proc.waitFor('stdout', /"ev":"ready"/, 10_000);
  }

  async #startSender(name: Sender): Promise<void> {
    const token = this.#senderTokens.get(name) ?? '';
    const url = this.urlOf(this.#o.hubs === undefined ? this.#mesh.senderRelays[name] : this.#o.hubs.senders[name]);
    const args = ['send', url, name, token, String(this.#o.count), String(this.#o.rate), this.#targets.join(',')];
    const proc = new Proc(args, { script: AGENT });
    this.#senders.push({ name, proc, address: undefined, outcomes: new Map(), done: false });
    this.#watch(proc, `sender ${name}`);
    this.#readers.set(proc, new LineReader(proc));
    await proc.waitFor('stdout', /"ev":"ready"/, 10_000);
  }

  #watch(p: Proc, what: string): void {
    void p.exited.then(() => {
      if (this.#mayExit.has(p) || this.#failure !== undefined) return;
      this.#failure = new Error(`${what} died unexpectedly\n${describeTail(p)}`);
    });
  }

  #read(): void {
    for (const s of this.#senders) {
      this.#readers.get(s.proc)!.read((o, line) => {
        if (o['ev'] === 'ready') s.address = String(o['address']);
        else if (o['ev'] === 'ok') s.outcomes.set(Number(o['n']), { ok: true });
        else if (o['ev'] === 'fail') s.outcomes.set(Number(o['n']), { ok: false, code: String(o['code']) });
        else if (o['ev'] === 'done') s.done = true;
        else throw new Error(`sender ${s.name} printed an unknown line: ${line}`);
      });
    }
    for (const r of this.#receivers) {
      this.#readers.get(r.proc)!.read((o, line) => {
        if (o['ev'] === 'ready') {
          r.address = String(o['address']);
          r.readies++;
          return;
        }
        if (o['ev'] !== 'msg') throw new Error(`receiver ${r.name} printed an unknown line: ${line}`);
        let s: string | undefined;
        let n: number | undefined;
        try {
          const b = JSON.parse(String(o['body'])) as { s?: unknown; n?: unknown };
          if (typeof b.s === 'string' && Number.isSafeInteger(b.n)) [s, n] = [b.s, b.n as number];
        } catch {
          // unparsable: counted as unexpected
        }
        r.got.push({ receiver: r.address ?? `${r.name}@${DOMAIN}`, from: String(o['from']), to: String(o['to']), s, n });
      });
    }
  }
}

/** Throws when `mesh` names a relay it does not list, or repeats one. */
function checkMesh(mesh: MeshOptions): void {
  const relays = new Set(mesh.relays);
  if (relays.size !== mesh.relays.length || relays.has('gateway') || relays.has(DOMAIN)) throw new Error(`bad relay names ${mesh.relays.join(',')}`);
  const named = [...mesh.links.flat(), mesh.gatewayRelay, ...Object.values(mesh.senderRelays)];
  for (const r of named) if (!relays.has(r)) throw new Error(`the mesh names relay ${r}, which it does not list`);
}

/** Throws when a world of hubs names a router it does not have. */
function checkHubs(o: TopologyOptions): void {
  const h = o.hubs!;
  if (o.mesh !== undefined) throw new Error('a world of hubs has one relay: no mesh');
  const hubs = new Set(hubNames(o));
  if (hubs.size === 0) throw new Error('a world of hubs needs a hub');
  for (const s of SENDERS) if (h.senders[s] !== 'relay' && !hubs.has(h.senders[s])) throw new Error(`sender ${s} on ${h.senders[s]}: not the relay nor a hub`);
  for (const [r, at] of Object.entries(h.receivers)) {
    if (at.length === 0 || at.some((x) => !hubs.has(x))) throw new Error(`receiver ${r} on ${at.join(',')}: not hubs`);
  }
}

/** The secret the gateways of a world of hubs check the hubs' tokens with. */
function hubSecret(o: TopologyOptions): string {
  return `${o.secret}-${DOMAIN}`;
}

function formatHealth(h: RouterHealth | undefined): string {
  if (h === undefined) return 'not running or not answering /healthz';
  return (
    `peers=${h.peers} downlinks=${h.downlinks} uplinks=${h.uplinks} domains=${h.domains} stored=${h.stored} pinned=${h.pinned} queues=${h.queues} ` +
    `forwarded=${h.msgsForwarded} delivered=${h.msgsDelivered} nacks=${h.nacksSent} forbidden=${h.forbidden} refused-routes=${h.routesRefused} loops=${h.routeLoops} ` +
    `agents=${h.agents} hubs=${h.hubs} directory=${h.directory} moves=${h.moves} moves-timed-out=${h.movesTimedOut}`
  );
}
