import {
  FrameType,
  MsgFlag,
  PROTOCOL_VERSION,
  PosternError,
  Role,
  RouteOp,
  WireCode,
  isId,
  isValidDomain,
  isValidName,
  parseAddress,
  type Address,
  type Frame,
  type HelloFrame,
  type MsgFrame,
  type RouteFrame,
  type WelcomeFrame,
} from '@postern/protocol';
import { claimsCoverDomain, type Claims } from './auth.js';
import { Channel, type ChannelOptions } from './channel.js';
import { Delivery, type DeliveryStats } from './delivery.js';
import { agentDestination, domainDestination, type Destination } from './destination.js';
import { Link, type LinkKind, type RouteEntry } from './link.js';
import { resolveRouterOptions, type ResolvedRouterOptions, type RouterOptions } from './options.js';
import type { Duplex } from './transport.js';

/** Counters since start; read by /healthz, metrics and the benchmarks. */
export interface RouterStats extends DeliveryStats {
  connections: number;
  agents: number;
  downlinks: number;
  uplinks: number;
  domains: number;
  msgsIn: number;
  msgsDelivered: number;
  msgsForwarded: number;
  /** Volatile messages shed because the link to the next router was congested (and the sender's transport could not pause). */
  msgsDropped: number;
  /** Times a sender's link was paused because the router link its traffic feeds was congested. */
  pauses: number;
  nacksSent: number;
  protocolErrors: number;
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
}

/**
 * The routing core. Every Postern process is one: it accepts connections (agents, other
 * routers), may hold uplinks it dialed, and routes each MSG to a local agent (by id or name),
 * to the link that announced the destination domain, or up its default route. It writes `from`
 * itself, so an agent cannot send as another. It sees frames only; transports are given to it.
 */
export class Router {
  readonly options: ResolvedRouterOptions;
  readonly #channelOptions: ChannelOptions;
  readonly #links = new Set<Link>();
  readonly #agentsById = new Map<string, Link>();
  readonly #agentsByName = new Map<string, Link>();
  readonly #routes = new Map<string, RouteEntry[]>();
  readonly #uplinks: Link[] = [];
  readonly #addresses = new Map<string, ParsedAddress | null>();
  readonly #bareAddresses = new Map<string, ParsedAddress | null>();
  #connections = 0;
  #closed = false;
  readonly #delivery: Delivery;
  /** Resolves when what the store kept has been loaded (messages arriving earlier wait for it). */
  readonly ready: Promise<void>;
  readonly #stats = { msgsIn: 0, msgsDelivered: 0, msgsForwarded: 0, msgsDropped: 0, nacksSent: 0, protocolErrors: 0, pauses: 0 };

  constructor(options: RouterOptions) {
    const o = (this.options = resolveRouterOptions(options));
    this.#channelOptions = {
      maxFrameBytes: o.maxFrameBytes,
      maxOutboundBytes: o.maxOutboundBytes,
      batchBytes: o.batchBytes,
      pingMs: o.pingIntervalMs,
      clock: o.clock,
      scheduler: o.scheduler,
      report: (err) => o.logger.error('internal error while handling a frame; the connection was closed', { err: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
    };
    this.#delivery = new Delivery(o, o.store, {
      nextHop: (dest) => this.#nextHop(dest),
      route: (address) => {
        const a = this.#address(address, false);
        return a === undefined ? undefined : { dest: this.#destination(a), hops: a.domain === this.domain ? o.hopLimit : o.hopLimit - 1 };
      },
      nack: (link, id, from, code, reason) => this.#nack(link, id, from, code, reason),
      sent: (link) => {
        if (link.kind === 'agent') this.#stats.msgsDelivered++;
        else this.#stats.msgsForwarded++;
      },
      paused: () => this.#stats.pauses++,
      fatal: (err) => this.#fatal(err),
    });
    this.ready = this.#delivery.start();
    this.ready.catch((err: unknown) => this.#fatal(err));
  }

  /** The store failed: nothing more can be promised, so stop taking messages. */
  #fatal(err: unknown): void {
    this.options.logger.error('the store failed; the router stops', { err: err instanceof Error ? err.message : String(err) });
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

  stats(): RouterStats {
    let agents = 0;
    let downlinks = 0;
    for (const l of this.#links) {
      if (l.kind === 'agent') agents++;
      else if (l.kind === 'downlink') downlinks++;
    }
    return {
      connections: this.#connections,
      agents,
      downlinks,
      uplinks: this.#uplinks.length,
      domains: this.#routes.size,
      ...this.#stats,
      ...this.#delivery.stats(),
    };
  }

  links(): LinkInfo[] {
    return [...this.#links].map((l) => ({
      kind: l.kind,
      id: l.id,
      address: l.address,
      node: l.node,
      domains: [...l.routes.keys()],
      transport: l.channel.duplex.kind,
      remote: l.channel.duplex.remote,
      pending: this.#delivery.inflightOn(l),
    }));
  }

  /** Domains reachable through linked routers, with the links that announced them. */
  routes(): Map<string, string[]> {
    return new Map([...this.#routes].map(([d, es]) => [d, es.map((e) => e.link.node)]));
  }

  /**
   * Takes a new inbound connection. The first frame must be HELLO within the handshake
   * timeout; anything else closes this connection only.
   */
  accept(duplex: Duplex): void {
    const o = this.options;
    let link: Link | undefined;
    let state: 'hello' | 'auth' | 'ready' = 'hello';
    this.#connections++;
    const channel = new Channel(duplex, this.#channelOptions, {
      frame: (f, raw) => {
        if (state === 'ready' && link !== undefined) {
          this.#onFrame(link, f, raw);
          return;
        }
        if (state === 'auth' || f.type !== FrameType.HELLO) {
          this.#protocolError(channel, `expected HELLO${state === 'auth' ? ' once, then WELCOME before anything else' : ''}, got frame 0x${f.type.toString(16)}`);
          return;
        }
        state = 'auth';
        o.clock.clearTimeout(timer);
        // The link must be known before WELCOME leaves and before the next frame of the same
        // batch is read, or a close in between would leave it registered forever.
        const ready = (l: Link): void => {
          link = l;
          state = 'ready';
        };
        this.#hello(channel, f, ready).catch(
          (err: unknown) => {
            o.logger.error('handshake failed', { err: String(err) });
            channel.close(WireCode.INTERNAL, 'internal error');
          },
        );
      },
      closed: (reason) => {
        o.clock.clearTimeout(timer);
        this.#connections--;
        if (link !== undefined) this.#detach(link, reason);
      },
    });
    const timer = o.clock.setTimeout(() => {
      if (state === 'hello') channel.close(WireCode.HANDSHAKE_TIMEOUT, `no HELLO within ${o.handshakeTimeoutMs} ms`);
    }, o.handshakeTimeoutMs);
    channel.start();
    if (this.#closed) channel.close(WireCode.SHUTDOWN, 'router is shutting down');
    else if (this.#connections > o.maxConnections) {
      channel.close(WireCode.TOO_MANY_CONNECTIONS, `router holds its limit of ${o.maxConnections} connections`);
    }
  }

  /**
   * Makes an established, welcomed connection to another router our uplink: our default route,
   * to which we announce our own domain and every domain we reach. Used by `Uplink`.
   */
  attachUplink(channel: Channel, welcome: WelcomeFrame): Link {
    const link = new Link('uplink', channel, welcome.id, undefined, welcome.node);
    link.maxFrame = welcome.maxFrame;
    link.address = welcome.domain;
    this.#links.add(link);
    this.#uplinks.push(link);
    this.#connections++;
    this.#announce(link, { type: FrameType.ROUTE, op: RouteOp.ADD, metric: 0, domain: this.domain, path: [this.node] });
    for (const [domain, entries] of this.#routes) {
      const best = entries[0];
      if (best !== undefined) this.#announceUp(link, RouteOp.ADD, domain, best);
    }
    this.#delivery.wakeDomains();
    this.options.logger.info('uplink up', { node: welcome.node, domain: welcome.domain });
    return link;
  }

  /** Frames of an uplink channel are handed here by `Uplink`. */
  uplinkFrame(link: Link, f: Frame, raw: Uint8Array): void {
    this.#onFrame(link, f, raw);
  }

  uplinkClosed(link: Link, reason: PosternError): void {
    this.#connections--;
    this.#detach(link, reason);
  }

  /** Closes every connection with SHUTDOWN. What the router holds stays in its store for the next start. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#delivery.close();
    for (const l of [...this.#links]) l.channel.close(WireCode.SHUTDOWN, 'router is shutting down');
  }

  async #hello(channel: Channel, h: HelloFrame, ready: (l: Link) => void): Promise<void> {
    const o = this.options;
    if (h.version !== PROTOCOL_VERSION) {
      channel.close(WireCode.VERSION, `protocol version ${h.version} is not supported; this router speaks ${PROTOCOL_VERSION}`);
      return;
    }
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
    if (h.role === Role.ROUTER) this.#helloRouter(channel, h, claims, ready);
    else this.#helloAgent(channel, h, claims, ready);
  }

  #helloAgent(channel: Channel, h: HelloFrame, claims: Claims | undefined, ready: (l: Link) => void): void {
    const o = this.options;
    if (o.authenticator !== undefined && claims === undefined && !o.allowAnonymousAgents) {
      channel.close(WireCode.AUTH_FAILED, 'this router requires a token');
      return;
    }
    if (claims !== undefined && claims.domain !== '*' && claims.domain !== this.domain) {
      channel.close(WireCode.AUTH_FAILED, `the token is for domain "${claims.domain}", this router serves "${this.domain}"`);
      return;
    }
    let id = h.resume === '' ? undefined : o.sessionTokens.verify(h.resume);
    id ??= newId();
    const previous = this.#agentsById.get(id);
    const name = h.name.toLowerCase();
    if (name !== '') {
      const refusal = this.#nameRefusal(name, claims, previous);
      if (refusal !== undefined) {
        channel.close(refusal[0], refusal[1]);
        return;
      }
    }
    if (previous !== undefined) previous.channel.close(WireCode.REPLACED, 'the session was resumed on another connection');
    const link = new Link('agent', channel, id, claims);
    link.maxFrame = h.maxFrame;
    this.#setName(link, name);
    this.#links.add(link);
    this.#agentsById.set(id, link);
    this.#armExpiry(link);
    ready(link);
    this.#delivery.wake(agentDestination(id));
    channel.send({
      type: FrameType.WELCOME,
      version: PROTOCOL_VERSION,
      id,
      domain: this.domain,
      name,
      resume: o.sessionTokens.issue(id),
      node: this.node,
      maxFrame: o.maxFrameBytes,
      pingMs: o.pingIntervalMs,
    });
    o.logger.debug('agent connected', { id, name, remote: channel.duplex.remote });
  }

  #helloRouter(channel: Channel, h: HelloFrame, claims: Claims | undefined, ready: (l: Link) => void): void {
    const o = this.options;
    if (o.authenticator === undefined) {
      channel.close(WireCode.AUTH_FAILED, 'this router has no secret, so it accepts no router links; start it with a secret');
      return;
    }
    if (claims === undefined) {
      channel.close(WireCode.AUTH_FAILED, 'a router link needs a token');
      return;
    }
    if (claims.name !== undefined) {
      channel.close(WireCode.AUTH_FAILED, 'the token is an agent token (it names an agent); a router link needs a domain token');
      return;
    }
    if (h.node === this.node) {
      channel.close(WireCode.LOOP, 'a router cannot link to itself');
      return;
    }
    // A router names the domain it serves in HELLO, so a claim is refused before WELCOME.
    const domain = h.name.toLowerCase();
    if (!isValidDomain(domain)) {
      channel.close(WireCode.BAD_ADDRESS, `"${h.name}" is not a valid domain`);
      return;
    }
    if (domain === this.domain) {
      channel.close(WireCode.DOMAIN_NOT_ALLOWED, `domain "${domain}" belongs to this router`);
      return;
    }
    if (!claimsCoverDomain(claims, domain)) {
      channel.close(WireCode.DOMAIN_NOT_ALLOWED, `the credential is for domain "${claims.domain}", not "${domain}"`);
      return;
    }
    // The same router again (it reconnected while we still hold its old, half-open link): the
    // new link replaces the old one, or the old one would keep winning the route. Same node id
    // and the same domain: a node id alone is the peer's word, and must not let a router with a
    // credential for another domain cut this one's link.
    for (const old of this.#links) {
      if (old.kind === 'downlink' && old.node === h.node && old.address === domain) old.channel.close(WireCode.REPLACED, 'the router linked again');
    }
    const link = new Link('downlink', channel, newId(), claims, h.node);
    link.maxFrame = h.maxFrame;
    link.address = domain;
    this.#links.add(link);
    this.#armExpiry(link);
    ready(link);
    channel.send({
      type: FrameType.WELCOME,
      version: PROTOCOL_VERSION,
      id: link.id,
      domain: this.domain,
      name: '',
      resume: '',
      node: this.node,
      maxFrame: o.maxFrameBytes,
      pingMs: o.pingIntervalMs,
    });
    o.logger.info('router linked', { node: h.node, domain: claims.domain, remote: channel.duplex.remote });
  }

  /** Why `name` cannot be claimed, as [wire code, reason], or undefined when it can. */
  #nameRefusal(name: string, claims: Claims | undefined, self: Link | undefined): [number, string] | undefined {
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
    return undefined;
  }

  #setName(link: Link, name: string): void {
    if (link.name !== '' && this.#agentsByName.get(link.name) === link) this.#agentsByName.delete(link.name);
    link.name = name;
    if (name !== '') {
      this.#agentsByName.set(name, link);
      this.#delivery.wake(agentDestination(name));
    }
    link.address = `${name === '' ? link.id : name}@${this.domain}`;
  }

  #onFrame(link: Link, f: Frame, raw: Uint8Array): void {
    switch (f.type) {
      case FrameType.MSG:
        this.#onMsg(link, f, raw);
        return;
      case FrameType.ACK:
        this.#delivery.onAck(link, f);
        return;
      case FrameType.NACK:
        this.#delivery.onNack(link, f);
        return;
      case FrameType.RELEASE:
        this.#delivery.onRelease(link, f.count);
        return;
      case FrameType.REGISTER:
        if (link.kind !== 'agent') break;
        this.#onRegister(link, f.ref, f.name.toLowerCase());
        return;
      case FrameType.ROUTE:
        if (link.kind !== 'downlink') break;
        this.#onRoute(link, f);
        return;
    }
    this.#protocolError(link.channel, `frame 0x${f.type.toString(16)} is not allowed on ${link.kind === 'agent' ? 'an agent' : 'a router'} link here`);
  }

  #onRegister(link: Link, ref: number, name: string): void {
    const refusal = name === '' ? undefined : this.#nameRefusal(name, link.claims, link);
    if (refusal === undefined) this.#setName(link, name);
    link.channel.send({
      type: FrameType.REGISTERED,
      ref,
      code: refusal === undefined ? WireCode.OK : refusal[0],
      name: refusal === undefined ? name : link.name,
      reason: refusal === undefined ? '' : refusal[1],
    });
  }

  #onMsg(link: Link, f: MsgFrame, raw: Uint8Array): void {
    this.#stats.msgsIn++;
    const o = this.options;
    let from: string;
    let hops = f.hops;
    let to: ParsedAddress | undefined;
    if (link.kind === 'agent') {
      from = link.address;
      if (hops === 0 || hops > o.hopLimit) hops = o.hopLimit;
      to = this.#address(f.to, true);
    } else {
      from = f.from;
      to = this.#address(f.to, false);
      const fromAddr = this.#address(from, false);
      if (fromAddr === undefined) {
        this.#nack(link, f.id, from, WireCode.BAD_ADDRESS, `invalid sender address "${from}"`);
        return;
      }
      // A linked router speaks for its own domains only. An uplink carries the rest of the world,
      // so it may not speak for this router's domain or for domains reached below it.
      const forbidden =
        link.kind === 'downlink'
          ? link.claims !== undefined && !claimsCoverDomain(link.claims, fromAddr.domain)
          : fromAddr.domain === this.domain || this.#routes.has(fromAddr.domain);
      if (forbidden) {
        this.#nack(link, f.id, from, WireCode.FORBIDDEN, `this link may not send from domain "${fromAddr.domain}"`);
        return;
      }
      if (hops > o.hopLimit) hops = o.hopLimit;
    }
    if (to === undefined) {
      this.#nack(link, f.id, from, WireCode.BAD_ADDRESS, `invalid recipient address "${f.to}"`);
      return;
    }
    if ((f.flags & MsgFlag.VOLATILE) === 0 && this.#delivery.retry(link, from, f.id)) return;
    const dest = this.#destination(to);
    if (dest.kind === 'domain') {
      if (hops <= 1) {
        this.#nack(link, f.id, from, WireCode.HOP_LIMIT, `hop limit reached on the way to "${to.domain}"`);
        return;
      }
      hops--;
    }
    const next = this.#nextHop(dest);
    if (next === link && link.kind !== 'agent') {
      this.#nack(link, f.id, from, WireCode.NO_ROUTE, `no route to domain "${to.domain}" other than back where the message came from`);
      return;
    }
    // A frame the next hop would refuse would cost it its whole connection: refuse it here.
    // Addresses are ASCII, so string lengths are byte lengths.
    const size = raw.length - 4 + (from.length - f.from.length) + (to.text.length - f.to.length);
    const maxFrame = next?.maxFrame ?? o.maxFrameBytes;
    if (size > maxFrame) {
      this.#nack(link, f.id, from, WireCode.FRAME_TOO_LARGE, `the next hop accepts frames of at most ${maxFrame} bytes; this one has ${size}`);
      return;
    }
    if ((f.flags & MsgFlag.VOLATILE) === 0) {
      // The body may be a view of a whole batch; a queued message must not pin that buffer.
      this.#delivery.accept(link, { from, id: f.id, to: to.text, flags: f.flags, hops, body: f.body.slice() }, dest, true);
      return;
    }
    // Volatile: at most once, never stored. Sent now or not at all.
    if (next === undefined) {
      this.#nack(link, f.id, from, WireCode.NO_ROUTE, to.domain === this.domain ? `no agent "${to.local}@${to.domain}" is connected` : `no route to domain "${to.domain}"`);
      return;
    }
    // A link to another router carries everyone behind it: when it falls behind, it must not
    // reach the slow-consumer cap, which would cut the whole tunnel. Stop reading from whoever
    // feeds it (TCP backpressure reaches the sender) until it drains; where the transport
    // cannot pause, shed load instead.
    if (next.kind !== 'agent' && next.channel.outboundBytes > o.maxOutboundBytes / 2) {
      if (!link.channel.canPause) {
        this.#stats.msgsDropped++;
        return;
      }
      this.#block(link, next);
    }
    if (next.kind === 'agent') this.#stats.msgsDelivered++;
    else this.#stats.msgsForwarded++;
    // A frame from another router already carries the right sender: forward its bytes as they are.
    if (link.kind !== 'agent') next.channel.msgRaw(raw, hops);
    else next.channel.msg(f.flags, hops, f.id, from, to.text, f.body);
  }

  /** Where a message for `to` waits: the queue of a local agent, or of its domain. */
  #destination(to: Address): Destination {
    return to.domain === this.domain ? agentDestination(to.local) : domainDestination(to.domain);
  }

  /**
   * The one next-hop decision, for volatile and reliable messages alike: the link that carries
   * `dest` now (a connected agent, the best route to a domain, or the default uplink), or
   * undefined while there is none.
   */
  #nextHop(dest: Destination): Link | undefined {
    switch (dest.kind) {
      case 'agent':
        return isId(dest.local) ? this.#agentsById.get(dest.local) : this.#agentsByName.get(dest.local);
      case 'domain':
        return this.#routes.get(dest.domain)?.[0]?.link ?? this.#uplinks[0];
    }
  }

  /**
   * Parses and normalises an address, through a small cache: the same few recipients recur on
   * a busy link, and parsing is regex work on the hot path. `bare` allows `name` alone (agents).
   */
  #address(text: string, bare: boolean): ParsedAddress | undefined {
    const cache = bare ? this.#bareAddresses : this.#addresses;
    let a = cache.get(text);
    if (a === undefined) {
      const p = bare ? parseAddress(text, this.domain) : parseAddress(text);
      a = p === undefined ? null : { local: p.local, domain: p.domain, text: `${p.local}@${p.domain}` };
      if (cache.size >= ADDRESS_CACHE) cache.clear();
      cache.set(text, a);
    }
    return a ?? undefined;
  }

  #nack(link: Link, id: string, from: string, code: number, reason: string): void {
    this.#stats.nacksSent++;
    link.channel.send({ type: FrameType.NACK, code, id, from, reason });
  }

  #onRoute(link: Link, f: RouteFrame): void {
    const o = this.options;
    const domain = f.domain.toLowerCase();
    if (!isValidDomain(domain)) {
      this.#protocolError(link.channel, `ROUTE names an invalid domain "${f.domain}"`);
      return;
    }
    if (f.path.includes(this.node)) {
      o.logger.warn('route loop ignored', { domain, path: f.path });
      return;
    }
    if (f.op === RouteOp.WITHDRAW) {
      if (link.routes.delete(domain)) this.#removeRoute(link, domain);
      return;
    }
    if (domain === this.domain) {
      link.channel.close(WireCode.DOMAIN_NOT_ALLOWED, `domain "${domain}" belongs to this router`);
      return;
    }
    if (link.claims === undefined || !claimsCoverDomain(link.claims, domain)) {
      link.channel.close(WireCode.DOMAIN_NOT_ALLOWED, `the credential does not cover domain "${domain}"`);
      return;
    }
    if (!link.routes.has(domain) && link.routes.size >= o.maxDomainsPerLink) {
      link.channel.close(WireCode.DOMAIN_NOT_ALLOWED, `a link may announce at most ${o.maxDomainsPerLink} domains`);
      return;
    }
    const entry: RouteEntry = { link, metric: Math.min(255, f.metric + 1), path: f.path };
    link.routes.set(domain, entry);
    const list = (this.#routes.get(domain) ?? []).filter((e) => e.link !== link);
    list.push(entry);
    list.sort((a, b) => a.metric - b.metric);
    this.#routes.set(domain, list);
    if (list[0] === entry) for (const up of this.#uplinks) this.#announceUp(up, RouteOp.ADD, domain, entry);
    this.#delivery.wake(domainDestination(domain));
    o.logger.info('route added', { domain, via: link.node, metric: entry.metric });
  }

  #removeRoute(link: Link, domain: string): void {
    const list = (this.#routes.get(domain) ?? []).filter((e) => e.link !== link);
    if (list.length === 0) {
      this.#routes.delete(domain);
      for (const up of this.#uplinks) {
        this.#announce(up, { type: FrameType.ROUTE, op: RouteOp.WITHDRAW, metric: 0, domain, path: [this.node] });
      }
    } else {
      this.#routes.set(domain, list);
      const best = list[0];
      if (best !== undefined) for (const up of this.#uplinks) this.#announceUp(up, RouteOp.ADD, domain, best);
    }
    this.#delivery.wake(domainDestination(domain));
    this.options.logger.info('route removed', { domain, via: link.node });
  }

  #announceUp(up: Link, op: typeof RouteOp.ADD, domain: string, e: RouteEntry): void {
    if (e.link === up) return;
    this.#announce(up, { type: FrameType.ROUTE, op, metric: e.metric, domain, path: [...e.path, this.node].slice(-255) });
  }

  #announce(up: Link, f: RouteFrame): void {
    up.channel.send(f);
  }

  /** Pauses reading from `ingress` until `egress` has drained to a quarter of its cap. */
  #block(ingress: Link, egress: Link): void {
    if (!egress.blocked.has(ingress)) {
      egress.blocked.add(ingress);
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
    for (const l of egress.blocked) l.letGo();
    egress.blocked.clear();
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

  #detach(link: Link, reason: PosternError): void {
    if (!link.up) return;
    link.up = false;
    if (link.expiry !== undefined) this.options.clock.clearTimeout(link.expiry);
    this.#unblock(link);
    this.#links.delete(link);
    if (link.kind === 'agent') {
      if (this.#agentsById.get(link.id) === link) this.#agentsById.delete(link.id);
      if (link.name !== '' && this.#agentsByName.get(link.name) === link) this.#agentsByName.delete(link.name);
    } else if (link.kind === 'uplink') {
      const i = this.#uplinks.indexOf(link);
      if (i >= 0) this.#uplinks.splice(i, 1);
    }
    for (const domain of link.routes.keys()) this.#removeRoute(link, domain);
    link.routes.clear();
    this.#delivery.linkDown(link);
    this.options.logger.debug('link closed', { kind: link.kind, id: link.id, reason: reason.message });
  }

  #protocolError(channel: Channel, reason: string): void {
    this.#stats.protocolErrors++;
    channel.close(WireCode.PROTOCOL, reason);
  }
}

const B32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** How often a congested link is checked for having drained. */
const DRAIN_CHECK_MS = 5;

/** Entries of the parsed-address cache; cleared whole when full. */
const ADDRESS_CACHE = 4096;

interface ParsedAddress extends Address {
  /** `local@domain`, normalised. */
  readonly text: string;
}

/** `_` and 16 base32 characters: 80 random bits. */
export function newId(): string {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  let s = '_';
  for (const x of b) s += B32[x & 31];
  return s;
}

