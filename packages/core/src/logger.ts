/**
 * Every event a router logs, by a stable name: `area.what`. JSON logs carry it as `event`, so
 * alerts and dashboards match on it, never on the message text (which may improve freely).
 * docs/OPERATIONS.md lists each one (a test keeps that table complete).
 */
export const LOG_EVENTS = [
  // The process (router package)
  'router.start',
  'router.stopping',
  'router.stopped',
  'router.shutdown_timeout',
  'http.request_failed',
  'origin.refused',
  'dashboard.login_failed',
  'revoked.read',
  'revoked.read_failed',
  // Links this router dials
  'uplink.up',
  'uplink.down',
  'uplink.still_down',
  'uplink.v1_fallback',
  'uplink.transport_fallback',
  'uplink.transport_upgrade',
  'uplink.ws_probe_failed',
  'uplink.fenced',
  'uplink.still_fenced',
  'uplink.fence_check',
  'uplink.fence_lifted',
  'peer.up',
  'peer.down',
  'peer.still_down',
  'peer.standby',
  // Links others dial to it
  'agent.connected',
  'router.linked',
  'link.dialed',
  'link.closed',
  'link.handshake_failed',
  'link.internal_error',
  // Routing
  'route.loop',
  'route.refused',
  'domain.fenced',
  'domain.still_fenced',
  'domain.fence_lifted',
  'move.hold_timeout',
  'move.timeout',
  // Delivery and the store
  'queue.stalled',
  'report.dropped',
  'store.failing',
  'store.recovered',
  'store.fatal',
  'store.read_failed',
  'store.write_failed',
  'presence.read_failed',
] as const;

export type LogEvent = (typeof LOG_EVENTS)[number];

/**
 * Structured logging sink. The router never logs message bodies. `event` is the stable name
 * (LOG_EVENTS), `msg` the sentence for people, `fields` key/value context.
 */
export interface Logger {
  debug(event: LogEvent, msg: string, fields?: Record<string, unknown>): void;
  info(event: LogEvent, msg: string, fields?: Record<string, unknown>): void;
  warn(event: LogEvent, msg: string, fields?: Record<string, unknown>): void;
  error(event: LogEvent, msg: string, fields?: Record<string, unknown>): void;
}

const noop = (): void => {};
export const silentLogger: Logger = Object.freeze({ debug: noop, info: noop, warn: noop, error: noop });
