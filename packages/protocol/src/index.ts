export {
  PROTOCOL_VERSION,
  MIN_PROTOCOL_VERSION,
  LinkMode,
  Feature,
  KNOWN_FEATURES,
  HandleOp,
  HomeOp,
  WatchOp,
  PresenceState,
  PropsOp,
  FRAME_HEADER_BYTES,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_HOP_LIMIT,
  MAX_TIMER_MS,
  FrameType,
  Role,
  MsgFlag,
  RouteOp,
  RouteFlag,
} from './constants.js';
export type { FrameTypeValue, RoleValue, RouteOpValue, LinkModeValue, HandleOpValue, HomeOpValue, WatchOpValue, PresenceStateValue, PropsOpValue } from './constants.js';
export type {
  Frame,
  HelloFrame,
  WelcomeFrame,
  RegisterFrame,
  RegisteredFrame,
  RouteFrame,
  AuthFrame,
  HomeFrame,
  HomedFrame,
  WatchFrame,
  WatchedFrame,
  PresenceFrame,
  PropsFrame,
  PropsetFrame,
  Property,
  HandleFrame,
  HandledFrame,
  MsgFrame,
  AckFrame,
  AcksFrame,
  HeldFrame,
  NackFrame,
  ReleaseFrame,
  PingFrame,
  PongFrame,
  CloseFrame,
} from './frames.js';
export { FrameWriter, FrameDecoder, encodeFrame, encodeBatch, decodeBatch, decodeFrameAt } from './codec.js';
export type { FrameDecoderOptions } from './codec.js';
export { WireCode, errorCodeOf, wireCodeOf } from './codes.js';
export type { WireCodeValue, WireCodeName } from './codes.js';
export {
  PosternError,
  ProtocolError,
  RemoteError,
  TransportError,
  TimeoutError,
  ConfigError,
  AbortError,
} from './errors.js';
export type { ErrorCode } from './errors.js';
export { encodeReport, decodeReport } from './report.js';
export type { Report } from './report.js';
export { parseAddress, formatAddress, isValidName, isValidId, isValidDomain, isId, isHandle, isValidHandle, isValidNodeId } from './address.js';
export type { Address } from './address.js';
export { utf8Length, truncateUtf8 } from './utf8.js';
