import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Router } from '@postern/core';
import { errorCodeOf } from '@postern/protocol';

/** What the metrics read of the links this router dials, at scrape time. */
export interface DialedState {
  url: string;
  mode: 'uplink' | 'peer';
  connected: boolean;
  /** The transport rung in use (or last tried): `ws` or `http` (long-poll). */
  transport: 'ws' | 'http';
}

export interface RouterMetrics {
  readonly registry: Registry;
  /** Observes one group commit of the store (seconds are computed here). */
  commit(ms: number, ok: boolean): void;
  /** Prometheus text exposition of every metric. */
  scrape(): Promise<string>;
}

/** Commit latency buckets, seconds: a commit is one transaction with its fsync, sub-millisecond on a fast disk to seconds on a slow one. */
const COMMIT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

const codeName = (code: number): string => errorCodeOf(code).replace(/^ERR_/, '');

/**
 * The router's Prometheus metrics (docs/OPERATIONS.md lists them). Counters the routing core
 * already keeps are read when scraped (collect callbacks), so the message path pays nothing for
 * them; only the commit histogram is fed as it happens, once per group commit. Made only when an
 * admin endpoint is configured; one Registry per router (tests run several in one process).
 */
export function createRouterMetrics(router: Router, info: { role: string; version: string }, dialed: () => DialedState[], longPollSessions: () => number): RouterMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  new Gauge({
    name: 'postern_info',
    help: 'Always 1; the labels say which router this is.',
    labelNames: ['domain', 'node', 'role', 'version'],
    registers,
    collect() {
      this.set({ domain: router.domain, node: router.node, role: info.role, version: info.version }, 1);
    },
  });
  new Gauge({
    name: 'postern_connections',
    help: 'Links up now, by role (agent, downlink: a gateway or router below, uplink, peer, hub) and transport (ws, http long-poll).',
    labelNames: ['role', 'transport'],
    registers,
    collect() {
      this.reset();
      for (const c of router.connectionCounts().values()) this.set({ role: c.kind, transport: c.transport }, c.count);
    },
  });
  new Gauge({
    name: 'postern_long_poll_sessions',
    help: 'HTTP long-poll sessions open now.',
    registers,
    collect() {
      this.set(longPollSessions());
    },
  });
  // Counters kept by the core since start, read at scrape time.
  const fromStats = (name: string, help: string, read: (s: ReturnType<Router['stats']>) => Array<[Record<string, string>, number]>, labelNames: string[] = []): void => {
    new Counter({
      name,
      help,
      labelNames,
      registers,
      collect() {
        this.reset();
        for (const [labels, v] of read(router.stats())) this.inc(labels, v);
      },
    });
  };
  fromStats('postern_messages_in_total', 'Messages taken from agents and router links.', (s) => [[{}, s.msgsIn]]);
  fromStats('postern_messages_out_total', 'Messages handed on: to a local agent, or to another router.', (s) => [[{ to: 'agent' }, s.msgsDelivered], [{ to: 'router' }, s.msgsForwarded]], ['to']);
  fromStats('postern_messages_acked_total', 'Reliable messages their next hop (agent or router) acknowledged.', (s) => [[{}, s.acked]]);
  fromStats('postern_messages_nacked_total', 'Reliable messages their next hop refused (NACK received).', (s) => [[{}, s.nacked]]);
  fromStats('postern_messages_dropped_total', 'Messages dropped: volatile ones shed by congestion, reliable ones expired (maxMessageAgeMs).', (s) => [[{ reason: 'congestion' }, s.msgsDropped], [{ reason: 'expired' }, s.expired]], ['reason']);
  fromStats('postern_duplicates_total', 'Retries recognised by key and acknowledged again without a second copy.', (s) => [[{}, s.duplicates]]);
  fromStats('postern_store_failures_total', 'Store calls that failed with STORE_UNAVAILABLE (disk full, I/O error).', (s) => [[{}, s.storeFailures]]);
  fromStats('postern_connections_refused_total', 'Connections refused by the per-address or per-credential limits or the connect rate.', (s) => [[{}, s.connectionsRefused]]);
  fromStats('postern_rate_limited_total', 'Times a sender went over its message or byte rate.', (s) => [[{}, s.rateLimited]]);
  const byCode = (name: string, help: string, which: 'nacks' | 'reports'): void => {
    new Counter({
      name,
      help,
      labelNames: ['code'],
      registers,
      collect() {
        this.reset();
        for (const [code, n] of router.countsByCode()[which]) this.inc({ code: codeName(code) }, n);
      },
    });
  };
  byCode('postern_nacks_sent_total', 'NACKs this router sent, by wire code (QUEUE_FULL, STORE_UNAVAILABLE, ...).', 'nacks');
  byCode('postern_reports_total', 'Reports this router made, by wire code: OK is a delivery receipt, others say why a message was not delivered.', 'reports');
  const held = (name: string, help: string, field: 'messages' | 'bytes'): void => {
    new Gauge({
      name,
      help,
      labelNames: ['class'],
      registers,
      collect() {
        for (const [cls, h] of Object.entries(router.held())) this.set({ class: cls }, h[field]);
      },
    });
  };
  held('postern_queue_messages', 'Reliable messages held now, by destination class: agent (a local agent), domain (another router), return (names moved between hubs).', 'messages');
  held('postern_queue_bytes', 'Bytes of the reliable messages held now, by destination class.', 'bytes');
  new Gauge({
    name: 'postern_store_up',
    help: '1 while the store commits; 0 while it cannot (reliable messages refused STORE_UNAVAILABLE).',
    registers,
    collect() {
      this.set(router.storeState().ok ? 1 : 0);
    },
  });
  const commits = new Histogram({
    name: 'postern_store_commit_seconds',
    help: 'Time of one group commit of the store (a transaction and its fsync), by result.',
    labelNames: ['result'],
    buckets: COMMIT_BUCKETS,
    registers,
  });
  new Gauge({
    name: 'postern_uplink_up',
    help: 'Links this router dials: 1 up, 0 down (retrying).',
    labelNames: ['url', 'mode'],
    registers,
    collect() {
      this.reset();
      for (const d of dialed()) this.set({ url: d.url, mode: d.mode }, d.connected ? 1 : 0);
    },
  });
  new Gauge({
    name: 'postern_uplink_transport',
    help: 'The transport rung each dialed link uses (1 on the rung in use): ws (WebSocket) or http (long-poll fallback).',
    labelNames: ['url', 'transport'],
    registers,
    collect() {
      this.reset();
      for (const d of dialed()) this.set({ url: d.url, transport: d.transport }, 1);
    },
  });
  return {
    registry,
    commit: (ms, ok) => commits.observe({ result: ok ? 'ok' : 'failed' }, ms / 1000),
    scrape: () => registry.metrics(),
  };
}
