import type { FrameType} from './constants.js';
import { type RoleValue, type RouteOpValue } from './constants.js';

/** First frame on every connection, dialer to router. */
export interface HelloFrame {
  type: typeof FrameType.HELLO;
  version: number;
  role: RoleValue;
  /** Signed credential (JWT) or empty. */
  token: string;
  /** Resume token from an earlier WELCOME, or empty for a new session. */
  resume: string;
  /** Agents: the name to claim, or empty. Routers: the domain they serve (their claim). */
  name: string;
  /** The dialer's router node id (role ROUTER), or empty. */
  node: string;
  /** Free-form software identifier, for logs only. */
  agent: string;
  /**
   * Largest frame the dialer accepts (a trailing field added in this version: a HELLO without
   * it means DEFAULT_MAX_FRAME_BYTES). Routers do not forward it larger frames.
   */
  maxFrame: number;
}

/** The router's answer to an accepted HELLO. */
export interface WelcomeFrame {
  type: typeof FrameType.WELCOME;
  version: number;
  /** Router-assigned id of this session, unique on this router, stable across resumes. */
  id: string;
  /** The router's own domain. */
  domain: string;
  /** Name granted to the session, or empty. */
  name: string;
  /** Private token that resumes this session (same id) on a later connection. */
  resume: string;
  /** The router's node id. */
  node: string;
  /** Largest frame the router accepts. */
  maxFrame: number;
  /** Interval at which the router pings, in ms; silence for two intervals closes the link. */
  pingMs: number;
}

/** Claim a name after the handshake. Answered by REGISTERED with the same ref. */
export interface RegisterFrame {
  type: typeof FrameType.REGISTER;
  ref: number;
  name: string;
}

export interface RegisteredFrame {
  type: typeof FrameType.REGISTERED;
  ref: number;
  /** WireCode: 0 when granted. */
  code: number;
  name: string;
  reason: string;
}

/** A router tells its peer which domains it can reach. */
export interface RouteFrame {
  type: typeof FrameType.ROUTE;
  op: RouteOpValue;
  /** Hops from the announcing router to the domain (0: its own). */
  metric: number;
  domain: string;
  /** Node ids the announcement has passed, nearest last; a router drops one naming itself. */
  path: string[];
}

export interface MsgFrame {
  type: typeof FrameType.MSG;
  flags: number;
  /** Remaining hop limit; a router asked to forward it to another router with 1 or less answers HOP_LIMIT. */
  hops: number;
  /** Sender-made id, unique per sender. With `from` it names the message at every hop. */
  id: string;
  /** Sender address, written by the sender's router; empty from an agent. */
  from: string;
  to: string;
  body: Uint8Array;
}

/** Hop-by-hop acceptance of a MSG, naming it by (from, id). */
export interface AckFrame {
  type: typeof FrameType.ACK;
  id: string;
  from: string;
}

export interface NackFrame {
  type: typeof FrameType.NACK;
  code: number;
  id: string;
  from: string;
  reason: string;
}

/**
 * Sent by whoever receives ACKs on a connection: "I have durably settled the first `count`
 * ACK frames you sent me on this connection; forget the message keys they acknowledged". Until
 * then the ACK's sender keeps those keys to drop a retry (its ACK may have been lost).
 */
export interface ReleaseFrame {
  type: typeof FrameType.RELEASE;
  count: number;
}

export interface PingFrame {
  type: typeof FrameType.PING;
  nonce: number;
}

export interface PongFrame {
  type: typeof FrameType.PONG;
  nonce: number;
}

/** Last frame before a deliberate close, with the reason. */
export interface CloseFrame {
  type: typeof FrameType.CLOSE;
  code: number;
  reason: string;
}

export type Frame =
  | HelloFrame
  | WelcomeFrame
  | RegisterFrame
  | RegisteredFrame
  | RouteFrame
  | MsgFrame
  | AckFrame
  | NackFrame
  | ReleaseFrame
  | PingFrame
  | PongFrame
  | CloseFrame;
