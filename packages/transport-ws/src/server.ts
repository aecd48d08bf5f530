import type { IncomingMessage, Server } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Duplex as NetDuplex } from 'node:stream';
import type { Duplex } from '@postern/core';
import { WebSocketServer, type WebSocket } from 'ws';
import { WebSocketDuplex, type WebSocketLike } from './duplex.js';

export interface WsServerOptions {
  /** Largest WebSocket message accepted (one batch of frames). */
  maxPayload: number;
  /** Decide whether an upgrade request is ours; default: every path. */
  match?: (req: IncomingMessage) => boolean;
}

export interface WsServer {
  /** Stops accepting; open connections are left to their owner. */
  close(): void;
  readonly clients: number;
}

/**
 * Accepts WebSocket upgrades on an existing node:http or node:https server and hands each
 * connection over as a Duplex. No compression: frames are small and batched, and deflate costs
 * more CPU than it saves on the wire.
 */
export function attachWsServer(server: Server | HttpsServer, onDuplex: (d: Duplex) => void, options: WsServerOptions): WsServer {
  const wss = new WebSocketServer({ noServer: true, maxPayload: options.maxPayload, perMessageDeflate: false, clientTracking: true });
  const onUpgrade = (req: IncomingMessage, socket: NetDuplex, head: Buffer): void => {
    if (options.match !== undefined && !options.match(req)) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      const remote = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`;
      onDuplex(new WebSocketDuplex(ws as unknown as WebSocketLike, remote, () => ws.terminate()));
    });
  };
  server.on('upgrade', onUpgrade);
  return {
    close() {
      server.off('upgrade', onUpgrade);
      wss.close();
    },
    get clients() {
      return wss.clients.size;
    },
  };
}
