export { Client } from './client.js';
export type { ClientStatus, SendOptions, SendResult, Undeliverable, Pseudonym } from './client.js';
export type { Message } from './message.js';
export type { PresenceEvent } from './presence.js';
export type { ClientOptions } from './options.js';
export {
  PosternError,
  ProtocolError,
  RemoteError,
  TransportError,
  TimeoutError,
  ConfigError,
  AbortError,
  WireCode,
} from '@postern/protocol';
export type { ErrorCode } from '@postern/protocol';
