import { WireCode, errorCodeOf } from '@postern/protocol';
import type { Clock } from './clock.js';
import type { Link, LinkKind } from './link.js';

/** What happened to a message at this router. */
export type TraceEventName = 'received' | 'stored' | 'forwarded' | 'acked' | 'nacked' | 'delivered' | 'report' | 'expired' | 'dropped';

/** One event of a message's path through this router (never its body). */
export interface TraceEvent {
  at: number;
  event: TraceEventName;
  from?: string;
  to?: string;
  /** The link it came over or went to: a router's kind and node id, or an agent's address. */
  link?: { kind: LinkKind; node?: string; agent?: string };
  detail?: string;
}

/** A report other than OK this router made or passed on: a message that was not delivered. */
export interface RecentReport {
  at: number;
  /** The undelivered message's id and its sender and recipient. */
  id: string;
  from: string;
  to: string;
  code: string;
  reason: string;
}

/** Reports kept for operators (docs/LIMITS.md). */
export const RECENT_REPORTS = 200;
/** Events kept per message: a message retried without end must not fill the ring alone. */
export const TRACE_EVENTS_PER_MESSAGE = 64;

/**
 * Message traces and recent undeliverable reports, for operators (the dashboard's path view).
 * Made only when the router is asked to (`trace`): the message path then pays one call per
 * event; without it, one test of an undefined field. Bounded: `capacity` messages (the oldest
 * traced first forgotten), TRACE_EVENTS_PER_MESSAGE events each, RECENT_REPORTS reports.
 */
export class Tracer {
  readonly #byKey = new Map<string, { from: string; id: string; events: TraceEvent[] }>();
  readonly #reports: RecentReport[] = [];
  #next = 0;

  constructor(
    readonly capacity: number,
    readonly clock: Clock,
  ) {}

  /** Records `event` of the message (from, id); `link`: where it came from or went. */
  event(from: string, id: string, event: TraceEventName, link?: Link, detail?: string, to?: string): void {
    const key = `${from} ${id}`;
    let t = this.#byKey.get(key);
    if (t === undefined) {
      if (this.#byKey.size >= this.capacity) {
        const oldest = this.#byKey.keys().next().value;
        if (oldest !== undefined) this.#byKey.delete(oldest);
      }
      t = { from, id, events: [] };
      this.#byKey.set(key, t);
    }
    if (t.events.length >= TRACE_EVENTS_PER_MESSAGE) return;
    const e: TraceEvent = { at: this.clock.now(), event };
    if (to !== undefined) e.to = to;
    if (link !== undefined) e.link = link.isRouter ? { kind: link.kind, node: link.node } : { kind: link.kind, agent: link.address };
    if (detail !== undefined) e.detail = detail;
    t.events.push(e);
  }

  /** A report about (from, id) with `code` passed here or was made here. */
  report(from: string, id: string, to: string, code: number, reason: string, link?: Link): void {
    const name = code === WireCode.OK ? 'OK' : errorCodeOf(code);
    this.event(from, id, 'report', link, code === WireCode.OK ? name : `${name}: ${reason}`);
    if (code === WireCode.OK) return;
    const r: RecentReport = { at: this.clock.now(), id, from, to, code: name, reason };
    if (this.#reports.length < RECENT_REPORTS) this.#reports.push(r);
    else this.#reports[this.#next] = r;
    this.#next = (this.#next + 1) % RECENT_REPORTS;
  }

  /** The traces of messages with this id (of sender `from` when given), oldest event first. */
  find(id: string, from?: string): Array<{ from: string; id: string; events: readonly TraceEvent[] }> {
    if (from !== undefined) {
      const t = this.#byKey.get(`${from} ${id}`);
      return t === undefined ? [] : [t];
    }
    const r = [];
    for (const t of this.#byKey.values()) if (t.id === id) r.push(t);
    return r;
  }

  /** The last `limit` reports, newest first. */
  recentReports(limit: number): RecentReport[] {
    const n = this.#reports.length;
    const r: RecentReport[] = [];
    for (let i = 1; i <= Math.min(limit, n); i++) r.push(this.#reports[(this.#next - i + n) % n]!);
    return r;
  }

  get size(): number {
    return this.#byKey.size;
  }
}
