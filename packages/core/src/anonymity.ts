import { FrameType, HandleOp, MsgFlag, WireCode, decodeReport, encodeReport, isHandle, type HandleFrame, type HandledFrame } from '@postern/protocol';
import type { AddressCache, ParsedAddress } from './addresses.js';
import { anyCovers } from './auth.js';
import type { AckAs } from './delivery.js';
import { Handles, type Handle } from './handles.js';
import type { Link } from './link.js';
import { newNonce } from './link-auth.js';
import type { ResolvedRouterOptions } from './options.js';

export interface AnonymityHost {
  readonly addresses: AddressCache;
  /** The connected default uplink, if any. */
  defaultUplink(): Link | undefined;
  /** This router has uplinks configured (connected or not): it is below a relay. */
  dialsUplinks(): boolean;
}

/** The names an anonymous message travels under from here, and how the hop before knows it. */
export interface Hidden {
  readonly from: string;
  readonly id: string;
  readonly hops: number;
  readonly ackAs: AckAs;
}

/** A refusal: [wire code, reason]. */
export type Refusal = [number, string];

interface PendingWrap {
  readonly agent: Link;
  readonly ref: number;
  readonly expires: number;
  readonly timer: unknown;
}

/** How long an agent's pseudonym request waits for the relay to wrap it. */
const WRAP_TIMEOUT_MS = 10_000;

/** How often expired reply handles are forgotten. */
const SWEEP_MS = 60_000;

/**
 * Anonymous senders and reply handles (PROTOCOL.md section 5.4): what the router writes instead
 * of an anonymous agent's name and id, the wrapping of handles that come from routers below,
 * the resolution of messages sent to handles, pseudonyms, and their limits.
 */
export class Anonymity {
  readonly handles: Handles;
  readonly stats = { anonymous: 0, anonymousWrapped: 0 };
  readonly #o: ResolvedRouterOptions;
  readonly #h: AnonymityHost;
  readonly #buckets = new WeakMap<Link, { tokens: number; at: number }>();
  readonly #pending = new Map<number, PendingWrap>();
  #ref = 0;
  #timer: unknown;
  #closed = false;

  constructor(o: ResolvedRouterOptions, host: AnonymityHost) {
    this.#o = o;
    this.#h = host;
    this.handles = new Handles(o.store, o.clock, o.logger);
  }

  get #domain(): string {
    return this.#h.addresses.domain;
  }

  /** Loads the stored handles, then sweeps expired ones now and then. */
  async start(): Promise<void> {
    await this.handles.load();
    this.#arm();
  }

  close(): void {
    this.#closed = true;
    this.#o.clock.clearTimeout(this.#timer);
    for (const w of this.#pending.values()) this.#o.clock.clearTimeout(w.timer);
    this.#pending.clear();
  }

  /**
   * An agent's anonymous message: its sender becomes a handle only we can map back, its id one
   * only we can read, its hop limit ours, so that nothing it chose identifies it further on.
   * The names it travels under, or why it is refused.
   */
  hide(link: Link, id: string, flags: number, bodyBytes: number): Hidden | Refusal {
    const o = this.#o;
    const refusal = this.#refusal(link, bodyBytes);
    if (refusal !== undefined) return refusal;
    const from = link.address;
    const sticky = (flags & MsgFlag.STICKY) !== 0;
    const token = o.anonymizer!.token(sticky ? `sticky\n${from}` : `message\n${from}\n${id}`);
    this.handles.put(token, from, sticky ? o.stickyHandleTtlMs : o.handleTtlMs, sticky ? 'sticky' : 'message');
    this.stats.anonymous++;
    // STICKY stays on the message: a relay above keeps its wrap of a sticky handle as long.
    return { from: `~${token}@${this.#domain}`, id: o.anonymizer!.sealId(id), hops: o.hopLimit, ackAs: { id, from } };
  }

  /**
   * A message from a router below whose sender is one of its handles: the handle of ours it
   * travels under from here (the same for the same inner handle, so replies, receipts and
   * reports match), and, if anonymous, an id and hop count of ours too (so that the two legs
   * cannot be matched or told apart). Undefined when nothing is wrapped. `commitWrap` keeps it.
   */
  wrap(link: Link, from: ParsedAddress, id: string, flags: number): { from: string; id: string; hops?: number; token: string } | undefined {
    const o = this.#o;
    if ((link.kind !== 'downlink' && link.kind !== 'hub') || !isHandle(from.local) || o.anonymizer === undefined) return undefined;
    const token = o.anonymizer.token(`wrap\n${from.text}`);
    const anonymous = (flags & MsgFlag.ANONYMOUS) !== 0;
    return { from: `~${token}@${this.#domain}`, id: anonymous ? o.anonymizer.sealId(id) : id, ...(anonymous ? { hops: o.hopLimit } : {}), token };
  }

  /** Keeps a wrap made by `wrap()` (stored in the commit of this tick), or refuses it past maxHandles. `via`: the hub it came from. */
  commitWrap(token: string, inner: string, flags: number, via = ''): Refusal | undefined {
    const o = this.#o;
    if (!this.handles.has(token) && this.handles.size >= o.maxHandles) return [WireCode.RATE_LIMITED, `this router holds its limit of ${o.maxHandles} reply handles`];
    this.handles.put(token, inner, (flags & MsgFlag.STICKY) !== 0 ? o.stickyHandleTtlMs : o.handleTtlMs, 'wrap', via);
    if ((flags & MsgFlag.ANONYMOUS) !== 0) this.stats.anonymousWrapped++;
    return undefined;
  }

  /**
   * Where a message to one of our reply handles goes (`dest`: an agent of ours, or a handle of a
   * router below), and the recipient address it carries from here (`to`): the handle itself when
   * it ends here (so that receipts and reports come from the address its sender used, not from
   * the agent behind it), the inner handle when it goes on. 'unknown' for a handle we do not know.
   */
  resolve(to: ParsedAddress): { to: ParsedAddress; dest: ParsedAddress; handle?: Handle } | 'unknown' {
    if (to.domain !== this.#domain || !isHandle(to.local)) return { to, dest: to };
    const h = this.handles.get(to.local.slice(1));
    const target = h === undefined ? undefined : this.#h.addresses.parse(h.target);
    if (h === undefined || target === undefined) return 'unknown';
    // It ends here (an agent of ours), or goes on with the inner handle (a router below, or a hub of ours).
    return { to: target.domain === this.#domain && h.via === '' ? to : target, dest: target, handle: h };
  }

  /** Bridgehead: the hub a handle of one of its hubs (`~token`, our domain) leads to, while we hold its wrap. */
  hubOf(local: string): string | undefined {
    const a = this.#o.anonymizer;
    if (a === undefined || !isHandle(local)) return undefined;
    const via = this.handles.get(a.token(`wrap\n${local}@${this.#domain}`))?.via;
    return via === '' ? undefined : via;
  }

  /** The id we sealed, read back for the hop behind us (a sender of ours, or a router whose handle we wrapped); ids we did not seal as they are. */
  unseal(id: string, handle: Handle | undefined): string {
    if (handle === undefined || handle.kind === 'pseudonym') return id;
    return this.#o.anonymizer?.openId(id) ?? id;
  }

  /** A report to one of our handles names its message by the id we sealed: put the original back. */
  unsealReport(body: Uint8Array, handle: Handle | undefined): Uint8Array {
    if (handle === undefined || handle.kind === 'pseudonym') return body;
    try {
      const r = decodeReport(body);
      const ref = this.unseal(r.ref, handle);
      return ref === r.ref ? body : encodeReport({ ...r, ref });
    } catch {
      return body;
    }
  }

  /** HANDLE: an agent asks for a pseudonym; a router below asks us to wrap one of its handles. */
  onHandle(link: Link, f: HandleFrame): void {
    const o = this.#o;
    const answer = (code: number, address: string, expiresAt: number, reason: string): void =>
      void link.channel.send({ type: FrameType.HANDLED, ref: f.ref, code, address, expires: Math.floor(expiresAt / 1000), reason });
    const refuse = (code: number, reason: string): void => answer(code, '', 0, reason);
    if (o.anonymizer === undefined || !o.allowAnonymous) return refuse(WireCode.FORBIDDEN, 'anonymity is switched off on this router');
    if (this.handles.size >= o.maxHandles) return refuse(WireCode.RATE_LIMITED, `this router holds its limit of ${o.maxHandles} reply handles`);
    const ttl = Math.min(f.ttl === 0 ? o.pseudonymTtlMs : f.ttl * 1000, o.maxPseudonymTtlMs);
    if (f.op === HandleOp.PSEUDONYM) {
      if (link.kind !== 'agent') return refuse(WireCode.FORBIDDEN, 'only agents ask for pseudonyms');
      if (o.hub) return refuse(WireCode.FORBIDDEN, 'pseudonyms are not offered to agents homed on a hub (yet): connect to a gateway or relay for one');
      if (!this.#takeToken(link)) return refuse(WireCode.RATE_LIMITED, `anonymous requests are limited to ${o.anonymousRate} a second per connection`);
      const up = this.#h.defaultUplink();
      // Behind a relay our domain names the organisation: without the relay to wrap it, refuse
      // rather than hand out an address that gives the organisation away.
      if (up === undefined && this.#h.dialsUplinks()) return refuse(WireCode.UNAVAILABLE, 'no relay is connected to hide this organisation behind; try again');
      if (up !== undefined && up.version < 2) return refuse(WireCode.UNAVAILABLE, 'the relay speaks protocol 1 and cannot hide this organisation');
      const token = o.anonymizer.token(`pseudonym\n${link.address}\n${newNonce()}`);
      const h = this.handles.put(token, link.address, ttl, 'pseudonym');
      const inner = `~${token}@${this.#domain}`;
      if (up === undefined) return answer(WireCode.OK, inner, h.expiresAt, '');
      const ref = (this.#ref = (this.#ref + 1) >>> 0);
      const timer = o.clock.setTimeout(() => {
        if (this.#pending.delete(ref)) refuse(WireCode.UNAVAILABLE, 'the relay did not answer in time; try again');
      }, WRAP_TIMEOUT_MS);
      this.#pending.set(ref, { agent: link, ref: f.ref, expires: h.expiresAt, timer });
      up.channel.send({ type: FrameType.HANDLE, ref, op: HandleOp.WRAP, ttl: Math.floor(ttl / 1000), address: inner });
      return;
    }
    // WRAP: only for a router below us, and only its own handles.
    const a = this.#h.addresses.parse(f.address);
    if (link.kind !== 'downlink') return refuse(WireCode.FORBIDDEN, 'only a router below this one asks it to wrap a handle');
    if (a === undefined || !isHandle(a.local) || !anyCovers(link.entitled, a.domain)) return refuse(WireCode.FORBIDDEN, `"${f.address}" is not a handle of this link's domains`);
    const token = o.anonymizer.token(`wrap\n${a.text}`);
    const h = this.handles.put(token, a.text, ttl, 'wrap');
    this.stats.anonymousWrapped++;
    answer(WireCode.OK, `~${token}@${this.#domain}`, h.expiresAt, '');
  }

  /** The relay's answer to our WRAP, passed on to the agent that asked. */
  onHandled(f: HandledFrame): void {
    const w = this.#pending.get(f.ref);
    if (w === undefined) return;
    this.#pending.delete(f.ref);
    this.#o.clock.clearTimeout(w.timer);
    if (!w.agent.up) return;
    const ok = f.code === WireCode.OK;
    w.agent.channel.send({
      type: FrameType.HANDLED,
      ref: w.ref,
      code: f.code,
      address: ok ? f.address : '',
      expires: ok ? Math.min(f.expires, Math.floor(w.expires / 1000)) : 0,
      reason: ok ? '' : `the relay refused: ${f.reason}`,
    });
  }

  /** Why an agent's anonymous message is refused; undefined when it is not. */
  #refusal(link: Link, bodyBytes: number): Refusal | undefined {
    const o = this.#o;
    if (o.anonymizer === undefined || !o.allowAnonymous) return [WireCode.FORBIDDEN, 'anonymous messages are switched off on this router'];
    if (bodyBytes > o.maxAnonymousBodyBytes) return [WireCode.FRAME_TOO_LARGE, `an anonymous message carries at most ${o.maxAnonymousBodyBytes} bytes`];
    if (!this.#takeToken(link)) return [WireCode.RATE_LIMITED, `anonymous messages are limited to ${o.anonymousRate} a second per connection`];
    if (this.handles.size >= o.maxHandles) return [WireCode.RATE_LIMITED, `this router holds its limit of ${o.maxHandles} reply handles`];
    return undefined;
  }

  /** Token bucket per connection: `anonymousRate` a second, bursts of twice that. */
  #takeToken(link: Link): boolean {
    const o = this.#o;
    const now = o.clock.now();
    const b = this.#buckets.get(link) ?? { tokens: o.anonymousRate * 2, at: now };
    b.tokens = Math.min(o.anonymousRate * 2, b.tokens + ((now - b.at) * o.anonymousRate) / 1000);
    b.at = now;
    this.#buckets.set(link, b);
    if (b.tokens < 1) return false;
    b.tokens--;
    return true;
  }

  #arm(): void {
    if (this.#closed) return;
    this.#timer = this.#o.clock.setTimeout(() => {
      this.handles.sweep();
      this.#arm();
    }, SWEEP_MS);
  }
}
