import type { IncomingMessage, Server } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Duplex as NetDuplex } from 'node:stream';
import type { Duplex } from '@postern/core';
import { WebSocketServer, type WebSocket } from 'ws';
import { WebSocketDuplex, type WebSocketLike } from './duplex.js';
import { NO_ORIGINS, originAllowed, type AllowedOrigins } from './origins.js';

export interface WsServerOptions {
  /** Largest WebSocket message accepted (one batch of frames). */
  maxPayload: number;
  /** Decide whether an upgrade request is ours; default: every path. */
  match?: (req: IncomingMessage) => boolean;
  /** Web origins whose pages may connect (see origins.ts); an upgrade with any other Origin gets 403. @default none */
  allowedOrigins?: AllowedOrigins;
  /** Told of each upgrade refused for its Origin (to log it). */
  onRefusedOrigin?: (origin: string, remote: string) => void;
  /** Asked before each upgrade, with the peer's "address:port": a reason to refuse it with 429 (quotas), or undefined. */
  admit?: (remote: string) => string | undefined;
}

export interface WsServer {
  /** Stops accepting; open connections are left to their owner. */
  close(): void;
  readonly clients: number;
}

/** A connection accepted here: counted while it is open. */
class ServerDuplex extends WebSocketDuplex {
  readonly #open: { count: number };

  constructor(ws: WebSocketLike, remote: string, open: { count: number }) {
    super(ws, remote);
    this.#open = open;
    open.count++;
  }

  protected override ended(): void {
    this.#open.count--;
  }
}

/**
 * Accepts WebSocket upgrades on an existing node:http or node:https server and hands each
 * connection over as a Duplex. No compression: frames are small and batched, and deflate costs
 * more CPU than it saves on the wire.
 */
export function attachWsServer(server: Server | HttpsServer, onDuplex: (d: Duplex) => void, options: WsServerOptions): WsServer {
  // Connections are counted by their duplexes: ws's own tracking costs a Set entry and a
  // 'close' listener (a closure) per socket (issue 12: an idle connection's memory).
  const wss = new WebSocketServer({ noServer: true, maxPayload: options.maxPayload, perMessageDeflate: false, clientTracking: false });
  const open = { count: 0 };
  const onUpgrade = (req: IncomingMessage, socket: NetDuplex, head: Buffer): void => {
    if (options.match !== undefined && !options.match(req)) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    if (!originAllowed(req.headers.origin, options.allowedOrigins ?? NO_ORIGINS)) {
      const body = 'this router does not let web pages of this origin connect (see --allow-origin)\n';
      socket.end(`HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      options.onRefusedOrigin?.(String(req.headers.origin).slice(0, 200), `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`);
      return;
    }
    const remote = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`;
    const refused = options.admit?.(remote);
    if (refused !== undefined) {
      // Before the upgrade: a refused client costs us no WebSocket and no session.
      const body = `${refused}\n`;
      socket.end(`HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nRetry-After: 1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      // The duplex ends a stuck close with the socket's own terminate(): no closure per connection.
      onDuplex(new ServerDuplex(ws as unknown as WebSocketLike, remote, open));
    });
  };
  server.on('upgrade', onUpgrade);
  return {
    close() {
      server.off('upgrade', onUpgrade);
      wss.close();
    },
    get clients() {
      return open.count;
    },
  };
}
