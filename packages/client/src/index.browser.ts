import { createWsDialer, type WebSocketLike } from '@postern/transport-ws';
import { Client } from './client.js';
import type { ClientOptions } from './options.js';

export {
  Client,
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
} from './index.js';
export type {
  ClientStatus,
  SendOptions,
  SendResult,
  Undeliverable,
  Message,
  ClientOptions,
  NodeClientOptions,
  ErrorCode,
  WireCodeName,
  WireCodeValue,
  Pseudonym,
  PresenceEvent,
  BackoffOptions,
  Dialer,
  DialOptions,
  Duplex,
  DuplexHandlers,
} from './index.js';

const dialer = createWsDialer((url) => new (globalThis as unknown as { WebSocket: new (u: string) => WebSocketLike }).WebSocket(url));

/** Connects an agent from a browser, over its WebSocket. */
export function connect(options: ClientOptions & { signal?: AbortSignal }): Promise<Client> {
  return Client.connect(options, dialer);
}
