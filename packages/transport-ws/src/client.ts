import type { Duplex, Dialer, DialOptions } from '@postern/core';
import { TransportError } from '@postern/protocol';
import { WebSocketDuplex, type WebSocketLike } from './duplex.js';

/** Makes a WebSocket for a URL: the browser's global one, or `ws` with Node options. */
export type WebSocketFactory = (url: string) => WebSocketLike & { terminate?: () => void };

/** `ws://` and `wss://` as given; `http(s)://` mapped to `ws(s)://`; a bare `host:port` is `ws://`. */
export function toWebSocketUrl(url: string): string {
  if (/^wss?:\/\//i.test(url)) return url;
  if (/^https?:\/\//i.test(url)) return url.replace(/^http(s?):/i, (_m, s: string) => `ws${s.toLowerCase()}:`);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) throw new TransportError(`unsupported URL scheme in "${url}"; use ws://, wss://, http:// or https://`);
  return `ws://${url}`;
}

/** A Dialer that opens WebSockets made by `factory`. */
export function createWsDialer(factory: WebSocketFactory): Dialer {
  return (url: string, options: DialOptions): Promise<Duplex> => {
    const target = toWebSocketUrl(url);
    return new Promise<Duplex>((resolve, reject) => {
      if (options.signal?.aborted) {
        reject(new TransportError(`dial to ${target} aborted`));
        return;
      }
      let ws: ReturnType<WebSocketFactory>;
      try {
        ws = factory(target);
      } catch (cause) {
        reject(new TransportError(`cannot open ${target}: ${(cause as Error).message}`, { cause }));
        return;
      }
      ws.binaryType = typeof (globalThis as { process?: unknown }).process === 'object' && ws.terminate ? 'nodebuffer' : 'arraybuffer';
      let settled = false;
      let lastError = '';
      const fail = (msg: string): void => {
        if (settled) return;
        settled = true;
        cleanup();
        try {
          if (ws.terminate) ws.terminate();
          else ws.close();
        } catch {
          // nothing to close
        }
        reject(new TransportError(msg));
      };
      const onAbort = (): void => fail(`dial to ${target} aborted`);
      const timer =
        options.timeoutMs !== undefined ? setTimeout(() => fail(`no answer from ${target} within ${options.timeoutMs} ms`), options.timeoutMs) : undefined;
      const cleanup = (): void => {
        if (timer !== undefined) clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
      };
      options.signal?.addEventListener('abort', onAbort, { once: true });
      ws.onerror = (ev) => {
        lastError = ev.message ?? (ev.error instanceof Error ? ev.error.message : '') ?? '';
      };
      ws.onclose = (ev) => fail(`cannot connect to ${target}: ${lastError || `closed with code ${ev.code}`}`);
      ws.onopen = () => {
        if (settled) return;
        settled = true;
        cleanup();
        // A `ws` socket (an EventEmitter) is terminated by the duplex itself; another kind may bring its own.
        const terminate = typeof (ws as { on?: unknown }).on === 'function' ? undefined : ws.terminate?.bind(ws);
        resolve(new WebSocketDuplex(ws, target, terminate));
      };
    });
  };
}
