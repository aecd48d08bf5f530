import type net from 'node:net';
import type { Dialer, Duplex } from '@postern/core';
import { TransportError } from '@postern/protocol';
import WebSocket from 'ws';
import { createWsDialer, toWebSocketUrl } from './client.js';
import type { WebSocketLike } from './duplex.js';
import { authority, envProxyFor, openTunnel, parseProxyUrl, readEnvProxies, type Env, type ProxyConfig } from './proxy.js';
import { parseFingerprint, speaksTls, startTls, type TlsTrust } from './tls-verify.js';

export interface NodeWsDialerOptions {
  /** Largest WebSocket message accepted from the router. @default 2 MiB */
  maxPayload?: number;
  /** Extra handshake headers. */
  headers?: Record<string, string>;
  /**
   * PEM CA certificate(s) trusted for wss:// instead of the system CAs (like curl's --cacert),
   * e.g. a private CA. @default the system CAs (Node's default)
   */
  ca?: string | string[];
  /**
   * Pins the router's certificate: the SHA-256 of its leaf certificate (DER), 64 hex digits, with
   * or without colons, any case. With a pin the chain need not verify (a self-signed certificate
   * is fine), but the leaf must match exactly; `ca` is then not consulted.
   */
  fingerprint?: string;
  /**
   * HTTP CONNECT proxy for every dial, `http://[user:password@]host:port` (credentials
   * percent-encoded; sent as Basic Proxy-Authorization). `false`: always connect directly,
   * whatever the environment says. @default from the environment: `https_proxy`/`HTTPS_PROXY`
   * for wss://, `http_proxy`/`HTTP_PROXY` for ws://, minus `no_proxy`/`NO_PROXY` (curl's rules)
   */
  proxy?: string | false;
  /** Where the proxy variables are read, once, when the dialer is made. @default process.env */
  env?: Env;
}

/**
 * A Dialer over the `ws` package, for Node (which has no global WebSocket before v22). Reaches
 * the router directly or through an HTTP CONNECT proxy, and for wss:// verifies its certificate
 * (system CAs, `ca`, or a pinned `fingerprint`). `timeoutMs` of a dial covers all of it: TCP,
 * CONNECT, TLS and the WebSocket upgrade. Bad options (or proxy variables) throw ConfigError here,
 * not at the first dial.
 */
export function createNodeWsDialer(options: NodeWsDialerOptions = {}): Dialer {
  const trust: TlsTrust = Object.freeze({
    ca: options.ca,
    fingerprint: options.fingerprint === undefined ? undefined : parseFingerprint(options.fingerprint),
  });
  const fixed = typeof options.proxy === 'string' ? parseProxyUrl(options.proxy, 'proxy') : undefined;
  const fromEnv = options.proxy === undefined ? readEnvProxies(options.env ?? process.env) : undefined;
  const maxPayload = options.maxPayload ?? 2 * 1024 * 1024;

  const proxyFor = (secure: boolean, host: string, port: number): ProxyConfig | undefined =>
    fromEnv === undefined ? fixed : envProxyFor(fromEnv, secure, host, port);

  return async (url, dialOptions): Promise<Duplex> => {
    const target = toWebSocketUrl(url);
    let parsed: URL;
    try {
      parsed = new URL(target);
    } catch (cause) {
      throw new TransportError(`cannot open ${target}: not a valid URL`, { cause });
    }
    const secure = parsed.protocol === 'wss:';
    const host = parsed.hostname.startsWith('[') ? parsed.hostname.slice(1, -1) : parsed.hostname;
    const port = parsed.port === '' ? (secure ? 443 : 80) : Number(parsed.port);
    const proxy = proxyFor(secure, host, port);

    const { signal, timeoutMs } = dialOptions;
    if (signal?.aborted) throw new TransportError(`dial to ${target} aborted`);
    const ac = new AbortController();
    let timedOut = false;
    const timer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            ac.abort();
          }, timeoutMs);
    const onAbort = (): void => ac.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    let phase = proxy === undefined ? (secure ? `TCP connect to ${authority(host, port)}` : 'connect and WebSocket upgrade') : `waiting for proxy ${proxy.display} to open a tunnel`;
    let socket: net.Socket | undefined;
    try {
      if (proxy !== undefined) socket = await openTunnel(proxy, host, port, ac.signal);
      if (secure) {
        if (proxy === undefined) phase = `TCP connect and TLS handshake with ${authority(host, port)}`;
        else phase = `TLS handshake with ${authority(host, port)} through proxy ${proxy.display}`;
        socket = await startTls(socket, host, port, trust, ac.signal);
      }
      if (socket !== undefined) phase = 'WebSocket upgrade';
      const ready = socket;
      const dial = createWsDialer(
        (u) =>
          new WebSocket(u, {
            perMessageDeflate: false,
            maxPayload,
            headers: options.headers,
            // The connection is already open (and verified): ws runs the upgrade over it.
            ...(ready === undefined ? {} : { createConnection: () => ready }),
          }) as unknown as WebSocketLike & { terminate: () => void },
      );
      return await dial(target, { signal: ac.signal });
    } catch (err) {
      socket?.destroy();
      if (timedOut) throw new TransportError(`no answer from ${target} within ${timeoutMs} ms (${phase})`, { cause: err });
      if (signal?.aborted) throw new TransportError(`dial to ${target} aborted`, { cause: err });
      // A TLS server hangs up on a plain-text upgrade request: say so instead of "socket hang up".
      if (!secure && proxy === undefined && /socket hang up|ECONNRESET|code 1006/.test((err as Error).message) && (await speaksTls(host, port))) {
        throw new TransportError(`cannot connect to ${target}: the server speaks TLS: use wss:// (or https://)`, { cause: err, permanent: true });
      }
      throw err;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  };
}
