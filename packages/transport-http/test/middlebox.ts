// A reverse proxy for tests, like a corporate middlebox in front of a router: it forwards plain
// HTTP requests, and refuses WebSocket upgrades with 403 while `blockUpgrades` is set (else it
// tunnels them). It can also lose answers: forward a request, let the router act on it, then
// reset the client's connection instead of answering. Loopback only.
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import type { Duplex as NetDuplex } from 'node:stream';

export interface Seen {
  method: string;
  url: string;
  status?: number;
  dropped: boolean;
}

export class Middlebox {
  blockUpgrades = true;
  /** Every request forwarded, in order of arrival; upgrades as method 'UPGRADE'. */
  readonly seen: Seen[] = [];
  readonly #server: http.Server;
  readonly #target: { host: string; port: number };
  readonly #sockets = new Set<NetDuplex>();
  #drops: Array<(method: string, url: string) => boolean> = [];
  port = 0;

  private constructor(target: { host: string; port: number }) {
    this.#target = target;
    this.#server = http.createServer((req, res) => this.#forward(req, res));
    this.#server.on('connection', (s: net.Socket) => this.#track(s));
    this.#server.on('upgrade', (req: http.IncomingMessage, socket: NetDuplex, head: Buffer) => this.#upgrade(req, socket, head));
  }

  static async start(target: { host: string; port: number }): Promise<Middlebox> {
    const m = new Middlebox(target);
    m.#server.listen(0, '127.0.0.1');
    await once(m.#server, 'listening');
    m.port = (m.#server.address() as net.AddressInfo).port;
    return m;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The next request that `match` accepts reaches the router, but its answer is lost. */
  dropAnswer(match: (method: string, url: string) => boolean): void {
    this.#drops.push(match);
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    this.#server.closeAllConnections();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }

  #track(s: NetDuplex): void {
    this.#sockets.add(s);
    s.on('close', () => this.#sockets.delete(s));
    s.on('error', () => {});
  }

  #forward(req: http.IncomingMessage, res: http.ServerResponse): void {
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const i = this.#drops.findIndex((m) => m(method, url));
    const drop = i >= 0;
    if (drop) this.#drops.splice(i, 1);
    const seen: Seen = { method, url, dropped: drop };
    this.seen.push(seen);
    const up = http.request({ host: this.#target.host, port: this.#target.port, method, path: url, headers: req.headers, agent: false }, (answer) => {
      seen.status = answer.statusCode;
      if (drop) {
        // The router has acted on it; the client never hears back.
        answer.resume();
        answer.once('end', () => req.socket.destroy());
        return;
      }
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    up.on('error', () => res.destroy());
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    req.pipe(up);
  }

  #upgrade(req: http.IncomingMessage, socket: NetDuplex, head: Buffer): void {
    this.#track(socket);
    this.seen.push({ method: 'UPGRADE', url: req.url ?? '/', dropped: this.blockUpgrades });
    if (this.blockUpgrades) {
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 24\r\nConnection: close\r\n\r\nWebSocket is not allowed');
      return;
    }
    const up = net.connect(this.#target.port, this.#target.host, () => {
      const lines = [`${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      up.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length > 0) up.write(head);
      socket.pipe(up);
      up.pipe(socket);
    });
    this.#track(up);
    up.on('close', () => socket.destroy());
    socket.on('close', () => up.destroy());
  }
}
