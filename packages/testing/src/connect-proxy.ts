// An HTTP CONNECT proxy for tests (node:http's 'connect' event), like a corporate proxy: it may
// require Basic credentials, and it opens tunnels to loopback targets only.
import http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';

export interface ConnectProxyOptions {
  /** Required credentials; without them every CONNECT is allowed. */
  credentials?: { user: string; password: string };
  /** Ports a tunnel may go to; others get 403. @default every port */
  allowPort?: (port: number) => boolean;
}

export interface ConnectRecord {
  /** `host:port` as asked. */
  target: string;
  /** The status the proxy answered. */
  status: number;
  /** The Proxy-Authorization header, if any. */
  authorization: string | undefined;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

export class ConnectProxy {
  readonly #server: http.Server;
  readonly #sockets = new Set<Duplex>();
  readonly #expected: string | undefined;
  readonly #allowPort: (port: number) => boolean;
  /** Every CONNECT seen, in order. */
  readonly requests: ConnectRecord[] = [];
  port = 0;

  private constructor(options: ConnectProxyOptions) {
    const c = options.credentials;
    this.#expected = c === undefined ? undefined : `Basic ${Buffer.from(`${c.user}:${c.password}`).toString('base64')}`;
    this.#allowPort = options.allowPort ?? (() => true);
    this.#server = http.createServer((_req, res) => res.writeHead(405, { connection: 'close' }).end('CONNECT only\n'));
    this.#server.on('connect', (req: http.IncomingMessage, client: Duplex, head: Buffer) => this.#connect(req, client, head));
    this.#server.on('connection', (s: net.Socket) => this.#track(s));
  }

  /** Starts a proxy on 127.0.0.1 and a free port. */
  static async start(options: ConnectProxyOptions = {}): Promise<ConnectProxy> {
    const p = new ConnectProxy(options);
    await new Promise<void>((resolve) => p.#server.listen(0, '127.0.0.1', resolve));
    p.port = (p.#server.address() as net.AddressInfo).port;
    return p;
  }

  /** `http://127.0.0.1:PORT`, with `user:password@` (percent-encoded) when given. */
  url(user?: string, password?: string): string {
    const auth = user === undefined ? '' : `${encodeURIComponent(user)}:${encodeURIComponent(password ?? '')}@`;
    return `http://${auth}127.0.0.1:${this.port}`;
  }

  /** Tunnels that succeeded so far. */
  get tunnels(): number {
    return this.requests.filter((r) => r.status === 200).length;
  }

  #track(s: Duplex): void {
    this.#sockets.add(s);
    s.on('close', () => this.#sockets.delete(s));
    s.on('error', () => {});
  }

  #connect(req: http.IncomingMessage, client: Duplex, head: Buffer): void {
    const target = req.url ?? '';
    const authorization = req.headers['proxy-authorization'];
    const answer = (status: number, text: string, extra = ''): void => {
      this.requests.push({ target, status, authorization });
      client.end(`HTTP/1.1 ${status} ${text}\r\n${extra}Content-Length: 0\r\nConnection: close\r\n\r\n`);
    };
    if (this.#expected !== undefined && authorization !== this.#expected) {
      answer(407, 'Proxy Authentication Required', 'Proxy-Authenticate: Basic realm="postern-test"\r\n');
      return;
    }
    const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(target);
    if (m === null || !LOOPBACK.has(m[1]!) || !this.#allowPort(Number(m[2]))) {
      answer(403, 'Forbidden');
      return;
    }
    const upstream = net.connect({ host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) });
    this.#track(upstream);
    let opened = false;
    upstream.once('connect', () => {
      opened = true;
      this.requests.push({ target, status: 200, authorization });
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.once('error', () => {
      if (!opened) answer(502, 'Bad Gateway');
      else client.destroy();
    });
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => {
      if (opened) client.destroy();
    });
  }

  /** Stops listening and cuts every connection and tunnel. */
  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
