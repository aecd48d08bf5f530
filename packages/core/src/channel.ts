import {
  FrameDecoder,
  FrameType,
  FrameWriter,
  MsgFlag,
  PosternError,
  RemoteError,
  TransportError,
  WireCode,
  errorCodeOf,
  wireCodeOf,
  type CloseFrame,
  type Frame,
} from '@postern/protocol';
import type { Clock, Scheduler } from './clock.js';
import { Deadlines, type Timed } from './deadlines.js';
import type { Duplex, DuplexHandlers } from './transport.js';

export interface ChannelOptions {
  maxFrameBytes: number;
  /** Frames queued plus bytes the transport has not written; past it the peer is too slow. */
  maxOutboundBytes: number;
  /** A batch this large leaves at once instead of waiting for the end of the I/O phase. */
  batchBytes: number;
  /** Ping after this much inbound silence; close after twice as much. 0 disables. */
  pingMs: number;
  /** A frame begun must be complete within this time (TIMEOUT). Absent or 0: no limit. */
  partialFrameMs?: number;
  clock: Clock;
  scheduler: Scheduler;
  /** Hears unexpected errors (bugs) raised while handling a frame; without it they are rethrown. */
  report?: (err: unknown) => void;
}

export interface ChannelHandler {
  /**
   * A decoded frame; `raw` is its encoded form (header included), valid while the call lasts.
   * `num`: a reliable MSG's number on a numbered connection (feature ACKS), else 0.
   */
  frame(frame: Frame, raw: Uint8Array, num: number): void;
  /** Called once. `reason` says why: a RemoteError for the peer's CLOSE, else a local error. */
  closed(reason: PosternError): void;
}

/**
 * A framed connection: decodes inbound transport messages into frames, batches outbound frames
 * into one transport message per I/O phase, answers pings, detects a dead peer, and disconnects
 * a peer that does not read fast enough. It never throws into the transport.
 */
export class Channel implements Timed {
  readonly duplex: Duplex;
  readonly #o: ChannelOptions;
  #handler: ChannelHandler;
  readonly #decoder: FrameDecoder;
  /**
   * Made with the first frame out and dropped when the connection goes quiet; holds no buffer
   * between small batches either: a batch of up to 1 KiB leaves in the buffer it was written to,
   * a larger one is copied out and its buffer kept for the next (up to 4 MiB). 16 KiB reserved
   * up front was most of what an idle agent cost its router (issue 12: bench/src/idle.ts).
   */
  #writer: FrameWriter | undefined;
  #scheduled = false;
  #closed = false;
  #closing = false;
  #lastRx: number;
  #paused = false;
  #pingedAt = -1;
  /** The keepalive's place in the shared deadline queue (Deadlines): no timer of its own. */
  deadlineSlot = -1;
  /** Since when the decoder holds the start of a frame (-1: it holds none), and its timer. */
  #partialAt = -1;
  #partialTimer: unknown = undefined;
  #nonce = 0;
  #peerClose: CloseFrame | undefined;
  #framesIn = 0;
  #framesOut = 0;
  #bytesIn = 0;
  #bytesOut = 0;
  /**
   * Feature ACKS granted on this connection (set by the handshake, before any MSG): reliable MSGs
   * are numbered in each direction and acknowledged by number (`ack()`), in ranges.
   */
  numbered = false;
  /** Reliable MSGs received (numbered). */
  msgsIn = 0;
  /** Reliable MSGs sent (numbered). */
  msgsOut = 0;
  /** Every MSG frame received and sent, volatile ones too (operators' per-link rates). */
  msgFramesIn = 0;
  msgFramesOut = 0;
  /**
   * Round-trip time of the last keepalive PING answered (ms), -1 before one was. PINGs are sent
   * only after pingMs of inbound silence, so a busy link keeps its last figure (or none).
   */
  rttMs = -1;
  /** The range of numbers acknowledged and not yet written: one ACKS frame per run of consecutive numbers. */
  #ackFirst = 0;
  #ackCount = 0;

  constructor(duplex: Duplex, options: ChannelOptions, handler: ChannelHandler) {
    this.duplex = duplex;
    this.#o = options;
    this.#handler = handler;
    this.#decoder = new FrameDecoder({ maxFrameBytes: options.maxFrameBytes });
    this.#lastRx = options.clock.now();
  }

  get closed(): boolean {
    return this.#closed || this.#closing;
  }

  /** Frames and bytes in each direction since the channel opened. */
  get stats(): { framesIn: number; framesOut: number; bytesIn: number; bytesOut: number } {
    return { framesIn: this.#framesIn, framesOut: this.#framesOut, bytesIn: this.#bytesIn, bytesOut: this.#bytesOut };
  }

  /**
   * Hands the frames and the close from now on to `handler` (the owner of a connection whose
   * handshake is done), so that nothing of the handshake stays alive with the connection.
   */
  setHandler(handler: ChannelHandler): void {
    this.#handler = handler;
  }

  /** Bytes waiting to leave: our batch plus the transport's own buffer. */
  get outboundBytes(): number {
    return (this.#writer?.length ?? 0) + this.duplex.bufferedAmount;
  }

  start(): void {
    this.duplex.start(new Channel.#Feed(this));
    this.#arm();
  }

  /** What the transport hands its messages and its end to: one small object per connection, no closures. */
  static readonly #Feed = class implements DuplexHandlers {
    readonly #channel: Channel;

    constructor(channel: Channel) {
      this.#channel = channel;
    }

    message(data: Uint8Array): void {
      this.#channel.#onMessage(data);
    }

    close(err?: Error): void {
      this.#channel.#onTransportClose(err);
    }
  };

  /** Queues a frame. For a reliable MSG on a numbered connection: its number; otherwise 0. */
  send(frame: Frame): number {
    if (this.closed) return 0;
    this.#out().frame(frame);
    this.#queued();
    return frame.type === FrameType.MSG ? this.#numberOut(frame.flags) : 0;
  }

  /** Appends a MSG without allocating a frame object. Returns its number (see `send`). */
  msg(flags: number, hops: number, id: string, from: string, to: string, body: Uint8Array): number {
    if (this.closed) return 0;
    this.#out().msg(flags, hops, id, from, to, body);
    this.#queued();
    return this.#numberOut(flags);
  }

  /** Appends an encoded MSG frame as is, with its hop byte set to `hops`. Returns its number (see `send`). */
  msgRaw(raw: Uint8Array, hops: number): number {
    if (this.closed) return 0;
    const w = this.#out();
    w.raw(raw);
    // MSG layout: u32 length, u8 type, u8 flags, u8 hops.
    w.patchFromEnd(raw.length - 6, hops);
    this.#queued();
    return this.#numberOut(raw[5] ?? 0);
  }

  #out(): FrameWriter {
    return (this.#writer ??= new FrameWriter(WRITER_INITIAL_BYTES));
  }

  #numberOut(flags: number): number {
    this.msgFramesOut++;
    return this.numbered && (flags & MsgFlag.VOLATILE) === 0 ? ++this.msgsOut : 0;
  }

  /**
   * Acknowledges the reliable MSG numbered `n` that we received here (feature ACKS). Consecutive
   * numbers acknowledged in one I/O phase leave as one ACKS frame; the order of the numbers is
   * kept (RELEASE counts acknowledgements in the order they were sent).
   */
  ack(n: number): void {
    if (this.closed) return;
    if (this.#ackCount > 0 && n === this.#ackFirst + this.#ackCount) {
      this.#ackCount++;
      return;
    }
    this.#writeAcks();
    this.#ackFirst = n;
    this.#ackCount = 1;
    this.#framesOut++;
    if (!this.#scheduled) {
      this.#scheduled = true;
      this.#o.scheduler(() => this.flush());
    }
  }

  #writeAcks(): void {
    if (this.#ackCount === 0) return;
    this.#out().frame({ type: FrameType.ACKS, first: this.#ackFirst, count: this.#ackCount });
    this.#ackCount = 0;
  }

  /** True when the transport can stop reading (see Duplex.pause). */
  get canPause(): boolean {
    return typeof this.duplex.pause === 'function';
  }

  /**
   * Stops reading inbound messages until `resume()`; the peer feels backpressure. Silence while
   * we do not read is ours, not the peer's: it does not count towards IDLE_TIMEOUT.
   */
  pause(): void {
    if (this.#closed) return;
    this.#paused = true;
    this.duplex.pause?.();
  }

  resume(): void {
    if (this.#closed) return;
    if (this.#paused) {
      this.#paused = false;
      this.#lastRx = this.#o.clock.now();
    }
    this.duplex.resume?.();
  }

  /** Sends what is queued now rather than at the end of the I/O phase. */
  flush(): void {
    this.#scheduled = false;
    if (this.#closed) return;
    this.#writeAcks();
    const w = this.#writer;
    if (w === undefined || w.length === 0) return;
    const data = w.take();
    // A small batch took the writer's buffer with it: the writer goes too, until the next frame.
    if (w.capacity === 0 && data.length <= WRITER_INITIAL_BYTES) this.#writer = undefined;
    this.#bytesOut += data.length;
    this.duplex.send(data);
  }

  /**
   * Closes deliberately: sends CLOSE with `code` and `reason` (unless the transport is gone),
   * flushes, and ends the transport. The handler hears `closed` at once.
   */
  close(code: number = WireCode.SHUTDOWN, reason = 'closing'): void {
    if (this.#closed) return;
    this.#writeAcks();
    this.#out().frame({ type: FrameType.CLOSE, code, reason });
    this.flush();
    this.#closed = true;
    this.#disarm();
    this.duplex.close();
    this.#handler.closed(localError(code, reason));
  }

  #queued(): void {
    this.#framesOut++;
    if ((this.#writer?.length ?? 0) >= this.#o.batchBytes) this.flush();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      this.#o.scheduler(() => this.flush());
    }
    if (this.outboundBytes > this.#o.maxOutboundBytes && !this.#closing) {
      // Closing here would re-enter the caller mid-route; finish its work first.
      this.#closing = true;
      this.#o.scheduler(() => {
        this.#closing = false;
        this.close(WireCode.SLOW_CONSUMER, `more than ${this.#o.maxOutboundBytes} bytes waiting to be read`);
      });
    }
  }

  #onMessage(data: Uint8Array): void {
    if (this.#closed) return;
    this.#lastRx = this.#o.clock.now();
    this.#bytesIn += data.length;
    try {
      this.#decoder.push(data, (frame, raw) => {
        if (this.#closed) return;
        this.#framesIn++;
        switch (frame.type) {
          case FrameType.PING:
            this.send({ type: FrameType.PONG, nonce: frame.nonce });
            return;
          case FrameType.PONG:
            if (frame.nonce === this.#nonce && this.#pingedAt >= 0) this.rttMs = this.#o.clock.now() - this.#pingedAt;
            return;
          case FrameType.CLOSE:
            this.#peerClose = frame;
            return;
          case FrameType.MSG:
            this.msgFramesIn++;
            if (this.numbered && (frame.flags & MsgFlag.VOLATILE) === 0) {
              this.#handler.frame(frame, raw, ++this.msgsIn);
              return;
            }
            break;
        }
        this.#handler.frame(frame, raw, 0);
      });
    } catch (err) {
      this.#fail(err);
      return;
    }
    this.#watchPartial();
  }

  /** A frame left half-received starts a clock; complete frames stop it. */
  #watchPartial(): void {
    const limit = this.#o.partialFrameMs ?? 0;
    if (limit <= 0 || this.#closed) return;
    if (this.#decoder.bufferedBytes === 0) {
      this.#partialAt = -1;
      return;
    }
    if (this.#partialAt >= 0) return;
    const now = this.#o.clock.now();
    this.#partialAt = now;
    const check = (): void => {
      this.#partialTimer = undefined;
      if (this.#closed || this.#partialAt < 0) return;
      const waited = this.#o.clock.now() - this.#partialAt;
      if (waited >= limit) this.close(WireCode.TIMEOUT, `a frame begun ${waited} ms ago is still incomplete (${this.#decoder.bufferedBytes} bytes of it came)`);
      else this.#partialTimer = this.#o.clock.setTimeout(check, limit - waited);
    };
    if (this.#partialTimer === undefined) this.#partialTimer = this.#o.clock.setTimeout(check, limit);
  }

  #fail(err: unknown): void {
    if (err instanceof PosternError) {
      const wire = wireCodeOf(err.code);
      this.close(wire ?? WireCode.INTERNAL, err.message);
    } else {
      // A bug while handling one frame costs this connection, not the process.
      this.close(WireCode.INTERNAL, 'internal error');
      if (this.#o.report !== undefined) this.#o.report(err);
      else throw err;
    }
  }

  #onTransportClose(err?: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#disarm();
    const pc = this.#peerClose;
    this.#handler.closed(
      pc !== undefined
        ? new RemoteError(pc.code, pc.reason)
        : new TransportError(err ? `connection lost: ${err.message}` : 'connection closed by peer', { cause: err }),
    );
  }

  /** The keepalive's time came (see Deadlines). */
  onDeadline(): void {
    this.#arm();
  }

  #arm(): void {
    const p = this.#o.pingMs;
    if (p <= 0 || this.#closed) return;
    const now = this.#o.clock.now();
    // Once a ping interval: a connection with nothing to write lets go of its writer.
    if (this.#writer !== undefined && this.#writer.length === 0) this.#writer = undefined;
    if (this.#paused) {
      // Not reading: a PONG could not be seen. Look again after resume() restarted the count.
      this.#lastRx = now;
      Deadlines.of(this.#o.clock).schedule(this, now + p);
      return;
    }
    const idle = now - this.#lastRx;
    let wait: number;
    if (idle >= 2 * p) {
      this.close(WireCode.IDLE_TIMEOUT, `no traffic for ${idle} ms`);
      return;
    }
    if (idle >= p) {
      if (this.#pingedAt <= this.#lastRx) {
        this.#pingedAt = now;
        this.send({ type: FrameType.PING, nonce: (this.#nonce = (this.#nonce + 1) >>> 0) });
      }
      wait = this.#lastRx + 2 * p - now;
    } else {
      wait = this.#lastRx + p - now;
    }
    Deadlines.of(this.#o.clock).schedule(this, now + Math.max(1, wait));
  }

  #disarm(): void {
    Deadlines.of(this.#o.clock).cancel(this);
    if (this.#partialTimer !== undefined) this.#o.clock.clearTimeout(this.#partialTimer);
    this.#partialTimer = undefined;
  }
}

/** A channel's first write buffer: an idle connection's control frames fit. */
const WRITER_INITIAL_BYTES = 256;

function localError(code: number, reason: string): PosternError {
  const c = errorCodeOf(code);
  return new PosternError(c === 'ERR_OK' ? 'ERR_CLOSED' : c, reason);
}
