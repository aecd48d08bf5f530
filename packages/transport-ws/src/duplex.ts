import type { Duplex, DuplexHandlers } from '@postern/core';

/** The part of the WHATWG WebSocket that both `ws` and browsers provide. */
export interface WebSocketLike {
  binaryType: string;
  readonly bufferedAmount: number;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: { message?: string; error?: unknown }) => void) | null;
  /** `ws` only: stop and restart reading from the socket. Browsers have neither. */
  pause?(): void;
  resume?(): void;
}

const OPEN = 1;

/** `ws`, the Node package: an EventEmitter as well, whose listeners are called with the socket as `this`. */
interface NodeWebSocket extends WebSocketLike {
  on(event: string, listener: (...args: never[]) => void): unknown;
  terminate(): void;
  [DUPLEX]?: WebSocketDuplex;
}

/** The duplex of a `ws` socket, kept on the socket for the shared listeners. */
const DUPLEX = Symbol('postern.duplex');

function isNodeWebSocket(ws: WebSocketLike): ws is NodeWebSocket {
  return typeof (ws as Partial<NodeWebSocket>).on === 'function' && typeof (ws as Partial<NodeWebSocket>).terminate === 'function';
}

/**
 * Adapts an open WebSocket to a Duplex: one binary WebSocket message per transport message. On a
 * `ws` socket it listens with three functions shared by all sockets (the socket leads back to its
 * duplex), not with closures of its own: a router holds thousands of idle connections (issue 12).
 */
export class WebSocketDuplex implements Duplex {
  readonly remote: string;
  readonly #ws: WebSocketLike;
  readonly #terminate: (() => void) | undefined;
  #handlers: DuplexHandlers | undefined;
  #early: Uint8Array[] | undefined;
  #ended = false;
  #endError: Error | undefined;
  #lastError: Error | undefined;
  /** Made when first asked for. */
  #done: Promise<void> | undefined;
  #resolveDone: (() => void) | undefined;

  /**
   * `terminate` forcibly ends a socket whose close handshake does not finish (Node only; a `ws`
   * socket's own `terminate()` is used when none is given).
   */
  constructor(ws: WebSocketLike, remote: string, terminate?: () => void) {
    this.#ws = ws;
    this.remote = remote;
    this.#terminate = terminate;
    // The dialer's handlers (and what they hold) have done their part.
    ws.onopen = null;
    if (isNodeWebSocket(ws)) {
      ws.onerror = null;
      ws.onclose = null;
      ws.onmessage = null;
      ws[DUPLEX] = this;
      ws.on('message', WebSocketDuplex.#onNodeMessage);
      ws.on('error', WebSocketDuplex.#onNodeError);
      ws.on('close', WebSocketDuplex.#onNodeClose);
      return;
    }
    ws.onmessage = (ev) => {
      const d = ev.data;
      this.#message(
        d instanceof Uint8Array
          ? d
          : d instanceof ArrayBuffer
            ? new Uint8Array(d)
            : new TextEncoder().encode(String(d)),
      );
    };
    ws.onerror = (ev) => {
      this.#lastError = new Error(ev.message ?? (ev.error instanceof Error ? ev.error.message : 'WebSocket error'));
    };
    ws.onclose = (ev) => this.#closed(ev.code, ev.reason);
  }

  static #onNodeMessage(this: NodeWebSocket, data: Uint8Array | ArrayBuffer | Uint8Array[]): void {
    // A text message's bytes are its UTF-8, which `ws` has checked: the same bytes either way.
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : Array.isArray(data) ? concat(data) : data;
    const d = this[DUPLEX];
    if (d !== undefined) d.#message(bytes);
  }

  static #onNodeError(this: NodeWebSocket, err: Error): void {
    const d = this[DUPLEX];
    if (d !== undefined) d.#lastError = new Error(err.message);
  }

  static #onNodeClose(this: NodeWebSocket, code: number, reason: Uint8Array): void {
    const d = this[DUPLEX];
    if (d !== undefined) d.#closed(code, new TextDecoder().decode(reason));
  }

  #message(d: Uint8Array): void {
    // A plain Uint8Array view even for Node Buffers: Buffer#slice shares memory, and callers
    // that copy with slice() must get a copy.
    const bytes = new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
    if (this.#handlers !== undefined) this.#handlers.message(bytes);
    else (this.#early ??= []).push(bytes);
  }

  #closed(code: number, reason: string): void {
    this.#finish(code === 1000 || code === 1005 ? this.#lastError : (this.#lastError ?? new Error(`WebSocket closed with code ${code}${reason ? `: ${reason}` : ''}`)));
  }

  get kind(): string {
    return 'ws';
  }

  /** Settles when the transport has fully ended. */
  get done(): Promise<void> {
    this.#done ??= this.#ended ? Promise.resolve() : new Promise<void>((r) => (this.#resolveDone = r));
    return this.#done;
  }

  get bufferedAmount(): number {
    return this.#ws.bufferedAmount;
  }

  pause(): void {
    this.#ws.pause?.();
  }

  resume(): void {
    this.#ws.resume?.();
  }

  start(handlers: DuplexHandlers): void {
    this.#handlers = handlers;
    const early = this.#early;
    this.#early = undefined;
    if (early !== undefined) for (const m of early) handlers.message(m);
    if (this.#ended) handlers.close(this.#endError);
  }

  send(data: Uint8Array): void {
    if (this.#ws.readyState === OPEN) this.#ws.send(data);
  }

  close(): void {
    if (this.#ended) return;
    try {
      this.#ws.close(1000);
    } catch {
      // already closing
    }
    const ws = this.#ws;
    const terminate = this.#terminate ?? (isNodeWebSocket(ws) ? () => ws.terminate() : undefined);
    if (terminate !== undefined) {
      // A peer too slow to read will never finish the close handshake: do not hold its buffer.
      const t = setTimeout(terminate, 2000);
      (t as { unref?: () => void }).unref?.();
    }
  }

  #finish(err: Error | undefined): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#endError = err;
    this.#resolveDone?.();
    this.#resolveDone = undefined;
    this.ended();
    this.#handlers?.close(err);
  }

  /** For subclasses: the transport has ended (called once, before the handlers hear it). */
  protected ended(): void {}
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
