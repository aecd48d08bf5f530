/**
 * Wire protocol version carried in HELLO and WELCOME: the highest this code speaks. A dialer
 * sends it; a router answers with the lower of it and its own, and refuses anything below
 * MIN_PROTOCOL_VERSION (docs/PROTOCOL.md section 13).
 */
export const PROTOCOL_VERSION = 2;

/** The oldest version a router still accepts (version 1 agents and gateways). */
export const MIN_PROTOCOL_VERSION = 1;

/** Bytes before a frame's body: u32 length (of type + body) and u8 type. */
export const FRAME_HEADER_BYTES = 5;

/** @default 1 MiB: the largest frame (type + body) a peer may send unless both agree otherwise. */
export const DEFAULT_MAX_FRAME_BYTES = 1024 * 1024;

/** @default 16: hop limit a router stamps on a message that arrives without one. */
export const DEFAULT_HOP_LIMIT = 16;

/** The longest delay a timer takes (Node fires longer ones after 1 ms): the bound of every time option. */
export const MAX_TIMER_MS = 2_147_483_647;

/** Frame type byte. Values are stable: they are the wire format. */
export const FrameType = {
  HELLO: 0x01,
  WELCOME: 0x02,
  REGISTER: 0x03,
  REGISTERED: 0x04,
  ROUTE: 0x05,
  /** Version 2: the dialing router proves its node key (answer to WELCOME's nonce). */
  AUTH: 0x06,
  /** Version 2: ask for a reply handle (an agent's pseudonym, or a router wrapping one). */
  HANDLE: 0x07,
  /** Version 2: the answer to HANDLE. */
  HANDLED: 0x08,
  /** Version 2, hub and bridgehead: where a name or id of their domain lives (the directory). */
  HOME: 0x09,
  /** Version 2, bridgehead to hub: the answer to a HOME CLAIM. */
  HOMED: 0x0a,
  /** Version 2: start or stop watching an address's presence and properties (agent to router, router to router towards its home). */
  WATCH: 0x0b,
  /** Version 2: the answer to one watcher's WATCH (the watched agent's policy), routed back to it. */
  WATCHED: 0x0c,
  /** Version 2: an address's presence and properties, now and on every change; one per router link, fanned out at the last router. */
  PRESENCE: 0x0d,
  /** Version 2, agent to router: set its properties, or who may watch it. */
  PROPS: 0x0e,
  /** Version 2: the answer to PROPS. */
  PROPSET: 0x0f,
  MSG: 0x10,
  ACK: 0x11,
  NACK: 0x12,
  RELEASE: 0x13,
  /**
   * Version 2, router to router: "stored, but not yet passed on" — a transit router's answer to a
   * MSG it will ACK only once the next router ACKed it. The sender frees its window for it and
   * keeps the message's flow from taking another path until the ACK (PROTOCOL.md section 6.7).
   */
  HELD: 0x14,
  /**
   * Feature ACKS: "your reliable MSGs numbered `first` to `first + count - 1` on this connection
   * are acknowledged", each as an ACK would (PROTOCOL.md section 6.1). Replaces ACK where granted.
   */
  ACKS: 0x15,
  PING: 0x20,
  PONG: 0x21,
  CLOSE: 0x30,
} as const;
export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType];

/** Role announced in HELLO. */
export const Role = {
  /** An application endpoint that sends and receives messages. */
  AGENT: 1,
  /** Another router (a gateway dialing its relay, a hub dialing its gateway). */
  ROUTER: 2,
} as const;
export type RoleValue = (typeof Role)[keyof typeof Role];

/**
 * How a dialing router uses the link (HELLO `link`, version 2). A version 1 HELLO means UPLINK.
 * Agents send 0.
 */
export const LinkMode = {
  /** The dialer is below the router it dials (a gateway dialing its relay): that router is its default route. */
  UPLINK: 1,
  /** Symmetric: both announce and both forward; neither is the other's default route. */
  PEER: 2,
} as const;
export type LinkModeValue = (typeof LinkMode)[keyof typeof LinkMode];

/** Feature bits of HELLO and WELCOME `features` (version 2); WELCOME answers those both sides have. */
export const Feature = {
  /** The dialer wants the router's routes (ROUTE frames), e.g. a gateway with several relays. Peers always get them. */
  ROUTES: 0x01,
  /**
   * Numbered acknowledgements: each side numbers the reliable MSGs it sends on the connection
   * (1, 2, ...) and acknowledges those it receives by number, in ranges (ACKS), instead of one ACK
   * naming (from, id) per message (PROTOCOL.md section 6.1).
   */
  ACKS: 0x02,
} as const;

/**
 * ROUTE `flags` bits (version 2, trailing): what the origin says of how it serves the domain,
 * passed on unchanged. Unknown bits are passed on and ignored.
 */
export const RouteFlag = {
  /**
   * The origin is a bridgehead: its domain's agents are homed at hubs that dial every bridgehead
   * of the domain, so several origins may serve the domain at once (PROTOCOL.md 7.6). Without
   * it the origin serves the domain alone, and a second origin is fenced (DOMAIN_TAKEN).
   */
  BRIDGEHEAD: 0x01,
} as const;

/** Bits this code knows; others are reserved and sent as 0. */
export const KNOWN_FEATURES = Feature.ROUTES | Feature.ACKS;

/** MSG flag bits. Unknown bits are preserved by routers and ignored by receivers. */
export const MsgFlag = {
  /** At most once: no ack is sent for it at any hop, no retry. */
  VOLATILE: 0x01,
  /** The sender asks for a delivery report once the recipient's application has the message. */
  RECEIPT: 0x02,
  /**
   * Version 2: the sender asks its router to hide who it is. The router replaces `from` with a
   * reply handle (`~token@domain`) that only it can map back, the id with a sealed one, and the
   * hop limit with its own; routers keep the flag so that later ones can wrap the handle again.
   */
  ANONYMOUS: 0x04,
  /**
   * The message is a report about an earlier message (see `encodeReport`): `from` is the earlier
   * message's recipient, `to` its sender. Reports are routed and stored like any reliable
   * message; no report is ever made about a report.
   */
  REPORT: 0x08,
  /** With ANONYMOUS: reuse the sender's one long-lived handle instead of a fresh one per message. Cleared by the first router. */
  STICKY: 0x10,
} as const;

/** HOME operation byte (PROTOCOL.md section 15). */
export const HomeOp = {
  /** Hub to bridgehead: a session (name and id, or id alone) is here now and online; answered by HOMED. */
  CLAIM: 1,
  /** Hub to bridgehead: homed here and online (in a SYNC; no answer). */
  ONLINE: 2,
  /** Hub to bridgehead: homed here, offline since `since`. */
  OFFLINE: 3,
  /** Hub to bridgehead: a full list of what is homed here follows (after each link up). */
  SYNC: 4,
  /** Hub to bridgehead: the list is complete; entries of this hub not in it are forgotten. */
  SYNCED: 5,
  /** Bridgehead to hub: the name or id is homed elsewhere now; hand back what you hold for it. */
  MOVED: 6,
  /** Hub to bridgehead: everything held for a moved name or id was handed back. */
  DRAINED: 7,
  /**
   * Bridgehead to hub, right after it took a claim (before HOMED): this bridgehead still has
   * messages for the name or id (or its old hub has): keep what your own agents send to it behind them.
   */
  HOLD: 8,
  /** Bridgehead to hub: everything it held for the name or id went on to you (ends a HOLD). */
  SETTLED: 9,
} as const;
export type HomeOpValue = (typeof HomeOp)[keyof typeof HomeOp];

/** WATCH operation byte. */
export const WatchOp = {
  WATCH: 1,
  UNWATCH: 2,
} as const;
export type WatchOpValue = (typeof WatchOp)[keyof typeof WatchOp];

/** PRESENCE state byte. */
export const PresenceState = {
  /** Connected to its home router now. */
  ONLINE: 1,
  /** Known, not connected; `since` is when it was last seen. */
  OFFLINE: 2,
  /** Its home router (or the way to it: a hub, a bridgehead, a relay) cannot be reached now; `since` is when that began. */
  UNREACHABLE: 3,
} as const;
export type PresenceStateValue = (typeof PresenceState)[keyof typeof PresenceState];

/** PROPS operation byte. */
export const PropsOp = {
  /** Merge these properties; an empty value removes its key. */
  SET: 1,
  /** Replace who may watch me besides my own domain: each key an address, `*@domain` or `*`; values empty. */
  ALLOW: 2,
} as const;
export type PropsOpValue = (typeof PropsOp)[keyof typeof PropsOp];

/** HANDLE operation byte. */
export const HandleOp = {
  /** Agent to its router: a pseudonym that reaches me, hiding my name and, where it can, my organisation. */
  PSEUDONYM: 1,
  /** Router to the router it dialed: wrap this handle of mine in one of yours. */
  WRAP: 2,
} as const;
export type HandleOpValue = (typeof HandleOp)[keyof typeof HandleOp];

/** ROUTE operation byte. */
export const RouteOp = {
  ADD: 1,
  WITHDRAW: 2,
} as const;
export type RouteOpValue = (typeof RouteOp)[keyof typeof RouteOp];
