import { FrameType, PROTOCOL_VERSION, PosternError, Role, TransportError, WireCode } from '@postern/protocol';
import { Backoff, type BackoffOptions } from './backoff.js';
import { Broadcast } from './broadcast.js';
import { openChannel } from './handshake.js';
import type { Link } from './link.js';
import type { Router } from './router.js';
import type { Dialer, Duplex } from './transport.js';

export interface UplinkOptions {
  /** The router to dial, e.g. `wss://relay.example.com`. */
  url: string;
  dial: Dialer;
  /** Domain credential the remote router accepts. */
  token: string;
  backoff?: BackoffOptions;
  /** One attempt (connect + handshake) gives up after this long. @default 10000 */
  connectTimeoutMs?: number;
  /** Software identifier sent in HELLO. */
  agent?: string;
}

export type UplinkStatus =
  | { type: 'connecting'; attempt: number }
  | { type: 'up'; node: string; domain: string }
  /** refused: retrying with the same settings cannot help (credential refused, proxy 4xx, untrusted certificate); retries wait the longest backoff. */
  | { type: 'down'; error: PosternError; retryInMs: number; refused: boolean }
  | { type: 'closed' };

/** A link that lasted this long resets the backoff. */
const STABLE_MS = 10_000;

/** Wire codes after which retrying with the same credential cannot succeed. */
const REFUSALS: ReadonlySet<string> = new Set([
  'ERR_AUTH_FAILED',
  'ERR_DOMAIN_NOT_ALLOWED',
  'ERR_VERSION',
  'ERR_LOOP',
]);

/**
 * The link a router dials and keeps (a gateway's tunnel to its relay). Reconnects forever
 * with exponential backoff and full jitter; after each reconnect the router announces again
 * every domain it reaches. Refusals (bad credential) are reported as such and retried at
 * the longest interval, since an operator may fix the far side.
 */
export class Uplink {
  readonly #router: Router;
  readonly #o: Required<Omit<UplinkOptions, 'backoff'>> & { backoff: BackoffOptions };
  readonly #backoff: Backoff;
  readonly #status = new Broadcast<UplinkStatus>();
  #link: Link | undefined;
  #handshaking: Duplex | undefined;
  #upSince = 0;
  #abort = new AbortController();
  #timer: unknown;
  #closed = false;

  constructor(router: Router, options: UplinkOptions) {
    this.#router = router;
    this.#o = Object.freeze({
      url: options.url,
      dial: options.dial,
      token: options.token,
      backoff: options.backoff ?? {},
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      agent: options.agent ?? 'postern-router',
    });
    this.#backoff = new Backoff(this.#o.backoff);
  }

  get url(): string {
    return this.#o.url;
  }

  get connected(): boolean {
    return this.#link !== undefined;
  }

  /** Status changes as an async iterable. */
  status(): AsyncIterable<UplinkStatus> {
    return this.#status.iterate();
  }

  onStatus(fn: (s: UplinkStatus) => void): () => void {
    return this.#status.on(fn);
  }

  start(): void {
    void this.#attempt();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort();
    this.#router.options.clock.clearTimeout(this.#timer);
    this.#link?.channel.close(WireCode.SHUTDOWN, 'router is shutting down');
    this.#handshaking?.close();
    this.#status.emit({ type: 'closed' });
    this.#status.end();
  }

  async #attempt(): Promise<void> {
    if (this.#closed) return;
    const r = this.#router;
    this.#status.emit({ type: 'connecting', attempt: this.#backoff.attempt + 1 });
    try {
      const duplex = await this.#o.dial(this.#o.url, { signal: this.#abort.signal, timeoutMs: this.#o.connectTimeoutMs });
      if (this.#closed) {
        duplex.close();
        return;
      }
      this.#handshaking = duplex;
      const est = await openChannel(
        duplex,
        r.channelOptions,
        {
          type: FrameType.HELLO,
          version: PROTOCOL_VERSION,
          role: Role.ROUTER,
          token: this.#o.token,
          resume: '',
          name: r.domain,
          node: r.node,
          agent: this.#o.agent,
          maxFrame: r.options.maxFrameBytes,
        },
        this.#o.connectTimeoutMs,
      ).finally(() => (this.#handshaking = undefined));
      if (this.#closed) {
        est.channel.close(WireCode.SHUTDOWN, 'router is shutting down');
        return;
      }
      const link = r.attachUplink(est.channel, est.welcome);
      this.#link = link;
      this.#upSince = r.options.clock.now();
      this.#status.emit({ type: 'up', node: est.welcome.node, domain: est.welcome.domain });
      est.attach({
        frame: (f, raw) => r.uplinkFrame(link, f, raw),
        closed: (reason) => {
          this.#link = undefined;
          r.uplinkClosed(link, reason);
          this.#retry(reason);
        },
      });
    } catch (err) {
      this.#retry(err instanceof PosternError ? err : new TransportError(String(err), { cause: err }));
    }
  }

  #retry(error: PosternError): void {
    if (this.#closed) return;
    // A proxy's 4xx or an untrusted certificate will not pass by itself either.
    const refused = REFUSALS.has(error.code) || (error instanceof TransportError && error.permanent);
    // Back off from scratch only after a link that held (see the client for why).
    const now = this.#router.options.clock.now();
    if (this.#upSince > 0 && now - this.#upSince >= STABLE_MS) this.#backoff.reset();
    this.#upSince = 0;
    const wait = refused ? (this.#o.backoff.maxMs ?? 30_000) : this.#backoff.next();
    this.#status.emit({ type: 'down', error, retryInMs: Math.round(wait), refused });
    this.#timer = this.#router.options.clock.setTimeout(() => void this.#attempt(), wait);
  }
}
