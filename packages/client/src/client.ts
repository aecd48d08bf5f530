import {
  Backoff,
  Broadcast,
  Pushable,
  defaultScheduler,
  openChannel,
  systemClock,
  type Channel,
  type ChannelHandler,
  type ChannelOptions,
  type Dialer,
} from '@postern/core';
import {
  AbortError,
  Feature,
  FrameType,
  HandleOp,
  MsgFlag,
  PROTOCOL_VERSION,
  PosternError,
  RemoteError,
  Role,
  TimeoutError,
  TransportError,
  WireCode,
  decodeReport,
  parseAddress,
  utf8Length,
  type Frame,
  type Report,
  type MsgFrame,
  type WelcomeFrame,
} from '@postern/protocol';
import { DedupWindow } from './dedup.js';
import { createMessage, type Message } from './message.js';
import { resolveClientOptions, type ClientOptions, type ResolvedClientOptions } from './options.js';
import { Watches, type PresenceEvent } from './presence.js';

export type ClientStatus =
  /**
   * resumed: the router took this client's session back (same id). lost: this client had a
   * session, and the router did not take it back (its store was lost or replaced, or the session
   * was forgotten): what it held for this client may be lost; a new session began.
   */
  | { type: 'connected'; id: string; address: string; resumed: boolean; lost: boolean }
  | { type: 'disconnected'; error: PosternError; willReconnect: boolean; retryInMs: number }
  | { type: 'reconnecting'; attempt: number }
  | { type: 'closed'; error?: PosternError };

export interface SendOptions {
  /** At most once: no ack, no retry, resolves as soon as the frame is queued. @default false */
  volatile?: boolean;
  /**
   * When a reliable send resolves: 'accepted' once the first router has stored it durably (it
   * will be delivered, or its failure reported through `onUndeliverable`), or 'delivered' once
   * the recipient's application has it (a failure then rejects the send). @default 'accepted'
   */
  receipt?: 'accepted' | 'delivered';
  signal?: AbortSignal;
  /** Overrides the client's sendTimeoutMs for this message. */
  timeoutMs?: number;
  /**
   * The message id. Leave it out for a new message; give the id of an earlier send whose outcome
   * is unknown (ERR_TIMEOUT, ERR_CLOSED) to retry it safely: every hop and the recipient drop duplicates.
   */
  id?: string;
  /**
   * Hide who sends: the router replaces this agent's address with a reply handle only it can map
   * back, the id with a sealed one and the hop limit with its own; a relay above a gateway wraps
   * the handle again so that the organisation is hidden too. The recipient can reply to the
   * handle (`Message.from`). Receipts and reports still reach this client. See PROTOCOL.md
   * section 5.4 for what it protects against and what not. @default false
   */
  anonymous?: boolean;
  /**
   * With `anonymous`: use this agent's one long-lived handle, so that the recipient can tell
   * these messages come from one sender (and reply to it for days), instead of a fresh,
   * unlinkable handle per message. @default false
   */
  sticky?: boolean;
}

/** An address that reaches this agent without revealing it: see `Client.pseudonym()`. */
export interface Pseudonym {
  /** `~token@domain`: give it to whoever should be able to write first. */
  address: string;
  /** Epoch ms after which it no longer reaches this agent. */
  expiresAt: number;
}

export interface SendResult {
  /** The id the message carries; the recipient sees it as `Message.id`. */
  id: string;
}

/**
 * A message that will not be delivered, told after its send resolved: a reliable one the routers
 * accepted and later could not deliver, or a volatile one a router refused.
 */
export interface Undeliverable {
  /** The id the message carried (`SendResult.id`). */
  id: string;
  /** The recipient it was sent to. */
  to: string;
  /** Why: ERR_EXPIRED, ERR_QUEUE_FULL, ERR_NO_ROUTE, ERR_UNKNOWN_RECIPIENT, ... */
  error: RemoteError;
  /** A volatile send, refused by a router on its way (reliable ones: accepted, then lost). */
  volatile: boolean;
}

interface Outgoing {
  readonly id: string;
  readonly to: string;
  readonly body: Uint8Array;
  readonly deadline: number;
  readonly flags: number;
  /** Accepted by the router; now waiting for the delivery report. */
  accepted: boolean;
  /** Its number on the current connection (feature ACKS), 0 if none. */
  num: number;
  resolve(r: SendResult): void;
  reject(e: unknown): void;
  cleanup(): void;
}

/**
 * The key a received MSG is deduplicated by: its `id` and `from` fields as they are on the wire
 * (each with its length byte, so the key is unambiguous), one byte per character. Made in one
 * go from the frame's bytes: a key concatenated from the decoded strings is a rope that every
 * Map lookup must first flatten (issue 12: 18 % of a receiving client's time).
 */
function dedupKey(raw: Uint8Array): string {
  // MSG: u32 length, u8 type, u8 flags, u8 hops, then id (str8) and from (str8).
  const idLen = raw[7] ?? 0;
  const end = 9 + idLen + (raw[8 + idLen] ?? 0);
  return String.fromCharCode.apply(null, raw.subarray(7, end) as unknown as number[]);
}

/** Acknowledges a received MSG: by its number on a numbered connection (feature ACKS), else by key. */
function ackOn(channel: Channel, num: number, f: MsgFrame): void {
  if (num !== 0) channel.ack(num);
  else channel.send({ type: FrameType.ACK, id: f.id, from: f.from });
}

const noop = (): void => {};

/** Close codes after which reconnecting cannot help. */
const FATAL: ReadonlySet<string> = new Set([
  'ERR_AUTH_FAILED',
  'ERR_NAME_NOT_ALLOWED',
  'ERR_VERSION',
  'ERR_REPLACED',
  'ERR_BAD_ADDRESS',
]);

const encoder = new TextEncoder();
/** A connection that lasted this long resets the reconnect backoff. */
const STABLE_MS = 10_000;
/** How often waiting volatile sends check whether the connection drained. */
const DRAIN_CHECK_MS = 5;
/** Bytes of a MSG frame that are not body, at most: header, flags, hops and three str8. */
const MSG_OVERHEAD = 5 + 2 + 3 * 256;
/** A message id's field on the wire is a str8. */
const MAX_ID_BYTES = 255;
/** Ids its router can seal and read back (PROTOCOL.md 5.4); longer ones would be hashed, and reports about them unmatched. */
const MAX_ANONYMOUS_ID_BYTES = 150;
/** Volatile sends whose recipient is remembered, for a refusal reported to onUndeliverable. */
const VOLATILE_REMEMBERED = 1024;

/**
 * An agent's connection to a router. Messages arrive through `for await (const m of client)`;
 * each reliable one is acknowledged to the router when the application takes it, and
 * duplicates (retries) are dropped by (from, id). Lost connections are resumed with the same
 * id; reliable sends not yet acknowledged are sent again, in order, with their ids.
 */
export class Client implements AsyncIterable<Message> {
  readonly #o: ResolvedClientOptions;
  readonly #channelOptions: ChannelOptions;
  readonly #status = new Broadcast<ClientStatus>();
  readonly #inbox: Pushable<Message>;
  /** Made with the first reliable message received. */
  #dedup: DedupWindow | undefined;
  // The maps below, the watches and the sweep timer are made when first needed: an idle client
  // holds none of them (issue 12: an idle SDK client's memory; an empty Map costs ~150 bytes).
  #outstanding: Map<string, Outgoing> | undefined;
  /** The same, by their number on the current connection (feature ACKS); created with the first. */
  #byNum: Map<number, Outgoing> | undefined;
  /**
   * Messages waiting in the inbox whose copy came again on a newer connection (after a reconnect):
   * acknowledged by the newer number when taken. Rare; created when needed.
   */
  #reacks: Map<string, { channel: Channel; num: number }> | undefined;
  /** Accepted sends waiting for their delivery report (receipt 'delivered'), by id. */
  #receipts: Map<string, Outgoing> | undefined;
  readonly #undeliverable = new Broadcast<Undeliverable>();
  /** Recipients of the last volatile sends, by id: a router's NACK names only the id. Made with the first. */
  #volatileTo: Map<string, string> | undefined;
  /** ACK frames received on the current connection, and whether a RELEASE of them is due. */
  #acksIn = 0;
  #releaseDue = false;
  #slotWaiters: Array<() => void> | undefined;
  #registers: Map<number, { resolve(): void; reject(e: Error): void }> | undefined;
  #handles: Map<number, { resolve(p: Pseudonym): void; reject(e: Error): void }> | undefined;
  /** The router refused protocol version 2: speak version 1 to it. */
  #v1 = false;
  /** Made with the first reconnect. */
  #backoff: Backoff | undefined;
  readonly #prefix: string;
  /** Aborts the dial under way (close() does); there is one only while dialing. */
  #dials: AbortController | undefined;
  #targets: Map<string, string> | undefined;
  #outstandingBytes = 0;
  #registering: Promise<void> | undefined;
  #upSince = 0;
  #waiting: Array<{ send(c: Channel): void; reject(e: Error): void }> | undefined;
  #drainTimer: ReturnType<typeof setTimeout> | undefined;
  #channel: Channel | undefined;
  /** What this client keeps of the last WELCOME (not the frame: its router node id and nonce are not needed after the handshake). */
  #welcome: Pick<WelcomeFrame, 'id' | 'domain' | 'maxFrame' | 'version'> | undefined;
  #name: string;
  #resume: string;
  #seq = 0;
  #ref = 0;
  #closed = false;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #sweepTimer: ReturnType<typeof setInterval> | undefined;
  #watches: Watches | undefined;

  /** Connects once; rejects with the router's reason (e.g. ERR_AUTH_FAILED) or ERR_TRANSPORT. */
  static async connect(options: ClientOptions & { signal?: AbortSignal }, dialer?: Dialer): Promise<Client> {
    const c = new Client(resolveClientOptions(options, dialer));
    try {
      await c.#open(options.signal);
    } catch (err) {
      await c.close();
      throw err;
    }
    return c;
  }

  private constructor(o: ResolvedClientOptions) {
    this.#o = o;
    this.#name = o.name;
    this.#resume = o.resume;
    this.#prefix = randomPrefix();
    this.#channelOptions = {
      maxFrameBytes: o.maxFrameBytes,
      maxOutboundBytes: o.maxOutboundBytes,
      batchBytes: 64 * 1024,
      pingMs: o.pingIntervalMs,
      clock: systemClock,
      scheduler: defaultScheduler,
    };
    this.#inbox = new Pushable<Message>((m) => this.#taken(m));
  }

  /** Watches and properties (presence), made with the first use. */
  #presence(): Watches {
    return (this.#watches ??= new Watches({ channel: () => this.#channel, target: (a) => this.#target(a) }));
  }

  /** Checks deadlines of sends every second while any send waits for its ack or receipt. */
  #armSweep(): void {
    if (this.#sweepTimer !== undefined || this.#closed) return;
    this.#sweepTimer = setInterval(() => this.#expire(), 1000);
    (this.#sweepTimer as { unref?: () => void }).unref?.();
  }

  /** Router-assigned id, stable across resumes of this session. */
  get id(): string {
    return this.#welcome?.id ?? '';
  }

  /** The router's domain. */
  get domain(): string {
    return this.#welcome?.domain ?? '';
  }

  /** Claimed name, or empty. */
  get name(): string {
    return this.#name;
  }

  /** How others address this agent: `name@domain`, or `_id@domain` without a name. */
  get address(): string {
    return `${this.#name === '' ? this.id : this.#name}@${this.domain}`;
  }

  /** Private token that resumes this session (same id); keep it secret. */
  get resumeToken(): string {
    return this.#resume;
  }

  get connected(): boolean {
    return this.#channel !== undefined;
  }

  /** Reliable sends not yet acknowledged. */
  get inFlight(): number {
    return this.#outstanding?.size ?? 0;
  }

  [Symbol.asyncIterator](): AsyncIterator<Message> {
    return this.#inbox[Symbol.asyncIterator]();
  }

  /** Connection status changes, from now until close. */
  status(): AsyncIterable<ClientStatus> {
    return this.#status.iterate();
  }

  onStatus(fn: (s: ClientStatus) => void): () => void {
    return this.#status.on(fn);
  }

  /**
   * Messages whose send resolved and that will not be delivered: reliable ones the routers
   * accepted and later could not deliver (the recipient's queue was full, the message expired,
   * ...), and volatile ones a router refused (ERR_NO_ROUTE, ERR_UNKNOWN_RECIPIENT, ...; a
   * volatile send resolves when it leaves, so it cannot reject). Never silent: every accepted
   * message is delivered or reported here (or, with receipt 'delivered', rejects its send).
   * A volatile message lost without a refusal (a connection that dropped, a router that shed
   * it under load) is not reported: volatile is at most once; nor is a refusal that comes back
   * after 1024 later volatile sends (the client remembers the recipients of the last 1024).
   */
  onUndeliverable(fn: (u: Undeliverable) => void): () => void {
    return this.#undeliverable.on(fn);
  }

  /**
   * Sends `body` to `to` (`name@domain`, `_id@domain`, or a bare name on this router's domain).
   * Reliable by default: resolves when the first router has stored it (receipt 'accepted') or
   * when the recipient's application has it (receipt 'delivered'); rejects with the refusal's
   * code (ERR_QUEUE_FULL, ERR_BAD_ADDRESS, ..., with 'delivered' also ERR_EXPIRED) or ERR_TIMEOUT.
   * Until accepted it is resent after every reconnect, with the same id.
   */
  async send(to: string, body: string | Uint8Array, options: SendOptions = {}): Promise<SendResult> {
    if (this.#closed) throw new PosternError('ERR_CLOSED', 'the client is closed');
    if (options.signal?.aborted) throw new AbortError();
    const max = Math.min(this.#o.maxFrameBytes, this.#welcome?.maxFrame ?? Infinity) - MSG_OVERHEAD;
    const volatile = options.volatile === true;
    // Reliable bodies are kept for resends: our own copy, so that the caller may reuse its buffer.
    const bytes = typeof body === 'string' ? encoder.encode(body) : volatile ? body : body.slice();
    if (bytes.length > max) throw new PosternError('ERR_FRAME_TOO_LARGE', `the body is ${bytes.length} bytes; at most ${max} fit in a frame`);
    const target = this.#target(to);
    const id = options.id ?? `${this.#prefix}${(this.#seq++).toString(36)}`;
    if (options.id !== undefined && (id.length === 0 || id.length > 128 || /\s/.test(id) || utf8Length(id) > MAX_ID_BYTES)) {
      throw new PosternError('ERR_BAD_ADDRESS', `a message id is 1-128 characters without spaces, at most ${MAX_ID_BYTES} bytes in UTF-8`);
    }
    if (volatile) {
      const ch = this.#channel;
      if (ch === undefined) throw new TransportError('not connected; a volatile message is not queued');
      // Backpressure: while the connection does not drain, volatile sends wait their turn (in
      // order) instead of filling memory or being dropped.
      const vflags = MsgFlag.VOLATILE | this.#anonymityFlags(options);
      this.#rememberVolatile(id, target);
      if ((this.#waiting?.length ?? 0) === 0 && ch.outboundBytes <= this.#o.maxOutboundBytes / 2) {
        ch.msg(vflags, 0, id, '', target, bytes);
        return { id };
      }
      return new Promise<SendResult>((resolve, reject) => {
        const signal = options.signal;
        const entry = {
          send: (c: Channel): void => {
            signal?.removeEventListener('abort', onAbort);
            c.msg(vflags, 0, id, '', target, bytes);
            resolve({ id });
          },
          reject: (e: Error): void => {
            signal?.removeEventListener('abort', onAbort);
            reject(e);
          },
        };
        const onAbort = (): void => {
          const i = this.#waiting?.indexOf(entry) ?? -1;
          if (i >= 0) this.#waiting!.splice(i, 1);
          reject(new AbortError('send aborted before it left'));
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        (this.#waiting ??= []).push(entry);
        this.#watchDrain();
      });
    }
    while (this.#registering !== undefined) await this.#registering.catch(() => undefined);
    while (
      this.inFlight >= this.#o.maxInFlight ||
      (this.inFlight > 0 && this.#outstandingBytes + bytes.length > this.#o.maxInFlightBytes)
    ) {
      await this.#slot(options.signal);
      if (this.#closed) throw new PosternError('ERR_CLOSED', 'the client is closed');
    }
    if (this.#outstanding?.has(id) === true || this.#receipts?.has(id) === true) throw new PosternError('ERR_BAD_ADDRESS', `a message with id "${id}" is already on its way`);
    const flags = (options.receipt === 'delivered' ? MsgFlag.RECEIPT : 0) | this.#anonymityFlags(options);
    return new Promise<SendResult>((resolve, reject) => {
      const signal = options.signal;
      let cleanup = noop;
      if (signal !== undefined) {
        const onAbort = (): void => {
          if (this.#forget(id)) reject(new AbortError('send aborted; the message may still be delivered'));
        };
        signal.addEventListener('abort', onAbort, { once: true });
        cleanup = () => signal.removeEventListener('abort', onAbort);
      }
      const outstanding = (this.#outstanding ??= new Map<string, Outgoing>());
      this.#armSweep();
      outstanding.set(id, {
        id,
        to: target,
        body: bytes,
        deadline: Date.now() + (options.timeoutMs ?? this.#o.sendTimeoutMs),
        flags,
        accepted: false,
        num: 0,
        resolve,
        reject,
        cleanup,
      });
      this.#outstandingBytes += bytes.length;
      try {
        const ch = this.#channel;
        if (ch !== undefined) this.#numbered(outstanding.get(id) as Outgoing, ch.msg(flags, 0, id, '', target, bytes));
      } catch (err) {
        this.#forget(id);
        reject(err instanceof Error ? err : new PosternError('ERR_INTERNAL', String(err)));
      }
    });
  }

  #rememberVolatile(id: string, to: string): void {
    const m = (this.#volatileTo ??= new Map());
    if (m.size >= VOLATILE_REMEMBERED) m.delete(m.keys().next().value as string);
    m.set(id, to);
  }

  #anonymityFlags(options: SendOptions): number {
    if (options.anonymous !== true) {
      if (options.sticky === true) throw new PosternError('ERR_CONFIG', 'sticky applies to anonymous sends only');
      return 0;
    }
    // The router seals the id so that only it can read it back for reports; a longer one would not fit sealed.
    if (options.id !== undefined && utf8Length(options.id) > MAX_ANONYMOUS_ID_BYTES) {
      throw new PosternError('ERR_BAD_ADDRESS', `an anonymous message's id is at most ${MAX_ANONYMOUS_ID_BYTES} bytes in UTF-8`);
    }
    if (this.#welcome !== undefined && this.#welcome.version < 2) throw new PosternError('ERR_FORBIDDEN', 'the router speaks protocol 1, which has no anonymous messages');
    return MsgFlag.ANONYMOUS | (options.sticky === true ? MsgFlag.STICKY : 0);
  }

  /**
   * Asks the router for a pseudonym: an address (`~token@domain`) that reaches this agent without
   * revealing its name, id or (behind a gateway, whose relay wraps it) its organisation, for
   * `ttlMs` (the router's default otherwise; it may shorten it). Messages to it arrive like any
   * other, while this session (its id or name) lives; they wait while it is briefly away.
   */
  async pseudonym(options: { ttlMs?: number; signal?: AbortSignal } = {}): Promise<Pseudonym> {
    const ch = this.#channel;
    if (ch === undefined) throw new TransportError('not connected');
    if (this.#welcome !== undefined && this.#welcome.version < 2) throw new PosternError('ERR_FORBIDDEN', 'the router speaks protocol 1, which has no pseudonyms');
    const ttl = options.ttlMs === undefined ? 0 : Math.max(1, Math.ceil(options.ttlMs / 1000));
    const ref = (this.#ref = (this.#ref + 1) >>> 0);
    return new Promise<Pseudonym>((resolve, reject) => {
      const onAbort = (): void => {
        this.#handles?.delete(ref);
        reject(new AbortError());
      };
      options.signal?.addEventListener('abort', onAbort, { once: true });
      (this.#handles ??= new Map<number, { resolve(p: Pseudonym): void; reject(e: Error): void }>()).set(ref, {
        resolve: (p) => {
          options.signal?.removeEventListener('abort', onAbort);
          resolve(p);
        },
        reject: (e) => {
          options.signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      });
      ch.send({ type: FrameType.HANDLE, ref, op: HandleOp.PSEUDONYM, ttl, address: '' });
    });
  }

  /**
   * The presence of `address` (online, offline or unreachable, since when) and its properties:
   * the current state first, then every change, until the iteration ends (`break`, or `signal`).
   * The watch is sent again after every reconnect. Its home refuses it, ending the iteration
   * with the error, unless the watched agent lets this one watch: the same domain may, others
   * only if it allowed them (`allowWatchers`). Needs protocol version 2.
   */
  watch(address: string, options: { signal?: AbortSignal } = {}): AsyncIterable<PresenceEvent> {
    this.#needsV2('presence');
    return this.#presence().watch(address, options);
  }

  /**
   * Publishes properties (merged into those set before; null removes a key): a status text,
   * capabilities, a public key. Watchers hear them at once and with every later change; this
   * agent's home router keeps them while it is away (PROTOCOL.md section 16 has the limits).
   */
  setProperties(props: Record<string, string | null>): Promise<void> {
    this.#needsV2('properties');
    return this.#presence().setProperties(props);
  }

  /** Who besides this agent's own domain may watch it: addresses, `*@domain` or `*` (replaces the list; [] for none). */
  allowWatchers(addresses: readonly string[]): Promise<void> {
    this.#needsV2('presence');
    return this.#presence().allowWatchers(addresses);
  }

  #needsV2(what: string): void {
    if (this.#welcome !== undefined && this.#welcome.version < 2) throw new PosternError('ERR_FORBIDDEN', `the router speaks protocol 1, which has no ${what}`);
  }

  /** Sends waiting volatile messages, in order, as far as the connection has drained. */
  #watchDrain(): void {
    if (this.#drainTimer !== undefined) return;
    this.#drainTimer = setTimeout(() => {
      this.#drainTimer = undefined;
      const ch = this.#channel;
      if (ch !== undefined) {
        while (this.#waiting !== undefined && this.#waiting.length > 0 && ch.outboundBytes <= this.#o.maxOutboundBytes / 2) this.#waiting.shift()?.send(ch);
      }
      if ((this.#waiting?.length ?? 0) > 0 && !this.#closed) this.#watchDrain();
    }, DRAIN_CHECK_MS);
  }

  /** Drops an outstanding send and frees its slot; returns it, or undefined if it was not there. */
  /** Remembers the number a connection gave `m` (feature ACKS): it is acknowledged by it. */
  #numbered(m: Outgoing, num: number): void {
    m.num = num;
    if (num === 0) return;
    (this.#byNum ??= new Map()).set(num, m);
  }

  #forget(id: string): Outgoing | undefined {
    const m = this.#outstanding?.get(id);
    if (m === undefined) return undefined;
    this.#outstanding!.delete(id);
    if (m.num !== 0) {
      this.#byNum?.delete(m.num);
      m.num = 0;
    }
    this.#outstandingBytes -= m.body.length;
    m.cleanup();
    this.#freeSlot();
    return m;
  }

  /** `to` normalised, through a small cache: senders repeat the same few recipients. */
  #target(to: string): string {
    const targets = (this.#targets ??= new Map<string, string>());
    let t = targets.get(to);
    if (t === undefined) {
      const addr = parseAddress(to, this.domain);
      if (addr === undefined) throw new PosternError('ERR_BAD_ADDRESS', `"${to}" is not an address (name@domain or _id@domain)`);
      t = `${addr.local}@${addr.domain}`;
      if (targets.size >= 1024) targets.clear();
      targets.set(to, t);
    }
    return t;
  }

  /** Claims (or with '' releases) a name on the router; resolves when granted. */
  async register(name: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    // Messages on their way were sent under the old address; a resend under the new one would
    // look like a different message to the recipient. Let them finish first; new sends wait.
    const p = (async () => {
      while (this.inFlight > 0) await this.#slot(options.signal);
      await this.#register(name, options);
    })();
    this.#registering = p;
    try {
      await p;
    } finally {
      if (this.#registering === p) this.#registering = undefined;
      this.#freeSlot();
    }
  }

  #register(name: string, options: { signal?: AbortSignal }): Promise<void> {
    const n = name.toLowerCase();
    const ch = this.#channel;
    if (ch === undefined) return Promise.reject(new TransportError('not connected'));
    const ref = (this.#ref = (this.#ref + 1) >>> 0);
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.#registers?.delete(ref);
        reject(new AbortError());
      };
      options.signal?.addEventListener('abort', onAbort, { once: true });
      (this.#registers ??= new Map<number, { resolve(): void; reject(e: Error): void }>()).set(ref, {
        resolve: () => {
          options.signal?.removeEventListener('abort', onAbort);
          this.#name = n;
          resolve();
        },
        reject: (e) => {
          options.signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      });
      ch.send({ type: FrameType.REGISTER, ref, name: n });
    });
  }

  /**
   * Closes the connection. Reliable sends still waiting for their ack reject with ERR_CLOSED;
   * messages already received stay readable until the iterator drains them.
   */
  async close(): Promise<void> {
    const ch = this.#channel;
    this.#shutdown(undefined);
    if (ch !== undefined) {
      // Let the final acks and CLOSE reach the router before the caller exits the process.
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([ch.duplex.done, new Promise<void>((r) => (timer = setTimeout(r, 2000)))]);
      clearTimeout(timer);
    }
  }

  async #open(signal?: AbortSignal): Promise<void> {
    const dials = new AbortController();
    this.#dials = dials;
    if (this.#closed) dials.abort();
    try {
      return await this.#dial(signal === undefined ? dials.signal : AbortSignal.any([signal, dials.signal]), signal);
    } finally {
      if (this.#dials === dials) this.#dials = undefined;
    }
  }

  /** Dials and shakes hands; `signals` aborts both (the caller's signal, or close()). */
  async #dial(signals: AbortSignal, signal: AbortSignal | undefined): Promise<void> {
    const o = this.#o;
    const duplex = await o.dialer(o.url, { signal: signals, timeoutMs: o.connectTimeoutMs });
    const onAbort = (): void => duplex.close();
    signals.addEventListener('abort', onAbort, { once: true });
    let est: Awaited<ReturnType<typeof openChannel>>;
    try {
      est = await openChannel(
        duplex,
        this.#channelOptions,
        {
          type: FrameType.HELLO,
          version: this.#v1 ? 1 : PROTOCOL_VERSION,
          role: Role.AGENT,
          token: o.token,
          resume: this.#resume,
          name: this.#name,
          node: '',
          agent: o.agent,
          maxFrame: o.maxFrameBytes,
          // Numbered acknowledgements: one ACKS per run of messages instead of an ACK each.
          features: Feature.ACKS,
          nonce: '',
          link: 0,
        },
        o.connectTimeoutMs,
      );
    } catch (err) {
      if (signals.aborted) throw new AbortError('connect aborted', { cause: err });
      if (err instanceof PosternError && err.code === 'ERR_VERSION' && !this.#v1) {
        // A router that speaks version 1 only: speak it (no anonymity, no pseudonyms there).
        this.#v1 = true;
        return this.#open(signal);
      }
      throw err;
    } finally {
      signals.removeEventListener('abort', onAbort);
    }
    if (this.#closed) {
      est.channel.close(WireCode.SHUTDOWN, 'client closed');
      return;
    }
    const resumed = this.#welcome !== undefined && this.#welcome.id === est.welcome.id;
    const lost = this.#welcome !== undefined && !resumed;
    const w = est.welcome;
    this.#welcome = { id: w.id, domain: w.domain, maxFrame: w.maxFrame, version: w.version };
    this.#resume = est.welcome.resume;
    this.#name = est.welcome.name;
    this.#channel = est.channel;
    const channel = est.channel;
    this.#upSince = Date.now();
    // What was sent and not acknowledged went down with the old connection: send it again, in order.
    this.#acksIn = 0;
    this.#byNum?.clear();
    this.#reacks = undefined;
    for (const m of this.#outstanding?.values() ?? []) {
      try {
        m.num = 0;
        this.#numbered(m, channel.msg(m.flags, 0, m.id, '', m.to, m.body));
      } catch (err) {
        // Checked in send(), so a bug: that send fails, the connection and the others go on.
        this.#forget(m.id);
        m.reject(err instanceof PosternError ? err : new PosternError('ERR_INTERNAL', String(err), { cause: err }));
      }
    }
    if (est.welcome.version >= 2) this.#watches?.connected(channel);
    // 'connected' before anything that happened after WELCOME (an early close) is replayed.
    this.#status.emit({ type: 'connected', id: est.welcome.id, address: this.address, resumed, lost });
    est.attach(new Client.#Session(this, channel));
  }

  /** The handler of one connection: one small object rather than two closures and their scope. */
  static readonly #Session = class implements ChannelHandler {
    readonly #client: Client;
    readonly #channel: Channel;

    constructor(client: Client, channel: Channel) {
      this.#client = client;
      this.#channel = channel;
    }

    frame(f: Frame, raw: Uint8Array, num: number): void {
      this.#client.#onFrame(this.#channel, f, raw, num);
    }

    closed(reason: PosternError): void {
      this.#client.#onClosed(this.#channel, reason);
    }
  };

  #onFrame(channel: Channel, f: Frame, raw: Uint8Array, num: number): void {
    switch (f.type) {
      case FrameType.MSG:
        this.#onMsg(channel, f, raw, num);
        return;
      case FrameType.ACK: {
        this.#acksIn++;
        this.#releaseSoon(channel);
        this.#accepted(f.id);
        return;
      }
      case FrameType.ACKS: {
        if (!channel.numbered) {
          channel.close(WireCode.PROTOCOL, 'ACKS on a connection that did not grant feature ACKS');
          return;
        }
        this.#acksIn += f.count;
        this.#releaseSoon(channel);
        const byNum = this.#byNum;
        if (byNum === undefined) return;
        // Numbers not in flight (answered already) are ignored, like an ACK for an unknown id.
        const end = f.first + f.count;
        if (f.count <= byNum.size) {
          for (let n = f.first; n < end; n++) {
            const m = byNum.get(n);
            if (m !== undefined) this.#accepted(m.id);
          }
        } else {
          for (const [n, m] of [...byNum]) if (n >= f.first && n < end) this.#accepted(m.id);
        }
        return;
      }
      case FrameType.NACK: {
        const m = this.#forget(f.id);
        if (m !== undefined) {
          m.reject(new RemoteError(f.code, f.reason));
          return;
        }
        // A volatile send, refused at a router (NO_ROUTE, UNKNOWN_RECIPIENT, ...): its promise
        // resolved when it left, so the refusal goes where accepted-then-lost messages go.
        // The client remembers its last 1024 volatile sends; a NACK for none of them (a reliable
        // send that timed out or was aborted, a very old volatile one) settles nothing.
        const to = this.#volatileTo?.get(f.id);
        if (to === undefined) return;
        this.#volatileTo!.delete(f.id);
        this.#undeliverable.emit({ id: f.id, to, error: new RemoteError(f.code, f.reason), volatile: true });
        return;
      }
      case FrameType.HANDLED: {
        const h = this.#handles?.get(f.ref);
        if (h === undefined) return;
        this.#handles!.delete(f.ref);
        if (f.code === WireCode.OK) h.resolve({ address: f.address, expiresAt: f.expires * 1000 });
        else h.reject(new RemoteError(f.code, f.reason));
        return;
      }
      case FrameType.PRESENCE:
        this.#watches?.onPresence(f);
        return;
      case FrameType.WATCHED:
        this.#watches?.onWatched(f);
        return;
      case FrameType.PROPSET:
        this.#watches?.onPropset(f);
        return;
      case FrameType.REGISTERED: {
        const r = this.#registers?.get(f.ref);
        if (r === undefined) return;
        this.#registers!.delete(f.ref);
        if (f.code === WireCode.OK) r.resolve();
        else r.reject(new RemoteError(f.code, f.reason));
        return;
      }
      default:
        channel.close(WireCode.PROTOCOL, `unexpected frame 0x${f.type.toString(16)} on an agent connection`);
    }
  }

  /** The router ACKed our message `id`. */
  #accepted(id: string): void {
    const m = this.#forget(id);
    if (m === undefined) return;
    if ((m.flags & MsgFlag.RECEIPT) === 0) {
      m.resolve({ id });
    } else {
      // Accepted: the router has it, so it is not resent; the body can go. The outcome comes as a report.
      m.accepted = true;
      (this.#receipts ??= new Map()).set(m.id, m);
      this.#armSweep();
    }
  }

  /** One RELEASE per batch of ACKs: we keep nothing to settle, so every ACK is settled on arrival. */
  #releaseSoon(channel: Channel): void {
    if (this.#releaseDue) return;
    this.#releaseDue = true;
    queueMicrotask(() => {
      this.#releaseDue = false;
      if (channel === this.#channel) channel.send({ type: FrameType.RELEASE, count: this.#acksIn });
    });
  }

  /** A report on a message we sent: it settles a send waiting for delivery, or is passed to onUndeliverable. */
  #onReport(f: MsgFrame): void {
    let r: Report;
    try {
      r = decodeReport(f.body);
    } catch {
      return; // a malformed report settles nothing; it was acked like any message
    }
    const m = this.#receipts?.get(r.ref);
    if (m !== undefined && m.to === f.from) {
      this.#receipts!.delete(r.ref);
      m.cleanup();
      if (r.code === WireCode.OK) m.resolve({ id: m.id });
      else m.reject(new RemoteError(r.code, r.reason));
      return;
    }
    if (r.code !== WireCode.OK) this.#undeliverable.emit({ id: r.ref, to: f.from, error: new RemoteError(r.code, r.reason), volatile: false });
  }

  /** `num`: its number on `channel` (feature ACKS), by which it is acknowledged; 0: by (from, id). */
  #onMsg(channel: Channel, f: MsgFrame, raw: Uint8Array, num: number): void {
    const volatile = (f.flags & MsgFlag.VOLATILE) !== 0;
    if (volatile) {
      if (this.#inbox.length < this.#o.maxQueued) this.#inbox.push(createMessage(f.id, f.from, f.to, f.body, true));
      return;
    }
    const key = dedupKey(raw);
    const seen = this.#dedup?.get(key);
    if (seen === 'taken') {
      // A retry of something the application already has: the first ack was lost. Ack again.
      ackOn(channel, num, f);
      return;
    }
    if (seen === 'queued') {
      // Acked when the application takes the first copy: by this copy's number if that one came
      // on an older connection (the router waits for this one now).
      if (num !== 0) (this.#reacks ??= new Map()).set(key, { channel, num });
      return;
    }
    if ((f.flags & MsgFlag.REPORT) !== 0) {
      this.#seen(key, 'taken');
      ackOn(channel, num, f);
      this.#onReport(f);
      return;
    }
    if (this.#inbox.ended) {
      // The application stopped iterating (break out of `for await`): say so rather than never ack.
      channel.send({ type: FrameType.NACK, code: WireCode.UNAVAILABLE, id: f.id, from: f.from, reason: 'the recipient stopped reading' });
      return;
    }
    if (this.#inbox.length >= this.#o.maxQueued) {
      channel.send({ type: FrameType.NACK, code: WireCode.QUEUE_FULL, id: f.id, from: f.from, reason: 'the recipient is not reading' });
      return;
    }
    this.#seen(key, 'queued');
    let acked = false;
    const ack = (): void => {
      if (acked) return;
      acked = true;
      this.#seen(key, 'taken');
      const current = this.#channel;
      if (current === undefined) return;
      const again = this.#reacks?.get(key);
      if (again !== undefined) this.#reacks!.delete(key);
      const target = again ?? (num === 0 ? undefined : { channel, num });
      // By key on the current connection: the router resends what a lost one did not ack, and an
      // ACK that crosses the resend is matched or the resend is acked again as a duplicate. By
      // number only on the connection that numbered it: on a newer one the router resends it
      // and that copy (now a duplicate of a taken message) is acked by its own number.
      if (target === undefined) current.send({ type: FrameType.ACK, id: f.id, from: f.from });
      else if (target.channel === current) current.ack(target.num);
    };
    this.#inbox.push(createMessage(f.id, f.from, f.to, f.body, false, ack));
  }

  /** Remembers a received message's key (see DedupWindow). */
  #seen(key: string, state: 'queued' | 'taken'): void {
    (this.#dedup ??= new DedupWindow(this.#o.dedupWindow)).set(key, state);
  }

  #taken(m: Message): void {
    if (!m.volatile && this.#o.autoAck) m.ack();
  }

  #onClosed(channel: Channel, reason: PosternError): void {
    if (channel !== this.#channel) return;
    this.#channel = undefined;
    // The router may have been upgraded meanwhile: try version 2 first on the next connection.
    this.#v1 = false;
    const registers = this.#registers;
    this.#registers = undefined;
    for (const r of registers?.values() ?? []) r.reject(reason);
    const handles = this.#handles;
    this.#handles = undefined;
    for (const h of handles?.values() ?? []) h.reject(reason);
    this.#watches?.disconnected(reason);
    if (this.#closed) return;
    if (FATAL.has(reason.code) || !this.#o.reconnect) {
      this.#status.emit({ type: 'disconnected', error: reason, willReconnect: false, retryInMs: 0 });
      this.#shutdown(reason);
      return;
    }
    this.#scheduleReconnect(reason);
  }

  #scheduleReconnect(reason: PosternError): void {
    // Back off from scratch only after a connection that held: one that keeps dropping right
    // after WELCOME (a flapping network, a router that rejects us later) must not hammer.
    const backoff = (this.#backoff ??= new Backoff(this.#o.backoff));
    if (this.#upSince > 0 && Date.now() - this.#upSince >= STABLE_MS) backoff.reset();
    this.#upSince = 0;
    // A proxy refusing us or an untrusted certificate fails the same way until someone changes
    // the settings: retry at the longest interval, as an uplink does.
    const permanent = reason instanceof TransportError && reason.permanent;
    const wait = permanent ? this.#o.backoff.maxMs : Math.round(backoff.next());
    this.#status.emit({ type: 'disconnected', error: reason, willReconnect: true, retryInMs: wait });
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (this.#closed) return;
      this.#status.emit({ type: 'reconnecting', attempt: backoff.attempt });
      this.#open().catch((err: unknown) => {
        const e = err instanceof PosternError ? err : new TransportError(String(err), { cause: err });
        if (this.#closed) return;
        if (FATAL.has(e.code)) this.#shutdown(e);
        else this.#scheduleReconnect(e);
      });
    }, wait);
  }

  #shutdown(error: PosternError | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#dials?.abort();
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    if (this.#sweepTimer !== undefined) clearInterval(this.#sweepTimer);
    this.#sweepTimer = undefined;
    this.#channel?.close(WireCode.SHUTDOWN, 'client closed');
    this.#channel = undefined;
    this.#watches?.close(error);
    const err = error ?? new PosternError('ERR_CLOSED', 'the client is closed');
    const outstanding = this.#outstanding;
    this.#outstanding = undefined;
    for (const m of outstanding?.values() ?? []) {
      m.cleanup();
      m.reject(err);
    }
    this.#outstandingBytes = 0;
    const receipts = this.#receipts;
    this.#receipts = undefined;
    for (const m of receipts?.values() ?? []) {
      m.cleanup();
      m.reject(err);
    }
    this.#undeliverable.end();
    if (this.#drainTimer !== undefined) clearTimeout(this.#drainTimer);
    for (const w of this.#waiting?.splice(0) ?? []) w.reject(err);
    for (const w of this.#slotWaiters?.splice(0) ?? []) w();
    this.#inbox.end(error);
    this.#status.emit(error === undefined ? { type: 'closed' } : { type: 'closed', error });
    this.#status.end();
  }

  #slot(signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const wake = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        // An abandoned waiter must not swallow the wake-up meant for the next one.
        const i = this.#slotWaiters?.indexOf(wake) ?? -1;
        if (i >= 0) this.#slotWaiters!.splice(i, 1);
        reject(new AbortError());
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      (this.#slotWaiters ??= []).push(wake);
    });
  }

  #freeSlot(): void {
    this.#slotWaiters?.shift()?.();
  }

  /** Fails reliable sends past their deadline. The map is in send order; deadlines nearly so. */
  #expire(): void {
    const now = Date.now();
    for (const m of [...(this.#outstanding?.values() ?? [])]) {
      if (m.deadline > now) continue;
      this.#forget(m.id);
      m.reject(new TimeoutError(`no acknowledgement for message ${m.id} to ${m.to}; it may still be delivered: send again with the same id to retry safely`));
    }
    for (const m of [...(this.#receipts?.values() ?? [])]) {
      if (m.deadline > now) continue;
      this.#receipts!.delete(m.id);
      m.cleanup();
      m.reject(new TimeoutError(`message ${m.id} to ${m.to} was accepted but not delivered in time; it may still be delivered`));
    }
    if (this.inFlight === 0 && (this.#receipts?.size ?? 0) === 0 && this.#sweepTimer !== undefined) {
      clearInterval(this.#sweepTimer);
      this.#sweepTimer = undefined;
    }
  }
}

function randomPrefix(): string {
  const b = new Uint8Array(6);
  crypto.getRandomValues(b);
  return `${Array.from(b, (x) => (x % 36).toString(36)).join('')}.`;
}
