import { FrameType, HomeOp, WireCode, isId, type HomeFrame, type HomedFrame } from '@postern/protocol';
import { agentDestination, returnDestination, type Destination } from './destination.js';
import type { Directory, HomeEntry } from './directory.js';
import type { Link } from './link.js';
import type { ResolvedRouterOptions } from './options.js';

/** A refusal: [wire code, reason]. */
type Refusal = [number, string];

export interface HomesHost {
  readonly directory: Directory;
  /** The bridgehead links of this hub that are up, best first (the first is where it sends). */
  bridgeheads(): readonly Link[];
  /** The live router link to node `node`. */
  linkTo(node: string): Link | undefined;
  /** The connected local agent holding `local` (a name or an id). */
  agent(local: string): Link | undefined;
  /** Bridgehead: the hub (node id) behind a hub's reply handle `~token` that we wrapped. */
  hubOfHandle(local: string): string | undefined;
  /** Reliable messages are held here for `dest` (waiting or in flight). */
  holds(dest: Destination): boolean;
  /** Queues that may move now. */
  wake(dest: Destination): void;
  /** Router `node` holds nothing more for `dest`: what is pinned to it here was never there (Delivery.unpin). */
  unpin(dest: Destination, node: string): void;
  /** Closes a local session: its name is held by another session of the domain now. */
  evict(link: Link, code: number, reason: string): void;
  /** The directory said something about `local` that watchers may want to hear (presence). */
  changed(local: string): void;
}

interface PendingClaim {
  readonly waiting: Set<Link>;
  refusal: Refusal | undefined;
  readonly done: (r: Refusal | undefined) => void;
  readonly timer: unknown;
}

/** Directory entries sent per turn of a SYNC, so that a large directory does not fill the link's buffer. */
const SYNC_CHUNK = 512;

/**
 * The directory of a domain served by several routers (PROTOCOL.md section 15).
 *
 * A *hub* is a router of the domain where agents are homed; it only dials out, to every
 * *bridgehead* of its domain (the domain's gateways), over a link of its own kind (`hub` at the
 * bridgehead, an uplink marked `bridgehead` at the hub). The hub tells each bridgehead what is
 * homed at it: a CLAIM when a session takes a name or an id (answered by HOMED, before the agent
 * is welcomed or its REGISTER answered), OFFLINE when it goes, and after every link up a full
 * SYNC. The bridgehead keeps, for every name and id of the domain, its home (directory entries
 * with the hub's node id) and routes messages for it to that hub's link; the hub routes messages
 * for names not homed at it to its bridgehead. Hubs never learn of each other.
 *
 * One name, one live session across the domain: a claim for a name online at another hub whose
 * link is up, with another session id, is refused NAME_TAKEN (the same rule as on one router:
 * only the same session, resumed, replaces). A claim for a name homed elsewhere and offline (or
 * whose hub is unreachable) *moves* it: the bridgehead tells the old hub MOVED; the old hub
 * closes any session it still has for it, forgets it, sends what it holds for it back to the
 * bridgehead, then DRAINED. Meanwhile the bridgehead keeps new messages for the name waiting and
 * sends the returned ones first (queue `return:<local>`), so that nothing is lost or doubled and
 * every sender's order holds. A move whose old hub does not answer within moveDrainTimeoutMs
 * lets the waiting messages go (order is then no longer promised for what that hub still holds).
 *
 * A sender on the *new* hub would overtake its own earlier messages (those at the old hub or at
 * the bridgehead) if the new hub delivered to the name at once: so a claim first lets what the
 * hub holds for a name homed elsewhere go to the bridgehead, and a bridgehead that still has
 * messages for the name (or is draining a move) answers the claim with HOLD first. Until it says
 * SETTLED (all of it went on to the new hub), and until what it sent was delivered, what the
 * hub's own agents send to the name waits in a queue of its own (`return:<local>` at a hub).
 */
export class Homes {
  readonly #o: ResolvedRouterOptions;
  readonly #h: HomesHost;
  readonly #pending = new Map<number, PendingClaim>();
  /** Hub: names and ids being claimed by a connection now (a second connection is refused meanwhile). */
  readonly #claiming = new Set<string>();
  /** Hub: bridgeheads (node ids) owed a DRAINED per moved name or id, once its queue here is empty. */
  readonly #owed = new Map<string, Set<string>>();
  /** Bridgehead: per hub link in a SYNC, the names and ids it listed so far. */
  readonly #syncing = new Map<Link, Set<string>>();
  /** Bridgehead: moves under way (entry.from set) and when they began. */
  readonly #moving = new Map<string, number>();
  /** Bridgehead: names and ids told HOLD, and the hub (node id) that waits for SETTLED. */
  readonly #settling = new Map<string, string>();
  /** Hub: names and ids some bridgeheads told HOLD: those (node ids) and since when. */
  readonly #held = new Map<string, { readonly by: Set<string>; readonly at: number }>();
  /** Hub: claims waiting for what this hub holds for the name to go to the bridgehead. */
  readonly #passing = new Map<string, Array<() => void>>();
  #ref = 0;
  readonly stats = { claims: 0, claimsRefused: 0, moves: 0, movesTimedOut: 0, syncs: 0 };

  constructor(o: ResolvedRouterOptions, host: HomesHost) {
    this.#o = o;
    this.#h = host;
  }

  /** After the directory loaded: moves that were under way go on (their old hub is told again when it links). */
  start(): void {
    const now = this.#o.clock.now();
    for (const [local, e] of this.#h.directory.entries()) if (e.from !== '') this.#moving.set(local, now);
  }

  get isHub(): boolean {
    return this.#o.hub;
  }

  // ---------------------------------------------------------------------------------------------
  // Where messages go.

  /**
   * The next hop of a queue for a name or id of our domain that is not connected here: the hub
   * it is homed at (bridgehead), the bridgehead (hub, when it is not homed here), or undefined
   * while it must wait (offline here, its hub unreachable, or a move is draining).
   */
  nextHop(dest: Destination & { local: string }, connected: Link | undefined): Link | undefined {
    const d = this.#h.directory;
    const e = d.get(dest.local);
    if (this.#o.hub) {
      // Our agents' messages held behind what the bridgehead had for the name, and delivered.
      if (dest.kind === 'return' && (this.#held.has(dest.local) || this.#h.holds(agentDestination(dest.local)))) return undefined;
      if (connected !== undefined || (e !== undefined && e.home === '')) return connected;
      return this.#h.bridgeheads()[0];
    }
    if (e === undefined) {
      const hub = connected === undefined ? this.#h.hubOfHandle(dest.local) : undefined;
      return hub === undefined ? connected : this.#h.linkTo(hub);
    }
    if (dest.kind === 'agent' && this.#draining(dest.local, e)) return undefined;
    return e.home === '' ? connected : this.#h.linkTo(e.home);
  }

  /** True when a message for `local` leaves this router for another of the domain (it spends a hop). */
  forwards(local: string): boolean {
    const e = this.#h.directory.get(local);
    return this.#o.hub ? e === undefined || e.home !== '' : e !== undefined && e.home !== '';
  }

  /**
   * The queue a message from hub link `link` for `local` joins at a bridgehead: the returned
   * ones of a move (sent on before anything that waited meanwhile), else the agent's.
   */
  destinationFrom(link: Link, local: string): Destination {
    const e = this.#h.directory.get(local);
    return e !== undefined && e.from !== '' && e.from === link.node ? returnDestination(local) : agentDestination(local);
  }

  /**
   * Bridgehead: messages for `dest` pinned to hub `node` wait for its DRAINED rather than go to it
   * again: the name moved away from it. Written to it now, one it never had would be taken there as
   * new and come back after DRAINED, once the waiting messages went on: behind later ones.
   */
  handingBack(dest: Destination, node: string): boolean {
    return !this.#o.hub && dest.kind === 'agent' && this.#h.directory.get(dest.local)?.from === node;
  }

  #draining(local: string, e: HomeEntry): boolean {
    return e.from !== '' || this.#h.holds(returnDestination(local));
  }

  /**
   * Hub: the queue a message from one of our agents (or made here) for `local` joins: the held
   * one while it is being claimed here or a bridgehead said HOLD, or while earlier ones still
   * wait there; else the agent's.
   */
  destinationHere(local: string): Destination {
    if (!this.#o.hub) return agentDestination(local);
    // While a claim is under way, too: the bridgehead's HOLD may follow.
    const held = this.#held.has(local) || this.#claiming.has(local) || this.#h.holds(returnDestination(local));
    return held ? returnDestination(local) : agentDestination(local);
  }

  // ---------------------------------------------------------------------------------------------
  // Hub side.

  /**
   * A session takes `local` (its name, or its id when it has none) here: asks every bridgehead
   * linked now. Resolves with a refusal, or undefined when the claim holds (also when no
   * bridgehead answers within claimTimeoutMs, or none is linked: the next SYNC settles it).
   */
  async claim(local: string, id: string): Promise<Refusal | undefined> {
    if (!this.#o.hub) return undefined;
    if (this.#claiming.has(local)) return [WireCode.NAME_TAKEN, `the name "${local}" is being claimed by another connection`];
    if (this.#h.bridgeheads().length === 0) return undefined;
    this.stats.claims++;
    this.#claiming.add(local);
    try {
      // What our agents sent to the name while it lived elsewhere goes to the bridgehead first: it
      // must not overtake their earlier messages, which are there or at the old home.
      if (this.#h.directory.get(local)?.home !== '' && this.#h.holds(agentDestination(local))) await this.#passed(local);
      const links = this.#h.bridgeheads().filter((l) => l.up);
      if (links.length === 0) return undefined;
      const ref = (this.#ref = (this.#ref + 1) >>> 0 || 1);
      return await new Promise<Refusal | undefined>((resolve) => {
        const timer = this.#o.clock.setTimeout(() => this.#settle(ref), this.#o.claimTimeoutMs);
        this.#pending.set(ref, { waiting: new Set(links), refusal: undefined, done: resolve, timer });
        for (const l of links) l.channel.send({ type: FrameType.HOME, op: HomeOp.CLAIM, ref, local, id, since: 0 });
      });
    } finally {
      this.#claiming.delete(local);
    }
  }

  /** Hub: resolves once nothing waits here for `local`, or after claimTimeoutMs. */
  #passed(local: string): Promise<void> {
    return new Promise<void>((resolve) => {
      const finish = (): void => {
        this.#o.clock.clearTimeout(timer);
        const list = this.#passing.get(local) ?? [];
        const i = list.indexOf(finish);
        if (i >= 0) list.splice(i, 1);
        if (list.length === 0) this.#passing.delete(local);
        resolve();
      };
      const timer = this.#o.clock.setTimeout(finish, this.#o.claimTimeoutMs);
      const list = this.#passing.get(local);
      if (list === undefined) this.#passing.set(local, [finish]);
      else list.push(finish);
    });
  }

  /** Hub: a session let go of `local` (closed, or took another name): the bridgeheads hear it. */
  offline(local: string, id: string): void {
    if (!this.#o.hub) return;
    const since = Math.floor(this.#o.clock.now() / 1000);
    for (const l of this.#h.bridgeheads()) l.channel.send({ type: FrameType.HOME, op: HomeOp.OFFLINE, ref: 0, local, id, since });
  }

  /** Hub: a bridgehead linked: it hears everything homed here (a SYNC), then the answers to anything it asked. */
  bridgeheadUp(link: Link): void {
    const entries = [...this.#h.directory.entries()].filter(([, e]) => e.home === '');
    const send = (f: Omit<HomeFrame, 'type'>): void => void link.channel.send({ type: FrameType.HOME, ...f });
    send({ op: HomeOp.SYNC, ref: 0, local: '', id: '', since: 0 });
    let i = 0;
    const step = (): void => {
      if (!link.up) return;
      // Paced by the link's buffer: a directory of a million entries must not cut the link as a slow consumer.
      while (i < entries.length && link.channel.outboundBytes < this.#o.maxOutboundBytes / 4) {
        for (const end = Math.min(entries.length, i + SYNC_CHUNK); i < end; i++) {
          const [local, e] = entries[i]!;
          const online = this.#h.agent(local) !== undefined;
          send({ op: online ? HomeOp.ONLINE : HomeOp.OFFLINE, ref: 0, local, id: e.id, since: online ? 0 : Math.floor(e.since / 1000) });
        }
      }
      if (i < entries.length) {
        this.#o.clock.setTimeout(step, 5);
        return;
      }
      send({ op: HomeOp.SYNCED, ref: 0, local: '', id: '', since: 0 });
    };
    step();
  }

  /** Hub: a bridgehead link went: claims waiting for it stop waiting. */
  bridgeheadDown(link: Link): void {
    for (const [ref, p] of this.#pending) {
      if (p.waiting.delete(link) && p.waiting.size === 0) this.#settle(ref);
    }
    // What it still had for a name comes when it is back, after newer ones: we wait no longer.
    for (const [local, h] of this.#held) if (h.by.delete(link.node) && h.by.size === 0) this.#release(local);
  }

  /** Hub: our agents' messages held for `local` may go once what the bridgeheads sent was delivered. */
  #release(local: string): void {
    this.#held.delete(local);
    this.#h.wake(returnDestination(local));
  }

  onHomed(link: Link, f: HomedFrame): void {
    const p = this.#pending.get(f.ref);
    if (p === undefined || !p.waiting.delete(link)) return;
    if (f.code !== WireCode.OK) p.refusal ??= [f.code, f.reason];
    if (p.waiting.size === 0) this.#settle(f.ref);
  }

  #settle(ref: number): void {
    const p = this.#pending.get(ref);
    if (p === undefined) return;
    this.#pending.delete(ref);
    this.#o.clock.clearTimeout(p.timer);
    if (p.refusal !== undefined) this.stats.claimsRefused++;
    p.done(p.refusal);
  }

  /** Hub: a bridgehead says `local` is homed elsewhere now. */
  #onMoved(link: Link, local: string): void {
    const h = this.#h;
    const agent = h.agent(local);
    if (agent !== undefined) h.evict(agent, WireCode.NAME_TAKEN, `the name "${local}" is held by a session on another server of domain "${this.#o.domain}" now`);
    const e = h.directory.get(local);
    if (e !== undefined && e.home === '') h.directory.forget(local);
    this.#held.delete(local);
    let owed = this.#owed.get(local);
    if (owed === undefined) this.#owed.set(local, (owed = new Set()));
    owed.add(link.node);
    this.stats.moves++;
    h.changed(local);
    // What waits here for it goes to the bridgehead now (what our agents sent it last); DRAINED
    // once it has all of it.
    if (h.holds(agentDestination(local)) || h.holds(returnDestination(local))) {
      h.wake(agentDestination(local));
      h.wake(returnDestination(local));
    } else this.emptied(agentDestination(local));
  }

  // ---------------------------------------------------------------------------------------------
  // Bridgehead side.

  /** Bridgehead: may a session here take `local` (with session id `id`)? Undefined when it may. */
  refusalHere(local: string, id: string): Refusal | undefined {
    const e = this.#h.directory.get(local);
    if (e === undefined || e.home === '' || !this.#liveElsewhere(e, id)) return undefined;
    return [WireCode.NAME_TAKEN, `the name "${local}" is taken by an agent on another server of domain "${this.#o.domain}"`];
  }

  /** Bridgehead: a session here took `local`: if it was homed at a hub, that hub hands back what it holds. */
  homedHere(local: string, id: string): void {
    const d = this.#h.directory;
    const old = d.get(local);
    if (old !== undefined && old.home !== '') {
      d.set(local, '', true, id, old.home);
      this.#beginMove(local, old.home);
    } else {
      d.set(local, '', true, id);
    }
  }

  /** Bridgehead: a hub linked (its SYNC follows). */
  hubUp(link: Link): void {
    for (const [local, e] of this.#h.directory.entries()) if (e.home === link.node) this.#h.changed(local);
  }

  /** Bridgehead: a hub link went: its agents are unreachable until it links again. */
  hubDown(link: Link): void {
    this.#syncing.delete(link);
    for (const [local, hub] of this.#settling) if (hub === link.node) this.#settling.delete(local);
    for (const [local, e] of this.#h.directory.entries()) if (e.home === link.node) this.#h.changed(local);
  }

  onHome(link: Link, f: HomeFrame): void {
    if (link.kind !== 'hub') {
      if (f.op === HomeOp.MOVED) this.#onMoved(link, f.local);
      else if (f.op === HomeOp.HOLD) {
        const h = this.#held.get(f.local);
        if (h === undefined) this.#held.set(f.local, { by: new Set([link.node]), at: this.#o.clock.now() });
        else h.by.add(link.node);
      } else if (f.op === HomeOp.SETTLED) {
        const h = this.#held.get(f.local);
        if (h !== undefined && h.by.delete(link.node) && h.by.size === 0) this.#release(f.local);
      }
      return;
    }
    switch (f.op) {
      case HomeOp.CLAIM: {
        const refusal = this.#claimAt(link, f.local, f.id);
        link.channel.send({ type: FrameType.HOMED, ref: f.ref, code: refusal?.[0] ?? WireCode.OK, reason: refusal?.[1] ?? '' });
        return;
      }
      case HomeOp.ONLINE:
        this.#syncing.get(link)?.add(f.local);
        if (this.#claimAt(link, f.local, f.id) !== undefined) this.#send(link, HomeOp.MOVED, f.local);
        return;
      case HomeOp.OFFLINE: {
        this.#syncing.get(link)?.add(f.local);
        const d = this.#h.directory;
        const e = d.get(f.local);
        if (e === undefined || e.home === link.node) {
          d.set(f.local, link.node, false, f.id === '' ? undefined : f.id);
          this.#h.changed(f.local);
        } else if (e.from !== link.node) {
          // Homed elsewhere now: that hub forgets it and hands back what it still holds.
          this.#send(link, HomeOp.MOVED, f.local);
        }
        return;
      }
      case HomeOp.SYNC:
        this.stats.syncs++;
        this.#syncing.set(link, new Set());
        return;
      case HomeOp.SYNCED: {
        const listed = this.#syncing.get(link);
        this.#syncing.delete(link);
        if (listed === undefined) return;
        const d = this.#h.directory;
        for (const [local, e] of [...d.entries()]) {
          if (e.home === link.node && !listed.has(local)) d.forget(local);
          // A move away from this hub that did not finish: it is told again.
          if (e.from === link.node) this.#send(link, HomeOp.MOVED, local);
        }
        return;
      }
      case HomeOp.DRAINED: {
        const e = this.#h.directory.get(f.local);
        if (e === undefined || e.from !== link.node) return;
        // What that hub had of ours it handed back before this: the rest never reached it.
        this.#h.unpin(agentDestination(f.local), link.node);
        this.#endMove(f.local, e);
        return;
      }
    }
  }

  /** Hub `link` says `local` is online there with session `id`: why not, or undefined when it now is. */
  #claimAt(link: Link, local: string, id: string): Refusal | undefined {
    const h = this.#h;
    const d = h.directory;
    if (isId(local) ? local !== id : id !== '' && !isId(id)) return [WireCode.PROTOCOL, 'a claim names a session id, and an id is claimed by its own session only'];
    const e = d.get(local);
    const connected = h.agent(local);
    if ((connected !== undefined && connected.id !== id) || (e !== undefined && e.home !== link.node && this.#liveElsewhere(e, id))) {
      return [WireCode.NAME_TAKEN, `the name "${local}" is taken by another agent of domain "${this.#o.domain}"`];
    }
    if (e !== undefined && e.home !== '' && e.home !== link.node) {
      // It lived at another hub: that one hands back what it holds for it first.
      d.set(local, link.node, true, id, e.home);
      this.#beginMove(local, e.home);
    } else {
      // New, here already, or at the bridgehead itself (whose queue for it simply goes on to the hub).
      d.set(local, link.node, true, id, e?.home === link.node ? undefined : '');
    }
    if (local !== id && id !== '' && d.get(id)?.home !== link.node) d.set(id, link.node, true, id, '');
    // Messages for it still here (or at its old hub): the hub keeps its own agents' behind them.
    if (this.#moving.has(local) || h.holds(agentDestination(local)) || h.holds(returnDestination(local))) {
      if (this.#settling.get(local) !== link.node) {
        this.#settling.set(local, link.node);
        this.#send(link, HomeOp.HOLD, local);
      }
    }
    h.changed(local);
    h.wake(agentDestination(local));
    return undefined;
  }

  /** Bridgehead: the hub told HOLD for `local` hears SETTLED once the move ended and nothing for it waits here. */
  #trySettle(local: string): void {
    const hub = this.#settling.get(local);
    if (hub === undefined) return;
    const e = this.#h.directory.get(local);
    if (e !== undefined && e.home === hub && (e.from !== '' || this.#h.holds(agentDestination(local)) || this.#h.holds(returnDestination(local)))) return;
    this.#settling.delete(local);
    // Homed elsewhere meanwhile: that hub was told MOVED and forgot the HOLD.
    const link = e?.home === hub ? this.#h.linkTo(hub) : undefined;
    if (link !== undefined) this.#send(link, HomeOp.SETTLED, local);
  }

  /** Online with another session at a home that can say so (a hub whose link is up, or here). */
  #liveElsewhere(e: HomeEntry, id: string): boolean {
    if (!e.online || e.id === id) return false;
    return e.home === '' || this.#h.linkTo(e.home) !== undefined;
  }

  #beginMove(local: string, from: string): void {
    this.stats.moves++;
    this.#moving.set(local, this.#o.clock.now());
    const old = this.#h.linkTo(from);
    if (old !== undefined) this.#send(old, HomeOp.MOVED, local);
  }

  /** The old hub handed back everything: once the returned messages went on, the waiting ones follow. */
  #endMove(local: string, e: HomeEntry): void {
    this.#moving.delete(local);
    this.#h.directory.set(local, e.home, e.online, undefined, '');
    this.#h.wake(returnDestination(local));
    this.#h.wake(agentDestination(local));
    this.#trySettle(local);
  }

  /**
   * Delivery: the queue for `dest` emptied. Hub: a moved name is drained (DRAINED to the
   * bridgeheads that asked). Bridgehead: the returned messages went on, so the waiting ones may.
   */
  emptied(dest: Destination): void {
    if (dest.kind === 'domain') return;
    const local = dest.local;
    if (!this.#o.hub) {
      if (dest.kind === 'return') this.#h.wake(agentDestination(local));
      this.#trySettle(local);
      return;
    }
    if (dest.kind === 'agent') {
      for (const finish of [...(this.#passing.get(local) ?? [])]) finish();
      if (this.#h.holds(returnDestination(local))) this.#h.wake(returnDestination(local));
    }
    const owed = this.#owed.get(local);
    if (owed === undefined || this.#h.holds(agentDestination(local)) || this.#h.holds(returnDestination(local))) return;
    for (const node of owed) {
      const l = this.#h.linkTo(node);
      if (l === undefined) continue;
      this.#send(l, HomeOp.DRAINED, local);
      owed.delete(node);
    }
    if (owed.size === 0) this.#owed.delete(local);
  }

  /** Moves whose old hub did not hand back within moveDrainTimeoutMs stop holding messages up. */
  sweep(): void {
    const now = this.#o.clock.now();
    for (const [local, h] of this.#held) {
      if (now - h.at < this.#o.moveDrainTimeoutMs) continue;
      this.stats.movesTimedOut++;
      this.#o.logger.warn('move.hold_timeout', 'a bridgehead did not settle a name that moved here in time: what our agents sent it goes on', { local, waited_ms: now - h.at });
      this.#release(local);
    }
    for (const [local, at] of this.#moving) {
      if (now - at < this.#o.moveDrainTimeoutMs) continue;
      const e = this.#h.directory.get(local);
      if (e === undefined || e.from === '') {
        this.#moving.delete(local);
        continue;
      }
      this.stats.movesTimedOut++;
      this.#o.logger.warn('move.timeout', 'a move between hubs did not finish in time: messages waiting for the name go on', { local, from: e.from, waited_ms: now - at });
      this.#endMove(local, e);
    }
  }

  #send(link: Link, op: (typeof HomeOp)[keyof typeof HomeOp], local: string): void {
    link.channel.send({ type: FrameType.HOME, op, ref: 0, local, id: '', since: 0 });
  }
}
