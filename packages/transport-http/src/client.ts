import type { Dialer, DialOptions, Duplex, DuplexHandlers } from '@postern/core';
import { ConfigError, TransportError } from '@postern/protocol';
import { LONG_POLL_CLIENT_DEFAULTS } from './constants.js';
import { bodyText, type HttpAnswer, type HttpRequester } from './requester.js';
import { DEFAULT_PATH, ENVELOPE_BYTES, HEADER_END, HEADER_OFFSET, decodeEnvelopes, encodeEnvelopes, normalizePath, parseCount, parseOpenAnswer, type OpenAnswer } from './wire.js';

export interface LongPollDialerOptions {
  /** Path of the long-poll API, appended to the URL's own path. @default '/postern/http' */
  path?: string;
  /** Added to the server's poll timeout before an unanswered poll is abandoned and sent again. @default 10000 */
  pollGraceMs?: number;
  /** close() waits this long for queued sends to leave before ending the session anyway. @default 2000 */
  closeTimeoutMs?: number;
}

type Resolved = Readonly<Required<LongPollDialerOptions>>;

function resolve(o: LongPollDialerOptions): Resolved {
  const d = LONG_POLL_CLIENT_DEFAULTS;
  const int = (name: string, v: number | undefined, dflt: number): number => {
    const x = v ?? dflt;
    if (!Number.isSafeInteger(x) || x < 1) throw new ConfigError(`${name} must be a positive integer, got ${String(v)}`);
    return x;
  };
  return Object.freeze({
    path: normalizePath(o.path ?? DEFAULT_PATH),
    pollGraceMs: int('pollGraceMs', o.pollGraceMs, d.pollGraceMs),
    closeTimeoutMs: int('closeTimeoutMs', o.closeTimeoutMs, d.closeTimeoutMs),
  });
}

/**
 * The base URL of the long-poll API for a router URL: ws(s):// read as http(s)://, a bare
 * `host:port` as http://; query and fragment dropped; `path` appended to the URL's path.
 */
export function toLongPollUrl(url: string, path: string = DEFAULT_PATH): string {
  let u = url;
  if (/^wss?:\/\//i.test(u)) u = u.replace(/^ws(s?):/i, (_m, s: string) => `http${s.toLowerCase()}:`);
  else if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(u)) u = `http://${u}`;
  let parsed: URL;
  try {
    parsed = new URL(u);
  } catch (cause) {
    throw new TransportError(`cannot open ${url}: not a valid URL`, { cause });
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new TransportError(`unsupported URL scheme in "${url}"; use ws://, wss://, http:// or https://`);
  }
  return `${parsed.protocol}//${parsed.host}${normalizePath(parsed.pathname)}${normalizePath(path)}`;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((r) => {
    if (signal.aborted) return r();
    const done = (): void => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      r();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** Seconds of a Retry-After header, as ms, within [min, max]. */
function retryAfter(a: HttpAnswer, min: number, max: number): number {
  const s = Number(a.header('retry-after'));
  return Number.isFinite(s) && s >= 0 ? Math.min(max, Math.max(min, s * 1000)) : min;
}

/**
 * The client's end of a long-poll session.
 *
 * Sends go one request at a time, each carrying every message queued so far (up to the server's
 * body limit) and the next sequence number; a failed send is retried with the same number and
 * body, which the server applies at most once. Polls go one at a time and carry `ack`, the
 * offset of the inbound stream received so far; an answer's `Postern-Offset` says where its
 * body starts, so bytes seen twice (a lost answer sent again) are skipped and none are lost.
 * Failed requests are retried with backoff until nothing succeeded for the server's session
 * timeout: by then it has dropped the session, and the duplex closes with an error.
 */
export class LongPollClientDuplex implements Duplex {
  readonly kind = 'http';
  readonly remote: string;
  readonly #http: HttpRequester;
  readonly #session: string;
  readonly #limits: OpenAnswer;
  readonly #o: Resolved;
  readonly #ac = new AbortController();
  #handlers: DuplexHandlers | undefined;
  #early: Uint8Array[] = [];
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #inflight: { seq: number; body: Uint8Array } | undefined;
  #nextSeq = 0;
  /** Inbound stream offset received and delivered. */
  #received = 0;
  #lastOk = Date.now();
  #paused = false;
  #wakePoll: (() => void) | undefined;
  #drained: Array<() => void> = [];
  #closing = false;
  #ended = false;
  #endError: Error | undefined;
  #resolveDone!: () => void;
  readonly done = new Promise<void>((r) => (this.#resolveDone = r));

  constructor(http: HttpRequester, sessionUrl: string, limits: OpenAnswer, remote: string, options: Resolved) {
    this.#http = http;
    this.#session = sessionUrl;
    this.#limits = limits;
    this.remote = remote;
    this.#o = options;
    void this.#pollLoop();
  }

  /** Bytes queued or in a send not yet answered. */
  get bufferedAmount(): number {
    return this.#queuedBytes + (this.#inflight?.body.length ?? 0);
  }

  start(handlers: DuplexHandlers): void {
    this.#handlers = handlers;
    const early = this.#early;
    this.#early = [];
    for (const m of early) handlers.message(m);
    if (this.#ended) handlers.close(this.#endError);
  }

  send(data: Uint8Array): void {
    if (this.#ended || this.#closing) return;
    this.#queue.push(data);
    this.#queuedBytes += ENVELOPE_BYTES + data.length;
    if (this.#inflight === undefined) void this.#sendLoop();
  }

  /**
   * Stops taking messages (the router then holds what it has for us, and feels it in its
   * bufferedAmount) until resume(); the session is kept alive meanwhile.
   */
  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
    const w = this.#wakePoll;
    this.#wakePoll = undefined;
    w?.();
  }

  close(): void {
    if (this.#closing || this.#ended) return;
    this.#closing = true;
    void (async () => {
      // Let what is queued (the CLOSE frame among it) reach the router first, within a bound.
      const deadline = Date.now() + this.#o.closeTimeoutMs;
      while (!this.#ended && this.bufferedAmount > 0 && Date.now() < deadline) {
        await new Promise<void>((r) => {
          const t = setTimeout(r, Math.max(1, deadline - Date.now()));
          this.#drained.push(() => {
            clearTimeout(t);
            r();
          });
        });
      }
      if (this.#ended) return;
      await this.#request('DELETE', this.#session, undefined, Math.max(500, deadline - Date.now())).catch(() => undefined);
      this.#finish(undefined);
    })();
  }

  #request(method: 'GET' | 'POST' | 'DELETE', url: string, body: Uint8Array | undefined, timeoutMs: number, signal = this.#ac.signal): Promise<HttpAnswer> {
    return this.#http.request({ method, url, signal, timeoutMs, ...(body === undefined ? {} : { body }) });
  }

  /**
   * Waits before retrying a failed request, or ends the session when nothing succeeded for the
   * server's session timeout (it has dropped the session by then). Returns false when ended.
   */
  async #backoff(attempt: number, why: string): Promise<boolean> {
    if (this.#ended) return false;
    if (Date.now() - this.#lastOk > this.#limits.sessionTimeoutMs) {
      this.#finish(new TransportError(`long-poll session lost: no request succeeded for ${this.#limits.sessionTimeoutMs} ms (${why})`));
      return false;
    }
    const d = LONG_POLL_CLIENT_DEFAULTS;
    await sleep(Math.min(d.retryMaxMs, d.retryInitialMs * 2 ** Math.min(attempt, 10)), this.#ac.signal);
    return !this.#ended;
  }

  async #sendLoop(): Promise<void> {
    let attempt = 0;
    while (!this.#ended) {
      if (this.#inflight === undefined) {
        if (this.#queue.length === 0) break;
        // Everything queued, up to the body limit (a single larger message goes alone: the
        // server refuses it, which ends the session with a clear error).
        const batch: Uint8Array[] = [];
        let n = 0;
        while (this.#queue.length > 0) {
          const size = ENVELOPE_BYTES + this.#queue[0]!.length;
          if (batch.length > 0 && n + size > this.#limits.maxBodyBytes) break;
          batch.push(this.#queue.shift()!);
          n += size;
        }
        this.#queuedBytes -= n;
        this.#inflight = { seq: this.#nextSeq, body: encodeEnvelopes(batch) };
      }
      const { seq, body } = this.#inflight;
      let a: HttpAnswer;
      try {
        // A paused router holds a send up to its poll timeout before answering 503.
        a = await this.#request('POST', `${this.#session}/send?seq=${seq}`, body, this.#limits.pollTimeoutMs + this.#o.pollGraceMs);
      } catch (err) {
        if (!(await this.#backoff(attempt++, `send: ${(err as Error).message}`))) return;
        continue;
      }
      if (a.status === 204 || a.status === 200) {
        attempt = 0;
        this.#lastOk = Date.now();
        this.#nextSeq++;
        this.#inflight = undefined;
        for (const w of this.#drained.splice(0)) w();
        continue;
      }
      if (a.status === 503 || a.status === 429) {
        // The router is alive and asks us to wait (it is not reading now).
        this.#lastOk = Date.now();
        await sleep(retryAfter(a, 50, 5000), this.#ac.signal);
        continue;
      }
      if (a.status >= 500) {
        if (!(await this.#backoff(attempt++, `send answered ${a.status}`))) return;
        continue;
      }
      this.#giveUp('send', a);
      return;
    }
  }

  async #pollLoop(): Promise<void> {
    let attempt = 0;
    while (!this.#ended) {
      if (this.#paused) {
        // Paused, we take nothing, but a poll for nothing (max=0) now and then keeps the session.
        await new Promise<void>((r) => {
          const t = setTimeout(r, Math.max(1, Math.floor(this.#limits.sessionTimeoutMs / 3)));
          this.#wakePoll = () => {
            clearTimeout(t);
            r();
          };
        });
        this.#wakePoll = undefined;
        if (this.#ended) return;
      }
      const max = this.#paused ? '&max=0' : '';
      let a: HttpAnswer;
      try {
        a = await this.#request('GET', `${this.#session}/poll?ack=${this.#received}${max}`, undefined, this.#limits.pollTimeoutMs + this.#o.pollGraceMs);
      } catch (err) {
        if (!(await this.#backoff(attempt++, `poll: ${(err as Error).message}`))) return;
        continue;
      }
      if (this.#ended) return;
      if (a.status === 200) {
        attempt = 0;
        this.#lastOk = Date.now();
        if (!this.#take(a)) return;
        if (a.header(HEADER_END) === '1') {
          // The router closed the session and we have all of it: end, and confirm so that it
          // can let go at once.
          this.#finish(undefined, this.#deleteSession);
          return;
        }
        continue;
      }
      if (a.status === 503 || a.status === 429) {
        this.#lastOk = Date.now();
        await sleep(retryAfter(a, 50, 5000), this.#ac.signal);
        continue;
      }
      if (a.status >= 500) {
        if (!(await this.#backoff(attempt++, `poll answered ${a.status}`))) return;
        continue;
      }
      this.#giveUp('poll', a);
      return;
    }
  }

  /** Delivers the new part of a poll answer; false (after ending the session) when it is inconsistent. */
  #take(a: HttpAnswer): boolean {
    const start = parseCount(a.header(HEADER_OFFSET));
    if (start === undefined || start > this.#received) {
      this.#finish(new TransportError(`long-poll answer starts at offset ${String(a.header(HEADER_OFFSET))}, after the ${this.#received} bytes received: bytes were lost`), this.#deleteSession);
      return false;
    }
    const skip = this.#received - start;
    if (skip >= a.body.length) return true; // nothing new (an empty answer, or one we had)
    const fresh = a.body.subarray(skip);
    const messages = decodeEnvelopes(fresh);
    if (messages === undefined) {
      this.#finish(new TransportError('long-poll answer is not a sequence of length-prefixed messages'), this.#deleteSession);
      return false;
    }
    this.#received += fresh.length;
    for (const m of messages) {
      if (this.#ended) return false;
      if (this.#handlers !== undefined) this.#handlers.message(m);
      else this.#early.push(m);
    }
    return true;
  }

  /**
   * Ends the duplex on an answer that retrying cannot fix. A session the router still holds
   * (400, 409, 413, ...) is deleted, so that it does not wait out its expiry.
   */
  #giveUp(what: string, a: HttpAnswer): void {
    if (a.status === 404 || a.status === 410) {
      this.#finish(new TransportError(`the router ended the long-poll session (${what} answered ${a.status}${bodyText(a)})`));
    } else {
      this.#finish(new TransportError(`the router refused a long-poll ${what}: ${a.status}${bodyText(a)}`), this.#deleteSession);
    }
  }

  /** The last request of a session the router still holds; not cancelled by the end of the duplex. */
  readonly #deleteSession = (): Promise<HttpAnswer> => this.#request('DELETE', this.#session, undefined, 2000, new AbortController().signal);

  /** Ends the duplex; `last`, a final request, goes out before the connections are released. */
  #finish(err: Error | undefined, last?: () => Promise<unknown>): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#endError = err;
    this.#ac.abort();
    if (last === undefined) this.#http.close();
    else void last().catch(() => undefined).finally(() => this.#http.close());
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#inflight = undefined;
    for (const w of this.#drained.splice(0)) w();
    this.#wakePoll?.();
    this.#resolveDone();
    this.#handlers?.close(err);
  }
}

/**
 * A Dialer for the long-poll transport: opens a session at the router's long-poll API and
 * returns it as a Duplex of kind 'http'. `requester(base)` makes the HTTP client of one session
 * with the API at `base` (node:http in Node, fetch in browsers).
 */
export function createLongPollDialer(requester: (base: string) => HttpRequester, options: LongPollDialerOptions = {}): Dialer {
  const o = resolve(options);
  return async (url: string, dial: DialOptions): Promise<Duplex> => {
    const base = toLongPollUrl(url, o.path);
    if (dial.signal?.aborted) throw new TransportError(`dial to ${base} aborted`);
    const http = requester(base);
    const signal = dial.signal ?? new AbortController().signal;
    let a: HttpAnswer;
    try {
      a = await http.request({ method: 'POST', url: `${base}/sessions`, body: new Uint8Array(0), signal, timeoutMs: dial.timeoutMs ?? 10_000 });
    } catch (cause) {
      http.close();
      if (signal.aborted) throw new TransportError(`dial to ${base} aborted`, { cause });
      const permanent = cause instanceof TransportError && cause.permanent;
      throw new TransportError(`cannot open a long-poll session at ${base}: ${(cause as Error).message}`, { cause, permanent });
    }
    if (a.status !== 201 && a.status !== 200) {
      http.close();
      const hint = a.status === 404 ? ' (is this a Postern router, serving long-poll at this path?)' : '';
      throw new TransportError(`cannot open a long-poll session at ${base}: ${a.status}${bodyText(a)}${hint}`);
    }
    const answer = parseOpenAnswer(new TextDecoder().decode(a.body));
    if (typeof answer === 'string') {
      http.close();
      throw new TransportError(`cannot open a long-poll session at ${base}: ${answer}`);
    }
    return new LongPollClientDuplex(http, `${base}/sessions/${answer.session}`, answer, base, o);
  };
}
