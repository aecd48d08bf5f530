import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createSecureContext } from 'node:tls';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { timingSafeEqual } from 'node:crypto';
import { join } from 'node:path';
import { MemoryStore, ROUTER_DEFAULTS, Router, Uplink, armCrashPoint, type BackoffOptions, type Dialer, type Logger, type RouterOptions, type UplinkStatus } from '@postern/core';
import { ConfigError, Feature, isValidDomain } from '@postern/protocol';
import { SqliteStore } from '@postern/store-sqlite';
import { attachWsServer, createNodeWsDialer, resolveAllowedOrigins, toWebSocketUrl, type WsServer } from '@postern/transport-ws/node';
import { createAutoDialer, createLongPollServer, createNodeHttpDialer, type LongPollServer, type LongPollServerOptions } from '@postern/transport-http/node';
import { createTokenAuthenticator, issueToken, tokenId } from './credentials.js';
import { createTrustPolicy, isGrant, parseTrustAnchor, type TrustAnchor } from './grants.js';
import { createAnonymizer, loadNodeKey, nodeIdentity } from './identity.js';
import { formatListen, parseListen, type ListenAddress } from './listen.js';
import { createHmacSessionTokens } from './session-tokens.js';
import { fenceLog } from './fence-log.js';
import { linkLog } from './link-log.js';
import { createRouterMetrics, type DialedState, type RouterMetrics } from './metrics.js';
import { createDashboard, type Dashboard } from './dashboard/http.js';
import type { DashboardPeer, DialedView } from './dashboard/context.js';
import type { SendResult } from './dashboard/api-types.js';
import { DASHBOARD_AGENT, DashboardAgent } from './dashboard/agent.js';

/** Defaults of the process-level options (docs/LIMITS.md). */
export const SERVER_DEFAULTS = Object.freeze({
  requestTimeoutMs: 60_000,
  shutdownTimeoutMs: 10_000,
});

/** This package's version (postern_info, the dashboard, the start log): its package.json's, not a copy that drifts. */
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export interface UplinkConfig {
  /** The router to dial and keep, e.g. `wss://relay.example.com`. */
  url: string;
  /** A domain credential signed by that router's secret. */
  token: string;
  /** PEM CA certificate(s) trusted for a wss:// url instead of the system CAs. */
  ca?: string | string[];
  /** SHA-256 of the router's leaf certificate (hex, colons optional): pinned, the chain need not verify. */
  fingerprint?: string;
  /**
   * HTTP CONNECT proxy, `http://[user:password@]host:port`; `false`: connect directly.
   * @default from HTTPS_PROXY / HTTP_PROXY / NO_PROXY
   */
  proxy?: string | false;
  /**
   * How to reach the router: 'ws' (WebSocket only), 'http' (HTTP long-poll only), or 'auto':
   * WebSocket, falling back to long-poll where WebSocket is blocked and returning to WebSocket
   * once a probe gets through. @default 'auto'
   */
  transport?: 'auto' | 'ws' | 'http';
  /** With transport 'auto', while on long-poll: how often to try WebSocket again (doubling after each failure). @default 30000 */
  wsProbeIntervalMs?: number;
}

/** A router to link with as a peer: either side may dial; both announce and forward; neither is a default route. */
export interface PeerConfig extends Omit<UplinkConfig, 'token'> {
  /** Credentials for this peer (grants for our node key); default: the router's `credentials`. */
  token?: string;
}

/** A certificate (PEM; the chain may follow the leaf) and its private key (PEM). */
export interface TlsConfig {
  cert: string;
  key: string;
}

export interface RouterServerOptions extends Omit<RouterOptions, 'sessionTokens' | 'authenticator' | 'identity' | 'trust' | 'anonymizer' | 'node'> {
  /** Where to accept connections: `HOST:PORT` strings or objects. May be empty for a router that only dials. */
  listen?: Array<string | ListenAddress>;
  /** Serve TLS (wss:// and https://) on every listen address with this certificate and key. */
  tls?: TlsConfig;
  /** Verifies credentials; without it the router is open and accepts no router links. */
  secret?: string;
  /** Routers to dial and keep as default routes (a gateway's relay). */
  uplinks?: UplinkConfig[];
  /** Routers to dial and keep as peers (`postern relay --peer`). */
  peers?: PeerConfig[];
  /**
   * Keys this router trusts (`--trust KEY[=DOMAINS]`): a router's node key (N…) with the domains
   * it may speak for (its operator's word: that router may link as a peer); or an operator or
   * domain key (O…, A…) whose grants this router accepts, within DOMAINS (default all).
   */
  trust?: Array<string | TrustAnchor>;
  /**
   * This router's own credentials (grants for its node key, comma-separated): sent to peers, and
   * with the announcement of its own domain as its proof. Uplink tokens that are grants count too.
   */
  credentials?: string;
  /** The node key's seed (`SN…`, from `postern key new --type node`); default: the one in the store, made at first start. */
  nodeKey?: string;
  /** Reconnect policy for uplinks. */
  backoff?: BackoffOptions;
  /** Key for resume tokens; when absent, kept in `dataDir`, else random per process. */
  sessionKey?: Uint8Array;
  /**
   * Directory for the router's durable state (`router.db`, SQLite): the messages it holds, the
   * keys it deduplicates by, and (without a secret) the resume key. Without it (and without
   * `store`) messages are held in memory and lost on restart.
   */
  dataDir?: string;
  /** How the SQLite store in `dataDir` syncs each commit (see SqliteStoreOptions.sync). @default 'full' */
  sync?: 'full' | 'normal';
  /** Called with every uplink status change; returning true means it was reported, so the router does not log it. */
  onUplinkStatus?: (url: string, status: UplinkStatus) => boolean | void;
  /**
   * The HTTP long-poll API on every listener, for clients whose network refuses WebSocket;
   * `false` turns it off. @default on, under /postern/http, sends up to maxFrameBytes + batchBytes
   */
  longPoll?: LongPollServerOptions | false;
  /**
   * Time a client has to send a whole HTTP request, headers and body (node:http's
   * `requestTimeout`): a long-poll send whose body stops arriving is answered 408 and its
   * connection closed. Held polls and WebSocket links are not requests still arriving. @default 60000
   */
  requestTimeoutMs?: number;
  /**
   * Web origins whose pages may connect (WebSocket upgrade or long-poll), such as
   * `https://app.example.com`; `*` for any. A request carrying any other Origin header is
   * refused with 403 (cross-site WebSocket hijacking: a page the user opened must not reach a
   * router on the user's network). Clients that send no Origin (Node, the CLI) are not
   * affected. @default none: no browser page may connect
   */
  allowOrigins?: string[];
  /**
   * Secrets being rotated out: tokens they signed are still accepted (each token names its
   * secret by key id). Sign new tokens with `secret`; drop a previous one when its tokens are gone.
   */
  previousSecrets?: string[];
  /**
   * A file listing revoked tokens, one per line: the token itself or its SHA-256 in hex (`#`
   * starts a comment). Read at start and again whenever it changes (checked every second): a
   * revoked token is refused, and connections made with it are closed (AUTH_FAILED).
   */
  revokedFile?: string;
  /**
   * What this router is, for its logs and metrics: `relay`, `gateway`, `hub`. @default `hub`
   * with `hub`, `gateway` with uplinks, else `relay`
   */
  role?: string;
  /** Where the secret came from, for the start log (`--secret`, `--secret-file FILE`, `$POSTERN_SECRET`); never the secret itself. */
  secretSource?: string;
  /**
   * An admin listener (plain HTTP) serving `GET /metrics` (Prometheus text) and the full
   * `GET /healthz` (counters, links). A host other than loopback needs `adminToken`.
   * @default none
   */
  adminListen?: string | ListenAddress;
  /**
   * Bearer token for the admin endpoints: with it, `/metrics` and the full `/healthz` are also
   * served on the public listeners to requests with `Authorization: Bearer <token>` (others get
   * 401), and the admin listener asks for it too. @default none: public listeners serve liveness only
   */
  adminToken?: string;
  /**
   * Host names the admin listener (and its dashboard) answers to, besides IP literals and
   * `localhost`: a request with another Host header is refused 421 (DNS rebinding). @default none
   */
  adminHosts?: string[];
  /**
   * Pages that may frame the dashboard (CSP `frame-ancestors` sources, e.g.
   * `http://127.0.0.1:8080`). @default none: 'none'
   */
  dashboardFrameAncestors?: string[];
  /**
   * Admin listeners of other routers the dashboard asks for their part of a message's path
   * (`/api/trace`), each with its admin token if it has one. @default none
   */
  dashboardPeers?: DashboardPeer[];
  /** How long `shutdown()` may take (links closed with CLOSE, the store's last commit) before it gives up. @default 10000 */
  shutdownTimeoutMs?: number;
}

export interface RouterServer {
  readonly router: Router;
  /** Bound addresses, in the order of `listen` (real ports when 0 was asked). */
  readonly addresses: ListenAddress[];
  /** `ws://HOST:PORT` (`wss://` with `tls`) of the first listener. */
  readonly url: string;
  readonly uplinks: readonly Uplink[];
  readonly peers: readonly Uplink[];
  /** The router's node id: its public key. */
  readonly node: string;
  /** `http://HOST:PORT` of the admin listener, if any. */
  readonly adminUrl: string | undefined;
  /** Closes at once, without logging (tests, a failed start). */
  close(): Promise<void>;
  /**
   * A graceful stop (SIGTERM): stops accepting, closes every link with CLOSE SHUTDOWN, commits
   * the store's last group and closes it, logging what it still held (router.stopping,
   * router.stopped). Resolves true when done within `shutdownTimeoutMs`, false when it gave up
   * (logged: router.shutdown_timeout); what was stored stays in the store either way.
   */
  shutdown(reason?: string): Promise<boolean>;
}

/** The dialer of one uplink: WebSocket, long-poll, or both ('auto'), with its TLS and proxy settings. */
function uplinkDialer(u: Omit<UplinkConfig, 'token'>, maxPayload: number, log: Logger, rung: (t: 'ws' | 'http') => void): Dialer {
  const transport = u.transport ?? 'auto';
  if (transport !== 'auto' && transport !== 'ws' && transport !== 'http') throw new ConfigError(`uplink ${u.url}: transport must be auto, ws or http, got "${String(transport)}"`);
  const reach = {
    ...(u.ca === undefined ? {} : { ca: u.ca }),
    ...(u.fingerprint === undefined ? {} : { fingerprint: u.fingerprint }),
    ...(u.proxy === undefined ? {} : { proxy: u.proxy }),
  };
  const ws = transport === 'http' ? undefined : createNodeWsDialer({ maxPayload, ...reach });
  const http = transport === 'ws' ? undefined : createNodeHttpDialer(reach);
  rung(ws === undefined ? 'http' : 'ws');
  if (ws === undefined) return http!;
  if (http === undefined) return ws;
  return createAutoDialer({
    ws,
    http,
    ...(u.wsProbeIntervalMs === undefined ? {} : { wsProbeIntervalMs: u.wsProbeIntervalMs }),
    onEvent: (e) => {
      if (e.type === 'fallback') {
        rung('http');
        log.warn('uplink.transport_fallback', 'uplink falls back to HTTP long-poll', { url: u.url, reason: e.reason });
      } else if (e.type === 'upgrade') {
        rung('ws');
        log.info('uplink.transport_upgrade', 'uplink goes back to WebSocket: a probe got through', { url: u.url });
      } else log.debug('uplink.ws_probe_failed', 'WebSocket probe failed', { url: u.url, reason: e.reason, next_ms: e.nextInMs });
    },
  });
}

/**
 * Starts a router process: one node:http server per listen address carrying WebSocket
 * upgrades and a health endpoint, plus the uplinks it dials. Relay, gateway and hub are
 * configurations of this one function.
 */
export async function startRouter(options: RouterServerOptions): Promise<RouterServer> {
  const {
    listen = [],
    secret,
    uplinks: uplinkConfigs = [],
    peers: peerConfigs = [],
    trust: trustConfig = [],
    credentials = '',
    nodeKey,
    backoff,
    sessionKey,
    onUplinkStatus,
    dataDir,
    sync,
    tls,
    longPoll: longPollOptions,
    requestTimeoutMs = SERVER_DEFAULTS.requestTimeoutMs,
    allowOrigins: allowOriginsConfig = [],
    previousSecrets = [],
    revokedFile,
    role = options.hub === true ? 'hub' : (options.uplinks ?? []).length > 0 ? 'gateway' : 'relay',
    secretSource,
    adminListen,
    adminToken,
    adminHosts = [],
    dashboardFrameAncestors = [],
    dashboardPeers = [],
    shutdownTimeoutMs = SERVER_DEFAULTS.shutdownTimeoutMs,
    ...core
  } = options;
  for (const h of adminHosts) if (!/^[a-z0-9.-]{1,253}$/i.test(h)) throw new ConfigError(`adminHosts: "${h}" is not a host name`);
  for (const a of dashboardFrameAncestors) if (!/^[^\s;,'"]{1,200}$/.test(a)) throw new ConfigError(`dashboardFrameAncestors: "${a}" is not a CSP source (like http://127.0.0.1:8080)`);
  for (const p of dashboardPeers) if (typeof p.url !== 'string' || !/^https?:\/\/[^\s]+$/.test(p.url)) throw new ConfigError(`dashboardPeers: "${String(p.url)}" is not an http(s):// URL of an admin listener`);
  if (!Number.isSafeInteger(shutdownTimeoutMs) || shutdownTimeoutMs < 1) throw new ConfigError(`shutdownTimeoutMs must be a positive integer, got ${String(shutdownTimeoutMs)}`);
  if (adminToken !== undefined && adminToken.length < 16) throw new ConfigError('adminToken must be at least 16 characters: it guards the counters and link list');
  const adminAt = adminListen === undefined ? undefined : typeof adminListen === 'string' ? parseListen(adminListen) : adminListen;
  if (adminAt !== undefined && !isLoopback(adminAt.host) && adminToken === undefined) {
    throw new ConfigError(`the admin listener ${formatListen(adminAt)} is not on loopback: give an admin token too (its counters and link list are not for everyone)`);
  }
  for (const p of previousSecrets) if (p.length === 0) throw new ConfigError('a previous secret must not be empty');
  let revoked: ReadonlySet<string> = revokedFile === undefined ? new Set() : readRevoked(revokedFile);
  const allowedOrigins = resolveAllowedOrigins(allowOriginsConfig);
  if (!Number.isSafeInteger(requestTimeoutMs) || requestTimeoutMs < 1000) throw new ConfigError(`requestTimeoutMs must be an integer of at least 1000, got ${String(requestTimeoutMs)}`);
  // Before anything is created on disk: a bad domain must not leave a data dir behind.
  if (typeof core.domain !== 'string' || !isValidDomain(core.domain.toLowerCase())) {
    throw new ConfigError(`domain must be a DNS-style name like "acme" or "eu.acme.com", got ${JSON.stringify(core.domain)}`);
  }
  const listens = listen.map((l) => (typeof l === 'string' ? parseListen(l) : l));
  // A URL no dial could ever use is a setting to fix, not a failure to retry.
  for (const u of [...uplinkConfigs, ...peerConfigs]) checkUplinkUrl(u.url);
  const anchors = trustConfig.map((t) => (typeof t === 'string' ? parseTrustAnchor(t) : t));
  if (secret !== undefined && secret.length === 0) throw new ConfigError('secret must not be empty');
  if (tls !== undefined) {
    try {
      createSecureContext({ cert: tls.cert, key: tls.key });
    } catch (cause) {
      throw new ConfigError(`tls: the certificate and key are not usable: ${(cause as Error).message}`, { cause });
    }
  }
  const crashAt = process.env['POSTERN_CRASH_AT'];
  if (crashAt !== undefined && crashAt !== '') {
    armCrashPoint(crashAt, (point) => {
      process.stderr.write(`postern: crash point ${point} reached (POSTERN_CRASH_AT)\n`);
      process.kill(process.pid, 'SIGKILL');
    });
  }
  // Filled once the router exists; only with an admin endpoint (metrics cost nothing otherwise).
  let metrics: RouterMetrics | undefined;
  let dashboard: Dashboard | undefined;
  const onCommit =
    adminAt === undefined && adminToken === undefined
      ? undefined
      : (ms: number, ok: boolean): void => {
          metrics?.commit(ms, ok);
          dashboard?.commit(ms);
        };
  const store =
    core.store ?? (dataDir === undefined ? new MemoryStore() : new SqliteStore(join(dataDir, 'router.db'), { ...(sync === undefined ? {} : { sync }), ...(onCommit === undefined ? {} : { onCommit }) }));
  let nodeKeyPair;
  try {
    nodeKeyPair = await loadNodeKey(store, nodeKey);
  } catch (err) {
    await store.close().catch(() => undefined);
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`cannot load the node key from the store${dataDir === undefined ? '' : ` in ${dataDir}`}: ${(err as Error).message}`, { cause: err });
  }
  // What proves our own domain to routers further away: the grants among our credentials.
  const ownProof = [credentials, ...uplinkConfigs.map((u) => u.token)]
    .join(',')
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '' && isGrant(t));
  // Kept in the store, not derived from the secret: rotating the secret must not end every
  // session (and a router with a new store takes no old token anyway: the epoch below).
  let key = sessionKey;
  if (key === undefined && dataDir !== undefined) {
    key = await store.getValue('session-key');
    if (key === undefined) {
      key = new Uint8Array(randomBytes(32));
      await store.setValue('session-key', key);
    }
  }
  // The store's epoch: a new store (or one in memory) is a new epoch, and old resume tokens do not resume on it.
  let epoch = await store.getValue('store-epoch');
  if (epoch === undefined) {
    epoch = new Uint8Array(randomBytes(16));
    await store.setValue('store-epoch', epoch);
  }
  // A store that cannot be loaded fails startRouter() (the caller reports it), not onFatal, which
  // is for failures of a running router (a supervisor may restart it: the store is fine).
  let started = false;
  let router: Router;
  try {
    router = new Router({
      ...core,
      // Message traces for the dashboard's path view: only where there is a dashboard to show them.
      trace: core.trace ?? adminAt !== undefined,
      onFatal: (err) => {
        if (started) core.onFatal?.(err);
      },
      store,
      authenticator: secret === undefined ? undefined : createTokenAuthenticator(secret, { previous: previousSecrets, revoked: () => revoked }),
      identity: nodeIdentity(nodeKeyPair, [...new Set(ownProof)].join(',')),
      trust: createTrustPolicy(anchors),
      anonymizer: createAnonymizer(nodeKeyPair),
      sessionTokens: createHmacSessionTokens(key, core.domain.toLowerCase(), Buffer.from(epoch).toString('base64url')),
    });
  } catch (err) {
    // Bad options: the store's file lock must not outlive the failed start.
    await store.close().catch(() => undefined);
    throw err;
  }
  const log: Logger = router.options.logger;
  try {
    await router.ready;
  } catch (err) {
    router.close();
    await store.close().catch(() => undefined);
    if (dataDir === undefined || err instanceof ConfigError) throw err;
    throw new ConfigError(`cannot load the store in ${dataDir}: ${(err as Error).message}`, { cause: err });
  }
  started = true;
  const servers: Array<{ http: Server | HttpsServer; ws: WsServer }> = [];
  const uplinks: Uplink[] = [];
  const peers: Uplink[] = [];
  const rungs = new Map<string, 'ws' | 'http'>();
  // When each dialed link last went up or down (the dashboard's "since").
  const dialedState = new Map<string, { up: boolean; since: number }>();
  const markDialed = (key: string, s: UplinkStatus): void => {
    if (s.type !== 'up' && s.type !== 'down' && s.type !== 'fenced') return;
    const up = s.type === 'up';
    if (dialedState.get(key)?.up !== up) dialedState.set(key, { up, since: Date.now() });
  };
  const startedAt = Date.now();
  // The dashboard's test messages (POST /api/send), from the router's own agent, made when first used.
  let dashboardAgent: DashboardAgent | undefined;
  const dashboardSend = (to: string, text: string, timeoutMs: number): Promise<SendResult> =>
    (dashboardAgent ??= new DashboardAgent(router, async () => (secret === undefined ? '' : issueToken(secret, { domain: router.domain, name: DASHBOARD_AGENT, ttlSeconds: 3600 })))).send(to, text, timeoutMs);
  let admin: Server | undefined;
  const maxPayload = router.options.maxFrameBytes + router.options.batchBytes + 1024;
  let longPoll: LongPollServer | undefined;
  const health = (req: IncomingMessage, res: ServerResponse): void => {
    try {
      serve(req, res);
    } catch (err) {
      // A bug in handling one request must cost that request, not the router.
      log.error('http.request_failed', 'an HTTP request failed', { url: (req.url ?? '').slice(0, 200), error: (err as Error).message });
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
      res.end('internal error\n');
    }
  };
  // `degraded`: up and serving, but its store cannot commit, so it refuses reliable messages
  // (STORE_UNAVAILABLE) until it can. Still 200: the process needs no restart.
  const liveness = (): string => JSON.stringify({ status: router.storeState().ok ? 'ok' : 'degraded' });
  const fullHealth = (): string => {
    const store = router.storeState();
    return JSON.stringify({
      status: store.ok ? 'ok' : 'degraded',
      domain: router.domain,
      node: router.node,
      role,
      store,
      stats: router.stats(),
      uplinks: uplinks.map((u) => ({ url: u.url, connected: u.connected, transport: rungs.get(`uplink ${u.url}`) })),
      peers: peers.map((u) => ({ url: u.url, connected: u.connected, node: u.node })),
      longPollSessions: longPoll?.sessions ?? 0,
    });
  };
  const adminTokenBytes = adminToken === undefined ? undefined : Buffer.from(`Bearer ${adminToken}`);
  const authorized = (req: IncomingMessage): boolean => {
    if (adminTokenBytes === undefined) return false;
    const got = Buffer.from(req.headers.authorization ?? '');
    return got.length === adminTokenBytes.length && timingSafeEqual(got, adminTokenBytes);
  };
  const json = { 'content-type': 'application/json', 'cache-control': 'no-store' };
  /** The admin endpoints; true when `path` was one of them (answered, or refused 401). */
  const serveAdmin = (req: IncomingMessage, res: ServerResponse, path: string, needToken: boolean): boolean => {
    if (req.method !== 'GET' || (path !== '/metrics' && path !== '/healthz')) return false;
    if (needToken && !authorized(req)) {
      res.writeHead(401, { 'content-type': 'text/plain; charset=utf-8', 'www-authenticate': 'Bearer realm="postern admin"', 'cache-control': 'no-store' }).end('an admin token is required (Authorization: Bearer ...)\n');
      return true;
    }
    if (path === '/healthz') {
      res.writeHead(200, json).end(fullHealth());
      return true;
    }
    const m = metrics;
    if (m === undefined) return false;
    m.scrape().then(
      (text) => res.writeHead(200, { 'content-type': m.registry.contentType, 'cache-control': 'no-store' }).end(text),
      (err: unknown) => {
        log.error('http.request_failed', 'the metrics could not be collected', { error: (err as Error).message });
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('metrics failed\n');
      },
    );
    return true;
  };
  const serve = (req: IncomingMessage, res: ServerResponse): void => {
    if (longPoll?.handle(req, res) === true) return;
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    // With an admin token, the admin endpoints are on the public listeners too, behind it; a
    // request for /healthz without it gets liveness only (load balancers, probes).
    if (adminToken !== undefined && (path === '/metrics' || (path === '/healthz' && req.headers.authorization !== undefined)) && serveAdmin(req, res, path, true)) return;
    if (req.method === 'GET' && path === '/healthz') {
      res.writeHead(200, json).end(liveness());
      return;
    }
    res
      .writeHead(path === '/' ? 426 : 404, { 'content-type': 'text/plain; charset=utf-8', upgrade: 'websocket' })
      .end(`Postern router for domain "${router.domain}". Connect with a WebSocket client (postern listen --connect ...).\n`);
  };
  // A changed revocation list takes effect at once: new connections are checked against it, and
  // those already made with a token now on it are closed.
  const onRevokedChange = (): void => {
    if (revokedFile === undefined) return;
    try {
      revoked = readRevoked(revokedFile);
    } catch (err) {
      log.warn('revoked.read_failed', 'cannot read the revocation list; the last one read stays in force', { file: revokedFile, error: (err as Error).message });
      return;
    }
    const closed = router.closeRevoked((c) => c.tokenId !== undefined && revoked.has(c.tokenId));
    log.info('revoked.read', 'revocation list read', { file: revokedFile, revoked: revoked.size, closed });
  };
  if (revokedFile !== undefined) watchFile(revokedFile, { interval: 1000 }, onRevokedChange);
  // Logged once per origin (up to a bound): a page retrying must not flood the log.
  const originsLogged = new Set<string>();
  const refusedOrigin = (origin: string, remote: string): void => {
    if (originsLogged.has(origin) || originsLogged.size >= 100) return;
    originsLogged.add(origin);
    log.warn('origin.refused', 'refused a web page of an origin not allowed (--allow-origin)', { origin, remote });
  };
  const addresses: ListenAddress[] = [];
  let dialers: Dialer[];
  let peerDialers: Dialer[];
  try {
    // One long-poll server for every listener: sessions are the router's, whichever port opened them.
    if (longPollOptions !== false) {
      longPoll = createLongPollServer((d) => router.accept(d), {
        maxBodyBytes: maxPayload,
        maxSessions: router.options.maxConnections,
        allowOrigins: allowOriginsConfig,
        onRefusedOrigin: refusedOrigin,
        admit: (remote) => router.admit(remote),
        ...longPollOptions,
      });
    }
    // Bad TLS or proxy settings of an uplink (or in the environment) fail here, at start.
    dialers = uplinkConfigs.map((u) => uplinkDialer(u, maxPayload, log, (t) => rungs.set(`uplink ${u.url}`, t)));
    peerDialers = peerConfigs.map((u) => uplinkDialer(u, maxPayload, log, (t) => rungs.set(`peer ${u.url}`, t)));
    for (const l of listens) {
      // Checked this often (node:http's default is 30 s): a timeout shorter than that must still hold.
      const checking = { connectionsCheckingInterval: Math.max(100, Math.min(30_000, Math.floor(requestTimeoutMs / 4))) };
      const http = tls === undefined ? createServer(checking, health) : createHttpsServer({ ...checking, cert: tls.cert, key: tls.key }, health);
      // Whole requests must arrive in time; held answers (long polls) and upgraded sockets
      // (WebSocket links) are timed by their own rules.
      http.requestTimeout = requestTimeoutMs;
      http.headersTimeout = Math.min(10_000, requestTimeoutMs);
      const ws = attachWsServer(http, (d) => router.accept(d), { maxPayload, allowedOrigins, onRefusedOrigin: refusedOrigin, admit: (remote) => router.admit(remote) });
      servers.push({ http, ws });
      await new Promise<void>((resolve, reject) => {
        http.once('error', (err: NodeJS.ErrnoException) =>
          reject(new ConfigError(`cannot listen on ${formatListen(l)}: ${err.code === 'EADDRINUSE' ? 'address already in use' : err.message}`, { cause: err })),
        );
        http.listen(l.port, l.host, () => resolve());
      });
      const a = http.address() as AddressInfo;
      addresses.push({ host: a.address, port: a.port });
    }
    if (adminAt !== undefined || adminToken !== undefined) {
      metrics = createRouterMetrics(
        router,
        { role, version: VERSION },
        () => [
          ...uplinks.map((u): DialedState => ({ url: u.url, mode: 'uplink', connected: u.connected, transport: rungs.get(`uplink ${u.url}`) ?? 'ws' })),
          ...peers.map((u): DialedState => ({ url: u.url, mode: 'peer', connected: u.connected, transport: rungs.get(`peer ${u.url}`) ?? 'ws' })),
        ],
        () => longPoll?.sessions ?? 0,
      );
    }
    if (adminAt !== undefined) {
      const dialedView = (u: Uplink, mode: 'uplink' | 'peer'): DialedView => ({
        url: u.url,
        mode,
        connected: u.connected,
        node: u.node,
        transport: rungs.get(`${mode} ${u.url}`) ?? 'ws',
        since: dialedState.get(`${mode} ${u.url}`)?.since ?? startedAt,
      });
      const d = createDashboard({
        router,
        role,
        version: VERSION,
        startedAt,
        token: adminToken,
        hosts: adminHosts,
        frameAncestors: dashboardFrameAncestors,
        peers: dashboardPeers,
        log,
        dialed: () => [...uplinks.map((u) => dialedView(u, 'uplink')), ...peers.map((u) => dialedView(u, 'peer'))],
        longPollSessions: () => longPoll?.sessions ?? 0,
        send: (to, text, timeoutMs) => dashboardSend(to, text, timeoutMs),
        legacy: (req, res, path) => serveAdmin(req, res, path, false),
      });
      dashboard = d;
      const onAdmin = (req: IncomingMessage, res: ServerResponse): void => {
        try {
          d.handle(req, res);
        } catch (err) {
          log.error('http.request_failed', 'an admin request failed', { url: (req.url ?? '').slice(0, 200), error: (err as Error).message });
          if (!res.headersSent) res.writeHead(500, { connection: 'close' });
          res.end();
        }
      };
      const server = createServer(onAdmin);
      admin = server;
      await new Promise<void>((resolve, reject) => {
        server.once('error', (err: NodeJS.ErrnoException) =>
          reject(new ConfigError(`cannot listen on ${formatListen(adminAt)} (admin): ${err.code === 'EADDRINUSE' ? 'address already in use' : err.message}`, { cause: err })),
        );
        server.listen(adminAt.port, adminAt.host, () => resolve());
      });
    }
  } catch (err) {
    if (revokedFile !== undefined) unwatchFile(revokedFile, onRevokedChange);
    router.close();
    longPoll?.close();
    for (const s of servers) s.http.close();
    admin?.close();
    dashboard?.close();
    await store.close();
    throw err;
  }
  const adminAddress = admin === undefined ? undefined : (admin.address() as AddressInfo);
  const adminUrl = adminAddress === undefined ? undefined : `http://${formatListen({ host: adminAddress.address, port: adminAddress.port })}`;
  // Said once, at start: what runs, where, guarded by what (the operator's choices).
  log.info('router.start', `${role} for domain "${router.domain}" started`, {
    role,
    domain: router.domain,
    node: router.node,
    listen: addresses.map((a) => `${tls === undefined ? 'ws' : 'wss'}://${formatListen(a)} (WebSocket${longPoll === undefined ? '' : `, HTTP long-poll ${tls === undefined ? 'http' : 'https'}://${formatListen(a)}/postern/http`})`),
    secret: secret === undefined ? 'none' : (secretSource ?? 'given'),
    access: describeAccess(role, router.options, addresses.length > 0),
    routers: secret === undefined && anchors.length === 0 ? 'router links refused (no secret, no trusted key)' : 'router links with a credential or a trusted node key',
    store: core.store !== undefined ? 'given' : dataDir === undefined ? 'memory (lost on restart)' : `${join(dataDir, 'router.db')} (sync ${sync ?? 'full'})`,
    ...(uplinkConfigs.length === 0 ? {} : { uplinks: uplinkConfigs.map((u) => u.url) }),
    ...(peerConfigs.length === 0 ? {} : { peers: peerConfigs.map((u) => u.url) }),
    admin: adminUrl === undefined ? (adminToken === undefined ? 'off' : 'on the listeners, with the admin token') : `${adminUrl}/metrics${adminToken === undefined ? '' : ' (token)'}`,
    limits: changedLimits(router.options, { requestTimeoutMs, shutdownTimeoutMs }) ?? 'defaults',
  });
  for (const [i, u] of peerConfigs.entries()) {
    const peer = new Uplink(router, { url: u.url, token: u.token ?? credentials, dial: peerDialers[i]!, mode: 'peer', backoff, agent: `postern-router/${VERSION}` });
    const said = linkLog(router.options.clock, log, 'peer', 'peer', u.url);
    peer.onStatus((s) => {
      markDialed(`peer ${u.url}`, s);
      if (onUplinkStatus?.(u.url, s) === true) return;
      said(s);
    });
    peers.push(peer);
    peer.start();
  }
  for (const [i, u] of uplinkConfigs.entries()) {
    const uplink = new Uplink(router, {
      url: u.url,
      token: u.token,
      dial: dialers[i]!,
      rank: i,
      // With more than one relay, each must say what it reaches, to send each message the right way.
      features: uplinkConfigs.length > 1 ? Feature.ROUTES : 0,
      backoff,
      agent: `postern-router/${VERSION}`,
    });
    const fence = fenceLog(router.options.clock, log, u.url);
    const said = linkLog(router.options.clock, log, 'uplink', core.hub === true ? 'bridgehead' : 'uplink', u.url);
    uplink.onStatus((s) => {
      markDialed(`uplink ${u.url}`, s);
      if (onUplinkStatus?.(u.url, s) === true) return;
      if (fence(s)) return;
      said(s);
    });
    uplinks.push(uplink);
    uplink.start();
  }
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      if (revokedFile !== undefined) unwatchFile(revokedFile, onRevokedChange);
      // Stop accepting first: no new connection arrives while the links are closed.
      const closed = servers.map((s) => new Promise<void>((resolve) => s.http.close(() => resolve())));
      dashboard?.close();
      dashboardAgent?.close();
      if (admin !== undefined) {
        const a = admin;
        closed.push(new Promise<void>((resolve) => a.close(() => resolve())));
        a.closeAllConnections();
      }
      for (const u of [...uplinks, ...peers]) u.close();
      // CLOSE SHUTDOWN on every link, and the delivery's last flush.
      router.close();
      // After router.close(): a poll waiting on a session takes its CLOSE frame with it.
      longPoll?.close();
      // Commits what is pending, then closes the file.
      await store.close();
      for (const s of servers) {
        s.ws.close();
        s.http.closeAllConnections();
      }
      await Promise.all(closed);
    })());
  const first = addresses[0];
  return {
    router,
    addresses,
    url: first === undefined ? '' : `${tls === undefined ? 'ws' : 'wss'}://${formatListen({ host: first.host === '0.0.0.0' ? '127.0.0.1' : first.host === '::' ? '::1' : first.host, port: first.port })}`,
    uplinks,
    peers,
    node: router.node,
    adminUrl,
    close,
    async shutdown(reason = 'shutdown') {
      const started = performance.now();
      const before = summarizeHeld(router.held());
      const st = router.stats();
      log.info('router.stopping', `stopping (${reason}): no new connections; links are closed with CLOSE, the store commits`, {
        reason,
        connections: st.agents + st.downlinks + st.uplinks + st.peers + st.hubs,
        held_messages: before.messages,
        held_bytes: before.bytes,
        held: before.byClass,
        timeout_ms: shutdownTimeoutMs,
      });
      let timer: NodeJS.Timeout | undefined;
      const done = await Promise.race([
        close().then(() => true),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), shutdownTimeoutMs);
        }),
      ]);
      clearTimeout(timer);
      const ms = Math.round(performance.now() - started);
      if (!done) {
        log.error('router.shutdown_timeout', `could not stop within ${shutdownTimeoutMs} ms; exiting anyway (what was committed stays in the store)`, { ms });
        return false;
      }
      // What it held is in the store (with --data): the next start delivers it.
      const kept = dataDir === undefined && core.store === undefined ? 'in memory are lost' : 'stay in the store for the next start';
      log.info('router.stopped', `stopped in ${ms} ms; ${before.messages === 0 ? 'it held no message' : `${before.messages} message(s) held ${kept}`}`, {
        ms,
        held_messages: before.messages,
        held: before.byClass,
      });
      return true;
    },
  };
}

/** Totals and per-class counts of what a router holds, for the stop log. */
function summarizeHeld(h: ReturnType<Router['held']>): { messages: number; bytes: number; byClass: Record<string, number> } {
  let messages = 0;
  let bytes = 0;
  const byClass: Record<string, number> = {};
  for (const [cls, c] of Object.entries(h)) {
    messages += c.messages;
    bytes += c.bytes;
    byClass[cls] = c.messages;
  }
  return { messages, bytes, byClass };
}

/** Who may connect without a token, said once at start (the operator's choice). */
function describeAccess(role: string, o: Router['options'], listening: boolean): string {
  if (!listening) return 'no listener: dials out only';
  const side = role === 'gateway' ? 'LAN: ' : role === 'hub' ? 'hub: ' : '';
  if (o.authenticator === undefined) return `${side}open: agents connect without a token and may claim any name (give --secret to require tokens)`;
  if (o.allowGuests) return `${side}requires tokens; guests: agents without a token connect with an id and no name, under the guest quotas`;
  return `${side}requires tokens`;
}

/** Limits that differ from their defaults (docs/LIMITS.md), for the start log. */
function changedLimits(o: Router['options'], server: { requestTimeoutMs: number; shutdownTimeoutMs: number }): Record<string, unknown> | undefined {
  const changed: Record<string, unknown> = {};
  const resolved = o as unknown as Record<string, unknown>;
  for (const [k, v] of Object.entries(ROUTER_DEFAULTS)) if (resolved[k] !== v) changed[k] = resolved[k];
  for (const [k, v] of Object.entries(SERVER_DEFAULTS)) if (server[k as keyof typeof server] !== v) changed[k] = server[k as keyof typeof server];
  return Object.keys(changed).length === 0 ? undefined : changed;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

function checkUplinkUrl(url: unknown): void {
  if (typeof url !== 'string' || url.trim() === '') throw new ConfigError(`an uplink needs a URL (ws://, wss://, http://, https:// or HOST:PORT), got ${JSON.stringify(url)}`);
  let parsed: URL;
  try {
    parsed = new URL(toWebSocketUrl(url));
  } catch (cause) {
    throw new ConfigError(`uplink URL ${JSON.stringify(url)} is not usable: ${(cause as Error).message}`, { cause });
  }
  if (parsed.hostname === '') throw new ConfigError(`uplink URL ${JSON.stringify(url)} has no host`);
}

/** The ids of the tokens a revocation file lists (tokens, or their SHA-256 in hex; `#` comments). */
function readRevoked(file: string): ReadonlySet<string> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read the revocation list ${file}: ${(err as Error).message}`, { cause: err });
  }
  const ids = new Set<string>();
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*$/, '').trim();
    if (line === '') continue;
    ids.add(/^[0-9a-f]{64}$/i.test(line) ? line.toLowerCase() : tokenId(line));
  }
  return ids;
}
