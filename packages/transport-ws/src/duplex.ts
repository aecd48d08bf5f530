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

/** Adapts an open WebSocket to a Duplex: one binary WebSocket message per transport message. */
export class WebSocketDuplex implements Duplex {
  readonly kind = 'ws';
  readonly remote: string;
  readonly #ws: WebSocketLike;
  readonly #terminate: (() => void) | undefined;
  #handlers: DuplexHandlers | undefined;
  #early: Uint8Array[] = [];
  #ended = false;
  #endError: Error | undefined;
  #lastError: Error | undefined;
  #resolveDone!: () => void;
  readonly done = new Promise<void>((r) => (this.#resolveDone = r));

  /** `terminate` forcibly ends a socket whose close handshake does not finish (Node only). */
  constructor(ws: WebSocketLike, remote: string, terminate?: () => void) {
    this.#ws = ws;
    this.remote = remote;
    this.#terminate = terminate;
    ws.onmessage = (ev) => {
      const d = ev.data;
      // A plain Uint8Array view even for Node Buffers: Buffer#slice shares memory, and callers
      // that copy with slice() must get a copy.
      const bytes =
        d instanceof Uint8Array
          ? new Uint8Array(d.buffer, d.byteOffset, d.byteLength)
          : d instanceof ArrayBuffer
            ? new Uint8Array(d)
            : new TextEncoder().encode(String(d));
      if (this.#handlers !== undefined) this.#handlers.message(bytes);
      else this.#early.push(bytes);
    };
    ws.onerror = (ev) => {
      this.#lastError = new Error(ev.message ?? (ev.error instanceof Error ? ev.error.message : 'WebSocket error'));
    };
    ws.onclose = (ev) => {
      this.#finish(ev.code === 1000 || ev.code === 1005 ? this.#lastError : (this.#lastError ?? new Error(`WebSocket closed with code ${ev.code}${ev.reason ? `: ${ev.reason}` : ''}`)));
    };
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
    for (const m of this.#early) handlers.message(m);
    this.#early = [];
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
    if (this.#terminate !== undefined) {
      // A peer too slow to read will never finish the close handshake: do not hold its buffer.
      const t = setTimeout(() => this.#terminate?.(), 2000);
      (t as { unref?: () => void }).unref?.();
    }
  }

  #finish(err: Error | undefined): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#endError = err;
    this.#resolveDone();
    this.#handlers?.close(err);
  }
}
