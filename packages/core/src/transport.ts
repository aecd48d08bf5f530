/**
 * A transport moves whole transport messages, each carrying one or more frames; it knows
 * nothing of frames. Implementations: WebSocket (transport-ws), HTTP long-poll (later),
 * in-memory pairs (testing). Every implementation passes `transportSuite()` in testing.
 */
export interface DuplexHandlers {
  /** One transport message, in order. The array is the handler's to keep. */
  message(data: Uint8Array): void;
  /** Called once, after which nothing more is delivered. `err` is set on abnormal ends. */
  close(err?: Error): void;
}

export interface Duplex {
  /**
   * Starts delivery to `handlers`. Messages that arrived before are delivered first. Called
   * at most once.
   */
  start(handlers: DuplexHandlers): void;
  /** Queues one transport message. Never throws; a dead duplex drops it. */
  send(data: Uint8Array): void;
  /** Bytes queued in the transport and not yet written to the network. */
  readonly bufferedAmount: number;
  /** Closes; `close` is reported to the handlers once the transport has ended. */
  close(): void;
  /** Settles when the transport has fully ended (after close, or when the peer went away). */
  readonly done: Promise<void>;
  /**
   * Stops reading from the network until `resume()`: the peer then feels TCP backpressure.
   * Optional; a router pauses an ingress whose traffic feeds a congested link.
   */
  pause?(): void;
  resume?(): void;
  /** For logs and metrics only: never written into a routed message. */
  readonly remote: string;
  /** 'ws', 'http', 'memory', ... */
  readonly kind: string;
}

export interface DialOptions {
  signal?: AbortSignal;
  /** Give up opening after this many ms. */
  timeoutMs?: number;
}

/** Opens a connection to a URL (a router's listener). */
export type Dialer = (url: string, options: DialOptions) => Promise<Duplex>;
