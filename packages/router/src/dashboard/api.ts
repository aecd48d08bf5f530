import type { LinkInfo } from '@postern/core';
import type { DashboardContext } from './context.js';
import type { LinkView } from './api-types.js';

/** Largest page of /api/agents and /api/queues. */
export const MAX_PAGE = 500;


/** Per-link message rates, filled by the ticker (stream.ts); key: the link's id. */
export type Rates = ReadonlyMap<string, { inPerSec: number; outPerSec: number; rttMs: number | null }>;

const transportOf = (t: string): 'ws' | 'http' | null => (t === 'ws' || t === 'http' ? t : null);

export function overview(ctx: DashboardContext): unknown {
  const r = ctx.router;
  const s = r.stats();
  const heldView: Record<string, { messages: number; bytes: number; oldestAt: number | null }> = {};
  for (const [cls, h] of Object.entries(r.held())) heldView[cls] = { messages: h.messages, bytes: h.bytes, oldestAt: null };
  for (const q of r.queues()) {
    const c = heldView[q.dest.kind];
    if (c !== undefined && q.oldestAt !== null && (c.oldestAt === null || q.oldestAt < c.oldestAt)) c.oldestAt = q.oldestAt;
  }
  return {
    name: r.domain,
    domain: r.domain,
    node: r.node,
    role: ctx.role,
    version: ctx.version,
    startedAt: ctx.startedAt,
    /** Whether the dashboard asks for the admin token (the page then offers to log out). */
    login: ctx.token !== undefined,
    now: Date.now(),
    store: r.storeState(),
    counts: { agents: s.agents, downlinks: s.downlinks, uplinks: s.uplinks, peers: s.peers, hubs: s.hubs, connections: s.agents + s.downlinks + s.uplinks + s.peers + s.hubs },
    held: heldView,
    totals: {
      msgsIn: s.msgsIn,
      delivered: s.msgsDelivered,
      forwarded: s.msgsForwarded,
      acked: s.acked,
      nacked: s.nacked,
      dropped: s.msgsDropped,
      expired: s.expired,
      duplicates: s.duplicates,
    },
  };
}

/** Router links up now, plus the dialed ones that are down (state 'down'). */
export function links(ctx: DashboardContext, rates: Rates): { links: LinkView[] } {
  const dialed = ctx.dialed();
  const out: LinkView[] = [];
  const seen = new Set<string>();
  for (const l of ctx.router.links(true)) {
    const d = l.kind === 'uplink' || l.kind === 'peer' ? dialed.find((x) => x.connected && x.node === l.node && x.mode === l.kind) : undefined;
    if (d !== undefined) seen.add(d.url);
    out.push(linkView(l, d?.url, rates));
  }
  const upNodes = new Set(out.map((l) => l.node));
  for (const d of dialed) {
    if (seen.has(d.url)) continue;
    // A peer whose own link to us is up (ours stands by): that link is listed already.
    if (!d.connected && d.node !== '' && upNodes.has(d.node)) continue;
    out.push({
      key: `dial ${d.mode} ${d.url}`,
      kind: d.mode,
      dialed: true,
      url: d.url,
      node: d.node,
      domains: [],
      state: d.connected ? 'up' : 'down',
      transport: d.transport,
      remote: '',
      since: d.since,
      rttMs: null,
      inPerSec: 0,
      outPerSec: 0,
      pending: 0,
    });
  }
  return { links: out };
}

function linkView(l: LinkInfo, url: string | undefined, rates: Rates): LinkView {
  const r = rates.get(l.id);
  return {
    key: url === undefined ? `${l.kind} ${l.id}` : `dial ${l.kind} ${url}`,
    kind: l.kind as LinkView['kind'],
    dialed: url !== undefined,
    ...(url === undefined ? {} : { url }),
    node: l.node,
    domains: l.domains,
    state: 'up',
    transport: transportOf(l.transport),
    remote: l.remote,
    since: l.since,
    rttMs: r?.rttMs ?? null,
    inPerSec: r?.inPerSec ?? 0,
    outPerSec: r?.outPerSec ?? 0,
    pending: l.pending,
  };
}

/** A page of the connected agents, sorted by address; `q` matches name, id or address (case-insensitive). */
export function agents(ctx: DashboardContext, q: string, offset: number, limit: number): unknown {
  const all = ctx.router.links().filter((l) => l.kind === 'agent');
  const needle = q.toLowerCase();
  const matched = needle === '' ? all : all.filter((l) => l.name.toLowerCase().includes(needle) || l.id.toLowerCase().includes(needle) || l.address.toLowerCase().includes(needle));
  matched.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  const queued = new Map<string, { messages: number; bytes: number }>();
  for (const q of ctx.router.queues()) if (q.dest.kind === 'agent') queued.set(q.dest.local, { messages: q.messages, bytes: q.bytes });
  return {
    total: all.length,
    matched: matched.length,
    offset,
    limit,
    agents: matched.slice(offset, offset + limit).map((l) => {
      const byId = queued.get(l.id);
      const byName = l.name === '' ? undefined : queued.get(l.name);
      return {
        id: l.id,
        name: l.name === '' ? null : l.name,
        address: l.address,
        transport: transportOf(l.transport),
        remote: l.remote,
        since: l.since,
        queued: (byId?.messages ?? 0) + (byName?.messages ?? 0),
        queuedBytes: (byId?.bytes ?? 0) + (byName?.bytes ?? 0),
      };
    }),
  };
}

/** A page of the queues holding messages, most messages first. */
export function queues(ctx: DashboardContext, offset: number, limit: number): unknown {
  const all = ctx.router.queues();
  all.sort((a, b) => b.messages - a.messages);
  return {
    total: all.length,
    offset,
    limit,
    queues: all.slice(offset, offset + limit).map((q) => ({ kind: q.dest.kind, dest: q.dest.kind === 'domain' ? q.dest.domain : q.dest.local, messages: q.messages, bytes: q.bytes, oldestAt: q.oldestAt })),
  };
}

/** The routes this router knows: each domain with its ways, best first. */
export function routes(ctx: DashboardContext): unknown {
  const out = [...ctx.router.routeTable()].map(([domain, via]) => ({ domain, via: via.map((v) => ({ node: v.node, kind: v.kind, metric: v.metric, path: [...v.path] })) }));
  out.sort((a, b) => (a.domain < b.domain ? -1 : a.domain > b.domain ? 1 : 0));
  return { routes: out };
}
