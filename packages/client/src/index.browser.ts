import { createWsDialer, type WebSocketLike } from '@postern/transport-ws';
import { createAutoDialer, createFetchHttpDialer } from '@postern/transport-http';
import { ConfigError } from '@postern/protocol';
import type { Dialer } from '@postern/core';
import { Client } from './client.js';
import type { BrowserClientOptions } from './options.js';

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
  BrowserClientOptions,
  NodeClientOptions,
  TransportOptions,
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

// Neither holds state of its own: every client shares them (an auto dialer, which remembers what
// works, is made per client).
let ws: Dialer | undefined;
let http: Dialer | undefined;

/**
 * Connects an agent from a browser, over its WebSocket or, where that is blocked, HTTP long-poll
 * over fetch (`transport`, 'auto' by default: as the Node entry). The browser applies its own
 * proxy settings and certificate trust; the page's Origin must be allowed by the router
 * (`--allow-origin`).
 */
export async function connect(options: BrowserClientOptions & { signal?: AbortSignal }): Promise<Client> {
  const { transport = 'auto', wsProbeIntervalMs } = options;
  if (options.dialer !== undefined && options.transport !== undefined) {
    throw new ConfigError('give either dialer or transport: a custom dialer makes its own connections');
  }
  if (transport !== 'auto' && transport !== 'ws' && transport !== 'http') throw new ConfigError(`transport must be auto, ws or http, got "${String(transport)}"`);
  let dialer = options.dialer;
  if (dialer === undefined) {
    if (transport !== 'http') ws ??= createWsDialer((url) => new (globalThis as unknown as { WebSocket: new (u: string) => WebSocketLike }).WebSocket(url));
    if (transport !== 'ws') http ??= createFetchHttpDialer();
    dialer = transport === 'ws' ? ws! : transport === 'http' ? http! : createAutoDialer({ ws: ws!, http: http!, ...(wsProbeIntervalMs === undefined ? {} : { wsProbeIntervalMs }) });
  }
  return Client.connect(options, dialer);
}
