import type { Dialer } from '@postern/core';
import WebSocket from 'ws';
import { createWsDialer } from './client.js';
import type { WebSocketLike } from './duplex.js';

export interface NodeWsDialerOptions {
  /** Largest WebSocket message accepted from the router. @default 2 MiB */
  maxPayload?: number;
  /** Extra handshake headers. */
  headers?: Record<string, string>;
}

/** A Dialer over the `ws` package, for Node (which has no global WebSocket before v22). */
export function createNodeWsDialer(options: NodeWsDialerOptions = {}): Dialer {
  return createWsDialer(
    (url) =>
      new WebSocket(url, {
        perMessageDeflate: false,
        maxPayload: options.maxPayload ?? 2 * 1024 * 1024,
        headers: options.headers,
      }) as unknown as WebSocketLike & { terminate: () => void },
  );
}
