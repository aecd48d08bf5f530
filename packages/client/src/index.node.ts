import { createNodeWsDialer } from '@postern/transport-ws/node';
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
} from './index.js';
export type { ClientStatus, SendOptions, SendResult, Message, ClientOptions, ErrorCode } from './index.js';

const dialer = createNodeWsDialer();

/** Connects an agent from Node, over the `ws` package. */
export function connect(options: ClientOptions & { signal?: AbortSignal }): Promise<Client> {
  return Client.connect(options, dialer);
}
