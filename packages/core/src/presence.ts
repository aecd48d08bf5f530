import {
  FrameType,
  PresenceState,
  PropsOp,
  WatchOp,
  WireCode,
  isHandle,
  utf8Length,
  type PresenceFrame,
  type Property,
  type PropsFrame,
  type WatchedFrame,
  type WatchFrame,
} from '@postern/protocol';
import type { AddressCache, ParsedAddress } from './addresses.js';
import type { Link } from './link.js';
import type { ResolvedRouterOptions } from './options.js';
import type { Store } from './store.js';

/** A refusal: [wire code, reason]. */
type Refusal = [number, string];

/** Where the presence of an address comes from, seen from this router. */
export type PresenceSource =
  /** Homed here: this router knows its state and keeps its properties. */
  | { kind: 'home'; local: string }
  /** Another router on the way to its home. */
  | { kind: 'link'; link: Link }
  /** No way to its home now (a lost hub, bridgehead, relay or route). */
  | { kind: 'unreachable' }
  | { kind: 'refused'; refusal: Refusal };

export interface PresenceHost {
  readonly addresses: AddressCache;
  readonly store: Store;
  /** Where `target` is watched from here. */
  source(target: ParsedAddress): PresenceSource;
  /** State of `local`, homed here: online (connected) or offline since when it was last seen. */
  stateOf(local: string): { online: boolean; since: number };
  /** May router link `link` speak for watchers of `domain` (as it may send messages from it)? */
  mayWatchFrom(link: Link, domain: string): boolean;
}

/** A watcher of one address through this router: an agent of ours, or one behind a router link. */
interface Watcher {
  readonly link: Link;
  /** The watched agent's policy let it (its home said WATCHED OK). */
  ok: boolean;
}

/** One watched address at this router. */
interface Sub {
  readonly target: ParsedAddress;
  readonly watchers: Map<string, Watcher>;
  /** Downstream router links with watchers that were let: whether they have been told the current state. */
  readonly links: Map<Link, { ok: number; told: boolean }>;
  source: PresenceSource;
  /** The state as last heard (or, at home, computed). */
  state: PresenceFrame | undefined;
}

/** What the home router keeps per agent: its properties and who besides its domain may watch it. */
interface Profile {
  props: Property[];
  allow: string[];
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const PREFIX = 'p:';

/** Longest property key and value, in bytes (the wire carries keys in str8, values in str16). */
export const MAX_PROPERTY_KEY_BYTES = 64;
export const MAX_PROPERTY_VALUE_BYTES = 1024;

/**
 * Presence and properties (PROTOCOL.md section 16): who is online, and what they published.
 *
 * Watching is routed like messages, towards the watched address's home (the router it is
 * connected to or homed at), and aggregated on the way: every router keeps, per watched
 * address, its watchers (agents of its own, or router links it heard WATCH on) and one
 * subscription upstream. A watcher's WATCH goes all the way home, which answers WATCHED by the
 * watched agent's policy (its own domain, plus the addresses it allowed); the answer retraces
 * the watch. The state itself (PRESENCE: online, offline or unreachable, since when, and all
 * properties) travels once per router link on every change, and the last router fans it out
 * to its watchers: one change reaches N watchers behind M routers with one frame per link.
 *
 * Nothing here is stored but an agent's properties and allow-list (at its home). Watches live
 * in the watchers' SDKs, which send them again after every reconnect, and in routers, which
 * send theirs again when a link to the home comes back: so watches survive restarts. A lost
 * way home makes the address *unreachable* for everyone watching it through that way.
 */
export class Presence {
  readonly #o: ResolvedRouterOptions;
  readonly #h: PresenceHost;
  readonly #subs = new Map<string, Sub>();
  /** Watches per agent link (the per-agent limit). */
  readonly #perAgent = new Map<Link, number>();
  readonly #profiles = new Map<string, Profile>();
  readonly stats = { watches: 0, presenceToLinks: 0, presenceToAgents: 0, watchesRefused: 0 };

  constructor(o: ResolvedRouterOptions, host: PresenceHost) {
    this.#o = o;
    this.#h = host;
  }

  get watched(): number {
    return this.#subs.size;
  }

  /** Loads the stored properties. */
  async load(): Promise<void> {
    for (const [key, value] of await this.#h.store.listValues(PREFIX)) {
      try {
        const p = JSON.parse(dec.decode(value)) as Profile;
        if (Array.isArray(p.props) && Array.isArray(p.allow)) this.#profiles.set(key.slice(PREFIX.length), { props: p.props, allow: p.allow });
      } catch {
        this.#o.logger.warn('presence.read_failed', 'stored properties could not be read; they are dropped', { key });
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Watching.

  /** WATCH from `link`: an agent (watcher = itself) or a router link (watcher as it says). */
  onWatch(link: Link, f: WatchFrame): void {
    const watcher = link.kind === 'agent' ? link.address : f.watcher.toLowerCase();
    const target = this.#h.addresses.parse(f.target, link.kind === 'agent');
    const refuse = (code: number, reason: string): void => {
      this.stats.watchesRefused++;
      link.channel.send({ type: FrameType.WATCHED, target: target?.text ?? f.target, watcher, code, reason });
    };
    if (target === undefined) return refuse(WireCode.BAD_ADDRESS, `"${f.target}" is not an address`);
    if (f.op === WatchOp.UNWATCH) {
      this.#unwatch(link, target.text, watcher);
      return;
    }
    const w = this.#h.addresses.parse(watcher);
    if (w === undefined || isHandle(w.local)) return refuse(WireCode.FORBIDDEN, 'an anonymous sender cannot watch presence');
    if (isHandle(target.local)) return refuse(WireCode.FORBIDDEN, 'a reply handle or pseudonym has no presence to watch');
    if (link.isRouter && !this.#h.mayWatchFrom(link, w.domain)) return refuse(WireCode.FORBIDDEN, `this link may not watch for domain "${w.domain}"`);
    let sub = this.#subs.get(target.text);
    const again = sub?.watchers.get(watcher);
    if (again === undefined) {
      if (link.kind === 'agent' && (this.#perAgent.get(link) ?? 0) >= this.#o.maxWatchesPerAgent) {
        return refuse(WireCode.LIMIT_EXCEEDED, `an agent watches at most ${this.#o.maxWatchesPerAgent} addresses (maxWatchesPerAgent)`);
      }
      if (sub === undefined && this.#subs.size >= this.#o.maxWatched) return refuse(WireCode.LIMIT_EXCEEDED, `this router watches its limit of ${this.#o.maxWatched} addresses (maxWatched)`);
    }
    if (sub === undefined) {
      sub = { target, watchers: new Map(), links: new Map(), source: this.#h.source(target), state: undefined };
      this.#subs.set(target.text, sub);
      if (sub.source.kind === 'home') sub.state = this.#homeState(sub.source.local, target.text);
    }
    if (again !== undefined && again.link !== link) this.#drop(sub, watcher, again);
    if (again === undefined || again.link !== link) {
      sub.watchers.set(watcher, { link, ok: false });
      if (link.kind === 'agent') this.#perAgent.set(link, (this.#perAgent.get(link) ?? 0) + 1);
      this.stats.watches++;
    }
    this.#ask(sub, watcher);
  }

  /** Asks the home (or decides, at home) whether `watcher` may watch `sub`. */
  #ask(sub: Sub, watcher: string): void {
    const src = sub.source;
    switch (src.kind) {
      case 'home':
        this.#answer(sub, watcher, this.#policy(src.local, watcher));
        return;
      case 'link': {
        // Never back where it came from: a bridgehead's watch reaches a hub before the claim it
        // sent the watch there for holds, and bounced back it would replace the watcher at the
        // bridgehead. It is asked again when the way home changes (the claim held: home here).
        if (sub.watchers.get(watcher)?.link === src.link) return;
        src.link.channel.send({ type: FrameType.WATCH, op: WatchOp.WATCH, target: sub.target.text, watcher });
        return;
      }
      case 'unreachable': {
        // Nobody can say yes or no now: the watcher hears that much, and is asked for again when a way comes back.
        const w = sub.watchers.get(watcher);
        sub.state ??= this.#unreachable(sub.target.text);
        if (w !== undefined) this.#tell(w.link, sub.state);
        return;
      }
      case 'refused':
        this.#answer(sub, watcher, src.refusal);
        return;
    }
  }

  /** A watcher is let (or refused): it hears so, and the state when let. */
  #answer(sub: Sub, watcher: string, refusal: Refusal | undefined): void {
    const w = sub.watchers.get(watcher);
    if (w === undefined) return;
    const f: WatchedFrame = { type: FrameType.WATCHED, target: sub.target.text, watcher, code: refusal?.[0] ?? WireCode.OK, reason: refusal?.[1] ?? '' };
    if (refusal !== undefined) {
      this.stats.watchesRefused++;
      this.#drop(sub, watcher, w);
      if (w.link.up) w.link.channel.send(f);
      this.#gc(sub);
      return;
    }
    if (!w.ok) {
      w.ok = true;
      if (w.link.isRouter) {
        const l = sub.links.get(w.link) ?? { ok: 0, told: false };
        l.ok++;
        sub.links.set(w.link, l);
      }
    }
    // The state first, so that the watcher's router has it when the WATCHED arrives.
    if (w.link.isRouter) {
      const l = sub.links.get(w.link)!;
      if (!l.told && sub.state !== undefined) {
        this.#tell(w.link, sub.state);
        l.told = true;
      }
      w.link.channel.send(f);
    } else {
      w.link.channel.send(f);
      if (sub.state !== undefined) this.#tell(w.link, sub.state);
    }
  }

  #unwatch(link: Link, target: string, watcher: string): void {
    const sub = this.#subs.get(target);
    const w = sub?.watchers.get(watcher);
    if (sub === undefined || w === undefined || w.link !== link) return;
    this.#drop(sub, watcher, w);
    if (sub.source.kind === 'link') sub.source.link.channel.send({ type: FrameType.WATCH, op: WatchOp.UNWATCH, target, watcher });
    this.#gc(sub);
  }

  /** Forgets one watcher of `sub` (not its upstream: the caller tells that). */
  #drop(sub: Sub, watcher: string, w: Watcher): void {
    sub.watchers.delete(watcher);
    if (w.link.kind === 'agent') {
      const n = (this.#perAgent.get(w.link) ?? 1) - 1;
      if (n > 0) this.#perAgent.set(w.link, n);
      else this.#perAgent.delete(w.link);
    }
    if (w.ok && w.link.isRouter) {
      const l = sub.links.get(w.link);
      if (l !== undefined && --l.ok <= 0) sub.links.delete(w.link);
    }
  }

  #gc(sub: Sub): void {
    if (sub.watchers.size === 0) this.#subs.delete(sub.target.text);
  }

  /** WATCHED from upstream: the home's answer for one watcher, passed back towards it. */
  onWatched(link: Link, f: WatchedFrame): void {
    const sub = this.#subs.get(f.target.toLowerCase());
    if (sub === undefined || sub.source.kind !== 'link' || sub.source.link !== link) return;
    this.#answer(sub, f.watcher, f.code === WireCode.OK ? undefined : [f.code, f.reason]);
  }

  /** PRESENCE from upstream: kept, and passed on once per link and to every agent watching here. */
  onPresence(link: Link, f: PresenceFrame): void {
    const sub = this.#subs.get(f.target.toLowerCase());
    if (sub === undefined || sub.source.kind !== 'link' || sub.source.link !== link) return;
    sub.state = { ...f, target: sub.target.text };
    this.#fanOut(sub);
  }

  /** The state of `sub` changed: every let watcher hears it, each router link once. */
  #fanOut(sub: Sub): void {
    const f = sub.state;
    if (f === undefined) return;
    const unreachable = f.state === PresenceState.UNREACHABLE;
    for (const [l, s] of sub.links) {
      this.#tell(l, f);
      s.told = true;
    }
    for (const w of sub.watchers.values()) {
      if (w.link.kind !== 'agent') {
        // Downstream routers hear unreachability even before anyone there was let: it tells nothing of the agent.
        if (unreachable && !w.ok && !sub.links.has(w.link)) this.#tell(w.link, f);
        continue;
      }
      if (w.ok || unreachable) this.#tell(w.link, f);
    }
  }

  #tell(link: Link, f: PresenceFrame): void {
    if (!link.up) return;
    if (link.isRouter) this.stats.presenceToLinks++;
    else this.stats.presenceToAgents++;
    link.channel.send(f);
  }

  // ---------------------------------------------------------------------------------------------
  // Changes at home and in the network.

  /** Something about `local` of our domain changed (it came, went, moved, set properties): its watchers hear the new state. */
  changed(local: string): void {
    const sub = this.#subs.get(`${local}@${this.#o.domain}`);
    if (sub !== undefined) this.#reroute(sub);
  }

  /** A router link came up, or went: addresses may be watched another way now (or again). `domain`: only those of that domain. */
  reroute(domain?: string): void {
    for (const sub of [...this.#subs.values()]) if (domain === undefined || sub.target.domain === domain) this.#reroute(sub);
  }

  /** Where `sub` comes from now; if that changed, the watch moves (and at home the state is computed). */
  #reroute(sub: Sub): void {
    const now = this.#h.source(sub.target);
    const old = sub.source;
    const same = now.kind === old.kind && (now.kind !== 'link' || now.link === (old as { link: Link }).link) && (now.kind !== 'home' || now.local === (old as { local: string }).local);
    if (same) {
      if (now.kind === 'home') {
        const state = this.#homeState(now.local, sub.target.text);
        if (!samePresence(state, sub.state)) {
          sub.state = state;
          this.#fanOut(sub);
        }
      }
      return;
    }
    if (old.kind === 'link' && old.link.up) for (const w of sub.watchers.keys()) old.link.channel.send({ type: FrameType.WATCH, op: WatchOp.UNWATCH, target: sub.target.text, watcher: w });
    sub.source = now;
    if (now.kind === 'home') {
      sub.state = this.#homeState(now.local, sub.target.text);
      this.#fanOut(sub);
    } else if (now.kind === 'unreachable') {
      if (sub.state?.state !== PresenceState.UNREACHABLE) {
        sub.state = this.#unreachable(sub.target.text);
        this.#fanOut(sub);
      }
      return;
    }
    // Asked again at the new source; those let stay let meanwhile.
    for (const w of [...sub.watchers.keys()]) this.#ask(sub, w);
  }

  /** A link went: its watchers go (their upstream hears it), and what it was the way to is unreachable (or goes another way). */
  linkDown(link: Link): void {
    this.#perAgent.delete(link);
    for (const sub of [...this.#subs.values()]) {
      for (const [watcher, w] of [...sub.watchers]) {
        if (w.link !== link) continue;
        this.#drop(sub, watcher, w);
        if (sub.source.kind === 'link' && sub.source.link.up) sub.source.link.channel.send({ type: FrameType.WATCH, op: WatchOp.UNWATCH, target: sub.target.text, watcher });
      }
      sub.links.delete(link);
      if (sub.watchers.size === 0) {
        this.#subs.delete(sub.target.text);
        continue;
      }
      if (sub.source.kind === 'link' && sub.source.link === link) {
        sub.source = { kind: 'unreachable' };
        sub.state = this.#unreachable(sub.target.text);
        this.#fanOut(sub);
        this.#reroute(sub);
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Home: state, policy and properties.

  #homeState(local: string, target: string): PresenceFrame {
    const s = this.#h.stateOf(local);
    return { type: FrameType.PRESENCE, target, state: s.online ? PresenceState.ONLINE : PresenceState.OFFLINE, since: Math.floor(s.since / 1000), props: this.#profiles.get(local)?.props ?? [] };
  }

  #unreachable(target: string): PresenceFrame {
    return { type: FrameType.PRESENCE, target, state: PresenceState.UNREACHABLE, since: Math.floor(this.#o.clock.now() / 1000), props: [] };
  }

  /** May `watcher` watch `local` of our domain? Its own domain may; others if it allowed them. */
  #policy(local: string, watcher: string): Refusal | undefined {
    const w = this.#h.addresses.parse(watcher);
    if (w === undefined) return [WireCode.BAD_ADDRESS, `"${watcher}" is not an address`];
    if (w.domain === this.#o.domain) return undefined;
    const allow = this.#profiles.get(local)?.allow ?? [];
    if (allow.includes(w.text) || allow.includes(`*@${w.domain}`) || allow.includes('*')) return undefined;
    return [WireCode.FORBIDDEN, `${local}@${this.#o.domain} lets only its own domain and the addresses it allowed watch it`];
  }

  /** PROPS from an agent of ours (its home is here): set its properties or its allow-list. */
  onProps(link: Link, f: PropsFrame): void {
    const answer = (r: Refusal | undefined): void => void link.channel.send({ type: FrameType.PROPSET, ref: f.ref, code: r?.[0] ?? WireCode.OK, reason: r?.[1] ?? '' });
    const local = link.name !== '' ? link.name : link.id;
    const old = this.#profiles.get(local) ?? { props: [], allow: [] };
    let next: Profile;
    if (f.op === PropsOp.SET) {
      const props = new Map(old.props.map((p) => [p.key, p.value]));
      for (const p of f.props) {
        if (utf8Length(p.key) > MAX_PROPERTY_KEY_BYTES || p.key === '') return answer([WireCode.LIMIT_EXCEEDED, `a property key is 1 to ${MAX_PROPERTY_KEY_BYTES} bytes`]);
        if (utf8Length(p.value) > MAX_PROPERTY_VALUE_BYTES) return answer([WireCode.LIMIT_EXCEEDED, `property "${p.key}": a value is at most ${MAX_PROPERTY_VALUE_BYTES} bytes`]);
        if (p.value === '') props.delete(p.key);
        else props.set(p.key, p.value);
      }
      if (props.size > this.#o.maxProperties) return answer([WireCode.LIMIT_EXCEEDED, `an agent has at most ${this.#o.maxProperties} properties (maxProperties)`]);
      let bytes = 0;
      for (const [k, v] of props) bytes += utf8Length(k) + utf8Length(v);
      if (bytes > this.#o.maxPropertyBytes) return answer([WireCode.LIMIT_EXCEEDED, `an agent's properties are at most ${this.#o.maxPropertyBytes} bytes in all (maxPropertyBytes)`]);
      next = { props: [...props].map(([key, value]) => ({ key, value })), allow: old.allow };
    } else {
      const allow: string[] = [];
      for (const p of f.props) {
        const k = p.key.toLowerCase();
        const a = k === '*' ? k : k.startsWith('*@') ? (this.#h.addresses.parse(`x${k.slice(1)}`) === undefined ? undefined : k) : this.#h.addresses.parse(k)?.text;
        if (a === undefined) return answer([WireCode.BAD_ADDRESS, `"${p.key}" is neither an address, "*@domain" nor "*"`]);
        allow.push(a);
      }
      if (allow.length > this.#o.maxAllowedWatchers) return answer([WireCode.LIMIT_EXCEEDED, `an agent allows at most ${this.#o.maxAllowedWatchers} watchers (maxAllowedWatchers)`]);
      next = { props: old.props, allow };
    }
    this.#profiles.set(local, next);
    // Names keep their properties beyond the session; an id's go with it (ids do not come back).
    if (link.name !== '') this.#save(local, next);
    answer(undefined);
    const sub = this.#subs.get(`${local}@${this.#o.domain}`);
    if (sub === undefined) return;
    if (f.op === PropsOp.ALLOW) {
      // Watchers no longer allowed hear so and stop hearing anything.
      for (const [watcher, w] of [...sub.watchers]) {
        const r = this.#policy(local, watcher);
        if (r !== undefined && w.ok) this.#answer(sub, watcher, r);
      }
    }
    if (this.#subs.has(sub.target.text)) this.changed(local);
  }

  /** A session without a name went: its properties (kept by id, in memory) go too. */
  forgetSession(id: string): void {
    this.#profiles.delete(id);
  }

  #save(local: string, p: Profile): void {
    const value = enc.encode(JSON.stringify(p));
    this.#h.store.setValue(PREFIX + local, value).catch((err: unknown) => this.#o.logger.error('store.write_failed', 'properties could not be stored', { err: String(err) }));
  }
}

function samePresence(a: PresenceFrame, b: PresenceFrame | undefined): boolean {
  if (b === undefined || a.state !== b.state || a.since !== b.since || a.props.length !== b.props.length) return false;
  return a.props.every((p, i) => p.key === b.props[i]!.key && p.value === b.props[i]!.value);
}

