import type { Claims } from './auth.js';
import type { Clock } from './clock.js';

/**
 * Who a connection counts against, and what each may take, so that one sender can never use up
 * what the others need (issue 11). A *principal* is either a credential (the token or grant a
 * connection presented) or, for a connection without one, its source address (an IPv4 address,
 * or the /64 of an IPv6 one: one host gets a whole /64). Routers of our own mesh (uplinks, peers,
 * hubs) are trusted with custody and count against nobody.
 *
 * Tiers: `credential` (a token), `guest` (no token on a router with a secret that lets guests in:
 * the tighter limits), `open` (no token on a router without a secret: the operator opened it).
 * Pure bookkeeping; the router applies the answers.
 */
export type Tier = 'credential' | 'guest' | 'open';

export interface QuotaOptions {
  readonly maxConnectionsPerAddress: number;
  readonly connectRatePerAddress: number;
  readonly maxConnectionsPerCredential: number;
  readonly senderMsgRate: number;
  readonly senderByteRate: number;
  readonly maxStoredBytesPerSender: number;
  readonly guestMsgRate: number;
  readonly guestByteRate: number;
  readonly guestStoredBytes: number;
  readonly maxGuestStoredBytes: number;
}

export class Principal {
  /** Connections counted against it now (for a credential; addresses count in `Source`). */
  conns = 0;
  /** Bytes of reliable messages it sent that this router still holds. */
  stored = 0;
  msgTokens: number;
  byteTokens: number;
  at: number;
  constructor(
    readonly key: string,
    readonly tier: Tier,
    now: number,
    readonly msgRate: number,
    readonly byteRate: number,
    readonly maxStored: number,
  ) {
    this.msgTokens = msgRate;
    this.byteTokens = byteRate;
    this.at = now;
  }
}

/** Per source address: connections without a credential (and handshakes under way), and how fast new ones come. */
interface Source {
  open: number;
  tokens: number;
  at: number;
}

export class Quotas {
  readonly #o: QuotaOptions;
  readonly #clock: Clock;
  readonly #sources = new Map<string, Source>();
  readonly #principals = new Map<string, Principal>();
  /** Bytes held for all guests together. */
  #guestStored = 0;
  readonly stats = { connectionsRefused: 0, rateLimited: 0, senderQuotaRefused: 0 };

  constructor(o: QuotaOptions, clock: Clock) {
    this.#o = o;
    this.#clock = clock;
  }

  /**
   * A new connection (WebSocket upgrade or long-poll open) from `source` is about to be made:
   * why it is refused, or undefined. Takes one from the address's connect rate.
   */
  admit(source: string): string | undefined {
    const o = this.#o;
    const s = this.#source(source);
    if (s.open >= o.maxConnectionsPerAddress) {
      this.stats.connectionsRefused++;
      return `this address holds its limit of ${o.maxConnectionsPerAddress} connections without a token (or still in their handshake)`;
    }
    const now = this.#clock.now();
    const burst = o.connectRatePerAddress * 2;
    s.tokens = Math.min(burst, s.tokens + ((now - s.at) * o.connectRatePerAddress) / 1000);
    s.at = now;
    if (s.tokens < 1) {
      this.#sweepSource(source, s);
      this.stats.connectionsRefused++;
      return `this address opens more than ${o.connectRatePerAddress} connections a second`;
    }
    s.tokens--;
    return undefined;
  }

  /** A connection from `source` was made: it counts there until its handshake gives it a credential. Refusal reason, or undefined. */
  opened(source: string): string | undefined {
    const s = this.#source(source);
    if (s.open >= this.#o.maxConnectionsPerAddress) {
      this.stats.connectionsRefused++;
      this.#sweepSource(source, s);
      return `this address holds its limit of ${this.#o.maxConnectionsPerAddress} connections without a token (or still in their handshake)`;
    }
    s.open++;
    return undefined;
  }

  /** The connection counted at `source` ended, or moved to a credential. */
  released(source: string): void {
    const s = this.#sources.get(source);
    if (s === undefined) return;
    s.open--;
    this.#sweepSource(source, s);
  }

  /** Why a connection with `claims` may not be made now (its credential holds its limit), or undefined. */
  credentialRefusal(claims: Claims): string | undefined {
    const p = this.#principals.get(credentialKey(claims));
    if (p !== undefined && p.conns >= this.#o.maxConnectionsPerCredential) {
      this.stats.connectionsRefused++;
      return `this credential holds its limit of ${this.#o.maxConnectionsPerCredential} connections`;
    }
    return undefined;
  }

  /**
   * The principal a connection counts against once its handshake is done; its connection is
   * counted. `node`: a router's node id, which is its credential where it showed no token (a key
   * the operator trusts).
   */
  principal(claims: Claims | undefined, source: string, guest: boolean, node = ''): Principal {
    const o = this.#o;
    let p: Principal | undefined;
    if (claims !== undefined || node !== '') {
      const key = claims !== undefined ? credentialKey(claims) : `node ${node}`;
      p = this.#principals.get(key) ?? this.#add(new Principal(key, 'credential', this.#clock.now(), o.senderMsgRate, o.senderByteRate, o.maxStoredBytesPerSender));
    } else {
      const key = `address ${source}`;
      p =
        this.#principals.get(key) ??
        this.#add(
          guest
            ? new Principal(key, 'guest', this.#clock.now(), o.guestMsgRate, o.guestByteRate, Math.min(o.guestStoredBytes, o.maxStoredBytesPerSender))
            : new Principal(key, 'open', this.#clock.now(), o.senderMsgRate, o.senderByteRate, o.maxStoredBytesPerSender),
        );
    }
    p.conns++;
    return p;
  }

  /** A connection of `p` ended. */
  closed(p: Principal): void {
    p.conns--;
    this.#sweep(p);
  }

  /**
   * How many ms `p` must wait before its next message may be taken (0: now). Token buckets, one
   * second's worth deep, shared by every connection of `p`: a message is taken while the bucket
   * is not in debt, and may take it into debt by its own size (so a message larger than a
   * second's worth still goes), which the wait then pays back.
   */
  wait(p: Principal): number {
    if (p.msgRate === 0 && p.byteRate === 0) return 0;
    this.#refill(p);
    let wait = 0;
    if (p.msgRate > 0 && p.msgTokens < 0) wait = (-p.msgTokens * 1000) / p.msgRate;
    if (p.byteRate > 0 && p.byteTokens < 0) wait = Math.max(wait, (-p.byteTokens * 1000) / p.byteRate);
    return wait > 0 ? Math.max(1, Math.ceil(wait)) : 0;
  }

  /** `p`'s message of `bytes` is taken (after `wait(p)` said 0). */
  spend(p: Principal, bytes: number): void {
    if (p.msgRate === 0 && p.byteRate === 0) return;
    this.#refill(p);
    if (p.msgRate > 0) p.msgTokens -= 1;
    if (p.byteRate > 0) p.byteTokens -= bytes;
  }

  #refill(p: Principal): void {
    const now = this.#clock.now();
    const dt = now - p.at;
    p.at = now;
    if (p.msgRate > 0) p.msgTokens = Math.min(p.msgRate, p.msgTokens + (dt * p.msgRate) / 1000);
    if (p.byteRate > 0) p.byteTokens = Math.min(p.byteRate, p.byteTokens + (dt * p.byteRate) / 1000);
  }

  /** Why `p` may not have `bytes` more held by this router, or undefined (then they are counted). */
  store(p: Principal, bytes: number): string | undefined {
    if (p.stored + bytes > p.maxStored) {
      this.stats.senderQuotaRefused++;
      return `this router holds ${p.stored} bytes sent by this ${p.tier === 'credential' ? 'credential' : 'address'}, its limit is ${p.maxStored}`;
    }
    if (p.tier === 'guest' && this.#guestStored + bytes > this.#o.maxGuestStoredBytes) {
      this.stats.senderQuotaRefused++;
      return `this router holds its limit of ${this.#o.maxGuestStoredBytes} bytes sent by agents without a token`;
    }
    p.stored += bytes;
    if (p.tier === 'guest') this.#guestStored += bytes;
    return undefined;
  }

  /** Bytes counted by `store()` left the router. */
  unstore(p: Principal, bytes: number): void {
    p.stored -= bytes;
    if (p.tier === 'guest') this.#guestStored -= bytes;
    this.#sweep(p);
  }

  /** Principals and addresses tracked now (bounded by connections and held messages). */
  get size(): number {
    return this.#principals.size + this.#sources.size;
  }

  #add(p: Principal): Principal {
    this.#principals.set(p.key, p);
    return p;
  }

  #sweep(p: Principal): void {
    // A principal with nothing held and no connection is forgotten; its buckets start full next
    // time, which costs at most one burst per reconnect (the connect rate bounds those).
    if (p.conns <= 0 && p.stored <= 0 && this.#principals.get(p.key) === p) this.#principals.delete(p.key);
  }

  #source(source: string): Source {
    let s = this.#sources.get(source);
    if (s === undefined) {
      s = { open: 0, tokens: this.#o.connectRatePerAddress * 2, at: this.#clock.now() };
      this.#sources.set(source, s);
    }
    return s;
  }

  #sweepSource(key: string, s: Source): void {
    // Kept while it has connections or its bucket is not full again (else a refused address
    // would get a fresh burst by waiting out nothing).
    if (s.open > 0) return;
    const full = s.tokens + ((this.#clock.now() - s.at) * this.#o.connectRatePerAddress) / 1000 >= this.#o.connectRatePerAddress * 2;
    if (full) this.#sources.delete(key);
  }
}

/** One key per credential: the token's id where it has one, else who it names. */
export function credentialKey(claims: Claims): string {
  return claims.tokenId !== undefined ? `token ${claims.tokenId}` : `holder ${claims.domain}/${claims.name ?? ''}${claims.peer === true ? '/peer' : ''}`;
}

/**
 * The address a connection counts against, from a transport's `remote` ("ip:port", "[v6]:port"):
 * IPv4 as is (also when mapped into IPv6), IPv6 cut to its /64. Anything else is its own key.
 */
export function sourceOf(remote: string): string {
  let host = remote;
  const bracket = /^\[([^\]]+)\](?::\d+)?$/.exec(remote);
  if (bracket !== null) host = bracket[1]!;
  else {
    const colon = remote.lastIndexOf(':');
    // "1.2.3.4:5" or "::1:5" (node writes IPv6 unbracketed): the port is after the last colon.
    if (colon > 0 && /^\d+$/.test(remote.slice(colon + 1))) host = remote.slice(0, colon);
  }
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  if (mapped !== null) return mapped[1]!;
  if (/^\d+\.\d+\.\d+\.\d+$/.test(host)) return host;
  if (/^[0-9a-f:]*:[0-9a-f:]*(\.\d+)*(%.+)?$/i.test(host)) return `${ipv6Prefix64(host)}::/64`;
  return host;
}

function ipv6Prefix64(host: string): string {
  const zone = host.indexOf('%');
  const h = (zone >= 0 ? host.slice(0, zone) : host).toLowerCase();
  const [left = '', right] = h.split('::');
  const l = left === '' ? [] : left.split(':');
  const r = right === undefined || right === '' ? [] : right.split(':');
  const groups = right === undefined ? l : [...l, ...Array<string>(Math.max(0, 8 - l.length - r.length)).fill('0'), ...r];
  return groups
    .slice(0, 4)
    .map((g) => (g.includes('.') ? 0 : parseInt(g, 16) || 0).toString(16))
    .join(':');
}
