import type { ServerResponse } from 'node:http';
import type { DashboardContext } from './context.js';
import { links, type Rates } from './api.js';
import type { Tick } from './api-types.js';

/** Limits of the live view (docs/LIMITS.md). */
export const STREAM_LIMITS = Object.freeze({
  /** Event streams open at once per router; past it 503. */
  maxStreams: 32,
  /** Ticks kept for /api/history (one a second: 5 minutes). */
  historyTicks: 300,
  /** Commit times kept per second for the percentiles (the rest are counted only). */
  commitSamples: 4096,
  /** A `: ping` comment this often keeps proxies from closing an idle stream. */
  pingMs: 15_000,
});


interface Totals {
  in: number;
  acked: number;
  nacked: number;
  delivered: number;
  forwarded: number;
}

/**
 * Once a second: the router's counters become a Tick (rates over the last second), kept in a
 * ring of 300 for /api/history and sent to every open event stream; per-link rates are taken
 * from the links' counters at the same time. The link list is sent again only when it changed.
 */
export class Ticker {
  readonly #ctx: DashboardContext;
  readonly #history: Tick[] = [];
  readonly #streams = new Set<ServerResponse>();
  readonly #timer: NodeJS.Timeout;
  #last: Totals;
  #lastLinks = new Map<string, { in: number; out: number }>();
  #rates = new Map<string, { inPerSec: number; outPerSec: number; rttMs: number | null }>();
  #commits: number[] = [];
  #commitCount = 0;
  #linksSig = '';
  #sincePing = 0;

  constructor(ctx: DashboardContext) {
    this.#ctx = ctx;
    this.#last = this.#totals();
    this.#timer = setInterval(() => this.#tick(), 1000);
    this.#timer.unref();
  }

  get rates(): Rates {
    return this.#rates;
  }

  get history(): readonly Tick[] {
    return this.#history;
  }

  get streams(): number {
    return this.#streams.size;
  }

  /** One group commit of the store took `ms`. */
  commit(ms: number): void {
    this.#commitCount++;
    if (this.#commits.length < STREAM_LIMITS.commitSamples) this.#commits.push(ms);
  }

  /** Opens an event stream on `res`; false when the router has as many as it takes. */
  open(res: ServerResponse): boolean {
    if (this.#streams.size >= STREAM_LIMITS.maxStreams) return false;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', 'x-accel-buffering': 'no', connection: 'keep-alive' });
    res.socket?.setNoDelay(true);
    this.#streams.add(res);
    res.on('close', () => this.#streams.delete(res));
    res.write(`retry: 2000\n\nevent: links\ndata: ${JSON.stringify(links(this.#ctx, this.#rates))}\n\n`);
    return true;
  }

  close(): void {
    clearInterval(this.#timer);
    for (const s of this.#streams) s.end();
    this.#streams.clear();
  }

  #totals(): Totals {
    const s = this.#ctx.router.stats();
    return { in: s.msgsIn, acked: s.acked, nacked: s.nacked, delivered: s.msgsDelivered, forwarded: s.msgsForwarded };
  }

  #tick(): void {
    const r = this.#ctx.router;
    const now = this.#totals();
    const last = this.#last;
    this.#last = now;
    const s = r.stats();
    let heldMessages = 0;
    let heldBytes = 0;
    for (const h of Object.values(r.held())) {
      heldMessages += h.messages;
      heldBytes += h.bytes;
    }
    const sorted = this.#commits.sort((a, b) => a - b);
    const pct = (p: number): number => (sorted.length === 0 ? 0 : Math.round((sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0) * 100) / 100);
    const tick: Tick = {
      t: Date.now(),
      in: now.in - last.in,
      out: now.delivered - last.delivered + (now.forwarded - last.forwarded),
      acked: now.acked - last.acked,
      nacked: now.nacked - last.nacked,
      delivered: now.delivered - last.delivered,
      forwarded: now.forwarded - last.forwarded,
      commits: this.#commitCount,
      commitP50Ms: pct(0.5),
      commitP99Ms: pct(0.99),
      agents: s.agents,
      connections: s.agents + s.downlinks + s.uplinks + s.peers + s.hubs,
      heldMessages,
      heldBytes,
    };
    this.#commits = [];
    this.#commitCount = 0;
    this.#history.push(tick);
    if (this.#history.length > STREAM_LIMITS.historyTicks) this.#history.shift();
    this.#linkRates();
    if (this.#streams.size === 0) return;
    let msg = `event: tick\ndata: ${JSON.stringify(tick)}\n\n`;
    const body = links(this.#ctx, this.#rates);
    const sig = body.links.map((l) => `${l.key} ${l.state} ${l.transport ?? ''}`).join('\n');
    if (sig !== this.#linksSig) {
      this.#linksSig = sig;
      msg += `event: links\ndata: ${JSON.stringify(body)}\n\n`;
    }
    this.#sincePing += 1000;
    if (this.#sincePing >= STREAM_LIMITS.pingMs) {
      this.#sincePing = 0;
      msg += ': ping\n\n';
    }
    for (const res of this.#streams) res.write(msg);
  }

  /** Messages per second on each router link over the last second, and its last RTT. */
  #linkRates(): void {
    const next = new Map<string, { in: number; out: number }>();
    const rates = new Map<string, { inPerSec: number; outPerSec: number; rttMs: number | null }>();
    for (const l of this.#ctx.router.linkCounters()) {
      const before = this.#lastLinks.get(l.id);
      next.set(l.id, { in: l.msgsIn, out: l.msgsOut });
      rates.set(l.id, { inPerSec: before === undefined ? 0 : l.msgsIn - before.in, outPerSec: before === undefined ? 0 : l.msgsOut - before.out, rttMs: l.rttMs });
    }
    this.#lastLinks = next;
    this.#rates = rates;
  }
}
