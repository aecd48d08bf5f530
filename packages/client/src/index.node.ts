import { createNodeWsDialer } from '@postern/transport-ws/node';
import { createAutoDialer, createNodeHttpDialer } from '@postern/transport-http/node';
import { ConfigError } from '@postern/protocol';
import { Client } from './client.js';
import type { NodeClientOptions } from './options.js';

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
export type { ClientStatus, SendOptions, SendResult, Message, ClientOptions, ErrorCode, Pseudonym, PresenceEvent } from './index.js';
export type { NodeClientOptions } from './options.js';

/**
 * Connects an agent from Node, over WebSocket (the `ws` package) or, where that is blocked, HTTP
 * long-poll (`transport`): directly or through an HTTP CONNECT proxy (`proxy`, else the
 * environment's HTTPS_PROXY / HTTP_PROXY / NO_PROXY), verifying a wss:// or https:// router with
 * the system CAs, `ca`, or a pinned `fingerprint`.
 */
export async function connect(options: NodeClientOptions & { signal?: AbortSignal }): Promise<Client> {
  const { ca, fingerprint, proxy, transport = 'auto', wsProbeIntervalMs } = options;
  if (options.dialer !== undefined && (ca !== undefined || fingerprint !== undefined || proxy !== undefined || options.transport !== undefined)) {
    throw new ConfigError('give either dialer or ca/fingerprint/proxy/transport: a custom dialer makes its own connections');
  }
  if (transport !== 'auto' && transport !== 'ws' && transport !== 'http') throw new ConfigError(`transport must be auto, ws or http, got "${String(transport)}"`);
  // Made per connect(): the proxy variables are read (and checked) now, not at import, and the
  // auto dialer's memory of what works is this client's.
  const reach = { ca, fingerprint, proxy };
  let dialer = options.dialer;
  if (dialer === undefined) {
    const ws = transport === 'http' ? undefined : createNodeWsDialer(reach);
    const http = transport === 'ws' ? undefined : createNodeHttpDialer(reach);
    dialer = ws === undefined ? http! : http === undefined ? ws : createAutoDialer({ ws, http, ...(wsProbeIntervalMs === undefined ? {} : { wsProbeIntervalMs }) });
  }
  return Client.connect(options, dialer);
}
