import type { TraceEvent } from '@postern/core';
import type { DashboardContext, DashboardPeer } from './context.js';

/** How long a peer router has to answer for its part of a path. */
export const PEER_TIMEOUT_MS = 2000;
/** Largest answer read from a peer (its trace of one message id is far smaller). */
const MAX_PEER_BYTES = 1024 * 1024;

export interface Hop {
  router: { name: string; domain: string; node: string };
  reachable: boolean;
  error?: string;
  events: Array<TraceEvent & { from?: string }>;
}

/** This router's events for message `id` (of sender `from`, when given), oldest first. */
export function localHop(ctx: DashboardContext, id: string, from: string | undefined): Hop {
  const r = ctx.router;
  const hop: Hop = { router: { name: r.domain, domain: r.domain, node: r.node }, reachable: true, events: [] };
  const tracer = r.tracer;
  if (tracer === undefined) {
    hop.error = 'this router keeps no traces';
    return hop;
  }
  for (const t of tracer.find(id, from)) for (const e of t.events) hop.events.push({ ...e, from: t.from });
  hop.events.sort((a, b) => a.at - b.at);
  return hop;
}

/**
 * The path of message `id`: this router's events and those of the routers in `dashboardPeers`
 * (each asked for its own part, `&local=1`, within PEER_TIMEOUT_MS; one that fails is shown
 * unreachable with the reason). Hops are ordered by their first event.
 */
export async function trace(ctx: DashboardContext, id: string, from: string | undefined): Promise<{ id: string; hops: Hop[] }> {
  const hops = [localHop(ctx, id, from), ...(await Promise.all(ctx.peers.map((p) => peerHop(p, id, from))))];
  return { id, hops: orderHops(hops) };
}

/**
 * Along the path first: a router that forwarded the message to router N comes before N (the
 * clocks of two machines disagree, and within a millisecond times tie); otherwise by first
 * event. Routers with no events (or unreachable) come last.
 */
export function orderHops(hops: Hop[]): Hop[] {
  const depth = new Map<Hop, number>(hops.map((h) => [h, 0]));
  for (let round = 0; round < hops.length; round++) {
    let changed = false;
    for (const a of hops) {
      for (const e of a.events) {
        if (e.event !== 'forwarded' || e.link?.node === undefined) continue;
        const b = hops.find((h) => h !== a && h.router.node === e.link?.node);
        if (b !== undefined && depth.get(b)! <= depth.get(a)!) {
          depth.set(b, depth.get(a)! + 1);
          changed = true;
        }
      }
    }
    if (!changed) break;
  }
  const first = (h: Hop): number => h.events[0]?.at ?? Number.MAX_SAFE_INTEGER;
  return [...hops].sort((a, b) => (a.events.length === 0) !== (b.events.length === 0) ? (a.events.length === 0 ? 1 : -1) : depth.get(a)! - depth.get(b)! || first(a) - first(b));
}

async function peerHop(peer: DashboardPeer, id: string, from: string | undefined): Promise<Hop> {
  const unreachable = (error: string): Hop => ({ router: { name: peer.url, domain: '', node: '' }, reachable: false, error, events: [] });
  const url = `${peer.url.replace(/\/+$/, '')}/api/trace?local=1&id=${encodeURIComponent(id)}${from === undefined ? '' : `&from=${encodeURIComponent(from)}`}`;
  try {
    const res = await fetch(url, {
      headers: peer.token === undefined ? {} : { authorization: `Bearer ${peer.token}` },
      signal: AbortSignal.timeout(PEER_TIMEOUT_MS),
      redirect: 'error',
    });
    const text = await res.text();
    if (!res.ok) return unreachable(`HTTP ${res.status}`);
    if (text.length > MAX_PEER_BYTES) return unreachable('answer too large');
    const body = JSON.parse(text) as { hops?: unknown };
    const hop = Array.isArray(body.hops) ? (body.hops[0] as Hop | undefined) : undefined;
    if (hop === undefined || typeof hop !== 'object' || !Array.isArray(hop.events)) return unreachable('not a trace answer');
    return { router: hop.router, reachable: true, events: hop.events };
  } catch (err) {
    const e = err as Error;
    return unreachable(e.name === 'TimeoutError' ? `no answer within ${PEER_TIMEOUT_MS} ms` : e.message);
  }
}
