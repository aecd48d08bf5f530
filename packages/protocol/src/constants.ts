/** Wire protocol version carried in HELLO and WELCOME. A router refuses other versions. */
export const PROTOCOL_VERSION = 1;

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
  MSG: 0x10,
  ACK: 0x11,
  NACK: 0x12,
  RELEASE: 0x13,
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

/** MSG flag bits. Unknown bits are preserved by routers and ignored by receivers. */
export const MsgFlag = {
  /** At most once: no ack is sent for it at any hop, no retry. */
  VOLATILE: 0x01,
  /** The sender asks for a delivery report once the recipient's application has the message. */
  RECEIPT: 0x02,
  /** The sender asks the router to hide its identity behind a reply handle (reserved). */
  ANONYMOUS: 0x04,
  /**
   * The message is a report about an earlier message (see `encodeReport`): `from` is the earlier
   * message's recipient, `to` its sender. Reports are routed and stored like any reliable
   * message; no report is ever made about a report.
   */
  REPORT: 0x08,
} as const;

/** ROUTE operation byte. */
export const RouteOp = {
  ADD: 1,
  WITHDRAW: 2,
} as const;
export type RouteOpValue = (typeof RouteOp)[keyof typeof RouteOp];
