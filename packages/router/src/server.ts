import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { MemoryStore, Router, Uplink, armCrashPoint, type BackoffOptions, type Logger, type RouterOptions, type UplinkStatus } from '@postern/core';
import { ConfigError } from '@postern/protocol';
import { SqliteStore } from '@postern/store-sqlite';
import { attachWsServer, createNodeWsDialer, type WsServer } from '@postern/transport-ws/node';
import { createTokenAuthenticator } from './credentials.js';
import { formatListen, parseListen, type ListenAddress } from './listen.js';
import { createHmacSessionTokens, resumeKeyFromSecret } from './session-tokens.js';

export interface UplinkConfig {
  /** The router to dial and keep, e.g. `wss://relay.example.com`. */
  url: string;
  /** A domain credential signed by that router's secret. */
  token: string;
}

export interface RouterServerOptions extends Omit<RouterOptions, 'sessionTokens' | 'authenticator'> {
  /** Where to accept connections: `HOST:PORT` strings or objects. May be empty for a router that only dials. */
  listen?: Array<string | ListenAddress>;
  /** Verifies credentials; without it the router is open and accepts no router links. */
  secret?: string;
  /** Routers to dial and keep as default routes (a gateway's relay). */
  uplinks?: UplinkConfig[];
  /** Reconnect policy for uplinks. */
  backoff?: BackoffOptions;
  /** Key for resume tokens; derived from `secret` when absent, else kept in `dataDir`, else random per process. */
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
}

export interface RouterServer {
  readonly router: Router;
  /** Bound addresses, in the order of `listen` (real ports when 0 was asked). */
  readonly addresses: ListenAddress[];
  /** `ws://HOST:PORT` of the first listener. */
  readonly url: string;
  readonly uplinks: readonly Uplink[];
  close(): Promise<void>;
}

/**
 * Starts a router process: one node:http server per listen address carrying WebSocket
 * upgrades and a health endpoint, plus the uplinks it dials. Relay, gateway and hub are
 * configurations of this one function.
 */
export async function startRouter(options: RouterServerOptions): Promise<RouterServer> {
  const { listen = [], secret, uplinks: uplinkConfigs = [], backoff, sessionKey, onUplinkStatus, dataDir, sync, ...core } = options;
  const listens = listen.map((l) => (typeof l === 'string' ? parseListen(l) : l));
  if (secret !== undefined && secret.length === 0) throw new ConfigError('secret must not be empty');
  const crashAt = process.env['POSTERN_CRASH_AT'];
  if (crashAt !== undefined && crashAt !== '') {
    armCrashPoint(crashAt, (point) => {
      process.stderr.write(`postern: crash point ${point} reached (POSTERN_CRASH_AT)\n`);
      process.kill(process.pid, 'SIGKILL');
    });
  }
  const store = core.store ?? (dataDir === undefined ? new MemoryStore() : new SqliteStore(join(dataDir, 'router.db'), sync === undefined ? {} : { sync }));
  let key = sessionKey ?? (secret === undefined ? undefined : resumeKeyFromSecret(secret));
  if (key === undefined && dataDir !== undefined) {
    key = await store.getValue('session-key');
    if (key === undefined) {
      key = new Uint8Array(randomBytes(32));
      await store.setValue('session-key', key);
    }
  }
  const router = new Router({
    ...core,
    store,
    authenticator: secret === undefined ? undefined : createTokenAuthenticator(secret),
    sessionTokens: createHmacSessionTokens(
      key,
      core.domain.toLowerCase(),
    ),
  });
  const log: Logger = router.options.logger;
  try {
    await router.ready;
  } catch (err) {
    router.close();
    await store.close();
    throw err;
  }
  const servers: Array<{ http: Server; ws: WsServer }> = [];
  const uplinks: Uplink[] = [];
  const health = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/healthz') {
      const body = JSON.stringify({
        status: 'ok',
        domain: router.domain,
        node: router.node,
        stats: router.stats(),
        uplinks: uplinks.map((u) => ({ url: u.url, connected: u.connected })),
      });
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(body);
      return;
    }
    res
      .writeHead(path === '/' ? 426 : 404, { 'content-type': 'text/plain; charset=utf-8', upgrade: 'websocket' })
      .end(`Postern router for domain "${router.domain}". Connect with a WebSocket client (postern listen --connect ...).\n`);
  };
  const addresses: ListenAddress[] = [];
  try {
    for (const l of listens) {
      const http = createServer(health);
      // Upgrades and long requests are ours to time out, not node:http's.
      http.requestTimeout = 0;
      http.headersTimeout = 10_000;
      const ws = attachWsServer(http, (d) => router.accept(d), {
        maxPayload: router.options.maxFrameBytes + router.options.batchBytes + 1024,
      });
      servers.push({ http, ws });
      await new Promise<void>((resolve, reject) => {
        http.once('error', (err: NodeJS.ErrnoException) =>
          reject(new ConfigError(`cannot listen on ${formatListen(l)}: ${err.code === 'EADDRINUSE' ? 'address already in use' : err.message}`, { cause: err })),
        );
        http.listen(l.port, l.host, () => resolve());
      });
      const a = http.address() as AddressInfo;
      addresses.push({ host: a.address, port: a.port });
      log.info('listening', { address: formatListen({ host: a.address, port: a.port }), domain: router.domain });
    }
  } catch (err) {
    router.close();
    for (const s of servers) s.http.close();
    await store.close();
    throw err;
  }
  const dial = createNodeWsDialer({ maxPayload: router.options.maxFrameBytes + router.options.batchBytes + 1024 });
  for (const u of uplinkConfigs) {
    const uplink = new Uplink(router, { url: u.url, token: u.token, dial, backoff, agent: 'postern-router/0.1' });
    uplink.onStatus((s) => {
      if (onUplinkStatus?.(u.url, s) === true) return;
      if (s.type === 'up') log.info('uplink connected', { url: u.url, relay: s.domain });
      else if (s.type === 'down') log.warn(s.refused ? 'uplink refused' : 'uplink down', { url: u.url, reason: s.error.message, code: s.error.code, retry_ms: s.retryInMs });
    });
    uplinks.push(uplink);
    uplink.start();
  }
  const first = addresses[0];
  return {
    router,
    addresses,
    url: first === undefined ? '' : `ws://${formatListen({ host: first.host === '0.0.0.0' ? '127.0.0.1' : first.host === '::' ? '::1' : first.host, port: first.port })}`,
    uplinks,
    async close() {
      for (const u of uplinks) u.close();
      router.close();
      await store.close();
      await Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((resolve) => {
              s.ws.close();
              s.http.close(() => resolve());
              s.http.closeAllConnections();
            }),
        ),
      );
    },
  };
}
