import { PosternError, TransportError, WireCode } from '@postern/protocol';
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
  /**
   * Credentials the remote router accepts: a domain token signed by its secret, and/or grants
   * (JWTs, EdDSA) for this router's node key, comma-separated. May be empty where the remote
   * operator trusts this router's node key itself.
   */
  token: string;
  /**
   * 'uplink': the remote router is a default route (a gateway's relay). 'peer': a symmetric
   * link that both sides announce and forward over, never a default route. @default 'uplink'
   */
  mode?: 'uplink' | 'peer';
  /** Uplinks: the lowest-ranked connected one is the default route. @default 0 */
  rank?: number;
  /** Feature bits to ask for (Feature.ROUTES: a gateway with several relays wants their routes). @default 0 */
  features?: number;
  backoff?: BackoffOptions;
  /** One attempt (connect + handshake) gives up after this long. @default 10000 */
  connectTimeoutMs?: number;
  /** Software identifier sent in HELLO. */
  agent?: string;
}

export type UplinkStatus =
  | { type: 'connecting'; attempt: number }
  | { type: 'up'; node: string; domain: string; version: number }
  /** refused: retrying with the same settings cannot help (credential refused, proxy 4xx, untrusted certificate); retries wait the longest backoff. */
  | { type: 'down'; error: PosternError; retryInMs: number; refused: boolean }
  /**
   * The far router closed the link with DOMAIN_TAKEN: another router (another node id) serves
   * our domain there alone. We stand by and look again every `retryInMs` (at most
   * FENCED_RETRY_MS), taking the domain once the other one went.
   */
  | { type: 'fenced'; error: PosternError; retryInMs: number }
  /** A peer: the other side's link to us is up, so this one does not dial meanwhile. */
  | { type: 'standby'; node: string }
  | { type: 'closed' };

/** A link that lasted this long resets the backoff. */
const STABLE_MS = 10_000;

/** While the peer's own link to us is up, look again this often. */
const STANDBY_CHECK_MS = 5_000;

/** Fenced (DOMAIN_TAKEN): look again this often (or at the longest backoff, if shorter), so that a standby takes over within seconds. */
const FENCED_RETRY_MS = 2_000;

/** Wire codes after which retrying with the same credential cannot succeed. */
const REFUSALS: ReadonlySet<string> = new Set([
  'ERR_AUTH_FAILED',
  'ERR_DOMAIN_NOT_ALLOWED',
  'ERR_VERSION',
  'ERR_LOOP',
]);

/**
 * A router link this router dials and keeps: a gateway's tunnel to its relay (an uplink), or a
 * relay's link to a peer. Reconnects forever with exponential backoff and full jitter; after
 * each reconnect both sides announce again every domain they reach. Refusals (bad credential)
 * are reported as such and retried at the longest interval, since an operator may fix the far
 * side. Speaks version 2 (both ends prove their node keys); an uplink whose router refuses
 * version 2 falls back to version 1 (a router not yet upgraded), a peer does not.
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
  /** The far router's node id, once known: a peer does not dial while that router's link to us is up. */
  #node = '';
  /** The far router refused version 2: speak version 1 to it (uplinks only). */
  #v1 = false;
  /** The last link ended DOMAIN_TAKEN: we stand by (see UplinkStatus 'fenced'). */
  #fenced = false;

  constructor(router: Router, options: UplinkOptions) {
    this.#router = router;
    this.#o = Object.freeze({
      url: options.url,
      dial: options.dial,
      token: options.token,
      mode: options.mode ?? 'uplink',
      rank: options.rank ?? 0,
      features: options.features ?? 0,
      backoff: options.backoff ?? {},
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      agent: options.agent ?? 'postern-router',
    });
    this.#backoff = new Backoff(this.#o.backoff);
    router.addDialer(this.#o.mode);
  }

  get url(): string {
    return this.#o.url;
  }

  get mode(): 'uplink' | 'peer' {
    return this.#o.mode;
  }

  get connected(): boolean {
    return this.#link !== undefined;
  }

  /** The far router's node id, once a handshake told it ('' before). */
  get node(): string {
    return this.#node;
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
    const o = this.#o;
    if (o.mode === 'peer' && this.#node !== '' && r.hasLinkTo(this.#node)) {
      // The peer dialed us and that link is up: one link between two routers is enough.
      this.#status.emit({ type: 'standby', node: this.#node });
      this.#timer = r.options.clock.setTimeout(() => void this.#attempt(), STANDBY_CHECK_MS);
      return;
    }
    this.#status.emit({ type: 'connecting', attempt: this.#backoff.attempt + 1 });
    try {
      const duplex = await o.dial(o.url, { signal: this.#abort.signal, timeoutMs: o.connectTimeoutMs });
      if (this.#closed) {
        duplex.close();
        return;
      }
      this.#handshaking = duplex;
      const how = { mode: o.mode, rank: o.rank, fenced: this.#fenced };
      const dialing = r.dialHello(how, o.token, o.agent, this.#v1 ? 1 : undefined, o.features);
      const hello = dialing.hello;
      const est = await openChannel(duplex, r.channelOptions, hello, o.connectTimeoutMs).finally(() => (this.#handshaking = undefined));
      if (this.#closed) {
        est.channel.close(WireCode.SHUTDOWN, 'router is shutting down');
        return;
      }
      this.#node = est.welcome.node;
      const auth = dialing.verify(est.welcome);
      if (typeof auth === 'string') {
        est.channel.close(WireCode.AUTH_FAILED, auth);
        throw new PosternError('ERR_AUTH_FAILED', `${o.url}: ${auth}`);
      }
      // First frame after WELCOME: our proof. Nothing else may precede it.
      if (est.welcome.version >= 2) est.channel.send(auth);
      const link = r.attachDialed(est.channel, est.welcome, how);
      this.#link = link;
      this.#upSince = r.options.clock.now();
      this.#status.emit({ type: 'up', node: est.welcome.node, domain: est.welcome.domain, version: est.welcome.version });
      est.attach({
        frame: (f, raw, num) => r.dialedFrame(link, f, raw, num),
        closed: (reason) => {
          this.#link = undefined;
          // The far router may have been upgraded meanwhile: try version 2 first next time.
          this.#v1 = false;
          r.dialedClosed(link, reason);
          this.#retry(reason);
        },
      });
    } catch (err) {
      const e = err instanceof PosternError ? err : new TransportError(String(err), { cause: err });
      if (e.code === 'ERR_VERSION' && !this.#v1 && o.mode === 'uplink') {
        // A router that speaks version 1 only: as a version 1 gateway, at once.
        this.#v1 = true;
        r.options.logger.warn('uplink.v1_fallback', 'the relay speaks protocol version 1 only; this uplink falls back to it (no peering, no anonymity through it)', { url: o.url });
        void this.#attempt();
        return;
      }
      this.#retry(e);
    }
  }

  #retry(error: PosternError): void {
    if (this.#closed) return;
    // The peer kept its own link to us instead of ours: not a failure, wait in standby.
    if (error.code === 'ERR_REPLACED' && this.#o.mode === 'peer') {
      this.#timer = this.#router.options.clock.setTimeout(() => void this.#attempt(), 100);
      return;
    }
    // Another router serves our domain there: stand by, and look again soon (failover).
    this.#fenced = error.code === 'ERR_DOMAIN_TAKEN';
    if (this.#fenced) {
      this.#upSince = 0;
      const wait = Math.min(FENCED_RETRY_MS, this.#o.backoff.maxMs ?? FENCED_RETRY_MS);
      this.#status.emit({ type: 'fenced', error, retryInMs: wait });
      this.#timer = this.#router.options.clock.setTimeout(() => void this.#attempt(), wait);
      return;
    }
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
