import type { Duplex, DuplexHandlers } from '@postern/core';

/**
 * One end of an in-memory connection. Messages are delivered asynchronously (on a macrotask,
 * like a socket), in order; `bufferedAmount` counts bytes the other end has not yet received.
 */
export class MemoryDuplex implements Duplex {
  readonly kind = 'memory';
  readonly remote: string;
  peer!: MemoryDuplex;
  #handlers: DuplexHandlers | undefined;
  #inbox: Uint8Array[] = [];
  #ended = false;
  #endError: Error | undefined;
  #inFlight = 0;
  #resolveDone!: () => void;
  readonly done = new Promise<void>((r) => (this.#resolveDone = r));
  /** Every message this end sent, for assertions. */
  readonly sent: Uint8Array[] = [];

  constructor(remote: string) {
    this.remote = remote;
  }

  get bufferedAmount(): number {
    return this.#inFlight;
  }

  get ended(): boolean {
    return this.#ended;
  }

  start(handlers: DuplexHandlers): void {
    this.#handlers = handlers;
    if (!this.paused) {
      for (const m of this.#inbox) handlers.message(m);
      this.#inbox = [];
    }
    if (this.#ended) handlers.close(this.#endError);
  }

  send(data: Uint8Array): void {
    if (this.#ended) return;
    this.sent.push(data);
    const copy = data.slice();
    this.#inFlight += copy.length;
    setImmediate(() => {
      this.#inFlight -= copy.length;
      this.peer.#receive(copy);
    });
  }

  close(): void {
    if (this.#ended) return;
    // Let what was sent before the close arrive first, as TCP would.
    setImmediate(() => {
      this.#end(undefined);
      this.peer.#end(undefined);
    });
  }

  /** Ends both sides abruptly, as a reset connection would. */
  destroy(err = new Error('connection reset')): void {
    this.#end(err);
    this.peer.#end(err);
  }

  /** While paused, arriving messages wait (as they would in a socket buffer). */
  paused = false;

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    const waiting = this.#inbox;
    this.#inbox = [];
    for (const m of waiting) this.#receive(m);
  }

  #receive(data: Uint8Array): void {
    if (this.#ended) return;
    if (this.#handlers !== undefined && !this.paused) this.#handlers.message(data);
    else this.#inbox.push(data);
  }

  #end(err: Error | undefined): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#endError = err;
    this.#resolveDone();
    this.#handlers?.close(err);
  }
}

/** Two connected ends: [dialer side, acceptor side]. */
export function memoryPair(): [MemoryDuplex, MemoryDuplex] {
  const a = new MemoryDuplex('memory:acceptor');
  const b = new MemoryDuplex('memory:dialer');
  a.peer = b;
  b.peer = a;
  return [a, b];
}
