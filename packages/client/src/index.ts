// The public surface, shared by the Node and browser entries (which add `connect`). Every type
// the API takes or returns is here, so that an application needs no other @postern package.
export { Client } from './client.js';
export type { ClientStatus, SendOptions, SendResult, Undeliverable, Pseudonym } from './client.js';
export type { Message } from './message.js';
export type { PresenceEvent } from './presence.js';
export type { ClientOptions, BrowserClientOptions, NodeClientOptions, TransportOptions } from './options.js';
export type { BackoffOptions, Dialer, DialOptions, Duplex, DuplexHandlers } from '@postern/core';
export {
  PosternError,
  ProtocolError,
  RemoteError,
  TransportError,
  TimeoutError,
  ConfigError,
  AbortError,
  WireCode,
  errorCodeOf,
  wireCodeOf,
} from '@postern/protocol';
export type { ErrorCode, WireCodeName, WireCodeValue } from '@postern/protocol';
