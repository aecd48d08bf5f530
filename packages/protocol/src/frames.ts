import type { FrameType} from './constants.js';
import { type HandleOpValue, type HomeOpValue, type PresenceStateValue, type PropsOpValue, type RoleValue, type RouteOpValue, type WatchOpValue } from './constants.js';

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
  /** Version 2 (trailing; 0 when absent): Feature bits the dialer asks for. */
  features: number;
  /**
   * Version 2 (trailing; empty when absent): a fresh random challenge (routers: 32 bytes,
   * base64url) that the router signs in WELCOME with its node key. Agents may send one to
   * check the router's key too.
   */
  nonce: string;
  /** Version 2 (trailing; 0 when absent): LinkMode of a dialing router; 0 for agents (and version 1: an uplink). */
  link: number;
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
  /** Version 2 (trailing): Feature bits granted (those of HELLO the router has). */
  features: number;
  /** Version 2 (trailing): the router's challenge; a dialing router answers it with AUTH. Empty for agents. */
  nonce: string;
  /** Version 2 (trailing): the router's signature over HELLO's nonce (see PROTOCOL.md 4.6), or empty when HELLO had none. */
  proof: string;
}

/** Version 2, between a hub and its bridgeheads: the directory of their domain (PROTOCOL.md section 15). */
export interface HomeFrame {
  type: typeof FrameType.HOME;
  op: HomeOpValue;
  /** CLAIM: chosen by the hub, echoed in HOMED; 0 otherwise. */
  ref: number;
  /** The name, or the id for a session without one. */
  local: string;
  /** The session id that holds `local` (CLAIM, ONLINE, OFFLINE), or empty. */
  id: string;
  /** OFFLINE: epoch seconds it was last seen; otherwise 0. */
  since: number;
}

/** Version 2: the bridgehead's answer to a HOME CLAIM. */
export interface HomedFrame {
  type: typeof FrameType.HOMED;
  ref: number;
  /** WireCode: 0 when the claim holds; NAME_TAKEN when another session holds the name elsewhere. */
  code: number;
  reason: string;
}

/** Version 2: watch (or stop watching) `target`'s presence and properties (PROTOCOL.md section 16). */
export interface WatchFrame {
  type: typeof FrameType.WATCH;
  op: WatchOpValue;
  /** The watched address (`name@domain` or `_id@domain`). */
  target: string;
  /** Who watches: written by the watcher's router (an agent sends it empty). */
  watcher: string;
}

/** Version 2: the answer to one watcher's WATCH, routed back towards it. */
export interface WatchedFrame {
  type: typeof FrameType.WATCHED;
  target: string;
  watcher: string;
  /** WireCode: OK, or why not (FORBIDDEN by the watched agent's policy, UNKNOWN_RECIPIENT, LIMIT_EXCEEDED, ...). */
  code: number;
  reason: string;
}

/** One property: a key and its value (UTF-8). */
export interface Property {
  key: string;
  value: string;
}

/** Version 2: `target`'s presence and all its properties, as of now. */
export interface PresenceFrame {
  type: typeof FrameType.PRESENCE;
  target: string;
  state: PresenceStateValue;
  /** Epoch seconds: when it came online, was last seen, or became unreachable. */
  since: number;
  props: Property[];
}

/** Version 2, agent to router: set properties (merge; empty value removes) or who may watch (replace). */
export interface PropsFrame {
  type: typeof FrameType.PROPS;
  ref: number;
  op: PropsOpValue;
  props: Property[];
}

/** Version 2: the answer to PROPS. */
export interface PropsetFrame {
  type: typeof FrameType.PROPSET;
  ref: number;
  code: number;
  reason: string;
}

/** Version 2: a dialing router proves its node key, answering WELCOME's nonce. Its first frame after WELCOME. */
export interface AuthFrame {
  type: typeof FrameType.AUTH;
  proof: string;
}

/** Version 2: ask for a reply handle. */
export interface HandleFrame {
  type: typeof FrameType.HANDLE;
  /** Chosen by the asker, echoed in HANDLED. */
  ref: number;
  op: HandleOpValue;
  /** Seconds the handle should live; 0: the router's default. The router may shorten it. */
  ttl: number;
  /** WRAP: the handle to wrap (`~token@domain`); PSEUDONYM: empty. */
  address: string;
}

/** Version 2: the answer to HANDLE. */
export interface HandledFrame {
  type: typeof FrameType.HANDLED;
  ref: number;
  /** WireCode: 0 when granted. */
  code: number;
  /** The handle's address, or empty when refused. */
  address: string;
  /** Epoch seconds when it expires (0 when refused). */
  expires: number;
  reason: string;
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
  /**
   * Version 2 (trailing; empty when absent): credentials showing that the route's origin
   * (`path[0]`) may serve `domain`: grants (JWTs, EdDSA) separated by commas (PROTOCOL.md 4.7).
   */
  proof: string;
  /**
   * Version 2 (trailing, after `proof`; absent: 0): RouteFlag bits the origin set, passed on
   * unchanged along the path. Written only when not 0 (PROTOCOL.md 7.6).
   */
  flags?: number;
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

/** Version 2: a transit router stored the message named by (from, id); its ACK follows once the next router has it. */
export interface HeldFrame {
  type: typeof FrameType.HELD;
  id: string;
  from: string;
}

/**
 * Feature ACKS: acknowledges the reliable MSGs numbered `first` .. `first + count - 1` on this
 * connection (each side numbers the MSGs without the VOLATILE flag that it sends, from 1).
 */
export interface AcksFrame {
  type: typeof FrameType.ACKS;
  first: number;
  count: number;
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
  | AuthFrame
  | HomeFrame
  | HomedFrame
  | WatchFrame
  | WatchedFrame
  | PresenceFrame
  | PropsFrame
  | PropsetFrame
  | HandleFrame
  | HandledFrame
  | MsgFrame
  | AckFrame
  | HeldFrame
  | AcksFrame
  | NackFrame
  | ReleaseFrame
  | PingFrame
  | PongFrame
  | CloseFrame;
