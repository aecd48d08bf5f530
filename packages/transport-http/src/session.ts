import type { ServerResponse } from 'node:http';
import type { Duplex, DuplexHandlers } from '@postern/core';
import { TransportError } from '@postern/protocol';
import { HEADER_END, HEADER_OFFSET, decodeEnvelopes, envelope } from './wire.js';

/**
 * Answers a request; the server adds the common headers. `body` is a text (an error message)
 * or binary chunks written in order.
 */
export type Reply = (res: ServerResponse, status: number, body?: string | readonly Uint8Array[], headers?: Record<string, string>) => void;

export interface SessionLimits {
  pollTimeoutMs: number;
  sessionTimeoutMs: number;
  closeTimeoutMs: number;
}

interface PendingPoll {
  res: ServerResponse;
  max: number;
  timer: ReturnType<typeof setTimeout>;
}

interface HeldSend {
  messages: Uint8Array[];
  res: ServerResponse;
  timer: ReturnType<typeof setTimeout>;
}

function unref(t: ReturnType<typeof setTimeout>): ReturnType<typeof setTimeout> {
  (t as { unref?: () => void }).unref?.();
  return t;
}

/**
 * The server's end of one long-poll session, a Duplex for the router.
 *
 * Inbound: sends carry a sequence number; only the expected one is applied (a retry of an
 * applied send is answered 204 and dropped), so a lost answer never duplicates bytes. While
 * paused, a send is held unapplied (its answer waits) until resume(), or answered 503 after
 * pollTimeoutMs so that the client retries it.
 *
 * Outbound: messages are kept, as envelopes, until a poll's `ack` offset confirms them, so a
 * lost poll answer is sent again. A poll returns every kept byte at or after its ack; with
 * none it waits up to pollTimeoutMs. One poll is outstanding at a time: a newer one ends the
 * older with an empty answer.
 *
 * Lifetime: close() stops sends and marks the end of the stream (`Postern-End: 1` on the answer
 * that reaches it); the session ends when the client confirms it, sends DELETE, or after
 * closeTimeoutMs. A session without a poll for sessionTimeoutMs expires (close with an error).
 */
export class LongPollSession implements Duplex {
  readonly kind = 'http';
  readonly remote: string;
  readonly id: string;
  readonly #limits: SessionLimits;
  readonly #reply: Reply;
  readonly #onEnd: (s: LongPollSession) => void;
  #handlers: DuplexHandlers | undefined;
  #early: Uint8Array[] = [];
  #expectedSeq = 0;
  #paused = false;
  #held: HeldSend | undefined;
  /** Envelopes not yet confirmed by a poll; the first starts at offset #outStart. */
  #out: Uint8Array[] = [];
  #outStart = 0;
  #outBytes = 0;
  #poll: PendingPoll | undefined;
  #flushScheduled = false;
  #state: 'open' | 'closing' | 'ended' = 'open';
  #endError: Error | undefined;
  #expiry: ReturnType<typeof setTimeout> | undefined;
  #linger: ReturnType<typeof setTimeout> | undefined;
  #resolveDone!: () => void;
  readonly done = new Promise<void>((r) => (this.#resolveDone = r));

  constructor(id: string, remote: string, limits: SessionLimits, reply: Reply, onEnd: (s: LongPollSession) => void) {
    this.id = id;
    this.remote = remote;
    this.#limits = limits;
    this.#reply = reply;
    this.#onEnd = onEnd;
    this.#armExpiry();
  }

  get ended(): boolean {
    return this.#state === 'ended';
  }

  /** Outbound bytes not yet confirmed by the client: queued, or sent in an answer not yet acknowledged. */
  get bufferedAmount(): number {
    return this.#outBytes;
  }

  start(handlers: DuplexHandlers): void {
    this.#handlers = handlers;
    const early = this.#early;
    this.#early = [];
    for (const m of early) handlers.message(m);
    if (this.#state === 'ended') handlers.close(this.#endError);
  }

  send(data: Uint8Array): void {
    if (this.#state !== 'open') return;
    this.#out.push(envelope(data));
    this.#outBytes += data.length + 4;
    this.#scheduleFlush();
  }

  close(): void {
    if (this.#state !== 'open') return;
    this.#state = 'closing';
    const held = this.#held;
    if (held !== undefined) {
      // Nothing more is read once closing; the client need not retry it.
      this.#held = undefined;
      clearTimeout(held.timer);
      this.#reply(held.res, 204);
    }
    this.#linger = unref(setTimeout(() => this.#finish(undefined), this.#limits.closeTimeoutMs));
    this.#scheduleFlush();
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    const held = this.#held;
    if (held === undefined || this.#state !== 'open') return;
    this.#held = undefined;
    clearTimeout(held.timer);
    this.#apply(held.messages);
    this.#reply(held.res, 204);
  }

  /** A send request with sequence number `seq` and its whole body. */
  onSend(seq: number, body: Uint8Array, res: ServerResponse): void {
    if (this.#state !== 'open' || seq < this.#expectedSeq) {
      // A retry whose first copy was applied (its answer was lost), or data after our close.
      this.#reply(res, 204);
      return;
    }
    if (seq > this.#expectedSeq) {
      this.#reply(res, 409, `send ${seq} is ahead of the expected ${this.#expectedSeq}: sends must go one at a time, in order`);
      return;
    }
    const messages = decodeEnvelopes(body);
    if (messages === undefined) {
      this.#reply(res, 400, 'the body is not a sequence of length-prefixed messages');
      this.#finish(new TransportError(`long-poll session ${this.id}: the client sent a malformed body`));
      return;
    }
    if (this.#paused) {
      const old = this.#held;
      if (old !== undefined) {
        // The client gave up on the older copy of this same send and retried it.
        clearTimeout(old.timer);
        this.#reply(old.res, 503, 'superseded by a retry', { 'retry-after': '1' });
      }
      const timer = unref(
        setTimeout(() => {
          if (this.#held?.res !== res) return;
          this.#held = undefined;
          this.#reply(res, 503, 'the router is not reading from this session now; send again', { 'retry-after': '1' });
        }, this.#limits.pollTimeoutMs),
      );
      this.#held = { messages, res, timer };
      return;
    }
    this.#apply(messages);
    this.#reply(res, 204);
  }

  /**
   * A poll that confirms every outbound byte before offset `ack` and takes at most `max` bytes
   * (whole messages, at least one when any is queued); `max` 0 only confirms and keeps the
   * session alive, answered at once (a paused client's poll).
   */
  onPoll(ack: number, max: number, res: ServerResponse): void {
    const end = this.#outStart + this.#outBytes;
    if (ack < this.#outStart || ack > end) {
      this.#reply(res, 409, `ack ${ack} is outside the unconfirmed bytes [${this.#outStart}, ${end}]`);
      return;
    }
    // Checked before anything is let go: a refused poll confirms nothing.
    let confirmed = 0;
    let at = this.#outStart;
    while (confirmed < this.#out.length && at + this.#out[confirmed]!.length <= ack) at += this.#out[confirmed++]!.length;
    if (at !== ack) {
      this.#reply(res, 400, `ack ${ack} is not at a message boundary`);
      return;
    }
    if (confirmed > 0) {
      this.#out.splice(0, confirmed);
      this.#outBytes -= at - this.#outStart;
      this.#outStart = at;
    }
    const older = this.#poll;
    if (older !== undefined) {
      this.#poll = undefined;
      clearTimeout(older.timer);
      this.#answerPoll(older.res, 0);
    }
    if (this.#expiry !== undefined) clearTimeout(this.#expiry);
    this.#expiry = undefined;
    if (this.#state === 'closing' && this.#outBytes === 0) {
      // The client has everything up to our end: the session is over.
      this.#answerPoll(res, max);
      this.#finish(undefined);
      return;
    }
    if (this.#outBytes > 0 || this.#state === 'closing' || max === 0) {
      this.#answerPoll(res, max);
      this.#armExpiry();
      return;
    }
    const poll: PendingPoll = {
      res,
      max,
      timer: unref(
        setTimeout(() => {
          if (this.#poll !== poll) return;
          this.#poll = undefined;
          this.#answerPoll(res, 0);
          this.#armExpiry();
        }, this.#limits.pollTimeoutMs),
      ),
    };
    this.#poll = poll;
    res.once('close', () => {
      // The client (or a proxy) dropped the poll before it was answered.
      if (this.#poll !== poll) return;
      this.#poll = undefined;
      clearTimeout(poll.timer);
      this.#armExpiry();
    });
  }

  /** The client ended the session (DELETE). */
  onDelete(res: ServerResponse): void {
    this.#reply(res, 204);
    this.#finish(undefined);
  }

  /** Ends the session now, e.g. when the server shuts down. */
  terminate(err: Error): void {
    this.#finish(err);
  }

  #apply(messages: Uint8Array[]): void {
    this.#expectedSeq++;
    for (const m of messages) {
      if (this.#state === 'ended') return;
      if (this.#handlers !== undefined) this.#handlers.message(m);
      else this.#early.push(m);
    }
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#poll === undefined) return;
    this.#flushScheduled = true;
    // After the current I/O phase: everything the router queues together leaves in one answer.
    setImmediate(() => {
      this.#flushScheduled = false;
      const poll = this.#poll;
      if (poll === undefined || (this.#outBytes === 0 && this.#state !== 'closing')) return;
      this.#poll = undefined;
      clearTimeout(poll.timer);
      this.#answerPoll(poll.res, poll.max);
      this.#armExpiry();
    });
  }

  /** Answers a poll with the unconfirmed messages from the start, up to `max` bytes (at least one unless 0). */
  #answerPoll(res: ServerResponse, max: number): void {
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream', [HEADER_OFFSET]: String(this.#outStart) };
    let body = this.#out;
    if (max < this.#outBytes) {
      body = [];
      let n = 0;
      for (const e of this.#out) {
        if (max === 0 || (body.length > 0 && n + e.length > max)) break;
        body.push(e);
        n += e.length;
      }
    }
    // End of stream: all of it is in this answer after our close, or the session is over.
    if ((body.length === this.#out.length && this.#state === 'closing') || this.#state === 'ended') headers[HEADER_END] = '1';
    this.#reply(res, 200, body, headers);
  }

  #armExpiry(): void {
    if (this.#state === 'ended') return;
    if (this.#expiry !== undefined) clearTimeout(this.#expiry);
    const ms = this.#limits.sessionTimeoutMs;
    this.#expiry = unref(setTimeout(() => this.#finish(new TransportError(`long-poll session expired: no poll for ${ms} ms`)), ms));
  }

  #finish(err: Error | undefined): void {
    if (this.#state === 'ended') return;
    const wasClosing = this.#state === 'closing';
    this.#state = 'ended';
    this.#endError = err;
    if (this.#expiry !== undefined) clearTimeout(this.#expiry);
    if (this.#linger !== undefined) clearTimeout(this.#linger);
    const poll = this.#poll;
    this.#poll = undefined;
    if (poll !== undefined) {
      clearTimeout(poll.timer);
      // After our close, a waiting poll still gets the last bytes (the router's CLOSE frame).
      if (wasClosing || err === undefined) this.#answerPoll(poll.res, wasClosing ? poll.max : 0);
      else this.#reply(poll.res, 410, 'the session has ended');
    }
    const held = this.#held;
    this.#held = undefined;
    if (held !== undefined) {
      clearTimeout(held.timer);
      this.#reply(held.res, 410, 'the session has ended');
    }
    this.#out = [];
    this.#outBytes = 0;
    this.#onEnd(this);
    this.#resolveDone();
    this.#handlers?.close(err);
  }
}
