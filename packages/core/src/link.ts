import { DEFAULT_MAX_FRAME_BYTES, type MsgFrame } from '@postern/protocol';
import type { Claims } from './auth.js';
import type { Channel } from './channel.js';
import type { Principal } from './quotas.js';

/**
 * agent: an application endpoint. downlink: a router that dialed us and uses us as its default
 * route (a gateway). uplink: a router we dialed as our default route (our relay). peer: a router
 * link either side dialed, symmetric: both announce, both forward, neither is a default route.
 * hub: a router of our own domain where agents are homed, which dialed us (we are its
 * bridgehead); at the hub that link is an uplink marked `bridgehead`.
 */
export type LinkKind = 'agent' | 'downlink' | 'uplink' | 'peer' | 'hub';

const NO_DOMAINS: readonly string[] = Object.freeze([]);

/** One established connection of the router, whatever is on the other end. */
export class Link {
  readonly kind: LinkKind;
  readonly channel: Channel;
  /** Router-assigned id (agents: `_…`, also used in logs for routers). */
  readonly id: string;
  readonly claims: Claims | undefined;
  /** Peer router node id (router links). */
  readonly node: string;
  name = '';
  address = '';
  /** Protocol version spoken on this link. */
  version = 1;
  /** Feature bits both ends have (version 2). */
  features = 0;
  /** Uplinks: their place in the configuration; the lowest connected one is the default route. */
  rank = 0;
  /** Hub side: this uplink leads to a bridgehead of our own domain (no routes, the directory instead). */
  bridgehead = false;
  /** The node id of the side that dialed (router links): decides which of two links between the same routers stays. */
  dialer = '';
  /**
   * Router links: domains this router may speak for on its credential or the operator's word
   * (patterns: each covers the domains below it, `*` all).
   */
  entitled: readonly string[] = NO_DOMAINS;
  // The sets and the array below are made when first needed: an agent's link never needs most
  // of them, and an empty Set costs about 150 bytes (issue 12: an idle connection's memory).
  /** Peers: domains this link announced and we accepted (with a proof), so it may send from them. */
  validated: Set<string> | undefined = undefined;
  /** Domains whose refused announcement was logged already (once per link). */
  refusedLogged: Set<string> | undefined = undefined;
  /** Links whose reading is paused until this (congested) link drains. */
  blocked: Set<Link> | undefined = undefined;
  drainTimer: unknown = undefined;
  /** Timer that closes the link when its credential expires. */
  expiry: unknown = undefined;
  /** Largest frame the other end accepts (its HELLO, or the WELCOME of an uplink). */
  maxFrame = DEFAULT_MAX_FRAME_BYTES;
  up = true;
  /** When the link was made (epoch ms, the router's clock): the dashboard's "connected since". */
  since = 0;
  /** Who its traffic counts against (quotas.ts); undefined for routers of our mesh, which are not limited. */
  quota: Principal | undefined = undefined;
  /** Reading is paused until this timer fires: its sender went over a rate. */
  rateTimer: unknown = undefined;
  /**
   * Messages read while its sender was over a rate (the rest of the transport message in hand),
   * in order, taken as the rate allows. At most one transport message: reading is paused meanwhile.
   */
  deferred: Array<{ f: MsgFrame; raw: Uint8Array; num: number }> | undefined = undefined;
  /**
   * The number of the reliable MSG being handled now (feature ACKS: it is acknowledged by that
   * number), 0 when none or the link does not number its MSGs.
   */
  inNum = 0;
  /** Reasons reading from this link is paused (a congested router link, a backed-up queue). */
  #holds = 0;

  /** Stops reading from this link for one more reason; reading resumes when every reason let go. */
  hold(): void {
    if (this.#holds++ === 0) this.channel.pause();
  }

  letGo(): void {
    if (this.#holds === 0) return;
    if (--this.#holds === 0 && this.up) this.channel.resume();
  }

  constructor(kind: LinkKind, channel: Channel, id: string, claims: Claims | undefined, node = '') {
    this.kind = kind;
    this.channel = channel;
    this.id = id;
    this.claims = claims;
    this.node = node;
  }

  /** A link to another router (not an agent). */
  get isRouter(): boolean {
    return this.kind !== 'agent';
  }
}

/** The key naming a message at every hop. Space cannot occur in an address or id. */
export function messageKey(from: string, id: string): string {
  return `${from} ${id}`;
}
