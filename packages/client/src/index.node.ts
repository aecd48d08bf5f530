import { createNodeWsDialer } from '@postern/transport-ws/node';
import { createAutoDialer, createNodeHttpDialer } from '@postern/transport-http/node';
import { ConfigError } from '@postern/protocol';
import { Client } from './client.js';
import type { NodeClientOptions } from './options.js';
import type { Dialer } from '@postern/core';

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
  // The proxy variables are read (and checked) at every connect(), not at import; the auto
  // dialer's memory of what works is this client's.
  let dialer = options.dialer;
  if (dialer === undefined) {
    const { ws, http } = dialers(transport, { ca, fingerprint, proxy });
    dialer = ws === undefined ? http! : http === undefined ? ws : createAutoDialer({ ws, http, ...(wsProbeIntervalMs === undefined ? {} : { wsProbeIntervalMs }) });
  }
  return Client.connect(options, dialer);
}

/** The proxy variables the dialers read (transport-ws proxy.ts). */
const PROXY_VARIABLES = ['https_proxy', 'HTTPS_PROXY', 'http_proxy', 'HTTP_PROXY', 'no_proxy', 'NO_PROXY'] as const;

/** The dialers made last, and the settings and proxy variables they were made with. */
let last: { key: string; ws: Dialer | undefined; http: Dialer | undefined } | undefined;

/**
 * The WebSocket and long-poll dialers for these settings and the proxy variables as they are
 * now. They hold no state of their own, so clients connecting with the same settings share them
 * (each kept about 1 KiB of closures per client: issue 12, an idle SDK client's memory).
 */
function dialers(transport: 'auto' | 'ws' | 'http', reach: { ca: string | string[] | undefined; fingerprint: string | undefined; proxy: string | false | undefined }): { ws: Dialer | undefined; http: Dialer | undefined } {
  const key = JSON.stringify([transport, reach.ca ?? null, reach.fingerprint ?? null, reach.proxy ?? null, reach.proxy === undefined ? PROXY_VARIABLES.map((v) => process.env[v] ?? null) : null]);
  if (last?.key !== key) {
    last = {
      key,
      ws: transport === 'http' ? undefined : createNodeWsDialer(reach),
      http: transport === 'ws' ? undefined : createNodeHttpDialer(reach),
    };
  }
  return last;
}
