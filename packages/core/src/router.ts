import {
  Feature,
  FrameType,
  HomeOp,
  KNOWN_FEATURES,
  LinkMode,
  MIN_PROTOCOL_VERSION,
  MsgFlag,
  PROTOCOL_VERSION,
  PosternError,
  Role,
  WireCode,
  RouteFlag,
  decodeReport,
  errorCodeOf,
  isHandle,
  isId,
  isValidDomain,
  isValidName,
  isValidNodeId,
  type Address,
  type AuthFrame,
  type Frame,
  type HelloFrame,
  type HomeFrame,
  type MsgFrame,
  type WelcomeFrame,
} from '@postern/protocol';
import { anyCovers, claimedDomains, holderOf, type Claims } from './auth.js';
import { Channel, type ChannelHandler, type ChannelOptions } from './channel.js';
import { Delivery, msgLength, type AckAs, type DeliveryStats, type QueueInfo } from './delivery.js';
import { agentDestination, domainDestination, returnDestination, type Destination } from './destination.js';
import { AddressCache, type ParsedAddress } from './addresses.js';
import { Anonymity } from './anonymity.js';
import { Directory } from './directory.js';
import { Homes } from './homes.js';
import { Presence, type PresenceSource } from './presence.js';
import { Quotas, sourceOf, type Principal } from './quotas.js';
import { Link, type LinkKind } from './link.js';
import { acceptPayload, dialPayload, isNonce, newNonce } from './link-auth.js';
import { resolveRouterOptions, type ResolvedRouterOptions, type RouterOptions } from './options.js';
import { Routing, type RoutingStats } from './routing.js';
import { Tracer } from './trace.js';
import type { Duplex } from './transport.js';
import type { StoreState } from './store-health.js';

/** Counters since start; read by /healthz, metrics and the benchmarks. */
export interface RouterStats extends DeliveryStats, RoutingStats {
  connections: number;
  agents: number;
  downlinks: number;
  uplinks: number;
  peers: number;
  /** Hub links (bridgehead side) up now. */
  hubs: number;
  /** Names and ids in the directory. */
  directory: number;
  /** Name claims a hub sent its bridgeheads, and those refused; moves of names between hubs (begun, or told to this hub); moves that timed out. */
  claims: number;
  claimsRefused: number;
  moves: number;
  movesTimedOut: number;
  /** Addresses watched through this router; watches taken (agents' and routers'), and refused. */
  watched: number;
  watches: number;
  watchesRefused: number;
  /** PRESENCE frames sent to router links (one per link per change) and to agents (the fan-out at the last router). */
  presenceToLinks: number;
  presenceToAgents: number;
  msgsIn: number;
  msgsDelivered: number;
  msgsForwarded: number;
  /**
   * Volatile messages shed because their next hop was congested (more than half of
   * maxOutboundBytes waiting): to a router, when the sender's transport could not pause; to an
   * agent, when they came over a router link or such a transport.
   */
  msgsDropped: number;
  /** Times a sender's link was paused because the router link its traffic feeds was congested. */
  pauses: number;
  nacksSent: number;
  protocolErrors: number;
  /** Messages a router link sent from a domain it may not speak for (NACKed FORBIDDEN). */
  forbidden: number;
  /** Anonymous messages taken from agents (their sender replaced by a handle) and wrapped for routers below. */
  anonymous: number;
  anonymousWrapped: number;
  /** Reply handles held. */
  handles: number;
  /** Connections refused for a source address's or a credential's connection limits or connect rate. */
  connectionsRefused: number;
  /** Times a sender went over its message or byte rate (its reading paused, or the message refused). */
  rateLimited: number;
  /** Reliable messages refused QUEUE_FULL because their sender held its share of the store. */
  senderQuotaRefused: number;
}

/** What a router knows of a link, for operators (never bodies). */
export interface LinkInfo {
  kind: LinkKind;
  id: string;
  address: string;
  node: string;
  domains: string[];
  transport: string;
  remote: string;
  pending: number;
  version: number;
  /** Agents: the name ('' for none). */
  name: string;
  /** When the link was made (epoch ms). */
  since: number;
}

/** How a router link we dialed is used: as our default route, or as a peer. */
export interface DialedLink {
  mode: 'uplink' | 'peer';
  /** Uplinks: their place in the configuration; the lowest connected one is the default route. */
  rank: number;
  /** The last attempt was fenced (DOMAIN_TAKEN): log the link at debug level, since it retries every 2 s. */
  fenced?: boolean;
}

/**
 * The routing core. Every Postern process is one: it accepts connections (agents, other
 * routers), may hold links it dialed (uplinks, peers), and routes each MSG to a local agent
 * (by id or name), to the link with the best route to the destination domain, or up its
 * default route. It writes `from` itself, so an agent cannot send as another, and checks that
 * a router link speaks only for domains it is entitled to. It sees frames only; transports
 * are given to it.
 */
export class Router {
  readonly options: ResolvedRouterOptions;
  readonly #channelOptions: ChannelOptions;
  readonly #links = new Set<Link>();
  readonly #agentsById = new Map<string, Link>();
  readonly #agentsByName = new Map<string, Link>();
  /** Router links by node id (the newest up link to each). */
  readonly #routers = new Map<string, Link>();
  readonly #uplinks: Link[] = [];
  readonly #addresses: AddressCache;
  readonly #routing: Routing;
  readonly #anonymity: Anonymity;
  readonly #directory: Directory;
  readonly #homes: Homes;
  readonly #presence: Presence;
  #maintenance: unknown;
  readonly #nacksByCode = new Map<number, number>();
  /** `node domain` → until when that router may send from that domain after it announced it (see #vouched). */
  readonly #announced = new Map<string, number>();
  /** Uplinks configured (see addDialer). */
  #dialers = 0;
  /** We serve our domain as a bridgehead (a hub linked, now or in an earlier run): our ROUTE says so (RouteFlag.BRIDGEHEAD). */
  #bridgehead = false;
  #connections = 0;
  #closed = false;
  readonly #delivery: Delivery;
  readonly #quotas: Quotas;
  /** Resolves when what the store kept has been loaded (messages arriving earlier wait for it). */
  readonly ready: Promise<void>;
  /** Message traces and recent undeliverable reports (option `trace`); undefined when off. */
  readonly tracer: Tracer | undefined;
  readonly #stats = { msgsIn: 0, msgsDelivered: 0, msgsForwarded: 0, msgsDropped: 0, nacksSent: 0, protocolErrors: 0, pauses: 0, forbidden: 0 };

  constructor(options: RouterOptions) {
    const o = (this.options = resolveRouterOptions(options));
    this.#channelOptions = {
      maxFrameBytes: o.maxFrameBytes,
      maxOutboundBytes: o.maxOutboundBytes,
      batchBytes: o.batchBytes,
      pingMs: o.pingIntervalMs,
      partialFrameMs: o.partialFrameTimeoutMs,
      clock: o.clock,
      scheduler: o.scheduler,
      report: (err) => o.logger.error('link.internal_error', 'internal error while handling a frame; the connection was closed', { err: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
    };
    this.#addresses = new AddressCache(o.domain);
    this.#routing = new Routing({
      node: o.node,
      domain: o.domain,
      ownProof: o.identity?.proof ?? '',
      trust: o.trust,
      identity: o.identity,
      maxDomainsPerLink: o.maxDomainsPerLink,
      logger: o.logger,
      ownFlags: () => (this.#bridgehead ? RouteFlag.BRIDGEHEAD : 0),
      routerLinks: () => this.#routerLinks(),
      changed: (domain) => {
        this.#delivery.wake(domainDestination(domain));
        this.#presence.reroute(domain);
      },
      validated: (link, domain) => {
        if (this.#announced.size >= MAX_ANNOUNCED) this.#pruneAnnounced();
        this.#announced.set(`${link.node} ${domain}`, o.clock.now() + o.maxMessageAgeMs);
      },
    });
    this.#anonymity = new Anonymity(o, { addresses: this.#addresses, defaultUplink: () => this.#uplinks[0], dialsUplinks: () => this.#dialers > 0 });
    this.#quotas = new Quotas(o, o.clock);
    this.tracer = o.trace ? new Tracer(o.traceCapacity, o.clock) : undefined;
    this.#delivery = new Delivery(o, o.store, this.#quotas, {
      nextHop: (dest) => this.#nextHop(dest),
      linkTo: (node) => this.#routers.get(node),
      handingBack: (dest, node) => this.#homes.handingBack(dest, node),
      route: (address) => {
        const parsed = this.#addresses.parse(address);
        const a = parsed === undefined ? undefined : this.#anonymity.resolve(parsed);
        if (a === undefined || a === 'unknown') return undefined;
        return {
          dest: this.#destination(a.dest),
          hops: a.dest.domain === this.domain ? o.hopLimit : o.hopLimit - 1,
          to: a.to.text,
          // A report to an anonymous sender of ours names its message by the id we sealed.
          ref: (id) => this.#anonymity.unseal(id, a.handle),
        };
      },
      nack: (link, id, from, code, reason) => this.#nack(link, id, from, code, reason),
      sent: (link) => {
        if (link.kind === 'agent') this.#stats.msgsDelivered++;
        else this.#stats.msgsForwarded++;
      },
      paused: () => this.#stats.pauses++,
      emptied: (dest) => this.#homes.emptied(dest),
      fatal: (err) => this.#fatal(err),
    });
    // Handles first: a message recovered from the store may be a reply to one.
    this.#delivery.tracer = this.tracer;
    this.#directory = new Directory(o.store, o.clock, o.logger, { ttlMs: o.directoryTtlMs, max: o.maxDirectoryEntries });
    this.#homes = new Homes(o, {
      directory: this.#directory,
      bridgeheads: () => this.#uplinks,
      linkTo: (node) => this.#routers.get(node),
      agent: (local) => this.#agent(local),
      hubOfHandle: (local) => this.#anonymity.hubOf(local),
      holds: (dest) => this.#delivery.holds(dest),
      wake: (dest) => this.#delivery.wake(dest),
      unpin: (dest, node) => this.#delivery.unpin(dest, node),
      evict: (link, code, reason) => link.channel.close(code, reason),
      changed: (local) => this.#presence.changed(local),
    });
    this.#presence = new Presence(o, {
      addresses: this.#addresses,
      store: o.store,
      source: (target) => this.#presenceSource(target),
      stateOf: (local) => ({ online: this.#agent(local) !== undefined, since: this.#directory.get(local)?.since ?? o.clock.now() }),
      mayWatchFrom: (link, domain) => !this.#forbiddenSender(link, domain, 0, undefined),
    });
    this.ready = this.#anonymity
      .start()
      .then(() => this.#directory.load())
      .then(() => {
        // Names homed at hubs in an earlier run: a bridgehead restarted is one from the start.
        for (const [, e] of this.#directory.entries()) if (e.home !== '') return this.#becomeBridgehead();
      })
      .then(() => this.#presence.load())
      .then(() => {
        this.#homes.start();
        for (const n of o.knownNames) if (this.#directory.get(n) === undefined) this.#directory.set(n, '', false);
        this.#armMaintenance();
        return this.#delivery.start();
      });
    this.ready.catch((err: unknown) => this.#fatal(err));
  }

  /** The store failed for good (closed, corrupt; not a transient ERR_STORE_UNAVAILABLE): nothing more can be promised, so stop taking messages. */
  #fatal(err: unknown): void {
    this.options.logger.error('store.fatal', 'the store failed; the router stops', { err: err instanceof Error ? err.message : String(err) });
    this.close();
    this.options.onFatal(err);
  }

  get domain(): string {
    return this.options.domain;
  }

  get node(): string {
    return this.options.node;
  }

  get channelOptions(): ChannelOptions {
    return this.#channelOptions;
  }

  /** Whether the store commits: `ok`, or since when and why not (the router then refuses reliable messages with STORE_UNAVAILABLE). */
  storeState(): StoreState {
    return this.#delivery.storeState();
  }

  stats(): RouterStats {
    let agents = 0;
    let downlinks = 0;
    let peers = 0;
    let hubs = 0;
    for (const l of this.#links) {
      if (l.kind === 'agent') agents++;
      else if (l.kind === 'downlink') downlinks++;
      else if (l.kind === 'peer') peers++;
      else if (l.kind === 'hub') hubs++;
    }
    return {
      connections: this.#connections,
      agents,
      downlinks,
      uplinks: this.#uplinks.length,
      peers,
      hubs,
      directory: this.#directory.size,
      claims: this.#homes.stats.claims,
      claimsRefused: this.#homes.stats.claimsRefused,
      moves: this.#homes.stats.moves,
      movesTimedOut: this.#homes.stats.movesTimedOut,
      watched: this.#presence.watched,
      ...this.#presence.stats,
      ...this.#stats,
      ...this.#anonymity.stats,
      handles: this.#anonymity.handles.size,
      ...this.#quotas.stats,
      ...this.#delivery.stats(),
      ...this.#routing.stats(),
    };
  }

  /** NACKs sent and reports made since start, by wire code (rare events: counted per code). */
  countsByCode(): { nacks: ReadonlyMap<number, number>; reports: ReadonlyMap<number, number> } {
    return { nacks: this.#nacksByCode, reports: this.#delivery.reportsByCode };
  }

  /** Reliable messages and bytes held now, per kind of destination: local agents, other domains, names moved between hubs. */
  held(): Record<Destination['kind'], { messages: number; bytes: number }> {
    return this.#delivery.held();
  }

  /** The queues holding messages now (destination, messages, bytes, oldest stored at). */
  queues(): QueueInfo[] {
    return this.#delivery.queues();
  }

  /** Router links up now with their MSG frames in and out since they opened and the last keepalive RTT (null: none measured). */
  linkCounters(): Array<{ id: string; msgsIn: number; msgsOut: number; rttMs: number | null }> {
    const r: Array<{ id: string; msgsIn: number; msgsOut: number; rttMs: number | null }> = [];
    for (const l of this.#links) {
      if (!l.isRouter) continue;
      const c = l.channel;
      r.push({ id: l.id, msgsIn: c.msgFramesIn, msgsOut: c.msgFramesOut, rttMs: c.rttMs < 0 ? null : c.rttMs });
    }
    return r;
  }

  /** Links up now, counted by kind (agent, downlink, uplink, peer, hub) and transport (`ws`, `http`, ...). */
  connectionCounts(): Map<string, { kind: LinkKind; transport: string; count: number }> {
    const r = new Map<string, { kind: LinkKind; transport: string; count: number }>();
    for (const l of this.#links) {
      const transport = l.channel.duplex.kind;
      const key = `${l.kind} ${transport}`;
      const c = r.get(key);
      if (c === undefined) r.set(key, { kind: l.kind, transport, count: 1 });
      else c.count++;
    }
    return r;
  }

  /** Every link up now (`routersOnly`: links to other routers only, not agents). For operators: made per call. */
  links(routersOnly = false): LinkInfo[] {
    const links = routersOnly ? [...this.#links].filter((l) => l.isRouter) : [...this.#links];
    return links.map((l) => ({
      kind: l.kind,
      id: l.id,
      address: l.address,
      node: l.node,
      domains: [...this.#routing.learnedFrom(l)],
      transport: l.channel.duplex.kind,
      remote: l.channel.duplex.remote,
      pending: this.#delivery.inflightOn(l),
      version: l.version,
      name: l.name,
      since: l.since,
    }));
  }

  /** Domains reachable through linked routers, with the node ids of the links that announced them, best first. */
  routes(): Map<string, string[]> {
    return new Map([...this.#routing.table()].map(([d, rs]) => [d, rs.map((r) => r.link.node)]));
  }

  /** Every route known, per domain, best first: the neighbour (node id, link kind), metric and path. */
  routeTable(): Map<string, Array<{ node: string; kind: LinkKind; metric: number; path: readonly string[] }>> {
    return new Map([...this.#routing.table()].map(([d, rs]) => [d, rs.map((r) => ({ node: r.link.node, kind: r.link.kind, metric: r.metric, path: r.path }))]));
  }

  /** The best route to `domain`: the neighbour's node id, the metric and the path; undefined when there is none. */
  route(domain: string): { node: string; kind: LinkKind; metric: number; path: readonly string[] } | undefined {
    const r = this.#routing.best(domain.toLowerCase());
    return r === undefined ? undefined : { node: r.link.node, kind: r.link.kind, metric: r.metric, path: r.path };
  }

  /**
   * An Uplink of this router exists (configured, connected or not): it is a router below a relay,
   * whose own domain must not be handed out as a pseudonym while no relay can wrap it.
   */
  addDialer(mode: 'uplink' | 'peer'): void {
    if (mode === 'uplink') this.#dialers++;
  }

  /** True while a router link to node `node` is up (either side dialed it). */
  hasLinkTo(node: string): boolean {
    return this.#routers.get(node)?.up === true;
  }

  /**
   * Takes a new inbound connection. The first frame must be HELLO within the handshake
   * timeout; anything else closes this connection only.
   */
  accept(duplex: Duplex): void {
    const o = this.options;
    let link: Link | undefined;
    // hello: waiting for HELLO; checking: its credential is being verified; proof: a dialing
    // router must answer our nonce (AUTH) before anything else; ready: a link.
    let state: 'hello' | 'checking' | 'proof' | 'ready' = 'hello';
    let onAuth: ((f: AuthFrame) => void) | undefined;
    this.#connections++;
    // Counted at its address until its handshake shows a credential (or that it has none).
    const source = sourceOf(duplex.remote);
    const overQuota = this.#quotas.opened(source);
    let atSource = overQuota === undefined;
    const channel = new Channel(duplex, this.#channelOptions, {
      frame: (f, raw, num) => {
        if (state === 'ready' && link !== undefined) {
          this.#onFrame(link, f, raw, num);
          return;
        }
        if (state === 'proof' && f.type === FrameType.AUTH && onAuth !== undefined) {
          const fn = onAuth;
          onAuth = undefined;
          fn(f);
          return;
        }
        if (state !== 'hello' || f.type !== FrameType.HELLO) {
          this.#protocolError(channel, state === 'proof' ? `expected AUTH after WELCOME, got frame 0x${f.type.toString(16)}` : `expected HELLO${state === 'checking' ? ' once, then WELCOME before anything else' : ''}, got frame 0x${f.type.toString(16)}`);
          return;
        }
        state = 'checking';
        // The link must be known before WELCOME leaves and before the next frame of the same
        // batch is read, or a close in between would leave it registered forever.
        const hooks: HelloHooks = {
          ready: (l) => {
            link = l;
            state = 'ready';
            o.clock.clearTimeout(timer);
            // Routers of our mesh count against nobody; a credential takes the connection over
            // from the address; a connection without one stays counted there.
            const trusted = l.kind === 'peer' || l.kind === 'hub';
            if (!trusted) l.quota = this.#quotas.principal(l.claims, source, o.authenticator !== undefined, l.kind === 'agent' ? '' : l.node);
            if (atSource && (trusted || l.quota?.tier === 'credential')) {
              atSource = false;
              this.#quotas.released(source);
            }
            // From now on the link's own handler: the closures of this handshake (and its
            // timer) are not kept alive with every connection (issue 12).
            channel.setHandler(new Router.#LinkHandler(this, l, atSource ? source : undefined));
          },
          awaitProof: (fn) => {
            state = 'proof';
            onAuth = fn;
          },
        };
        this.#hello(channel, f, hooks).catch((err: unknown) => {
          o.logger.error('link.handshake_failed', 'handshake failed', { err: String(err) });
          channel.close(WireCode.INTERNAL, 'internal error');
        });
      },
      closed: (reason) => {
        o.clock.clearTimeout(timer);
        this.#connections--;
        if (atSource) {
          atSource = false;
          this.#quotas.released(source);
        }
        if (link?.quota !== undefined) this.#quotas.closed(link.quota);
        if (link !== undefined) this.#detach(link, reason);
      },
    });
    const timer = o.clock.setTimeout(() => {
      if (state !== 'ready') channel.close(WireCode.HANDSHAKE_TIMEOUT, state === 'proof' ? `no AUTH within ${o.handshakeTimeoutMs} ms` : `no HELLO within ${o.handshakeTimeoutMs} ms`);
    }, o.handshakeTimeoutMs);
    channel.start();
    if (this.#closed) channel.close(WireCode.SHUTDOWN, 'router is shutting down');
    else if (this.#connections > o.maxConnections) {
      channel.close(WireCode.TOO_MANY_CONNECTIONS, `router holds its limit of ${o.maxConnections} connections`);
    } else if (overQuota !== undefined) channel.close(WireCode.TOO_MANY_CONNECTIONS, overQuota);
  }

  /**
   * A transport is about to make a connection for `remote` ("ip:port"): why it should refuse it
   * (an HTTP 429 before any upgrade or session), or undefined. Per source address: connections
   * without a token, and new connections a second.
   */
  admit(remote: string): string | undefined {
    return this.#closed ? undefined : this.#quotas.admit(sourceOf(remote));
  }

  /**
   * Makes an established, welcomed (and, in version 2, mutually authenticated) connection we
   * dialed a router link: our uplink (a default route) or a peer. Used by `Uplink`.
   */
  attachDialed(channel: Channel, welcome: WelcomeFrame, how: DialedLink): Link {
    const kind: LinkKind = how.mode === 'peer' ? 'peer' : 'uplink';
    const link = new Link(kind, channel, welcome.id, undefined, welcome.node);
    link.since = this.options.clock.now();
    link.maxFrame = welcome.maxFrame;
    link.address = welcome.domain;
    link.version = welcome.version;
    link.features = welcome.features;
    link.rank = how.rank;
    link.dialer = this.node;
    link.bridgehead = this.options.hub;
    // What the far side may speak for on our operator's word; more comes with route proofs.
    link.entitled = this.options.trust?.trusted(welcome.node) ?? [];
    this.#connections++;
    this.#addRouterLink(link);
    // Said at info level by whoever dialed it (the router process logs uplink.up with its downtime).
    this.options.logger.debug('link.dialed', kind === 'peer' ? 'peer up' : link.bridgehead ? 'bridgehead up' : 'uplink up', { node: welcome.node, domain: welcome.domain, version: welcome.version });
    return link;
  }

  /** Frames of a dialed link's channel are handed here by `Uplink`. */
  dialedFrame(link: Link, f: Frame, raw: Uint8Array, num: number): void {
    this.#onFrame(link, f, raw, num);
  }

  dialedClosed(link: Link, reason: PosternError): void {
    this.#connections--;
    this.#detach(link, reason);
  }

  /** The HELLO a router link we dial starts with (Uplink), and how to check the WELCOME and answer it. */
  dialHello(how: DialedLink, token: string, agent: string, version = PROTOCOL_VERSION, features = 0): { hello: HelloFrame; verify(w: WelcomeFrame): AuthFrame | string } {
    const id = this.options.identity;
    const nonce = version >= 2 ? newNonce() : '';
    const hello: HelloFrame = {
      type: FrameType.HELLO,
      version,
      role: Role.ROUTER,
      token,
      resume: '',
      name: this.domain,
      node: this.node,
      agent,
      maxFrame: this.options.maxFrameBytes,
      // Numbered acknowledgements always: one ACKS per run of messages instead of an ACK each.
      features: (features | Feature.ACKS) & KNOWN_FEATURES,
      nonce,
      link: how.mode === 'peer' ? LinkMode.PEER : LinkMode.UPLINK,
    };
    return {
      hello,
      verify: (w) => {
        const hub = this.options.hub;
        if (hub && w.domain !== this.domain) return `a hub of "${this.domain}" dials the bridgeheads of its own domain; that router serves "${w.domain}"`;
        if (!hub && w.domain === this.domain && how.mode === 'uplink') return `that router serves this router's own domain "${this.domain}": a router of the domain behind a bridgehead is a hub (postern hub)`;
        if (w.version < 2) return how.mode === 'peer' ? `the router speaks protocol ${w.version}; peering needs 2` : hub ? `the bridgehead speaks protocol ${w.version}; hubs need 2` : { type: FrameType.AUTH, proof: '' };
        if (id === undefined) return 'this router has no node key';
        if (!isValidNodeId(w.node) || !isNonce(w.nonce)) return 'its WELCOME carries no valid node id and nonce';
        if (w.node === this.node) return 'it is this router itself';
        if (!id.verify(w.node, acceptPayload(nonce, this.node, w.node, w.nonce), w.proof)) return `it did not prove the key of its node id ${w.node}`;
        return { type: FrameType.AUTH, proof: id.sign(dialPayload(w.nonce, w.node, this.node, nonce)) };
      },
    };
  }

  /** Closes every connection with SHUTDOWN. What the router holds stays in its store for the next start. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#anonymity.close();
    this.options.clock.clearTimeout(this.#maintenance);
    this.#delivery.close();
    for (const l of [...this.#links]) l.channel.close(WireCode.SHUTDOWN, 'router is shutting down');
  }

  async #hello(channel: Channel, h: HelloFrame, hooks: HelloHooks): Promise<void> {
    const o = this.options;
    if (h.version < MIN_PROTOCOL_VERSION) {
      channel.close(WireCode.VERSION, `protocol version ${h.version} is not supported; this router speaks ${MIN_PROTOCOL_VERSION} to ${PROTOCOL_VERSION}`);
      return;
    }
    // The dialer speaks h.version or less: answer in the lower of the two.
    const version = Math.min(h.version, PROTOCOL_VERSION);
    let claims: Claims | undefined;
    if (h.token !== '' && o.authenticator !== undefined) {
      try {
        claims = await o.authenticator.verify(h.token);
      } catch (err) {
        const reason = err instanceof PosternError ? err.message : 'credential refused';
        channel.close(WireCode.AUTH_FAILED, reason);
        return;
      }
    }
    if (channel.closed || this.#closed) return;
    // Grants (version 2 routers): they name the router's node key, which it proves with AUTH.
    if (h.role === Role.ROUTER && version >= 2 && h.token !== '') {
      const g = o.trust?.grants(h.token, h.node);
      if (g !== undefined) {
        const domains = [...(claims === undefined ? [] : claimedDomains(claims)), ...g.domains];
        const expiresAt = claims?.expiresAt === undefined ? g.expiresAt : g.expiresAt === undefined ? claims.expiresAt : Math.min(claims.expiresAt, g.expiresAt);
        // The token's id stays: revoking the token closes this link too.
        const tokenId = claims?.tokenId;
        claims = { domain: domains[0]!, domains, peer: g.peer || claims?.peer === true, ...(expiresAt === undefined ? {} : { expiresAt }), ...(tokenId === undefined ? {} : { tokenId }) };
      }
    }
    if (h.token !== '' && claims === undefined && h.role === Role.ROUTER && (o.authenticator !== undefined || o.trust !== undefined)) {
      channel.close(WireCode.AUTH_FAILED, 'the credential is neither a token signed with this router\'s secret nor a grant that chains to a key this router trusts for this node');
      return;
    }
    const overCredential = claims === undefined ? undefined : this.#quotas.credentialRefusal(claims);
    if (overCredential !== undefined) {
      channel.close(WireCode.TOO_MANY_CONNECTIONS, overCredential);
      return;
    }
    if (h.role === Role.ROUTER) this.#helloRouter(channel, h, version, claims, hooks);
    else this.#helloAgent(channel, h, version, claims, hooks);
  }

  #welcome(link: { id: string; name: string; resume: string }, h: HelloFrame, version: number, nonce = ''): WelcomeFrame {
    const o = this.options;
    const id = o.identity;
    return {
      type: FrameType.WELCOME,
      version,
      id: link.id,
      domain: this.domain,
      name: link.name,
      resume: link.resume,
      node: this.node,
      maxFrame: o.maxFrameBytes,
      pingMs: o.pingIntervalMs,
      features: h.features & KNOWN_FEATURES,
      nonce,
      // Proves our node key to a dialer that sent a nonce (routers do; agents may).
      proof: version >= 2 && h.nonce !== '' && id !== undefined ? id.sign(acceptPayload(h.nonce, h.node, this.node, nonce)) : '',
    };
  }

  #helloAgent(channel: Channel, h: HelloFrame, version: number, claims: Claims | undefined, hooks: HelloHooks): void {
    const o = this.options;
    if (o.authenticator !== undefined && claims === undefined && !o.allowGuests) {
      channel.close(WireCode.AUTH_FAILED, 'this router requires a token (its operator may let agents without one in as guests: --allow-guests)');
      return;
    }
    if (claims !== undefined && claims.domain !== '*' && claims.domain !== this.domain) {
      channel.close(WireCode.AUTH_FAILED, `the token is for domain "${claims.domain}", this router serves "${this.domain}"`);
      return;
    }
    let id = h.resume === '' ? undefined : o.sessionTokens.verify(h.resume, holderOf(claims));
    id ??= newId();
    const name = h.name.toLowerCase();
    const refusal = name === '' ? undefined : this.#nameRefusal(name, claims, this.#agentsById.get(id), id);
    if (refusal !== undefined) {
      channel.close(refusal[0], refusal[1]);
      return;
    }
    if (!o.hub) {
      this.#welcomeAgent(channel, h, version, claims, hooks, id, name);
      return;
    }
    // A hub asks its bridgeheads first: the name may be held at another hub of the domain.
    void this.#homes.claim(name === '' ? id : name, id).then((refused) => {
      if (channel.closed || this.#closed) return;
      // Taken here meanwhile, by a connection that claimed it first?
      const again = refused ?? (name === '' ? undefined : this.#nameRefusal(name, claims, this.#agentsById.get(id), id));
      if (again !== undefined) channel.close(again[0], again[1]);
      else this.#welcomeAgent(channel, h, version, claims, hooks, id, name);
    });
  }

  #welcomeAgent(channel: Channel, h: HelloFrame, version: number, claims: Claims | undefined, hooks: HelloHooks, id: string, name: string): void {
    const o = this.options;
    const previous = this.#agentsById.get(id);
    const link = new Link('agent', channel, id, claims);
    link.since = this.options.clock.now();
    link.maxFrame = h.maxFrame;
    link.version = version;
    // The new connection holds the session before the old one goes, so that the old one's
    // going does not mark it offline (here, and at the bridgeheads of a hub).
    this.#setName(link, name);
    this.#links.add(link);
    this.#agentsById.set(id, link);
    this.#homedHere(id, id);
    if (previous !== undefined) previous.channel.close(WireCode.REPLACED, 'the session was resumed on another connection');
    this.#armExpiry(link);
    hooks.ready(link);
    this.#wakeAgent(id);
    sendWelcome(channel, this.#welcome({ id, name, resume: o.sessionTokens.issue(id, holderOf(claims)) }, h, version));
    o.logger.debug('agent.connected', 'agent connected', { id, name, remote: channel.duplex.remote });
  }

  #helloRouter(channel: Channel, h: HelloFrame, version: number, claims: Claims | undefined, hooks: HelloHooks): void {
    const o = this.options;
    const domain = h.name.toLowerCase();
    const peer = version >= 2 && h.link === LinkMode.PEER;
    if (version >= 2 && h.link !== LinkMode.UPLINK && h.link !== LinkMode.PEER) {
      this.#protocolError(channel, `a router HELLO of version 2 names link mode ${LinkMode.UPLINK} or ${LinkMode.PEER}, not ${h.link}`);
      return;
    }
    if (claims?.name !== undefined) {
      channel.close(WireCode.AUTH_FAILED, 'the token is an agent token (it names an agent); a router link needs a domain token or a grant');
      return;
    }
    if (o.hub) {
      channel.close(WireCode.DOMAIN_NOT_ALLOWED, 'this router is a hub: it takes agents only, and dials its bridgeheads itself');
      return;
    }
    if (h.node === this.node) {
      channel.close(WireCode.LOOP, 'a router cannot link to itself');
      return;
    }
    // A router names the domain it serves in HELLO, so a claim is refused before WELCOME.
    if (!isValidDomain(domain)) {
      channel.close(WireCode.BAD_ADDRESS, `"${h.name}" is not a valid domain`);
      return;
    }
    // A router of our own domain may link as one of its hubs (we are its bridgehead): on a hub
    // token of our domain, or on our operator's word for its node key.
    const hub = domain === this.domain && version >= 2 && !peer && ((claims?.hub === true && claims.domain === domain) || anyCovers(o.trust?.trusted(h.node) ?? [], domain));
    if (domain === this.domain && !hub) {
      channel.close(
        WireCode.DOMAIN_NOT_ALLOWED,
        peer
          ? `both routers serve domain "${domain}": give each relay its own --domain`
          : version < 2
            ? `domain "${domain}" belongs to this router`
            : `domain "${domain}" belongs to this router: a hub of it links with a hub token (postern token --hub --domain ${domain}) or a node key this router trusts for it`,
      );
      return;
    }
    // What it may speak for: its credential, and (version 2, once it proved its key) what our
    // operator trusts its node id with.
    const trusted = version >= 2 ? o.trust?.trusted(h.node) : undefined;
    const entitled = [...(claims === undefined ? [] : claimedDomains(claims)), ...(trusted ?? [])];
    if (version < 2 || !peer) {
      if (claims === undefined && trusted === undefined) {
        channel.close(WireCode.AUTH_FAILED, o.authenticator === undefined && o.trust === undefined ? 'this router has no secret and trusts no key, so it accepts no router links' : 'a router link needs a domain token, a grant, or a node key this router trusts');
        return;
      }
    } else if (trusted === undefined && claims?.peer !== true) {
      channel.close(WireCode.AUTH_FAILED, `node ${h.node} is not a peer of this router: its operator names it with --trust ${h.node}=DOMAINS, or the credential must be a peer grant`);
      return;
    }
    if (!anyCovers(entitled, domain)) {
      channel.close(WireCode.DOMAIN_NOT_ALLOWED, `the credential is for ${entitled.map((d) => `"${d}"`).join(', ') || 'no domain'}, not "${domain}"`);
      return;
    }
    const kind: LinkKind = hub ? 'hub' : peer ? 'peer' : 'downlink';
    const linkId = newId();
    const make = (): Link => {
      const link = new Link(kind, channel, linkId, claims, h.node);
      link.since = this.options.clock.now();
      link.maxFrame = h.maxFrame;
      link.address = domain;
      link.version = version;
      link.features = h.features & KNOWN_FEATURES;
      link.dialer = h.node;
      link.entitled = entitled;
      return link;
    };
    if (version < 2) {
      // Version 1: no node keys; the credential alone admits it.
      const link = make();
      hooks.ready(link);
      this.#addRouterLink(link);
      this.#armExpiry(link);
      sendWelcome(channel, this.#welcome({ id: link.id, name: '', resume: '' }, h, version));
      o.logger.info('router.linked', 'router linked', { node: h.node, domain, version, remote: channel.duplex.remote });
      return;
    }
    if (o.identity === undefined) {
      channel.close(WireCode.AUTH_FAILED, 'this router has no node key, so it cannot take version 2 router links');
      return;
    }
    if (!isValidNodeId(h.node) || !isNonce(h.nonce)) {
      this.#protocolError(channel, 'a router HELLO of version 2 carries its node id and a nonce of 43 base64url characters');
      return;
    }
    const nonce = newNonce();
    hooks.awaitProof((auth) => {
      if (!o.identity!.verify(h.node, dialPayload(nonce, this.node, h.node, h.nonce), auth.proof)) {
        channel.close(WireCode.AUTH_FAILED, `the router did not prove the key of its node id ${h.node}`);
        return;
      }
      if (channel.closed || this.#closed) return;
      const link = make();
      hooks.ready(link);
      this.#addRouterLink(link);
      this.#armExpiry(link);
      // A fenced router retries every 2 s: its links are not news (its fence was logged once).
      const what = peer ? 'peer linked' : hub ? 'hub linked' : 'router linked';
      const fields = { node: h.node, domain, version, remote: channel.duplex.remote };
      if (this.#routing.fenced(h.node)) o.logger.debug('router.linked', what, fields);
      else o.logger.info('router.linked', what, fields);
    });
    sendWelcome(channel, this.#welcome({ id: linkId, name: '', resume: '' }, h, version, nonce));
  }

  /** Registers a router link (either side dialed it), replacing or refusing a duplicate, and tells it our routes. */
  #addRouterLink(link: Link): void {
    for (const old of [...this.#links]) {
      if (old === link || old.node !== link.node || !old.isRouter) continue;
      if ((old.kind === 'downlink' || old.kind === 'hub') && old.kind === link.kind && old.address === link.address) {
        // The same router again (it reconnected while we still hold its old, half-open link):
        // the new link replaces the old one. Same node id and domain: a node id alone is the
        // peer's word in version 1, and must not let another domain's router cut this one.
        old.channel.close(WireCode.REPLACED, 'the router linked again');
      } else if (old.kind === 'peer' && link.kind === 'peer') {
        // Both sides dialed: both keep the link dialed by the lower node id, so both close the same one.
        // The same side dialed again (its old link half-open): the new one replaces it.
        const keepOld = old.dialer !== link.dialer && old.dialer < link.dialer;
        const loser = keepOld ? link : old;
        loser.channel.close(WireCode.REPLACED, 'a link between these routers exists already');
        if (keepOld) return;
      }
    }
    this.#links.add(link);
    this.#routers.set(link.node, link);
    if (link.kind === 'uplink') {
      this.#uplinks.push(link);
      this.#uplinks.sort((a, b) => a.rank - b.rank);
    }
    this.#routing.linkUp(link);
    this.#delivery.linkUp(link);
    this.#delivery.wakeDomains();
    if (link.kind === 'hub') {
      this.#becomeBridgehead();
      this.#homes.hubUp(link);
      this.#delivery.wake();
    } else if (link.bridgehead) {
      this.#homes.bridgeheadUp(link);
      this.#delivery.wake();
    }
    // Addresses that were unreachable may be watched through it now.
    this.#presence.reroute();
  }

  /**
   * A hub linked (or had names here before a restart): from now on our domain is announced as a
   * bridgehead's, which may share it with other bridgeheads (RouteFlag.BRIDGEHEAD). It stays so:
   * the hubs' names stay in the directory while their links are down.
   */
  #becomeBridgehead(): void {
    if (this.#bridgehead) return;
    this.#bridgehead = true;
    this.#routing.ownChanged();
  }

  /** Messages for `local` may go now (it connected): its queue, and on a hub what our agents sent it that was held. */
  #wakeAgent(local: string): void {
    this.#delivery.wake(agentDestination(local));
    if (this.options.hub) this.#delivery.wake(returnDestination(local));
  }

  /** A session of ours let go of `local`: offline, unless the name moved away meanwhile (then it is not ours to mark). */
  #wentOffline(local: string, id: string): void {
    if (this.#directory.get(local)?.home !== '') return;
    this.#directory.set(local, '', false);
    this.#homes.offline(local, id);
    this.#presence.changed(local);
  }

  /** A session of ours holds `local` (its name, or its id) now. */
  #homedHere(local: string, id: string): void {
    if (this.options.hub) this.#directory.set(local, '', true, id, '');
    else this.#homes.homedHere(local, id);
    this.#presence.changed(local);
  }

  /** Where the presence of `target` comes from, seen from here (see Presence). */
  #presenceSource(target: ParsedAddress): PresenceSource {
    // A version 1 router knows no WATCH: it would close the whole link on one.
    const via = (link: Link | undefined): PresenceSource =>
      link === undefined
        ? { kind: 'unreachable' }
        : link.version >= 2
          ? { kind: 'link', link }
          : { kind: 'refused', refusal: [WireCode.VERSION, `the way to "${target.text}" leads through a router that speaks protocol 1, which has no presence`] };
    if (target.domain !== this.domain) return via(this.#routing.best(target.domain)?.link ?? this.#uplinks[0]);
    const local = target.local;
    const e = this.#directory.get(local);
    if (this.#agent(local) !== undefined || e?.home === '') return { kind: 'home', local };
    if (this.options.hub) return via(this.#uplinks[0]);
    if (e === undefined) {
      return this.options.unknownRecipients === 'queue' ? { kind: 'home', local } : { kind: 'refused', refusal: [WireCode.UNKNOWN_RECIPIENT, `no agent "${target.text}" is known here (never connected, not provisioned)`] };
    }
    return via(this.#routers.get(e.home));
  }


  /** The connected agent holding `local` (a name or an id). */
  #agent(local: string): Link | undefined {
    return isId(local) ? this.#agentsById.get(local) : this.#agentsByName.get(local);
  }

  /** Why `name` cannot be claimed by session `id`, as [wire code, reason], or undefined when it can. */
  #nameRefusal(name: string, claims: Claims | undefined, self: Link | undefined, id: string): [number, string] | undefined {
    if (!isValidName(name)) {
      return [WireCode.BAD_ADDRESS, `"${name}" is not a valid name: 1-64 of a-z 0-9 . _ -, starting with a letter or digit`];
    }
    if (this.options.authenticator !== undefined) {
      if (claims === undefined) return [WireCode.NAME_NOT_ALLOWED, `claiming the name "${name}" needs a token`];
      if (claims.name !== undefined && claims.name !== name) {
        return [WireCode.NAME_NOT_ALLOWED, `the token allows the name "${claims.name}", not "${name}"`];
      }
    }
    const holder = this.#agentsByName.get(name);
    if (holder !== undefined && holder !== self) return [WireCode.NAME_TAKEN, `the name "${name}" is taken by another agent`];
    // A bridgehead: the name may be online at one of its hubs.
    return this.options.hub ? undefined : this.#homes.refusalHere(name, id);
  }

  #setName(link: Link, name: string): void {
    if (link.name !== '' && this.#agentsByName.get(link.name) === link) {
      this.#agentsByName.delete(link.name);
      this.#wentOffline(link.name, link.id);
    }
    link.name = name;
    if (name !== '') {
      this.#agentsByName.set(name, link);
      this.#homedHere(name, link.id);
      this.#wakeAgent(name);
    }
    link.address = `${name === '' ? link.id : name}@${this.domain}`;
  }

  #onFrame(link: Link, f: Frame, raw: Uint8Array, num: number): void {
    switch (f.type) {
      case FrameType.MSG:
        link.inNum = num;
        this.#onMsg(link, f, raw);
        link.inNum = 0;
        return;
      case FrameType.ACK:
        this.#delivery.onAck(link, f);
        return;
      case FrameType.ACKS:
        if (!link.channel.numbered) break;
        this.#delivery.onAcks(link, f.first, f.count);
        return;
      case FrameType.NACK:
        this.#delivery.onNack(link, f);
        return;
      case FrameType.HELD:
        if (!link.isRouter || link.version < 2) break;
        this.#delivery.onHeld(link, f);
        return;
      case FrameType.RELEASE:
        this.#delivery.onRelease(link, f.count);
        return;
      case FrameType.REGISTER:
        if (link.kind !== 'agent') break;
        this.#onRegister(link, f.ref, f.name.toLowerCase());
        return;
      case FrameType.HOME:
        if (link.kind !== 'hub' && !link.bridgehead) break;
        this.#onHome(link, f);
        return;
      case FrameType.HOMED:
        if (!link.bridgehead) break;
        this.#homes.onHomed(link, f);
        return;
      case FrameType.WATCH:
        if (link.version < 2) break;
        this.#presence.onWatch(link, f);
        return;
      case FrameType.WATCHED:
        if (link.version < 2 || !link.isRouter) break;
        this.#presence.onWatched(link, f);
        return;
      case FrameType.PRESENCE:
        if (link.version < 2 || !link.isRouter) break;
        this.#presence.onPresence(link, f);
        return;
      case FrameType.PROPS:
        if (link.version < 2 || link.kind !== 'agent') break;
        this.#presence.onProps(link, f);
        return;
      case FrameType.ROUTE:
        // Inside a domain the directory says where names are, not routes.
        if (link.kind === 'hub' || link.bridgehead) return;
        // Version 1 allowed ROUTE only from downlinks; version 2 links hear and tell routes both ways.
        if (link.kind === 'agent' || (link.version < 2 && link.kind !== 'downlink')) break;
        if (!isValidDomain(f.domain.toLowerCase())) {
          this.#protocolError(link.channel, `ROUTE names an invalid domain "${f.domain}"`);
          return;
        }
        this.#routing.learn(link, { ...f, domain: f.domain.toLowerCase() });
        return;
      case FrameType.HANDLE:
        if (link.version < 2) break;
        this.#anonymity.onHandle(link, f);
        return;
      case FrameType.HANDLED:
        if (link.kind !== 'uplink') break;
        this.#anonymity.onHandled(f);
        return;
    }
    this.#protocolError(link.channel, `frame 0x${f.type.toString(16)} is not allowed on ${link.kind === 'agent' ? 'an agent' : `a ${link.kind}`} link here`);
  }

  #onRegister(link: Link, ref: number, name: string): void {
    const refusal = name === '' || name === link.name ? undefined : this.#nameRefusal(name, link.claims, link, link.id);
    if (refusal !== undefined || !this.options.hub || name === '' || name === link.name) {
      this.#registered(link, ref, name, refusal);
      return;
    }
    // A hub asks its bridgeheads first; frames that follow wait for the answer, in order.
    link.hold();
    void this.#homes.claim(name, link.id).then((refused) => {
      link.letGo();
      if (!link.up) return;
      this.#registered(link, ref, name, refused ?? this.#nameRefusal(name, link.claims, link, link.id));
    });
  }

  #registered(link: Link, ref: number, name: string, refusal: [number, string] | undefined): void {
    if (refusal === undefined) this.#setName(link, name);
    link.channel.send({
      type: FrameType.REGISTERED,
      ref,
      code: refusal === undefined ? WireCode.OK : refusal[0],
      name: refusal === undefined ? name : link.name,
      reason: refusal === undefined ? '' : refusal[1],
    });
  }

  #onHome(link: Link, f: HomeFrame): void {
    const local = f.local.toLowerCase();
    if (f.op !== HomeOp.SYNC && f.op !== HomeOp.SYNCED && !(isId(local) || isValidName(local))) {
      this.#protocolError(link.channel, `HOME names "${f.local}", which is neither a name nor an id`);
      return;
    }
    this.#homes.onHome(link, { ...f, local });
  }

  #onMsg(link: Link, f: MsgFrame, raw: Uint8Array): void {
    this.#stats.msgsIn++;
    if (link.quota !== undefined && (link.quota.msgRate > 0 || link.quota.byteRate > 0) && !this.#withinRate(link, link.quota, f, raw)) return;
    this.#onMsgTaken(link, f, raw);
  }

  #onMsgTaken(link: Link, f: MsgFrame, raw: Uint8Array): void {
    const o = this.options;
    let from: string;
    let id = f.id;
    let hops = f.hops;
    const flags = f.flags;
    let parsedTo: ParsedAddress | undefined;
    // How refusals and the ACK name the message to the hop it came from.
    let ackAs: AckAs | undefined;
    const anonymous = (flags & MsgFlag.ANONYMOUS) !== 0;
    if (link.kind === 'agent') {
      from = link.address;
      if (hops === 0 || hops > o.hopLimit) hops = o.hopLimit;
      parsedTo = this.#addresses.parse(f.to, true);
      if (anonymous && parsedTo !== undefined) {
        const hidden = this.#anonymity.hide(link, f.id, flags, f.body.length);
        if (Array.isArray(hidden)) {
          this.#nack(link, f.id, from, hidden[0], hidden[1]);
          return;
        }
        ({ from, id, hops, ackAs } = hidden);
      }
    } else {
      from = f.from;
      parsedTo = this.#addresses.parse(f.to);
      const fromAddr = this.#addresses.parse(from);
      if (fromAddr === undefined) {
        this.#nack(link, f.id, from, WireCode.BAD_ADDRESS, `invalid sender address "${from}"`);
        return;
      }
      if (hops > o.hopLimit) hops = o.hopLimit;
      // A handle of a router below us names its organisation: it travels on under one of ours.
      const wrap = this.#anonymity.wrap(link, fromAddr, f.id, flags);
      if (wrap !== undefined) {
        ackAs = { id: f.id, from };
        from = wrap.from;
        id = wrap.id;
        hops = wrap.hops ?? hops;
      }
      // A retry of what we hold is answered as such, whatever changed since (routes, entitlements).
      // From a hub, for a name of ours, a key we know may also be a message handed back (a move).
      const back = link.kind === 'hub' && parsedTo?.domain === this.domain;
      if ((flags & MsgFlag.VOLATILE) === 0 && (back ? this.#delivery.takeBack(link, from, id) : this.#delivery.retry(link, from, id))) return;
      if (this.#forbiddenSender(link, fromAddr.domain, flags, parsedTo?.domain)) {
        this.#stats.forbidden++;
        this.#nack(link, f.id, f.from, WireCode.FORBIDDEN, `this link may not send from domain "${fromAddr.domain}"`);
        return;
      }
      const refused = wrap === undefined ? undefined : this.#anonymity.commitWrap(wrap.token, f.from, flags, link.kind === 'hub' ? link.node : '');
      if (refused !== undefined) {
        this.#nack(link, f.id, f.from, refused[0], refused[1]);
        return;
      }
    }
    const tracer = this.tracer;
    if (tracer !== undefined) this.#traceIn(tracer, link, from, id, f);
    const replyId = ackAs?.id ?? f.id;
    const replyFrom = ackAs?.from ?? from;
    if (parsedTo === undefined) {
      this.#nack(link, replyId, replyFrom, WireCode.BAD_ADDRESS, `invalid recipient address "${f.to}"`);
      return;
    }
    const volatile = (flags & MsgFlag.VOLATILE) !== 0;
    // (Router links were checked for a retry above.)
    if (!volatile && link.kind === 'agent' && this.#delivery.retry(link, from, id)) return;
    const resolved = this.#anonymity.resolve(parsedTo);
    if (resolved === 'unknown') {
      this.#nack(link, replyId, replyFrom, WireCode.UNKNOWN_RECIPIENT, `"${parsedTo.text}" is a reply handle this router does not know, or one that expired`);
      return;
    }
    const to = resolved.to;
    let body = f.body;
    // Handles cross version 1 routers badly: they cannot read the address.
    const carriesHandle = anonymous || isHandle(to.local) || from.charCodeAt(0) === 0x7e;
    // A report about an anonymous message names it by the id we sealed: give the hop behind us
    // (the sender, or the router whose handle we wrapped) its own.
    if ((flags & MsgFlag.REPORT) !== 0) body = this.#anonymity.unsealReport(body, resolved.handle);
    const dest = this.#destination(resolved.dest, link, !volatile);
    if (dest.kind !== 'domain' && resolved.handle === undefined && !this.#known(dest.local)) {
      // Nobody ever held that name (or id): say so now, rather than keep the message for a day.
      this.#nack(link, replyId, replyFrom, WireCode.UNKNOWN_RECIPIENT, `no agent "${resolved.dest.text}" is known here (never connected, not provisioned)`);
      return;
    }
    // Every router hop spends one, inside a domain (hub and bridgehead) as well.
    if (dest.kind === 'domain' || this.#homes.forwards(dest.local)) {
      if (hops <= 1) {
        this.#nack(link, replyId, replyFrom, WireCode.HOP_LIMIT, `hop limit reached on the way to "${dest.kind === 'domain' ? resolved.dest.domain : resolved.dest.text}"`);
        return;
      }
      hops--;
    }
    const next = this.#nextHop(dest);
    if (carriesHandle && next !== undefined && next.isRouter && next.version < 2) {
      this.#nack(link, replyId, replyFrom, WireCode.FORBIDDEN, 'the next router speaks protocol 1, which cannot carry anonymous messages and reply handles');
      return;
    }
    // A frame the next hop would refuse would cost it its whole connection: refuse it here.
    // Addresses are ASCII, so string lengths are byte lengths.
    const rewritten = from !== f.from || id !== f.id || to.text !== f.to || body !== f.body || flags !== f.flags;
    const size = rewritten ? msgLength(id, from, to.text, body.length) : raw.length - 4;
    const maxFrame = next?.maxFrame ?? o.maxFrameBytes;
    if (size > maxFrame) {
      this.#nack(link, replyId, replyFrom, WireCode.FRAME_TOO_LARGE, `the next hop accepts frames of at most ${maxFrame} bytes; this one has ${size}`);
      return;
    }
    if (!volatile) {
      // The body may be a view of a whole batch; a queued message must not pin that buffer.
      this.#delivery.accept(link, { from, id, to: to.text, flags, hops, body: body === f.body ? f.body.slice() : body }, dest, true, ackAs);
      return;
    }
    // Volatile: at most once, never stored. Sent now or not at all; never back where it came from.
    if (next === undefined || (next === link && link.isRouter)) {
      this.#nack(
        link,
        replyId,
        replyFrom,
        WireCode.NO_ROUTE,
        next !== undefined ? `no route to domain "${to.domain}" other than back where the message came from` : to.domain === this.domain ? `no agent "${to.local}@${to.domain}" is connected` : `no route to domain "${to.domain}"`,
      );
      return;
    }
    // A link to another router carries everyone behind it: when it falls behind, it must not
    // reach the slow-consumer cap, which would cut the whole tunnel. Stop reading from whoever
    // feeds it (TCP backpressure reaches the sender) until it drains; where the transport
    // cannot pause, shed load instead.
    if (next.channel.outboundBytes > o.maxOutboundBytes / 2) {
      // An agent that reads slower than it is written to is not cut off as a slow consumer for
      // volatile traffic: an agent sending to it is paused (TCP backpressure reaches it); what
      // comes over a router link (everyone behind it) or a transport that cannot pause is shed,
      // counted in msgsDropped. Volatile is at most once: shedding keeps that promise.
      if (!link.channel.canPause || (next.kind === 'agent' && link.isRouter)) {
        this.#stats.msgsDropped++;
        tracer?.event(from, id, 'dropped', next, 'volatile, shed: the next hop is congested');
        return;
      }
      this.#block(link, next);
    }
    if (next.kind === 'agent') this.#stats.msgsDelivered++;
    else this.#stats.msgsForwarded++;
    tracer?.event(from, id, 'forwarded', next, 'volatile', to.text);
    // A frame from another router already carries the right sender: forward its bytes as they are.
    if (link.isRouter && !rewritten) next.channel.msgRaw(raw, hops);
    else next.channel.msg(flags, hops, id, from, to.text, body);
  }

  /** Traces a message received (and, for a report other than OK passing here, records it). */
  #traceIn(tracer: Tracer, link: Link, from: string, id: string, f: MsgFrame): void {
    tracer.event(from, id, 'received', link, undefined, f.to);
    if ((f.flags & MsgFlag.REPORT) === 0 || link.kind === 'agent') return;
    try {
      const r = decodeReport(f.body);
      // A report goes from the message's recipient to its sender: it names (f.to, ref).
      tracer.report(f.to, r.ref, from, r.code, r.reason, link);
    } catch {
      // Not readable (sealed for an anonymous sender): traced as received only.
    }
  }

  /** True when router `link` may not send messages from `domain` (to `toDomain`). */
  #forbiddenSender(link: Link, domain: string, flags: number, toDomain: string | undefined): boolean {
    switch (link.kind) {
      case 'hub':
        // Its own agents; or, to a name of ours, anyone's message it hands back; or a report.
        return domain !== this.domain && toDomain !== this.domain && (flags & MsgFlag.REPORT) === 0;
      case 'downlink':
        // A router below us speaks for the domains its credential covers, and no others.
        return !anyCovers(link.entitled, domain);
      case 'peer':
        // A report comes `from` the address of the message it is about, whichever router made
        // it (a transit that held the message): no peer is entitled to that, so reports pass.
        if ((flags & MsgFlag.REPORT) !== 0) return false;
        // Otherwise: what it is trusted with, what it announced with a valid proof on this link,
        // or on an earlier link within maxMessageAgeMs (messages it took then may still come).
        return domain === this.domain || !(anyCovers(link.entitled, domain) || link.validated?.has(domain) === true || this.#vouched(link.node, domain));
      default: {
        // A hub's bridgehead carries everyone's messages to the hub's agents, its own domain's too.
        if (link.bridgehead) return false;
        // Our uplink carries the rest of the world, not us nor the routers below us.
        if (domain === this.domain) return true;
        const best = this.#routing.best(domain);
        return best !== undefined && best.link.kind === 'downlink';
      }
    }
  }

  /** True when router `node` validly announced `domain` to us within maxMessageAgeMs (on any link). */
  #vouched(node: string, domain: string): boolean {
    const until = this.#announced.get(`${node} ${domain}`);
    return until !== undefined && until > this.options.clock.now();
  }

  /**
   * Where a message for `to` waits: the queue of a name or id of our domain, or of another domain.
   * One a hub hands back for a name that moved waits in the queue of returned messages.
   */
  #destination(to: Address, from?: Link, reliable = true): Destination {
    if (to.domain !== this.domain) return domainDestination(to.domain);
    if (from?.kind === 'hub') return this.#homes.destinationFrom(from, to.local);
    // On a hub, our own agents' messages for a name that just moved here wait behind what the
    // bridgehead still had for it (Homes).
    return reliable && from?.bridgehead !== true ? this.#homes.destinationHere(to.local) : agentDestination(to.local);
  }

  /**
   * The one next-hop decision, for volatile and reliable messages alike: the link that carries
   * `dest` now (a connected agent, the best route to a domain, or the default uplink), or
   * undefined while there is none. Peers are never a default route.
   */
  #nextHop(dest: Destination): Link | undefined {
    switch (dest.kind) {
      case 'agent':
      case 'return':
        // Connected here, or homed at another router of our domain (see Homes).
        return this.#homes.nextHop(dest, this.#agent(dest.local));
      case 'domain':
        return this.#routing.best(dest.domain)?.link ?? this.#uplinks[0];
    }
  }

  *#routerLinks(): Iterable<Link> {
    for (const l of this.#links) if (l.isRouter && l.up) yield l;
  }

  #nack(link: Link, id: string, from: string, code: number, reason: string): void {
    this.#stats.nacksSent++;
    this.tracer?.event(from, id, 'nacked', link, `sent ${errorCodeOf(code)}: ${reason}`);
    this.#nacksByCode.set(code, (this.#nacksByCode.get(code) ?? 0) + 1);
    link.channel.send({ type: FrameType.NACK, code, id, from, reason });
  }

  /** Pauses reading from `ingress` until `egress` has drained to a quarter of its cap. */
  #block(ingress: Link, egress: Link): void {
    const blocked = (egress.blocked ??= new Set());
    if (!blocked.has(ingress)) {
      blocked.add(ingress);
      ingress.hold();
      this.#stats.pauses++;
    }
    if (egress.drainTimer === undefined) this.#watchDrain(egress);
  }

  #watchDrain(egress: Link): void {
    const o = this.options;
    egress.drainTimer = o.clock.setTimeout(() => {
      egress.drainTimer = undefined;
      if (egress.up && egress.channel.outboundBytes > o.maxOutboundBytes / 4) {
        this.#watchDrain(egress);
        return;
      }
      this.#unblock(egress);
    }, DRAIN_CHECK_MS);
  }

  #unblock(egress: Link): void {
    if (egress.drainTimer !== undefined) this.options.clock.clearTimeout(egress.drainTimer);
    egress.drainTimer = undefined;
    const blocked = egress.blocked;
    egress.blocked = undefined;
    if (blocked !== undefined) for (const l of blocked) l.letGo();
  }

  /** A name or id of our domain that messages may wait for: connected, known, or any when we queue for unknown names. */
  #known(local: string): boolean {
    // A hub does not know the whole domain: its bridgehead does, and refuses there.
    if (this.options.unknownRecipients === 'queue' || this.options.hub) return true;
    return (isId(local) ? this.#agentsById.has(local) : this.#agentsByName.has(local)) || this.#directory.get(local) !== undefined;
  }

  #armMaintenance(): void {
    if (this.#closed) return;
    this.#maintenance = this.options.clock.setTimeout(() => {
      this.#directory.sweep();
      this.#homes.sweep();
      this.#armMaintenance();
    }, MAINTENANCE_MS);
  }

  /**
   * Closes every connection whose credential no longer holds (a revocation list changed): a
   * token is checked at each connection, and this takes back those already made with it.
   * Returns how many were closed.
   */
  closeRevoked(revoked: (claims: Claims) => boolean): number {
    let n = 0;
    for (const link of [...this.#links]) {
      if (link.claims === undefined || !revoked(link.claims)) continue;
      link.channel.close(WireCode.AUTH_FAILED, 'the token was revoked');
      n++;
    }
    return n;
  }

  /** Closes the link when its credential expires: a token is checked at every connection and holds only until then. */
  #armExpiry(link: Link): void {
    const at = link.claims?.expiresAt;
    if (at === undefined) return;
    const clock = this.options.clock;
    // Timers cannot wait longer than 2^31-1 ms; look again then.
    const wait = Math.min(at - clock.now(), 2 ** 31 - 1);
    if (wait <= 0) {
      link.channel.close(WireCode.AUTH_FAILED, 'the token has expired');
      return;
    }
    link.expiry = clock.setTimeout(() => this.#armExpiry(link), wait);
  }

  /** Forgets expired announcements, and the oldest half when still full. */
  #pruneAnnounced(): void {
    const now = this.options.clock.now();
    for (const [k, until] of this.#announced) if (until <= now) this.#announced.delete(k);
    if (this.#announced.size < MAX_ANNOUNCED) return;
    let n = this.#announced.size / 2;
    for (const k of this.#announced.keys()) {
      if (n-- <= 0) break;
      this.#announced.delete(k);
    }
  }

  /**
   * Keeps a sender to its rates, over all its connections: while it is in debt, what it sends is
   * not taken yet. Reading from this link pauses (the sender feels TCP backpressure) and the
   * messages already read wait in order on the link until the rate allows them; nothing is
   * refused. A transport that cannot pause gets such a message refused, RATE_LIMITED, instead.
   * True: take `f` now.
   */
  #withinRate(link: Link, p: Principal, f: MsgFrame, raw: Uint8Array): boolean {
    if (link.deferred === undefined || link.deferred.length === 0) {
      const wait = this.#quotas.wait(p);
      if (wait === 0) {
        this.#quotas.spend(p, f.body.length);
        return true;
      }
      this.#quotas.stats.rateLimited++;
      if (!link.channel.canPause) {
        this.#nack(link, f.id, link.kind === 'agent' ? link.address : f.from, WireCode.RATE_LIMITED, `this sender is over its rate (${p.msgRate || 'any'} messages, ${p.byteRate || 'any'} bytes a second); retry later`);
        return false;
      }
      link.hold();
      this.#rateLater(link, p, wait);
    }
    // The frame and its body are views of the transport message: keep copies.
    (link.deferred ??= []).push({ f: { ...f, body: f.body.slice() }, raw: raw.slice(), num: link.inNum });
    return false;
  }

  /** Takes the messages `link` deferred as its sender's rate allows; reading resumes when none is left. */
  #rateLater(link: Link, p: Principal, wait: number): void {
    link.rateTimer = this.options.clock.setTimeout(() => {
      link.rateTimer = undefined;
      if (!link.up) return;
      while (link.deferred !== undefined && link.deferred.length > 0) {
        const w = this.#quotas.wait(p);
        if (w > 0) {
          this.#rateLater(link, p, w);
          return;
        }
        const { f, raw, num } = link.deferred.shift()!;
        this.#quotas.spend(p, f.body.length);
        link.inNum = num;
        this.#onMsgTaken(link, f, raw);
        link.inNum = 0;
      }
      link.letGo();
    }, wait);
  }

  #detach(link: Link, reason: PosternError): void {
    if (!link.up) return;
    link.up = false;
    if (link.expiry !== undefined) this.options.clock.clearTimeout(link.expiry);
    if (link.rateTimer !== undefined) this.options.clock.clearTimeout(link.rateTimer);
    link.deferred = undefined;
    this.#unblock(link);
    this.#links.delete(link);
    if (link.kind === 'agent') {
      if (this.#agentsById.get(link.id) === link) {
        this.#agentsById.delete(link.id);
        this.#wentOffline(link.id, link.id);
      }
      if (link.name !== '' && this.#agentsByName.get(link.name) === link) {
        this.#agentsByName.delete(link.name);
        this.#wentOffline(link.name, link.id);
      }
    } else {
      if (link.kind === 'hub') this.#homes.hubDown(link);
      else if (link.bridgehead) this.#homes.bridgeheadDown(link);
      if (this.#routers.get(link.node) === link) {
        this.#routers.delete(link.node);
        // Another link to the same router may still be up (a replaced one closes later).
        for (const l of this.#links) if (l.isRouter && l.node === link.node) this.#routers.set(l.node, l);
      }
      if (link.kind === 'uplink') {
        const i = this.#uplinks.indexOf(link);
        if (i >= 0) this.#uplinks.splice(i, 1);
      }
      this.#routing.linkDown(link);
    }
    this.#delivery.linkDown(link);
    this.#presence.linkDown(link);
    if (link.kind === 'agent' && link.name === '') this.#presence.forgetSession(link.id);
    if (link.kind === 'uplink') {
      this.#delivery.wakeDomains();
      this.#presence.reroute();
    }
    this.options.logger.debug('link.closed', 'link closed', { kind: link.kind, id: link.id, node: link.node, reason: reason.message });
  }

  #protocolError(channel: Channel, reason: string): void {
    this.#stats.protocolErrors++;
    channel.close(WireCode.PROTOCOL, reason);
  }

  /** An accepted connection's handler once it is a link: its frames and its end. */
  static readonly #LinkHandler = class implements ChannelHandler {
    readonly #router: Router;
    readonly #link: Link;
    /** The source address the connection is still counted at (no credential took it over), or undefined. */
    readonly #source: string | undefined;

    constructor(router: Router, link: Link, source: string | undefined) {
      this.#router = router;
      this.#link = link;
      this.#source = source;
    }

    frame(f: Frame, raw: Uint8Array, num: number): void {
      this.#router.#onFrame(this.#link, f, raw, num);
    }

    closed(reason: PosternError): void {
      const r = this.#router;
      const link = this.#link;
      r.#connections--;
      if (this.#source !== undefined) r.#quotas.released(this.#source);
      if (link.quota !== undefined) r.#quotas.closed(link.quota);
      r.#detach(link, reason);
    }
  };
}

interface HelloHooks {
  /** The connection is a link now; frames go to it from here on. */
  ready(link: Link): void;
  /** A dialing router must answer WELCOME's nonce with AUTH before anything else. */
  awaitProof(fn: (f: AuthFrame) => void): void;
}

const B32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** How often a congested link is checked for having drained. */
const DRAIN_CHECK_MS = 5;

/** Announcements remembered for sender checks (router node, domain); the oldest go first past it. */
const MAX_ANNOUNCED = 100_000;

/** How often the directory forgets ids offline for too long. */
const MAINTENANCE_MS = 60_000;

/** `_` and 16 base32 characters: 80 random bits. */
export function newId(): string {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  let s = '_';
  for (const x of b) s += B32[x & 31];
  return s;
}

/** Sends WELCOME; from then on, reliable MSGs are numbered if it granted feature ACKS. */
function sendWelcome(channel: Channel, w: WelcomeFrame): void {
  channel.send(w);
  channel.numbered = (w.features & Feature.ACKS) !== 0;
}
