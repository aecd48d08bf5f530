import { FrameType, MsgFlag, PosternError, WireCode, encodeReport, errorCodeOf, truncateUtf8, utf8Length, type AckFrame, type HeldFrame, type NackFrame } from '@postern/protocol';
import { crashPoint } from './crash.js';
import { parseDestinationKey, type Destination } from './destination.js';
import { messageKey, type Link } from './link.js';
import type { ResolvedRouterOptions } from './options.js';
import type { Tracer } from './trace.js';
import type { Principal, Quotas } from './quotas.js';
import { StoreHealth, type StoreState } from './store-health.js';
import { isStoreUnavailable, type MessageKey, type NewMessage, type Store } from './store.js';

/**
 * Store-and-forward of reliable messages: custody moves hop by hop.
 *
 * 1. Accept: a reliable MSG is appended to the store (group commit, one per I/O phase) and only
 *    then ACKed to the hop it came from. Its key (from, id) is kept so that a retry of it is
 *    ACKed again and dropped, until that hop RELEASEs the ACK (or, if the link is lost first,
 *    for `dedupWindowMs`).
 * 2. Forward: each queue (one per local recipient, one per remote domain) sends in seq order
 *    to the link that serves it now, within the link's in-flight window. A message written to
 *    a router is **pinned** to that router (its node id) until it answers: the router may have
 *    taken custody although its ACK was lost, so the message is sent again only to it, after a
 *    lost link or a restart, never along another route (that would make a second copy on a
 *    second path). Where the message is about to go is stored with it (`via`) before it is
 *    written, so a restarted router knows which messages may be elsewhere already.
 * 3. Order per sender: a sender's messages (a *flow*, by `from`) in one queue leave in order
 *    and are never in flight on two links at once. When the route changes, flows with nothing
 *    in flight or pinned take the new route at once; the others wait until their pinned
 *    messages are settled. A *transit* router (the message came from a router and goes on to
 *    one) stores it but ACKs the hop before only once the next router ACKed it (or it left
 *    with a report): so an ACK always means "stored by the router that delivers it", and a flow
 *    that moves to another path cannot overtake its earlier messages held on the old one, at
 *    any router of the path.
 * 4. Loops: a router that gets back, from another router, a message it already took from a
 *    different one refuses the copy (LOOP): forwarding it again could leave no copy anywhere.
 * 5. Settle: on the next hop's ACK the copy is removed; once that removal is durable we
 *    RELEASE the ACK so the next hop may forget the key. A NACK, or a message that outlives
 *    `maxMessageAgeMs` while waiting, is removed and reported to its sender (a REPORT message,
 *    stored and routed like any other). So is delivery, when the sender asked for a receipt.
 * 6. A failing store (a commit rejected with ERR_STORE_UNAVAILABLE: disk full, I/O error) stops
 *    nothing but custody: the messages of a failed append are NACKed STORE_UNAVAILABLE (nothing
 *    unstored is ever ACKed), reports made here wait to be stored, and failed retirements,
 *    removals and repins are kept and go into a later commit (a RELEASE still leaves only once
 *    its removals are durable; a repinned message waits until its `via` is). What is held goes
 *    on being delivered. Each new message and, while it fails, a retry every second probes the
 *    store; the first commit that succeeds ends the failing state. Any other rejection is fatal.
 */
export interface DeliveryHost {
  /** The link that carries messages for `dest` now, or undefined while there is none. */
  nextHop(dest: Destination): Link | undefined;
  /** The live router link to node `node`, if any (where messages pinned to it go). */
  linkTo(node: string): Link | undefined;
  /**
   * Router `node` is handing back what it holds for `dest` (a hub its name moved away from): the
   * messages for `dest` pinned to it are not written to it again but wait for its word that it
   * holds nothing more (then `unpin`). Written now, one it never had would come back after that
   * word, behind later messages.
   */
  handingBack(dest: Destination, node: string): boolean;
  /**
   * Where a report to `address` goes: its destination, hop limit, the recipient address to
   * write (a reply handle of ours resolved), and how to name the reported message to it.
   */
  route(address: string): { dest: Destination; hops: number; to: string; ref(id: string): string } | undefined;
  nack(link: Link, id: string, from: string, code: number, reason: string): void;
  /** The store failed for good (not ERR_STORE_UNAVAILABLE): this router cannot keep its promises any more. */
  fatal(err: unknown): void;
  /** A reliable message was written to `link` (for the router's counters). */
  sent(link: Link): void;
  /** A sender was paused behind a backed-up queue. */
  paused(): void;
  /** The queue for `dest` holds nothing any more (nothing waiting, nothing in flight). */
  emptied(dest: Destination): void;
}

export interface DeliveryStats {
  /** Reliable messages held (waiting or in flight). */
  stored: number;
  storedBytes: number;
  /** Of the bodies held, bytes in memory now (the others are in the store only; maxBodyMemoryBytes). */
  bodyBytes: number;
  /** Bodies left in the store only, to keep memory within maxBodyMemoryBytes. */
  bodiesEvicted: number;
  /** Bodies read back from the store to be sent. */
  bodiesRead: number;
  queues: number;
  /** Retries recognised by key and acked again without a second copy. */
  duplicates: number;
  /** Messages removed unsent after `maxMessageAgeMs`. */
  expired: number;
  /** Reports this router made (delivered receipts and failures). */
  reports: number;
  /** Messages their next hop (an agent or a router) acknowledged: handed on. */
  acked: number;
  /** Messages their next hop refused (NACK received). */
  nacked: number;
  /** Reports that could not be made or routed (a report about a report is never made). */
  reportsDropped: number;
  /** Keys acked on a lost link whose sender never retried, dropped early because `maxSeenKeys` was reached. */
  dedupEvicted: number;
  /** Keys kept to drop retries. */
  seenKeys: number;
  /** Of those, keys no live link will release (lost links, restarts), waiting out dedupWindowMs. */
  orphanKeys: number;
  /** Messages waiting for the router they are pinned to (it may hold them already) while it is not connected. */
  pinned: number;
  /** Copies refused because they came back round a routing loop (NACK LOOP). */
  loops: number;
  /** Store calls that failed with ERR_STORE_UNAVAILABLE (disk full, I/O error); each was tried again or refused. */
  storeFailures: number;
  /** Reliable messages refused with NACK STORE_UNAVAILABLE because their commit failed. */
  storeRefused: number;
}

export interface Incoming {
  readonly from: string;
  readonly id: string;
  readonly to: string;
  readonly flags: number;
  readonly hops: number;
  readonly body: Uint8Array;
}

/** A message as Delivery holds it: its body may be left in the store and read back (Entry.evicted). */
interface Held extends Omit<Incoming, 'body'> {
  body: Uint8Array;
}

const EMPTY = new Uint8Array(0);

/** Bodies read back from the store at once, at most (and about maxInFlightBytesPerLink of them). */
const MAX_READ = 1024;

/** How the router names a message to the hop it came from, when not as it stores it (an anonymous sender's own id). */
export interface AckAs {
  readonly id: string;
  readonly from: string;
}

const PENDING = 0;
const UNSENT = 1;
const SENT = 2;
const DONE = 3;

/** While the store fails, kept changes are committed again this often; a message its next router could not store waits this long. */
const STORE_RETRY_MS = 1000;

/** The value a failing store is probed with (written only while it fails). */
const PROBE_KEY = 'store-probe';

/** Entries a pump looks at past the first it had to skip: bounds the work of one pass while flows wait. */
const MAX_SCAN = 16_384;

/** An entry's origins before it has any, or after they were answered: shared, never written. */
const NO_LINKS: readonly Link[] = Object.freeze([]);
const NO_NUMS: readonly number[] = Object.freeze([]);

/** Adds `origin` (and the number of the MSG it is handling now) to `e`'s origins; most entries have one. */
function addOrigin(e: Entry, origin: Link): void {
  if (e.origins.length === 0) {
    e.origins = [origin];
    e.nums = [origin.inNum];
  } else {
    e.origins = [...e.origins, origin];
    e.nums = [...e.nums, origin.inNum];
  }
}

/** A message this router holds. */
export class Entry {
  seq = 0;
  state = PENDING;
  link: Link | undefined;
  /** Hops that sent it (a retry may arrive while the first copy commits): each gets an ACK. */
  origins: readonly Link[] = NO_LINKS;
  /** For each of `origins`, the number of the MSG that brought it (feature ACKS; 0: ACK by key). */
  nums: readonly number[] = NO_NUMS;
  /** Its number on the link it was last written to (feature ACKS), 0 if none. */
  outNum = 0;
  /** Made by this router (a report), not received. */
  local = false;
  /**
   * The router (node id) it is meant for or was written to; '' for none (an agent's queue, or
   * no route yet). Stored with it: after a restart a message with a `via` may be there already.
   */
  via = '';
  /** It may be at `via` already (written there, or recovered with one): it goes nowhere else until answered. */
  pinned = false;
  /** A new `via` is being committed; it is written only once that is durable. */
  repinning = false;
  /** Written to a next hop at least once (this process): that hop may have it even if no ACK came back. */
  sentOnce = false;
  /** Its next router could not store it (NACK STORE_UNAVAILABLE): not written again before this time. */
  retryAt = 0;
  /** The node id of the router it came from ('' from an agent or made here): never sent back there. */
  cameFrom = '';
  /**
   * Transit: it came from a router and goes on to a router. Its (version 2) origins get HELD when
   * it is stored and the ACK only once the next router ACKed it (or it left with a report).
   */
  transit = false;
  /** Sent, and the next router said HELD: out of the link's window, still not settled. */
  held = false;
  /** Its body is left in the store (memory is bounded by maxBodyMemoryBytes): read back before it is sent. */
  evicted = false;
  /** Its body is being read back. */
  loading = false;
  /** The sender its bytes count against while it is held (quotas.ts); none for messages made here or recovered. */
  owner: Principal | undefined = undefined;
  readonly key: string;
  readonly size: number;

  constructor(
    readonly queue: Queue,
    readonly m: Held,
    readonly storedAt: number,
    readonly expiresAt: number,
    key = messageKey(m.from, m.id),
  ) {
    this.key = key;
    this.size = m.body.length + m.from.length + m.to.length + m.id.length + 16;
  }
}

/** Messages for one destination, in seq order. */
export class Queue {
  readonly key: string;
  readonly items: Entry[] = [];
  /** items[0..head) are done; items[head..cursor) are sent or done. */
  head = 0;
  cursor = 0;
  count = 0;
  bytes = 0;
  inflight = 0;
  /** In-flight messages per link (usually one link). */
  readonly links = new Map<Link, number>();
  /** Unsent messages pinned to a router (they may be there already). */
  pinned = 0;
  /** Senders paused because this queue backed up behind a connected but slow next hop. */
  readonly blocked = new Set<Link>();
  /** When the queue last saw its next hop answer (ACK or NACK), or began to block senders. */
  progressAt = 0;
  /** Its next hop answered nothing for maxStallMs while it blocked senders: it blocks none until it does. */
  stalled = false;

  constructor(readonly dest: Destination) {
    this.key = dest.key;
  }
}

/**
 * What Delivery keeps per link: its in-flight window as the sending side, and as the receiving
 * side the keys it acked and must keep until the other end RELEASEs them. Lives here, not on
 * the Link: routing owns links, delivery owns custody.
 */
class Hop {
  /** Reliable messages sent on this link and not yet acked by the other end, by (from, id). */
  readonly inflight = new Map<string, Entry>();
  /** The same, by the number the link gave each (feature ACKS): acknowledged by number. */
  readonly byNum = new Map<number, Entry>();
  /** The window: messages (and their bytes) in flight and not HELD by the other end. */
  windowCount = 0;
  windowBytes = 0;
  /** Queues waiting for room in this link's in-flight window. */
  readonly waiting = new Set<Queue>();
  /** Receiver side: keys we acked on this link, in ACK order; `acked[i]` is ACK number `ackBase + i`. */
  acked: Seen[] = [];
  ackBase = 0;
  /** Sender side: ACK frames received on this link (RELEASE counts them). */
  acksIn = 0;
}

/** A key we accepted; `owner` is the link whose RELEASE will let us forget it. */
export interface Seen extends MessageKey {
  readonly key: string;
  owner: Link | undefined;
  /** Its message, while this router holds it (the key lives in the message's store row). */
  entry: Entry | undefined;
  /** The store row of the key (0 until the first commit). */
  seq: number;
  /** When it became a leftover (its link was lost before RELEASE). */
  at: number;
  /** In #leftovers now: a key orphaned again (a peer repeating a message it never releases) is not added twice. */
  listed?: boolean;
  /** How its ACK names it to the hop it came from, when not as stored (an anonymous sender's own id). */
  ackAs?: AckAs;
  /** Node id of the router it came from ('' from an agent, or made here). */
  cameFrom: string;
}

/** One queue as operators see it (Delivery.queues). */
export interface QueueInfo {
  dest: Destination;
  messages: number;
  bytes: number;
  oldestAt: number | null;
}

export class Delivery {
  readonly #o: ResolvedRouterOptions;
  readonly #store: Store;
  readonly #quotas: Quotas;
  readonly #host: DeliveryHost;
  readonly #queues = new Map<string, Queue>();
  readonly #hops = new Map<Link, Hop>();
  readonly #seen = new Map<string, Seen>();
  /** Keys whose link was lost before RELEASE, oldest first; pruned after `dedupWindowMs`. */
  #leftovers: Seen[] = [];
  #appends: Entry[] = [];
  #retires: number[] = [];
  #removals: number[] = [];
  #repins: Entry[] = [];
  readonly #releases = new Map<Link, number>();
  /** Counts failed retire/remove commits: a RELEASE waits for the removals of every earlier commit. */
  #removeFailures = 0;
  readonly #health: StoreHealth;
  /** Queues with a message waiting out `retryAt`: woken by the timer. */
  readonly #delayed = new Set<Queue>();
  readonly #wake = new Set<Queue>();
  #scheduled = false;
  #ready = false;
  #closed = false;
  #timer: unknown;
  /** Armed while removals, retirements or RELEASEs wait for a commit to ride with (settleDelayMs). */
  #settleTimer: unknown = undefined;
  /** The settle timer fired: the next flush commits them even without new messages. */
  #settleNow = false;
  readonly #waitingForReady: Array<() => void> = [];
  readonly #stats = { stored: 0, storedBytes: 0, duplicates: 0, expired: 0, reports: 0, acked: 0, nacked: 0, reportsDropped: 0, dedupEvicted: 0, loops: 0, bodiesEvicted: 0, bodiesRead: 0 };
  /** Bytes of message bodies held in memory; past maxBodyMemoryBytes, bodies stay in the store only. */
  #bodyBytes = 0;
  /** Queues with a read of bodies under way (one at a time each). */
  readonly #reading = new Set<Queue>();

  constructor(o: ResolvedRouterOptions, store: Store, quotas: Quotas, host: DeliveryHost) {
    this.#o = o;
    this.#store = store;
    this.#quotas = quotas;
    this.#host = host;
    this.#health = new StoreHealth(o.logger, o.clock);
  }

  /**
   * messageKey(from, id), made once per message: retry() and accept() of the same message ask in
   * turn, and each new key is a concatenation that its first Map lookup must flatten and hash.
   */
  #key(from: string, id: string): string {
    if (from !== this.#keyFrom || id !== this.#keyId) {
      this.#keyFrom = from;
      this.#keyId = id;
      this.#keyOf = messageKey(from, id);
    }
    return this.#keyOf;
  }

  #keyFrom = '';
  #keyId = '';
  #keyOf = messageKey('', '');

  /** Whether the store commits (for `/healthz`). */
  /** Records each message's events and the reports made (the router's `trace` option); undefined: off. */
  tracer: Tracer | undefined = undefined;

  /** Reports made, by wire code (OK: delivery receipts). */
  readonly reportsByCode = new Map<number, number>();

  /** Messages and bytes held now, per kind of destination (waiting or in flight). */
  held(): Record<Destination['kind'], { messages: number; bytes: number }> {
    const r = { agent: { messages: 0, bytes: 0 }, domain: { messages: 0, bytes: 0 }, return: { messages: 0, bytes: 0 } };
    for (const q of this.#queues.values()) {
      const c = r[q.dest.kind];
      c.messages += q.count;
      c.bytes += q.bytes;
    }
    return r;
  }

  /**
   * Every queue holding messages now: its destination, messages, bytes, and when its oldest
   * message was stored (epoch ms). For operators (the dashboard); walks the queues, not messages.
   */
  queues(): QueueInfo[] {
    const r: QueueInfo[] = [];
    for (const q of this.#queues.values()) {
      if (q.count === 0) continue;
      r.push({ dest: q.dest, messages: q.count, bytes: q.bytes, oldestAt: q.items[q.head]?.storedAt ?? null });
    }
    return r;
  }

  storeState(): StoreState {
    return this.#health.state();
  }

  stats(): DeliveryStats {
    let pinned = 0;
    for (const q of this.#queues.values()) pinned += q.pinned;
    const h = this.#health;
    return { ...this.#stats, bodyBytes: this.#bodyBytes, queues: this.#queues.size, seenKeys: this.#seen.size, orphanKeys: this.#leftovers.length, pinned, storeFailures: h.failures, storeRefused: h.refused };
  }

  /** Loads what the store kept: every held message is queued again, every kept key drops retries. */
  async start(): Promise<void> {
    const now = this.#o.clock.now();
    const r = await this.#store.recover({ bodyBudget: this.#o.maxBodyMemoryBytes });
    for (const k of r.seen) {
      const key = messageKey(k.from, k.id);
      // After a restart no link owns a key: each waits out the window from now.
      const s: Seen = { key, from: k.from, id: k.id, owner: undefined, entry: undefined, seq: k.seq, at: now, listed: true, cameFrom: k.cameFrom };
      this.#seen.set(key, s);
      this.#leftovers.push(s);
    }
    for (const m of r.messages) {
      const dest = parseDestinationKey(m.queue);
      if (dest === undefined) throw new PosternError('ERR_INTERNAL', `the store holds a message for queue "${m.queue}", which this version does not know`);
      const q = this.#queue(dest);
      const e = new Entry(q, { from: m.from, id: m.id, to: m.to, flags: m.flags, hops: m.hops, body: m.body }, m.storedAt, m.expiresAt);
      e.seq = m.seq;
      e.state = UNSENT;
      e.cameFrom = m.cameFrom;
      e.transit = m.cameFrom !== '' && dest.kind === 'domain';
      // It may have been written to `via` before the restart: it goes there or nowhere.
      e.via = m.via;
      e.pinned = m.via !== '';
      if (e.pinned) q.pinned++;
      const s = this.#seen.get(e.key);
      if (s !== undefined && s.seq === e.seq) s.entry = e;
      if (m.bodyOmitted === true) {
        // Left in the store by recover(): it is read back when it is sent.
        e.evicted = true;
        this.#bodyBytes -= m.body.length; // (0: #hold counts it back)
      }
      this.#hold(q, e);
    }
    this.#ready = true;
    for (const fn of this.#waitingForReady.splice(0)) fn();
    for (const q of this.#queues.values()) this.#wake.add(q);
    this.#schedule();
    this.#armTimer();
  }

  /**
   * Takes custody of a reliable message for `dest`, from `origin` (undefined: made here). It is
   * ACKed once stored (as `ackAs` names it, when given); a retry of a stored or pending key is
   * ACKed again and dropped.
   */
  accept(origin: Link | undefined, m: Incoming, dest: Destination, unseen = false, ackAs?: AckAs): void {
    if (!this.#ready) {
      const num = origin?.inNum ?? 0;
      this.#waitingForReady.push(() => {
        if (origin === undefined || !origin.up) return;
        const now = origin.inNum;
        origin.inNum = num;
        this.accept(origin, m, dest, false, ackAs);
        origin.inNum = now;
      });
      return;
    }
    const o = this.#o;
    const key = this.#key(m.from, m.id);
    // `unseen`: the caller's retry() just found no key, in this same tick.
    if (!unseen && this.#retried(origin, key)) return;
    const q = this.#queue(dest);
    const isReport = (m.flags & MsgFlag.REPORT) !== 0;
    const now = o.clock.now();
    const e = new Entry(q, m, now, now + o.maxMessageAgeMs, key);
    // Reports are exempt from the limits: refusing one would leave its reader guessing.
    if (!isReport && origin !== undefined) {
      const refusal =
        q.count >= o.maxQueueMessages
          ? `the queue for "${m.to}" holds its limit of ${o.maxQueueMessages} messages`
          : q.bytes + e.size > o.maxQueueBytes
            ? `the queue for "${m.to}" holds its limit of ${o.maxQueueBytes} bytes`
            : this.#stats.storedBytes + e.size > o.maxStoredBytes
              ? `this router holds its limit of ${o.maxStoredBytes} bytes of messages`
              : this.#stats.stored >= o.maxStoredMessages
                ? `this router holds its limit of ${o.maxStoredMessages} messages`
              : origin.quota === undefined
                ? undefined
                : this.#quotas.store(origin.quota, e.size); // counted when it passes
      if (refusal === undefined && origin.quota !== undefined) e.owner = origin.quota;
      if (refusal !== undefined) {
        if (q.count === 0) this.#queues.delete(q.key);
        this.#host.nack(origin, ackAs?.id ?? m.id, ackAs?.from ?? m.from, WireCode.QUEUE_FULL, refusal);
        return;
      }
    }
    if (origin !== undefined) {
      addOrigin(e, origin);
      if (origin.isRouter) e.cameFrom = origin.node;
      e.transit = origin.isRouter && dest.kind === 'domain';
    } else e.local = true;
    // Where it will most likely go, written with it: then sending it there needs no second commit.
    const next = this.#host.nextHop(dest);
    if (next !== undefined && next.isRouter && (next.node !== e.cameFrom || dest.kind !== 'domain')) e.via = next.node;
    const s: Seen = { key, from: m.from, id: m.id, owner: undefined, entry: e, seq: 0, at: now, cameFrom: e.cameFrom };
    if (ackAs !== undefined) s.ackAs = ackAs;
    this.#seen.set(key, s);
    this.#hold(q, e);
    this.#appends.push(e);
    this.#schedule();
    if (origin !== undefined) this.#backpressure(origin, q);
  }

  /**
   * A retry of a message this router already took custody of is ACKed again (once stored) and
   * dropped: true then. Checked before routing, so that a route or limit that changed since
   * cannot refuse a message that is on its way.
   */
  retry(origin: Link, from: string, id: string): boolean {
    return this.#ready && this.#retried(origin, this.#key(from, id));
  }

  /**
   * A hub hands a message back to its bridgehead (its recipient moved to another hub), or sends
   * one it took from its own agent. A key we took from elsewhere is no loop here: the copy we
   * sent that hub came back. True when it is a retry of what we hold (ACKed again; if our copy
   * waits pinned to that hub, it is ours alone again and takes the recipient's new way); false
   * when the caller takes it as a new message (our copy of it was settled, by that hub).
   */
  takeBack(origin: Link, from: string, id: string): boolean {
    if (!this.#ready) return false;
    const key = messageKey(from, id);
    const s = this.#seen.get(key);
    if (s === undefined || s.cameFrom === origin.node) return this.#retried(origin, key);
    const e = s.entry;
    if (e === undefined || e.state === DONE) {
      this.#dropKey(s);
      s.seq = 0; // its row is on its way out: a RELEASE of the old ACK must not remove it twice
      return false;
    }
    if (e.state === UNSENT && e.pinned && e.via === origin.node) {
      e.pinned = false;
      e.via = '';
      e.queue.pinned--;
      this.#wake.add(e.queue);
    }
    return this.#retried(origin, key, true);
  }

  /**
   * Router `node` says it holds nothing more for `dest` (a hub handed back everything for a name
   * that moved away from it, PROTOCOL.md 15): had it held one of our messages pinned to it, it
   * would have handed it back (`takeBack` unpinned ours then), so those still pinned to it were
   * never there and take the recipient's new way, in their places in the queue.
   */
  unpin(dest: Destination, node: string): void {
    const q = this.#queues.get(dest.key);
    if (q === undefined || q.pinned === 0) return;
    for (let i = q.head; i < q.items.length; i++) {
      const e = q.items[i]!;
      if (e.state !== UNSENT || !e.pinned || e.via !== node) continue;
      e.pinned = false;
      e.via = '';
      q.pinned--;
    }
    if (q.cursor > q.head) q.cursor = q.head;
    this.#wake.add(q);
    this.#schedule();
  }

  /** Messages are held for `dest` (waiting or in flight). */
  holds(dest: Destination): boolean {
    return (this.#queues.get(dest.key)?.count ?? 0) > 0;
  }

  #retried(origin: Link | undefined, key: string, back = false): boolean {
    const seen = this.#seen.get(key);
    if (seen === undefined) return false;
    if (!back && origin !== undefined && origin.isRouter && origin.version >= 2 && seen.cameFrom !== origin.node) {
      // Not a retry (those come from the router we took it from, where it is pinned): it went
      // round a loop back to us. Taking it would leave the sender's only copy in a circle.
      this.#stats.loops++;
      this.#host.nack(origin, seen.ackAs?.id ?? seen.id, seen.ackAs?.from ?? seen.from, WireCode.LOOP, 'the message came back to a router it already passed: a routing loop');
      return true;
    }
    this.#stats.duplicates++;
    if (origin === undefined) return true;
    const e = seen.entry;
    if (e !== undefined && e.state === PENDING) {
      addOrigin(e, origin); // ACKed (or HELD) once stored
    } else if (e !== undefined && e.transit && e.state !== DONE && origin.version >= 2) {
      // Stored, its next router has not answered: HELD again now, the ACK then.
      addOrigin(e, origin);
      origin.channel.send({ type: FrameType.HELD, id: seen.ackAs?.id ?? seen.id, from: seen.ackAs?.from ?? seen.from });
    } else {
      this.#ack(origin, seen, origin.inNum);
    }
    return true;
  }

  /** The next hop took custody (or, for an agent, its application took the message). */
  onAck(link: Link, f: AckFrame): void {
    const hop = this.#hop(link);
    hop.acksIn++;
    const e = hop.inflight.get(messageKey(f.from, f.id));
    if (e !== undefined) this.#acked(link, hop, e);
    // The agent SDK keeps no keys for us to release: its dedup window covers our resends.
    if (link.isRouter) this.#releases.set(link, hop.acksIn);
    this.#schedule();
  }

  /** ACKS (feature ACKS): the messages numbered `first` .. `first + count - 1` on `link` are acknowledged, each as by an ACK. */
  onAcks(link: Link, first: number, count: number): void {
    const hop = this.#hop(link);
    hop.acksIn += count;
    // Numbers never sent (or answered already) are ignored, like an ACK for a message not in flight.
    const end = first + count;
    if (count <= hop.byNum.size) {
      for (let n = first; n < end; n++) {
        const e = hop.byNum.get(n);
        if (e !== undefined) this.#acked(link, hop, e);
      }
    } else {
      for (const [n, e] of hop.byNum) if (n >= first && n < end) this.#acked(link, hop, e);
    }
    if (link.isRouter) this.#releases.set(link, hop.acksIn);
    this.#schedule();
  }

  #acked(link: Link, hop: Hop, e: Entry): void {
    this.#stats.acked++;
    this.tracer?.event(e.m.from, e.m.id, link.kind === 'agent' ? 'delivered' : 'acked', link);
    this.#landed(link, hop, e);
    crashPoint(link.kind === 'agent' ? 'deliver.after-ack' : 'forward.after-ack');
    if (link.kind === 'agent' && (e.m.flags & MsgFlag.RECEIPT) !== 0) this.#report(e, WireCode.OK, '');
    this.#finish(e);
  }

  /**
   * A transit router stored the message and will ACK it once its next router has it: it leaves
   * the window (so other traffic on the link goes on), but stays unsettled (its flow waits).
   */
  onHeld(link: Link, f: HeldFrame): void {
    const hop = this.#hops.get(link);
    const e = hop?.inflight.get(messageKey(f.from, f.id));
    if (hop === undefined || e === undefined || e.held) return;
    e.held = true;
    hop.windowCount--;
    hop.windowBytes -= e.size;
    e.queue.progressAt = this.#o.clock.now();
    e.queue.stalled = false;
    for (const w of hop.waiting) this.#wake.add(w);
    hop.waiting.clear();
    this.#schedule();
  }

  /** The next hop refused the message: it is dropped here and its sender told why. */
  onNack(link: Link, f: NackFrame): void {
    const hop = this.#hops.get(link);
    const e = hop?.inflight.get(messageKey(f.from, f.id));
    if (hop === undefined || e === undefined) return;
    this.#stats.nacked++;
    this.tracer?.event(e.m.from, e.m.id, 'nacked', link, `${errorCodeOf(f.code)}: ${f.reason}`);
    this.#landed(link, hop, e);
    if (f.code === WireCode.STORE_UNAVAILABLE && link.isRouter) {
      // That router stored nothing and may later: we keep the message and write it again after a
      // pause (to it, or to another router if the route changed: a NACK answers the pin).
      e.state = UNSENT;
      e.pinned = false;
      e.retryAt = this.#o.clock.now() + STORE_RETRY_MS;
      const q = e.queue;
      if (q.cursor > q.head) q.cursor = q.head;
      this.#delayed.add(q);
      this.#schedule();
      return;
    }
    this.#report(e, f.code, f.reason);
    this.#finish(e);
    this.#schedule();
  }

  /** The hop we acked has settled its first `count` ACKs on this link: forget their keys. */
  onRelease(link: Link, count: number): void {
    const hop = this.#hops.get(link);
    if (hop === undefined) return;
    const n = Math.min(count - hop.ackBase, hop.acked.length);
    if (n <= 0) return;
    for (let i = 0; i < n; i++) {
      const s = hop.acked[i]!;
      if (s.owner === link) this.#dropKey(s);
    }
    hop.acked = hop.acked.slice(n);
    hop.ackBase += n;
    this.#schedule();
  }

  /** Queues that may now have a link to send on (an agent connected, a route or uplink came up). */
  wake(dest?: Destination): void {
    if (dest === undefined) {
      for (const q of this.#queues.values()) this.#wake.add(q);
    } else {
      const q = this.#queues.get(dest.key);
      if (q !== undefined) this.#wake.add(q);
    }
    this.#schedule();
  }

  /** Wakes every domain queue (a route changed: any of them may go another way now). */
  wakeDomains(): void {
    for (const q of this.#queues.values()) if (q.dest.kind === 'domain') this.#wake.add(q);
    this.#schedule();
  }

  /** Reliable messages in flight on `link` (for operators). */
  inflightOn(link: Link): number {
    return this.#hops.get(link)?.inflight.size ?? 0;
  }

  linkDown(link: Link): void {
    const hop = this.#hops.get(link);
    this.#hops.delete(link);
    for (const s of hop?.acked ?? []) if (s.owner === link) this.#orphan(s);
    for (const e of hop?.inflight.values() ?? []) {
      e.state = UNSENT;
      e.outNum = 0;
      e.held = false;
      e.link = undefined;
      const q = e.queue;
      q.inflight--;
      forgetLink(q, link);
      // Still pinned to that router (it may have it); an agent's queue just sends again.
      if (e.pinned) q.pinned++;
      if (q.cursor > q.head) q.cursor = q.head;
      this.#wake.add(q);
    }
    for (const q of hop?.waiting ?? []) this.#wake.add(q);
    for (const q of this.#queues.values()) {
      q.blocked.delete(link);
      // Its next hop is gone: the queue now waits for an offline recipient, where its limits
      // apply instead of holding the senders up.
      if (q.blocked.size === 0) continue;
      const next = this.#host.nextHop(q.dest);
      if (next === undefined || next === link) {
        for (const l of q.blocked) l.letGo();
        q.blocked.clear();
      }
    }
    this.#releases.delete(link);
    this.#schedule();
  }

  /** A router link came up: messages pinned to its node can go back to it. */
  linkUp(link: Link): void {
    if (!link.isRouter) return;
    for (const q of this.#queues.values()) if (q.pinned > 0) this.#wake.add(q);
    this.#schedule();
  }

  /** Hands what was decided to the store (a durable store commits it when closed), then stops. */
  close(): void {
    if (this.#closed) return;
    this.#settleNow = true;
    if (this.#ready) this.#flush();
    this.#closed = true;
    this.#o.clock.clearTimeout(this.#timer);
    if (this.#settleTimer !== undefined) this.#o.clock.clearTimeout(this.#settleTimer);
  }

  #queue(dest: Destination): Queue {
    let q = this.#queues.get(dest.key);
    if (q === undefined) {
      q = new Queue(dest);
      this.#queues.set(dest.key, q);
    }
    return q;
  }

  #hop(link: Link): Hop {
    let h = this.#hops.get(link);
    if (h === undefined) {
      h = new Hop();
      this.#hops.set(link, h);
    }
    return h;
  }

  #hold(q: Queue, e: Entry): void {
    this.#bodyBytes += e.m.body.length;
    q.items.push(e);
    q.count++;
    q.bytes += e.size;
    this.#stats.stored++;
    this.#stats.storedBytes += e.size;
  }

  /** Acknowledges `s` to `origin`: by `num` where the link numbers its MSGs (feature ACKS), else by key. */
  #ack(origin: Link, s: Seen, num: number): void {
    if (!origin.up) {
      this.#orphan(s);
      return;
    }
    if (num > 0) origin.channel.ack(num);
    else origin.channel.send({ type: FrameType.ACK, id: s.ackAs?.id ?? s.id, from: s.ackAs?.from ?? s.from });
    s.owner = origin;
    const hop = this.#hop(origin);
    hop.acked.push(s);
    // A peer that never releases (a minimal client) must not grow this without bound: its
    // oldest keys wait out the window like those of a lost link.
    if (hop.acked.length > this.#o.maxUnreleasedPerLink) {
      const old = hop.acked.shift()!;
      hop.ackBase++;
      if (old.owner === origin) this.#orphan(old);
    }
  }

  /** Forgets a key; its row goes too unless its message is still held (then it goes with it). */
  #dropKey(s: Seen): void {
    // A message taken back anew under the same key has a Seen of its own: leave that one.
    if (this.#seen.get(s.key) === s) this.#seen.delete(s.key);
    if (s.entry === undefined && s.seq !== 0) this.#removals.push(s.seq);
  }

  /** No live link will release `s`: it waits out the window from now. */
  #orphan(s: Seen): void {
    s.owner = undefined;
    s.at = this.#o.clock.now();
    if (s.listed === true) return;
    s.listed = true;
    this.#leftovers.push(s);
  }

  /** Pauses `origin` while `q` backs up behind a connected next hop that is slower than its senders. */
  #backpressure(origin: Link, q: Queue): void {
    if (q.count - q.inflight <= this.#o.queueHighWater || !origin.channel.canPause || q.blocked.has(origin) || q.stalled) return;
    if (this.#host.nextHop(q.dest) === undefined) return; // offline: the queue limits apply instead
    if (q.blocked.size === 0) q.progressAt = this.#o.clock.now();
    q.blocked.add(origin);
    origin.hold();
    this.#host.paused();
  }

  #unblock(q: Queue): void {
    if (q.blocked.size === 0 || q.count - q.inflight > this.#o.queueHighWater / 2) return;
    for (const l of q.blocked) l.letGo();
    q.blocked.clear();
  }

  /** Removes `e` from its link's in-flight window. */
  #landed(link: Link, hop: Hop, e: Entry): void {
    hop.inflight.delete(e.key);
    if (e.outNum !== 0) {
      hop.byNum.delete(e.outNum);
      e.outNum = 0;
    }
    if (!e.held) {
      hop.windowCount--;
      hop.windowBytes -= e.size;
    }
    e.held = false;
    e.link = undefined;
    const q = e.queue;
    q.inflight--;
    forgetLink(q, link);
    q.progressAt = this.#o.clock.now();
    q.stalled = false;
    this.#wake.add(q);
    for (const w of hop.waiting) this.#wake.add(w);
    hop.waiting.clear();
  }

  /** `e` leaves this router: its copy is removed (in the next commit). */
  #finish(e: Entry): void {
    if (e.state === DONE) return;
    const wasPending = e.state === PENDING;
    if (e.transit && !wasPending) {
      // Settled further on (or reported): now the hop before may let go of its copy.
      const s = this.#seen.get(e.key);
      if (s !== undefined && s.entry === e) {
        e.origins.forEach((o, i) => this.#ack(o, s, e.nums[i] ?? 0));
        if (s.owner === undefined) this.#orphan(s);
      }
      e.origins = NO_LINKS;
      e.nums = NO_NUMS;
    }
    const q = e.queue;
    if (e.state === UNSENT && e.pinned) q.pinned--;
    e.state = DONE;
    q.count--;
    q.bytes -= e.size;
    this.#stats.stored--;
    this.#stats.storedBytes -= e.size;
    // Done entries stay in the queue's array for a while: their bodies must not.
    this.#bodyBytes -= e.m.body.length;
    e.m.body = EMPTY;
    if (e.owner !== undefined) {
      this.#quotas.unstore(e.owner, e.size);
      e.owner = undefined;
    }
    if (!wasPending) {
      // The key stays in the row while it may still be retried; else the row goes.
      const s = this.#seen.get(e.key);
      if (s !== undefined && s.entry === e) {
        s.entry = undefined;
        this.#retires.push(e.seq);
      } else {
        this.#removals.push(e.seq);
      }
    }
    while (q.head < q.items.length && q.items[q.head]!.state === DONE) q.head++;
    if (q.cursor < q.head) q.cursor = q.head;
    if (q.head > 64 && q.head * 2 > q.items.length) {
      q.items.splice(0, q.head);
      q.cursor -= q.head;
      q.head = 0;
    }
    if (q.count === 0 && q.inflight === 0) {
      q.items.length = 0;
      q.head = q.cursor = 0;
      if (q.blocked.size === 0) this.#queues.delete(q.key);
      if (q.dest.kind !== 'domain') this.#host.emptied(q.dest);
    }
    this.#unblock(q);
  }

  /** Tells the sender of `e` what became of it, with a REPORT message. Never about a report. */
  #report(e: Entry, code: number, reason: string): void {
    const o = this.#o;
    if ((e.m.flags & MsgFlag.REPORT) !== 0) {
      this.#stats.reportsDropped++;
      o.logger.warn('report.dropped', 'a report could not be delivered and was dropped', { from: e.m.from, to: e.m.to, code, reason });
      return;
    }
    const r = this.#host.route(e.m.from);
    if (r === undefined) {
      this.#stats.reportsDropped++;
      return;
    }
    this.tracer?.report(e.m.from, e.m.id, e.m.to, code, reason);
    this.#stats.reports++;
    this.reportsByCode.set(code, (this.reportsByCode.get(code) ?? 0) + 1);
    const ref = r.ref(e.m.id);
    const body = encodeReport({ code, ref, reason: reason.slice(0, 1024) });
    // In bytes, on a code point: the id must fit its 255-byte field, and read back the same.
    this.accept(undefined, { from: e.m.to, id: `~${truncateUtf8(ref, 200)}.${reportId()}`, to: r.to, flags: MsgFlag.REPORT, hops: r.hops, body }, r.dest);
  }

  #schedule(): void {
    if (this.#scheduled || this.#closed) return;
    this.#scheduled = true;
    this.#o.scheduler(() => this.#flush());
  }

  /** Once per I/O phase: one store commit for everything decided in it, then sends. */
  #flush(): void {
    this.#scheduled = false;
    if (this.#closed) return;
    const appends = this.#appends;
    if (appends.length > 0) {
      this.#appends = [];
      this.#store.append(appends.map(toNew)).then(
        (seqs) => {
          this.#health.succeeded();
          this.#stored(appends, seqs);
        },
        (err: unknown) => this.#appendFailed(appends, err),
      );
    }
    if (this.#repins.length > 0) {
      const repins = this.#repins;
      this.#repins = [];
      // Written only once durable: a restarted router must know where they may be.
      this.#store.repin(repins.map((e) => ({ seq: e.seq, via: e.via }))).then(
        () => {
          this.#health.succeeded();
          for (const e of repins) {
            e.repinning = false;
            this.#wake.add(e.queue);
          }
          this.#schedule();
        },
        (err: unknown) => {
          // Still `repinning`: they wait, unsent, for a later commit of their `via`.
          if (this.#unavailable(err)) for (const e of repins) if (e.state !== DONE) this.#repins.push(e);
        },
      );
    }
    const settling = this.#retires.length > 0 || this.#removals.length > 0 || this.#releases.size > 0;
    // Settling waits for a commit of new messages (or settleDelayMs): alone it would cost an
    // fsync that the next sender's commit then waits behind.
    if (settling && appends.length === 0 && this.#o.settleDelayMs > 0 && !this.#settleNow) {
      if (this.#settleTimer === undefined) {
        this.#settleTimer = this.#o.clock.setTimeout(() => {
          this.#settleTimer = undefined;
          this.#settleNow = true;
          this.#schedule();
        }, this.#o.settleDelayMs);
      }
    } else if (settling) {
      // (An armed timer is left to fire: re-arming it per commit would cost more than its flush.)
      this.#settleNow = false;
      const retires = this.#retires;
      const removals = this.#removals;
      const releases = [...this.#releases];
      this.#retires = [];
      this.#removals = [];
      this.#releases.clear();
      // Released only once durable: after a crash we must not send again what the next hop
      // may then forget. That includes the removals of an earlier commit that failed.
      const failuresBefore = this.#removeFailures;
      Promise.all([this.#store.retire(retires), this.#store.remove(removals)]).then(
        () => {
          // A commit that wrote nothing proves nothing about the disk.
          if (retires.length > 0 || removals.length > 0) this.#health.succeeded();
          if (this.#removeFailures !== failuresBefore) {
            this.#keepReleases(releases);
            this.#schedule();
            return;
          }
          crashPoint('forward.after-remove');
          for (const [link, count] of releases) if (link.up) link.channel.send({ type: FrameType.RELEASE, count });
        },
        (err: unknown) => {
          if (!this.#unavailable(err)) return;
          // Kept for a later commit. Until then a crash would send these messages again: a
          // duplicate the receiver drops, as it still knows their keys (not yet released).
          this.#removeFailures++;
          this.#retires = retires.concat(this.#retires);
          this.#removals = removals.concat(this.#removals);
          this.#keepReleases(releases);
        },
      );
    }
    for (const q of this.#wake) this.#pump(q);
    this.#wake.clear();
  }

  /** True for a commit that may succeed later (the router goes on); otherwise the router stops. */
  #unavailable(err: unknown): boolean {
    if (!isStoreUnavailable(err)) {
      this.#host.fatal(err);
      return false;
    }
    if (!this.#closed) this.#health.failed(err);
    return true;
  }

  /** RELEASEs not sent because their removals are not durable: they go with a later commit. */
  #keepReleases(releases: Array<[Link, number]>): void {
    for (const [link, count] of releases) if (link.up && (this.#releases.get(link) ?? -1) < count) this.#releases.set(link, count);
  }

  /**
   * Nothing of a failed append was stored: its senders hear NACK STORE_UNAVAILABLE (they may
   * send again: the key is forgotten, so that is a new message). Reports made here are kept and
   * appended again with a later commit: nobody would send them again.
   */
  #appendFailed(entries: Entry[], err: unknown): void {
    if (!this.#unavailable(err)) return;
    const reason = `this router cannot store messages now (${err instanceof Error ? err.message : String(err)}); nothing was stored: send it again later`;
    for (const e of entries) {
      const s = this.#seen.get(e.key);
      const mine = s !== undefined && s.entry === e;
      if (e.state === DONE) {
        if (mine) this.#seen.delete(e.key);
        continue;
      }
      if (e.local) {
        this.#appends.push(e);
        continue;
      }
      if (mine) this.#seen.delete(e.key);
      this.#health.refused++;
      for (const o of e.origins) if (o.up) this.#host.nack(o, s?.ackAs?.id ?? e.m.id, s?.ackAs?.from ?? e.m.from, WireCode.STORE_UNAVAILABLE, reason);
      e.origins = NO_LINKS;
      e.nums = NO_NUMS;
      this.#finish(e);
    }
  }

  #stored(entries: Entry[], seqs: number[]): void {
    entries.forEach((e, i) => {
      e.seq = seqs[i] ?? 0;
      const s = this.#seen.get(e.key);
      if (s !== undefined && s.entry === e) s.seq = e.seq;
      if (e.state === DONE) {
        this.#removals.push(e.seq); // expired or refused while it committed
        return;
      }
      e.state = UNSENT;
      this.tracer?.event(e.m.from, e.m.id, 'stored', undefined, undefined, e.m.to);
      // Durable now: past the memory budget its body lives in the store only.
      if (this.#bodyBytes > this.#o.maxBodyMemoryBytes) this.#evict(e);
      crashPoint('accept.after-store');
      if (s !== undefined && e.transit) {
        // The hop before hears HELD now and the ACK when the next router has it. A version 1
        // router knows no HELD: it gets the ACK now (its flows keep order up to here only).
        const later: Link[] = [];
        const laterNums: number[] = [];
        e.origins.forEach((o, i) => {
          if (o.version >= 2) {
            if (o.up) o.channel.send({ type: FrameType.HELD, id: s.ackAs?.id ?? s.id, from: s.ackAs?.from ?? s.from });
            later.push(o);
            laterNums.push(e.nums[i] ?? 0);
          } else this.#ack(o, s, e.nums[i] ?? 0);
        });
        e.origins = later;
        e.nums = laterNums;
      } else if (s !== undefined) {
        for (let i = 0; i < e.origins.length; i++) this.#ack(e.origins[i]!, s, e.nums[i] ?? 0);
        // Made here (a report): nobody will retry it to us, so its key is not needed. Every
        // sender gone: nobody will release the key, so it waits out the window.
        if (e.local) this.#dropKey(s);
        else if (s.owner === undefined) this.#orphan(s);
        e.origins = NO_LINKS;
        e.nums = NO_NUMS;
      }
      crashPoint('accept.after-ack');
      this.#wake.add(e.queue);
    });
    // Sent on now, not after one more turn of the event loop: a commit's messages leave with its ACKs.
    if (this.#closed) return;
    this.#scheduled = true;
    this.#flush();
  }

  /** Sends what `q` may send now: in order per flow, within the window of each link. */
  #pump(q: Queue): void {
    if (q.count === 0) return;
    const target = this.#host.nextHop(q.dest);
    if (q.pinned > 0) this.#pumpPinned(q, target);
    if (target === undefined || !target.up) return;
    // The common case: nothing pinned elsewhere, nothing in flight on another link. Then every
    // message before the cursor is sent or done and the pass starts there.
    const fast = q.pinned === 0 && (q.links.size === 0 || (q.links.size === 1 && q.links.has(target)));
    const hop = this.#hop(target);
    const o = this.#o;
    let waitFlows: Set<string> | undefined;
    let firstWaiting = -1;
    let scanned = 0;
    const now = o.clock.now();
    let i = fast ? q.cursor : q.head;
    for (; i < q.items.length; i++) {
      const e = q.items[i]!;
      if (e.state === PENDING) break;
      if (e.state === DONE) continue;
      if (e.state === SENT) {
        // In flight elsewhere: its flow may not overtake it on this link.
        if (e.link !== target) (waitFlows ??= new Set()).add(e.m.from);
        continue;
      }
      if (firstWaiting >= 0 && ++scanned > MAX_SCAN) break;
      const flow = e.m.from;
      let wait = waitFlows?.has(flow) === true || e.repinning || (e.pinned && e.via !== target.node);
      if (!wait && e.retryAt > now) {
        this.#delayed.add(q);
        wait = true;
      }
      // A route that leads back where the message came from: it waits for another. (Inside a
      // domain a message may go back: a hub hands back what it held for a name that moved.)
      if (!wait && q.dest.kind === 'domain' && target.isRouter && e.cameFrom !== '' && target.node === e.cameFrom) wait = true;
      if (!wait && target.isRouter && e.via !== target.node) {
        // Never written anywhere (else it would be pinned): record where it goes, durably, first.
        e.via = target.node;
        e.repinning = true;
        this.#repins.push(e);
        this.#schedule();
        wait = true;
      }
      if (wait) {
        (waitFlows ??= new Set()).add(flow);
        if (firstWaiting < 0) firstWaiting = i;
        continue;
      }
      if (hop.windowCount >= o.maxInFlightPerLink || (hop.windowCount > 0 && hop.windowBytes + e.size > o.maxInFlightBytesPerLink)) {
        hop.waiting.add(q);
        break;
      }
      if (e.evicted) {
        // Its body is in the store only: read it (and the next ones') back, then go on from here.
        this.#readBack(q, i);
        break;
      }
      if (!this.#send(q, e, target, hop)) continue;
    }
    q.cursor = firstWaiting >= 0 ? firstWaiting : i;
    this.#unblock(q);
  }

  /** Messages pinned to a router other than the queue's next hop go back to it while it is connected. */
  #pumpPinned(q: Queue, target: Link | undefined): void {
    const o = this.#o;
    let scanned = 0;
    // A flow whose earlier message could not go now: its later ones may not overtake it.
    let held: Set<string> | undefined;
    for (let i = q.head; i < q.items.length && scanned < MAX_SCAN; i++) {
      const e = q.items[i]!;
      if (e.state === PENDING) break;
      if (e.state !== UNSENT || !e.pinned || e.via === target?.node) continue;
      scanned++;
      if (held?.has(e.m.from) === true) continue;
      if (e.retryAt > o.clock.now()) {
        this.#delayed.add(q);
        (held ??= new Set()).add(e.m.from);
        continue;
      }
      if (this.#host.handingBack(q.dest, e.via)) {
        (held ??= new Set()).add(e.m.from);
        continue;
      }
      const link = this.#host.linkTo(e.via);
      const hop = link === undefined || !link.up ? undefined : this.#hop(link);
      if (link === undefined || hop === undefined || hop.windowCount >= o.maxInFlightPerLink || (hop.windowCount > 0 && hop.windowBytes + e.size > o.maxInFlightBytesPerLink)) {
        hop?.waiting.add(q);
        (held ??= new Set()).add(e.m.from);
        continue;
      }
      if (e.evicted) {
        this.#readBack(q, i);
        (held ??= new Set()).add(e.m.from);
        continue;
      }
      this.#send(q, e, link, hop);
    }
  }

  /** Leaves the body of a stored message in the store only (it is read back before it is sent). */
  #evict(e: Entry): void {
    if (e.evicted || e.m.body.length === 0 || e.state !== UNSENT) return;
    this.#bodyBytes -= e.m.body.length;
    e.m.body = EMPTY;
    e.evicted = true;
    this.#stats.bodiesEvicted++;
  }

  /**
   * Reads back the bodies of the evicted messages of `q` from index `from` on (up to MAX_READ, or
   * about a link's in-flight bytes), then wakes the queue. One read per queue at a time.
   */
  #readBack(q: Queue, from: number): void {
    if (this.#reading.has(q)) return;
    const batch: Entry[] = [];
    let bytes = 0;
    for (let i = from; i < q.items.length && batch.length < MAX_READ && bytes < this.#o.maxInFlightBytesPerLink; i++) {
      const e = q.items[i]!;
      if (e.state !== UNSENT || !e.evicted || e.loading) continue;
      e.loading = true;
      batch.push(e);
      bytes += e.size;
    }
    if (batch.length === 0) return;
    this.#reading.add(q);
    const done = (): void => {
      this.#reading.delete(q);
      for (const e of batch) e.loading = false;
      this.#wake.add(q);
      this.#schedule();
    };
    this.#store.readBodies(batch.map((e) => e.seq)).then(
      (bodies) => {
        batch.forEach((e, i) => {
          if (e.state === DONE || !e.evicted) return;
          const body = bodies[i];
          if (body === undefined) {
            // The store lost what it said it held: say so to the sender rather than wait for ever.
            this.#report(e, WireCode.INTERNAL, 'this router could not read the message back from its store');
            this.#finish(e);
            return;
          }
          e.m.body = body;
          e.evicted = false;
          this.#bodyBytes += body.length;
          this.#stats.bodiesRead++;
        });
        done();
      },
      (err: unknown) => {
        // A read that failed (an I/O error) is tried again a second later.
        this.#o.logger.warn('store.read_failed', 'could not read message bodies back from the store; trying again', { queue: q.key, error: err instanceof Error ? err.message : String(err) });
        this.#reading.delete(q);
        for (const e of batch) e.loading = false;
        this.#o.clock.setTimeout(() => {
          if (this.#closed) return;
          this.#wake.add(q);
          this.#schedule();
        }, 1000);
      },
    );
  }

  /** Writes `e` to `link`; false when it was refused here instead (too large, not encodable). */
  #send(q: Queue, e: Entry, link: Link, hop: Hop): boolean {
    const m = e.m;
    if (link.isRouter && link.version < 2 && (m.from.charCodeAt(0) === 0x7e || m.to.charCodeAt(0) === 0x7e || (m.flags & MsgFlag.ANONYMOUS) !== 0)) {
      // A route that changed since it was accepted now leads through a version 1 router, which cannot read a handle.
      this.#report(e, WireCode.FORBIDDEN, 'the next router speaks protocol 1, which cannot carry anonymous messages and reply handles');
      this.#finish(e);
      return false;
    }
    const frameSize = msgLength(m.id, m.from, m.to, m.body.length);
    if (frameSize > link.maxFrame) {
      this.#report(e, WireCode.FRAME_TOO_LARGE, `the next hop accepts frames of at most ${link.maxFrame} bytes; this one has ${frameSize}`);
      this.#finish(e);
      return false;
    }
    let num: number;
    try {
      num = link.channel.msg(m.flags, m.hops, m.id, m.from, m.to, m.body);
    } catch (err) {
      // A message the codec cannot write (a bug above it): refuse that one, not the router.
      this.#report(e, WireCode.INTERNAL, `this router could not write the message: ${(err as Error).message}`);
      this.#finish(e);
      return false;
    }
    this.tracer?.event(m.from, m.id, 'forwarded', link, undefined, m.to);
    if (e.pinned) q.pinned--;
    e.state = SENT;
    e.sentOnce = true;
    if (link.isRouter) e.pinned = true;
    e.link = link;
    hop.inflight.set(e.key, e);
    e.outNum = num;
    if (num !== 0) hop.byNum.set(num, e);
    hop.windowCount++;
    hop.windowBytes += e.size;
    q.inflight++;
    q.links.set(link, (q.links.get(link) ?? 0) + 1);
    this.#host.sent(link);
    crashPoint(link.kind === 'agent' ? 'deliver.after-send' : 'forward.after-send');
    return true;
  }

  #armTimer(): void {
    if (this.#closed) return;
    this.#timer = this.#o.clock.setTimeout(() => {
      for (const q of this.#delayed) this.#wake.add(q);
      this.#delayed.clear();
      if (this.#health.failing) this.#probe();
      this.#expire();
      this.#armTimer();
    }, STORE_RETRY_MS);
  }

  /**
   * While the store fails: what was kept goes into the commit of this tick's flush; with nothing
   * kept, a small value is written, so that the failing state ends without waiting for traffic.
   */
  #probe(): void {
    if (this.#appends.length > 0 || this.#retires.length > 0 || this.#removals.length > 0 || this.#repins.length > 0 || this.#releases.size > 0) return;
    this.#store.setValue(PROBE_KEY, new TextEncoder().encode(String(this.#o.clock.now()))).then(
      () => this.#health.succeeded(),
      (err: unknown) => void this.#unavailable(err),
    );
  }

  /** Drops messages that waited past their age and keys of lost links past the window. */
  #expire(): void {
    const o = this.#o;
    const now = o.clock.now();
    for (const q of [...this.#queues.values()]) {
      if (q.blocked.size > 0 && now - q.progressAt >= o.maxStallMs) {
        // A hung recipient must not hold its senders (or a tunnel) for ever.
        q.stalled = true;
        o.logger.warn('queue.stalled', 'a queue lets its senders go: its next hop acknowledged nothing', { queue: q.key, stalled_ms: now - q.progressAt, waiting: q.count - q.inflight });
        for (const l of q.blocked) l.letGo();
        q.blocked.clear();
      }
      for (let i = q.head; i < q.items.length; i++) {
        const e = q.items[i]!;
        if (e.expiresAt > now) break; // ages grow along a queue
        if (e.state !== UNSENT) continue; // in flight: the next hop may have it
        this.#stats.expired++;
        this.tracer?.event(e.m.from, e.m.id, 'expired');
        this.#report(
          e,
          WireCode.EXPIRED,
          e.sentOnce || e.pinned
            ? `not confirmed within ${o.maxMessageAgeMs} ms; it was sent to the next hop once, before that link was lost, so it may still arrive`
            : `not delivered within ${o.maxMessageAgeMs} ms`,
        );
        this.#finish(e);
      }
    }
    const cutoff = now - o.dedupWindowMs;
    let n = 0;
    const over = this.#seen.size - o.maxSeenKeys;
    for (const s of this.#leftovers) {
      if (s.owner === undefined && s.at > cutoff && n >= over) break;
      n++;
      s.listed = false;
      if (s.owner !== undefined || this.#seen.get(s.key) !== s || s.entry?.state === PENDING) continue;
      if (s.at > cutoff) this.#stats.dedupEvicted++;
      this.#dropKey(s);
    }
    if (n > 0) this.#leftovers = this.#leftovers.slice(n);
    this.#schedule();
  }
}

/** The `length` of a MSG frame (type byte and body): addresses are ASCII, an id may not be. */
export function msgLength(id: string, from: string, to: string, bodyBytes: number): number {
  return 6 + utf8Length(id) + from.length + to.length + bodyBytes;
}

function forgetLink(q: Queue, link: Link): void {
  const n = (q.links.get(link) ?? 0) - 1;
  if (n > 0) q.links.set(link, n);
  else q.links.delete(link);
}

function toNew(e: Entry): NewMessage {
  const m = e.m;
  return { queue: e.queue.key, from: m.from, id: m.id, to: m.to, flags: m.flags, hops: m.hops, body: m.body, storedAt: e.storedAt, expiresAt: e.expiresAt, cameFrom: e.cameFrom, via: e.via };
}

function reportId(): string {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(36)).join('');
}
