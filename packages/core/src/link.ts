import { DEFAULT_MAX_FRAME_BYTES } from '@postern/protocol';
import type { Claims } from './auth.js';
import type { Channel } from './channel.js';

/** agent: an application endpoint; downlink: a router that dialed us; uplink: one we dialed. */
export type LinkKind = 'agent' | 'downlink' | 'uplink';


export interface RouteEntry {
  readonly link: Link;
  readonly metric: number;
  readonly path: readonly string[];
}

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
  /** Links whose reading is paused until this (congested) link drains. */
  readonly blocked = new Set<Link>();
  drainTimer: unknown = undefined;
  /** Timer that closes the link when its credential expires. */
  expiry: unknown = undefined;
  /** Largest frame the other end accepts (its HELLO, or the WELCOME of an uplink). */
  maxFrame = DEFAULT_MAX_FRAME_BYTES;
  up = true;
  /** Reasons reading from this link is paused (a congested router link, a backed-up queue). */
  #holds = 0;
  /** Domains this link announced (downlinks). */
  readonly routes = new Map<string, RouteEntry>();

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
}

/** The key naming a message at every hop. Space cannot occur in an address or id. */
export function messageKey(from: string, id: string): string {
  return `${from} ${id}`;
}
