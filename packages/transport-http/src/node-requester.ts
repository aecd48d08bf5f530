import http from 'node:http';
import net from 'node:net';
import type { Duplex as StreamDuplex } from 'node:stream';
import type { Dialer } from '@postern/core';
import { TransportError } from '@postern/protocol';
import { envProxyFor, openTunnel, parseFingerprint, parseProxyUrl, readEnvProxies, speaksTls, startTls, type ProxyConfig, type TlsTrust } from '@postern/transport-ws/node';
import { createLongPollDialer, type LongPollDialerOptions } from './client.js';
import type { HttpAnswer, HttpRequest, HttpRequester } from './requester.js';

export interface NodeLongPollDialerOptions extends LongPollDialerOptions {
  /** Extra headers on every request. */
  headers?: Record<string, string>;
  /** PEM CA certificate(s) trusted for https:// instead of the system CAs. @default the system CAs */
  ca?: string | string[];
  /** SHA-256 of the router's leaf certificate (hex, colons optional): pinned, the chain need not verify. */
  fingerprint?: string;
  /**
   * HTTP CONNECT proxy, `http://[user:password@]host:port`; `false`: connect directly. @default from
   * `https_proxy`/`HTTPS_PROXY` (https://) or `http_proxy`/`HTTP_PROXY` (http://), minus `no_proxy`
   */
  proxy?: string | false;
  /** Where the proxy variables are read, once, when the dialer is made. @default process.env */
  env?: Readonly<Record<string, string | undefined>>;
}

/** Largest answer read; a poll returns at most what the router queued for us (its outbound cap). */
const MAX_ANSWER_BYTES = 256 * 1024 * 1024;
/** Opening a connection (TCP, CONNECT, TLS) for a request gives up after this long. */
const CONNECT_TIMEOUT_MS = 15_000;

type Connect = (signal: AbortSignal) => net.Socket | Promise<net.Socket>;

/** Hands http's Agent the connections we open ourselves (through a proxy, with our TLS checks). */
class ConnectingAgent extends http.Agent {
  readonly #connect: Connect;
  readonly #life: AbortSignal;

  constructor(connect: Connect, life: AbortSignal) {
    // Two requests of a session are in flight at most (a poll and a send), plus a DELETE.
    super({ keepAlive: true, maxSockets: 4 });
    this.#connect = connect;
    this.#life = life;
  }

  override createConnection(_options: http.ClientRequestArgs, callback?: (err: Error | null, stream: StreamDuplex) => void): StreamDuplex | null | undefined {
    const signal = AbortSignal.any([this.#life, AbortSignal.timeout(CONNECT_TIMEOUT_MS)]);
    Promise.resolve()
      .then(() => this.#connect(signal))
      .then(
        (s) => {
          s.setNoDelay(true);
          callback?.(null, s);
        },
        (err: unknown) => callback?.(err instanceof Error ? err : new Error(String(err)), undefined as unknown as StreamDuplex),
      );
    return undefined;
  }
}

class NodeRequester implements HttpRequester {
  readonly #agent: ConnectingAgent;
  readonly #life = new AbortController();
  readonly #headers: Record<string, string>;

  constructor(connect: Connect, headers: Record<string, string>) {
    this.#agent = new ConnectingAgent(connect, this.#life.signal);
    this.#headers = headers;
  }

  request(req: HttpRequest): Promise<HttpAnswer> {
    return new Promise<HttpAnswer>((resolve, reject) => {
      if (req.signal.aborted) {
        reject(new Error('aborted'));
        return;
      }
      const u = new URL(req.url);
      const headers: Record<string, string> = { ...this.#headers, host: u.host };
      if (req.body !== undefined) {
        headers['content-type'] = 'application/octet-stream';
        headers['content-length'] = String(req.body.length);
      }
      // Always http: TLS, when wanted, is already on the connection the agent hands over.
      const r = http.request({ protocol: 'http:', host: u.hostname, port: u.port || (u.protocol === 'https:' ? 443 : 80), method: req.method, path: `${u.pathname}${u.search}`, agent: this.#agent, headers });
      let settled = false;
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        cleanup();
        r.destroy();
        reject(err);
      };
      const timer = setTimeout(() => fail(new Error(`no answer within ${req.timeoutMs} ms`)), req.timeoutMs);
      const onAbort = (): void => fail(new Error('aborted'));
      const cleanup = (): void => {
        clearTimeout(timer);
        req.signal.removeEventListener('abort', onAbort);
      };
      req.signal.addEventListener('abort', onAbort, { once: true });
      // Our own connect (proxy, TLS) fails with a worded TransportError: keep it whole.
      r.on('error', (err: NodeJS.ErrnoException) => fail(err instanceof TransportError ? err : new Error(err.message, { cause: err })));
      r.on('response', (res) => {
        const chunks: Buffer[] = [];
        let n = 0;
        res.on('data', (c: Buffer) => {
          n += c.length;
          if (n > MAX_ANSWER_BYTES) fail(new Error(`answer larger than ${MAX_ANSWER_BYTES} bytes`));
          else chunks.push(c);
        });
        res.on('error', (err) => fail(err));
        res.on('aborted', () => fail(new Error('the answer was cut off')));
        res.on('end', () => {
          if (settled) return;
          if (!res.complete) return fail(new Error('the answer was cut off'));
          settled = true;
          cleanup();
          const buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, n);
          resolve({
            status: res.statusCode ?? 0,
            header: (name) => {
              const v = res.headers[name];
              return Array.isArray(v) ? v.join(', ') : v;
            },
            body: new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength),
          });
        });
      });
      r.end(req.body === undefined ? undefined : req.body);
    });
  }

  close(): void {
    this.#life.abort();
    this.#agent.destroy();
  }
}

/**
 * A long-poll Dialer for Node over node:http, reaching the router directly or through an HTTP
 * CONNECT proxy and, for https://, verifying it like the WebSocket dialer does (system CAs,
 * `ca`, or a pinned `fingerprint`). Bad options (or proxy variables) throw ConfigError here.
 */
export function createNodeHttpDialer(options: NodeLongPollDialerOptions = {}): Dialer {
  const trust: TlsTrust = Object.freeze({
    ca: options.ca,
    fingerprint: options.fingerprint === undefined ? undefined : parseFingerprint(options.fingerprint),
  });
  const fixed = typeof options.proxy === 'string' ? parseProxyUrl(options.proxy, 'proxy') : undefined;
  const fromEnv = options.proxy === undefined ? readEnvProxies(options.env ?? process.env) : undefined;
  const headers = { ...(options.headers ?? {}) };
  const requester = (base: string): HttpRequester => {
    const u = new URL(base);
    const secure = u.protocol === 'https:';
    const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
    const port = u.port === '' ? (secure ? 443 : 80) : Number(u.port);
    const proxy: ProxyConfig | undefined = fromEnv === undefined ? fixed : envProxyFor(fromEnv, secure, host, port);
    const connect: Connect = (signal) => {
      if (proxy === undefined && !secure) return connectPlain(host, port, signal);
      return (async () => {
        const tunnel = proxy === undefined ? undefined : await openTunnel(proxy, host, port, signal);
        return secure ? startTls(tunnel, host, port, trust, signal) : tunnel!;
      })().catch((err: unknown) => {
        throw err instanceof TransportError ? err : new TransportError(String(err), { cause: err });
      });
    };
    const plain = new NodeRequester(connect, headers);
    return proxy === undefined && !secure ? new SchemeCheckingRequester(plain, host, port, base) : plain;
  };
  return createLongPollDialer(requester, options);
}

/**
 * An http:// router that hangs up on every request may be a TLS server (a plain request to a TLS
 * port gets its connection closed): asked once, the answer is a permanent error that says
 * "use https://" instead of "socket hang up".
 */
class SchemeCheckingRequester implements HttpRequester {
  readonly #inner: HttpRequester;
  readonly #host: string;
  readonly #port: number;
  readonly #base: string;
  #checked = false;

  constructor(inner: HttpRequester, host: string, port: number, base: string) {
    this.#inner = inner;
    this.#host = host;
    this.#port = port;
    this.#base = base;
  }

  async request(req: HttpRequest): Promise<HttpAnswer> {
    try {
      return await this.#inner.request(req);
    } catch (err) {
      if (this.#checked || req.signal.aborted || !/socket hang up|ECONNRESET/.test((err as Error).message)) throw err;
      this.#checked = true;
      if (await speaksTls(this.#host, this.#port)) {
        throw new TransportError(`cannot connect to ${this.#base}: the server speaks TLS: use https:// (or wss://)`, { cause: err, permanent: true });
      }
      throw err;
    }
  }

  close(): void {
    this.#inner.close();
  }
}

/** A TCP connection, given up (and destroyed) when `signal` aborts first: the connect timeout. */
function connectPlain(host: string, port: number, signal: AbortSignal): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    const onAbort = (): void => {
      s.destroy();
      const timedOut = (signal.reason as { name?: string } | undefined)?.name === 'TimeoutError';
      reject(new TransportError(timedOut ? `no TCP connection to ${host}:${port} within ${CONNECT_TIMEOUT_MS} ms` : 'the long-poll session was closed'));
    };
    const onError = (err: Error): void => {
      signal.removeEventListener('abort', onAbort);
      reject(err);
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    s.once('error', onError);
    s.once('connect', () => {
      signal.removeEventListener('abort', onAbort);
      s.removeListener('error', onError);
      resolve(s);
    });
  });
}
