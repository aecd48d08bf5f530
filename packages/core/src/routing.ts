import { Feature, FrameType, RouteFlag, RouteOp, WireCode, isValidDomain, type RouteFrame } from '@postern/protocol';
import { anyCovers, type NodeIdentity, type TrustPolicy } from './auth.js';
import type { Link, LinkKind } from './link.js';
import { routePayload } from './link-auth.js';
import type { Logger } from './logger.js';

/** A way to a domain, learned from one router link. */
export interface Route {
  readonly link: Link;
  /** Router hops to the domain through `link` (1: the link serves it itself). */
  readonly metric: number;
  /** Node ids the announcement passed, the origin first, the neighbour last. */
  readonly path: readonly string[];
  /** Grants showing that the origin may serve the domain, passed on with the route ('' for none). */
  readonly proof: string;
  /**
   * With a proof: the signature of each router on the path, `sigs[i]` by `path[i]` over
   * routePayload(domain, path[0..i], the next router). Empty without a proof.
   */
  readonly sigs: readonly string[];
  /** RouteFlag bits of the origin, as announced (BRIDGEHEAD: it shares the domain with other bridgeheads). */
  readonly flags: number;
}

export interface RoutingHost {
  readonly node: string;
  readonly domain: string;
  /** Our own grants for our own domain, sent with its announcement. */
  readonly ownProof: string;
  readonly trust: TrustPolicy | undefined;
  /** Signs what we tell on, checks what others signed; without one, proofs are not passed on. */
  readonly identity: NodeIdentity | undefined;
  readonly maxDomainsPerLink: number;
  readonly logger: Logger;
  /** RouteFlag bits of our own domain's announcement (BRIDGEHEAD once we have hubs). */
  ownFlags(): number;
  /** Router links that are up (uplinks, downlinks, peers). */
  routerLinks(): Iterable<Link>;
  /** The best way to `domain` changed (or appeared, or went): queues may go another way. */
  changed(domain: string): void;
  /** A peer validly announced `domain` (it may send from it, also on its later links, for a while). */
  validated(link: Link, domain: string): void;
}

export interface RoutingStats {
  /** Domains with at least one route. */
  domains: number;
  /** Announcements refused: a domain the link is not entitled to, without a valid proof, or over maxDomainsPerLink. */
  routesRefused: number;
  /** Announcements dropped because their path held this router (loops). */
  routeLoops: number;
  /** Announcements fenced: a second origin for a domain another origin serves alone here (DOMAIN_TAKEN). */
  routesFenced: number;
}

/** Preference among link kinds at equal metric: our own subtree first, then peers, then the default route's side. */
const KIND_RANK: Record<LinkKind, number> = { downlink: 0, peer: 1, uplink: 2, agent: 3, hub: 4 };

/** Negative when `a` is the better route: fewer hops, then link kind, then the lower neighbour node id (deterministic everywhere). */
export function compareRoutes(a: Route, b: Route): number {
  return (
    a.metric - b.metric ||
    KIND_RANK[a.link.kind] - KIND_RANK[b.link.kind] ||
    (a.link.node < b.link.node ? -1 : a.link.node > b.link.node ? 1 : 0) ||
    (a.link.id < b.link.id ? -1 : a.link.id > b.link.id ? 1 : 0)
  );
}

/**
 * Path-vector routing by domain. Every router link announces the domains it reaches with the
 * path of node ids the announcement took; a router drops an announcement naming itself (no
 * loops), keeps every route it accepted, uses the best (`compareRoutes`), and tells its
 * neighbours its best route per domain as it changes, withdrawing it when the last one goes.
 *
 * What is told to whom (`exports`): our own domain to every router link; routes learned from a
 * downlink or a peer to uplinks, peers and downlinks that asked (Feature.ROUTES); routes learned
 * from an uplink only to downlinks that asked, never to another uplink or a peer (a gateway with
 * two relays is no transit between them). Never back to the link a route came from.
 *
 * What is accepted from whom (`learn`): a downlink, the domains its credential covers; a peer,
 * those the operator trusts it with, or any carrying a valid proof for its origin; an uplink,
 * any but our own. Anything else is refused and logged, and the link stays up.
 *
 * One domain, one router (`#rival`, PROTOCOL.md 7.6): a route whose origin (`path[0]`) differs
 * from that of a route we already use for the domain is fenced, unless both origins are
 * bridgeheads: a gateway claiming it itself is closed DOMAIN_TAKEN, other such routes are kept
 * aside and taken when the holder's routes go.
 */
export class Routing {
  readonly #h: RoutingHost;
  readonly #routes = new Map<string, Route[]>();
  /** Per link, what we last told it per domain (`metric path`), to send changes only. */
  readonly #told = new Map<Link, Map<string, string>>();
  /** Per link, the domains it announced (its routes). */
  readonly #learned = new Map<Link, Set<string>>();
  /**
   * Per domain, routes held back because another origin serves the domain here (fenced), in the
   * order they came: the first that no longer conflicts is taken when the holder's routes go.
   */
  readonly #fenced = new Map<string, Route[]>();
  /** `domain origin holder` of the fences logged at error level, so that retries do not flood the log. */
  readonly #fenceLogged = new Set<string>();
  readonly #stats = { routesRefused: 0, routeLoops: 0, routesFenced: 0 };

  constructor(host: RoutingHost) {
    this.#h = host;
  }

  stats(): RoutingStats {
    return { domains: this.#routes.size, ...this.#stats };
  }

  best(domain: string): Route | undefined {
    return this.#routes.get(domain)?.[0];
  }

  /** Every domain with its routes, best first. */
  table(): ReadonlyMap<string, readonly Route[]> {
    return this.#routes;
  }

  /** Domains `link` announced. */
  learnedFrom(link: Link): ReadonlySet<string> {
    return this.#learned.get(link) ?? EMPTY;
  }

  /** A router link came up: tell it everything it should know (if it hears routes at all). */
  linkUp(link: Link): void {
    if (!hearsRoutes(link)) return;
    this.#told.set(link, new Map());
    this.#tell(link, this.#h.domain);
    for (const domain of this.#routes.keys()) this.#tell(link, domain);
  }

  /** Our own announcement changed (its flags): tell every link that hears routes. */
  ownChanged(): void {
    for (const l of this.#h.routerLinks()) this.#tell(l, this.#h.domain);
  }

  /** A link went: its routes go, and whoever was told them hears of the change. */
  linkDown(link: Link): void {
    this.#told.delete(link);
    for (const domain of this.#learned.get(link) ?? []) this.#unfence(link, domain);
    const learned = this.#learned.get(link);
    this.#learned.delete(link);
    for (const domain of learned ?? []) this.#remove(link, domain);
  }

  /** A ROUTE frame from `link`. */
  learn(link: Link, f: RouteFrame): void {
    const h = this.#h;
    const domain = f.domain;
    if (f.path.includes(h.node)) {
      this.#stats.routeLoops++;
      h.logger.debug('route.loop', 'route loop ignored', { domain, path: f.path });
      return;
    }
    if (f.op === RouteOp.WITHDRAW) {
      this.#unfence(link, domain);
      if (this.#learned.get(link)?.delete(domain) === true) this.#remove(link, domain);
      return;
    }
    const refusal = this.#refusal(link, f);
    if (refusal !== undefined) {
      this.#stats.routesRefused++;
      // Once per link and domain: a misconfigured peer must not flood the log.
      const logged = (link.refusedLogged ??= new Set());
      if (!logged.has(domain) && logged.size < 64) {
        logged.add(domain);
        h.logger.warn('route.refused', 'route refused', { domain, via: link.node, kind: link.kind, reason: refusal });
      }
      return;
    }
    let learned = this.#learned.get(link);
    if (learned === undefined) this.#learned.set(link, (learned = new Set()));
    learned.add(domain);
    if (link.kind === 'peer') {
      (link.validated ??= new Set()).add(domain);
      h.validated(link, domain);
    }
    const proven = this.#proven(link, f);
    const route: Route = { link, metric: Math.min(255, f.metric + 1), path: f.path, proof: proven?.grants ?? '', sigs: proven?.sigs ?? [], flags: f.flags ?? 0 };
    this.#unfence(link, domain);
    const holder = this.#rival(domain, route);
    if (holder !== undefined) {
      // The link's earlier route, if it had one, goes: its word now is for a rival origin.
      this.#remove(link, domain);
      this.#fence(domain, route, holder);
      return;
    }
    const old = this.#routes.get(domain) ?? [];
    const list = old.filter((r) => r.link !== link);
    list.push(route);
    list.sort(compareRoutes);
    this.#routes.set(domain, list);
    // The best route is new (or replaced by its own link's new word), or another one won.
    if (list[0] !== old[0]) this.#changed(domain);
  }

  /** Why `link` may not announce `f.domain`, or undefined when it may. */
  #refusal(link: Link, f: RouteFrame): string | undefined {
    const h = this.#h;
    const domain = f.domain;
    if (!isValidDomain(domain)) return 'not a valid domain';
    if (domain === h.domain) return 'it is this router\'s own domain';
    const learned = this.#learned.get(link);
    if ((learned === undefined || !learned.has(domain)) && (learned?.size ?? 0) >= h.maxDomainsPerLink) {
      return `the link announced its limit of ${h.maxDomainsPerLink} domains (maxDomainsPerLink)`;
    }
    switch (link.kind) {
      case 'uplink':
        return undefined; // our default route already carries everything we do not know
      case 'downlink':
        return anyCovers(link.entitled, domain) ? undefined : 'its credential does not cover it';
      case 'peer': {
        if (anyCovers(link.entitled, domain)) return undefined;
        if (f.proof === '') return 'the peer is not trusted with it and sent no proof';
        return this.#proven(link, f) !== undefined ? undefined : 'its proof does not show that its origin may serve it along a path every router on it signed';
      }
      default:
        return 'agents do not announce routes';
    }
  }

  /**
   * The grants and path signatures of an announcement, when they hold: the grants show that the
   * origin may serve the domain (chained to a key our operator trusts), and every router on the
   * path signed the path up to itself towards the next one, the last towards us. Undefined
   * otherwise. A downlink's own credentials prove its own announcements, where they are grants.
   */
  #proven(link: Link, f: RouteFrame): { grants: string; sigs: readonly string[] } | undefined {
    const h = this.#h;
    const semi = f.proof.indexOf(';');
    const grants = semi < 0 ? f.proof : f.proof.slice(0, semi);
    const sigs = semi < 0 ? [] : f.proof.slice(semi + 1).split(',').filter((x) => x !== '');
    if (grants === '' || h.trust === undefined || h.identity === undefined) return undefined;
    const path = f.path;
    if (path.length === 0 || sigs.length !== path.length || path[path.length - 1] !== link.node) return undefined;
    for (let i = 0; i < path.length; i++) {
      if (!h.identity.verify(path[i]!, routePayload(f.domain, path.slice(0, i + 1), path[i + 1] ?? h.node), sigs[i]!)) return undefined;
    }
    return h.trust.verifyOrigin(grants, path[0]!, f.domain) ? { grants, sigs } : undefined;
  }

  #remove(link: Link, domain: string): void {
    const list = this.#routes.get(domain);
    if (list === undefined) return;
    const before = list[0];
    let rest = list.filter((r) => r.link !== link);
    if (rest.length === list.length) return;
    rest = this.#admitFenced(domain, rest);
    if (rest.length === 0) this.#routes.delete(domain);
    else this.#routes.set(domain, rest);
    if (rest[0] !== before) this.#changed(domain);
  }

  /**
   * An accepted route of `route`'s domain whose origin is another router, where the two may not
   * both serve it: the domain is served alone by one origin, unless every origin says it is a
   * bridgehead (its agents are homed at hubs that dial each bridgehead, so any of them reaches
   * every name). The same origin reached two ways (a mesh) is one router, never a rival.
   */
  #rival(domain: string, route: Route): Route | undefined {
    for (const r of this.#routes.get(domain) ?? []) {
      if (r.link !== route.link && conflicts(r, route)) return r;
    }
    return undefined;
  }

  /**
   * Holds `route` back: the domain is someone else's here. A router that dialed us and claims
   * the domain itself is closed with DOMAIN_TAKEN, so that it knows (it retries, and takes the
   * domain once the holder went); a route passed on by a peer or a relay is kept aside, unused
   * and told to nobody, and taken when the holder's routes go. Logged at error level once per
   * domain, claimant and holder.
   */
  #fence(domain: string, route: Route, holder: Route): void {
    const h = this.#h;
    const origin = route.path[0] ?? route.link.node;
    const by = holder.path[0] ?? holder.link.node;
    this.#stats.routesFenced++;
    const key = `${domain} ${origin} ${by}`;
    const fields = { domain, node: origin, via: route.link.node, kind: route.link.kind, holder: by, code: 'ERR_DOMAIN_TAKEN' };
    if (!this.#fenceLogged.has(key)) {
      if (this.#fenceLogged.size >= 1024) this.#fenceLogged.clear();
      this.#fenceLogged.add(key);
      h.logger.error('domain.fenced', `two routers claim domain "${domain}": node ${by} serves it alone here, so node ${origin} is fenced (DOMAIN_TAKEN) until ${by} goes`, fields);
    } else {
      h.logger.debug('domain.still_fenced', 'domain still fenced', fields);
    }
    if (route.link.kind === 'downlink' && origin === route.link.node) {
      route.link.channel.close(WireCode.DOMAIN_TAKEN, `domain "${domain}" is already served by node ${by} at this router; this router is fenced (standby) until it goes`);
      return;
    }
    const list = this.#fenced.get(domain) ?? [];
    list.push(route);
    this.#fenced.set(domain, list);
  }

  /** Forgets the fenced route of `link` for `domain`, if any. */
  #unfence(link: Link, domain: string): void {
    const list = this.#fenced.get(domain);
    if (list === undefined) return;
    const rest = list.filter((r) => r.link !== link);
    if (rest.length === 0) this.#fenced.delete(domain);
    else if (rest.length !== list.length) this.#fenced.set(domain, rest);
  }

  /** True while node `node` is fenced here for some domain (its retried links need no log line each). */
  fenced(node: string): boolean {
    for (const key of this.#fenceLogged) if (key.split(' ')[1] === node) return true;
    return false;
  }

  /** `routes` (what is left of a domain's routes) with the fenced routes that no longer conflict, in the order they were fenced. */
  #admitFenced(domain: string, routes: Route[]): Route[] {
    const fenced = this.#fenced.get(domain);
    if (fenced === undefined) return routes;
    const list = [...routes];
    const still: Route[] = [];
    for (const r of fenced) {
      if (list.some((a) => conflicts(a, r))) still.push(r);
      else {
        list.push(r);
        this.#h.logger.info('domain.fence_lifted', `domain "${domain}" is served by node ${r.path[0] ?? r.link.node} now: its fence is lifted`, { domain, node: r.path[0], via: r.link.node });
      }
    }
    if (still.length === 0) this.#fenced.delete(domain);
    else this.#fenced.set(domain, still);
    for (const key of [...this.#fenceLogged]) if (key.startsWith(`${domain} `)) this.#fenceLogged.delete(key);
    return list.sort(compareRoutes);
  }

  #changed(domain: string): void {
    for (const l of this.#h.routerLinks()) this.#tell(l, domain);
    this.#h.changed(domain);
  }

  /** Sends `link` our current word on `domain` if it changed since we last told it. */
  #tell(link: Link, domain: string): void {
    const told = this.#told.get(link);
    if (told === undefined || !link.up) return;
    const h = this.#h;
    let want: { metric: number; path: string[]; proof: string; sigs: readonly string[]; flags: number } | undefined;
    if (domain === h.domain) {
      want = { metric: 0, path: [h.node], proof: h.ownProof, sigs: [], flags: h.ownFlags() };
    } else {
      const best = this.best(domain);
      if (best !== undefined && this.#exports(best, link)) {
        want = { metric: best.metric, path: [...best.path, h.node].slice(-255), proof: best.proof, sigs: best.sigs, flags: best.flags };
      }
    }
    // Flags only on version 2 links: a version 1 ROUTE has no trailing fields.
    const flags = link.version >= 2 ? (want?.flags ?? 0) : 0;
    const sig = want === undefined ? undefined : `${want.metric} ${want.path.join(' ')} ${flags}`;
    const had = told.get(domain);
    if (sig === had) return;
    if (want === undefined) {
      told.delete(domain);
      link.channel.send({ type: FrameType.ROUTE, op: RouteOp.WITHDRAW, metric: 0, domain, path: [h.node], proof: '' });
      return;
    }
    told.set(domain, sig!);
    let proof = '';
    if (link.version >= 2 && want.proof !== '' && h.identity !== undefined && want.sigs.length === want.path.length - 1) {
      // Our signature towards this link extends the chain: the next router can check every hop.
      proof = `${want.proof};${[...want.sigs, h.identity.sign(routePayload(domain, want.path, link.node))].join(',')}`;
    }
    link.channel.send({ type: FrameType.ROUTE, op: RouteOp.ADD, metric: want.metric, domain, path: want.path, proof, ...(flags === 0 ? {} : { flags }) });
  }

  /** Whether `route` (a best route) is told to `to`, a link that hears routes. */
  #exports(route: Route, to: Link): boolean {
    if (route.link === to || route.path.includes(to.node)) return false;
    // Downlinks that asked hear everything; uplinks and peers only what is not our default route's.
    return to.kind === 'downlink' || route.link.kind !== 'uplink';
  }
}

/**
 * Uplinks and peers hear our routes; a downlink only when it asked (a version 1 one never may).
 * Links inside a domain (hub and bridgehead) carry the directory instead.
 */
function hearsRoutes(link: Link): boolean {
  return (link.kind === 'uplink' && !link.bridgehead) || link.kind === 'peer' || (link.kind === 'downlink' && (link.features & Feature.ROUTES) !== 0);
}

/** Two routes whose origins may not both serve their domain: different routers, not both bridgeheads. */
function conflicts(a: Route, b: Route): boolean {
  return a.path[0] !== b.path[0] && !((a.flags & RouteFlag.BRIDGEHEAD) !== 0 && (b.flags & RouteFlag.BRIDGEHEAD) !== 0);
}

const EMPTY: ReadonlySet<string> = new Set();
