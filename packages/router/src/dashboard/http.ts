import type { IncomingMessage, ServerResponse } from 'node:http';
import { AUTH_LIMITS, Sessions, sessionCookie, cookieOf, hostAllowed, originAllowed, sameSecret } from './auth.js';
import { agents, links, overview, queues, routes, MAX_PAGE } from './api.js';
import { serveDashboardAsset } from './assets.js';
import type { DashboardContext } from './context.js';
import { STREAM_LIMITS, Ticker } from './stream.js';
import { localHop, trace } from './trace.js';
import { RECENT_REPORTS } from '@postern/core';

/** Largest request body the dashboard reads (login form, test message). */
export const MAX_BODY_BYTES = 16 * 1024;

const JSON_HEADERS = { 'content-type': 'application/json', 'cache-control': 'no-store' };
/** Pages and assets anyone may fetch: the login page needs them before there is a session. */
const PUBLIC_ASSETS: ReadonlySet<string> = new Set(['login.html', 'login.js', 'app.css']);

export interface Dashboard {
  /** Answers one request of the admin listener (every path: the dashboard, its API, /metrics, /healthz). */
  handle(req: IncomingMessage, res: ServerResponse): void;
  /** One group commit of the store took `ms` (for the live commit latency). */
  commit(ms: number): void;
  close(): void;
}

/** A coded error answer: `{ error: { code, message } }`. */
export function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(status, JSON_HEADERS).end(JSON.stringify({ error: { code, message } }));
}

function sendJson(res: ServerResponse, body: unknown): void {
  res.writeHead(200, JSON_HEADERS).end(JSON.stringify(body));
}

/**
 * The admin listener's route table (docs/OPERATIONS.md "Dashboard"). Every request passes the
 * Host check first (DNS rebinding), then the session or Bearer check when an admin token is
 * configured; POSTs also pass the Origin check (CSRF; the cookie is SameSite=Strict as well).
 */
export function createDashboard(ctx: DashboardContext): Dashboard {
  const sessions = new Sessions();
  const ticker = new Ticker(ctx);
  const hosts = new Set(ctx.hosts.map((h) => h.toLowerCase()));
  const bearer = ctx.token === undefined ? undefined : Buffer.from(`Bearer ${ctx.token}`);
  const tokenBytes = ctx.token === undefined ? undefined : Buffer.from(ctx.token);
  const csp = [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    `frame-ancestors ${ctx.frameAncestors.length === 0 ? "'none'" : ctx.frameAncestors.join(' ')}`,
  ].join('; ');
  const pageHeaders = { 'content-security-policy': csp, 'x-content-type-options': 'nosniff', 'referrer-policy': 'same-origin', 'cache-control': 'no-store' };

  const authed = (req: IncomingMessage): boolean => {
    if (bearer === undefined) return true;
    const auth = req.headers.authorization;
    if (auth !== undefined && sameSecret(auth, bearer)) return true;
    return sessions.valid(cookieOf(req, sessionCookie(req.socket.localPort)));
  };
  const redirect = (res: ServerResponse, to: string, extra: Record<string, string> = {}): void => {
    res.writeHead(303, { location: to, 'cache-control': 'no-store', ...extra }).end();
  };
  const asset = (res: ServerResponse, path: string): void => {
    const a = serveDashboardAsset(path);
    if (a === undefined) {
      res.writeHead(404, { ...pageHeaders, 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
      return;
    }
    res.writeHead(a.status, { ...pageHeaders, 'content-type': a.type, 'content-length': a.body.length }).end(a.body);
  };

  const login = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (tokenBytes === undefined) return redirect(res, '/dashboard/');
    const remote = req.socket.remoteAddress ?? '';
    if (!sessions.mayTry(remote)) return redirect(res, '/dashboard/login?failed=1');
    const body = await readBody(req, res);
    if (body === undefined) return;
    const token = new URLSearchParams(body.toString('utf8')).get('token') ?? '';
    if (!sameSecret(token, tokenBytes)) {
      sessions.failed(remote);
      ctx.log.warn('dashboard.login_failed', 'a dashboard login with a wrong token', { remote: req.socket.remoteAddress ?? '' });
      return redirect(res, '/dashboard/login?failed=1');
    }
    const id = sessions.create();
    redirect(res, '/dashboard/', { 'set-cookie': `${sessionCookie(req.socket.localPort)}=${id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${AUTH_LIMITS.sessionMs / 1000}` });
  };

  const api = async (req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams): Promise<void> => {
    const get = req.method === 'GET' || req.method === 'HEAD';
    if (path === '/api/logout' && req.method === 'POST') {
      sessions.drop(cookieOf(req, sessionCookie(req.socket.localPort)));
      return redirect(res, '/dashboard/login', { 'set-cookie': `${sessionCookie(req.socket.localPort)}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0` });
    }
    if (path === '/api/send' && req.method === 'POST') return send(req, res);
    if (!get) return sendError(res, 405, 'ERR_BAD_REQUEST', `${req.method ?? ''} is not served on ${path}`);
    const page = (): [number, number] | undefined => {
      const offset = intParam(query, 'offset', 0, Number.MAX_SAFE_INTEGER);
      const limit = intParam(query, 'limit', 50, MAX_PAGE);
      if (offset === undefined || limit === undefined) {
        sendError(res, 400, 'ERR_BAD_REQUEST', `offset must be an integer >= 0 and limit one from 1 to ${MAX_PAGE}`);
        return undefined;
      }
      return [offset, limit];
    };
    switch (path) {
      case '/api/overview':
        return sendJson(res, overview(ctx));
      case '/api/links':
        return sendJson(res, links(ctx, ticker.rates));
      case '/api/routes':
        return sendJson(res, routes(ctx));
      case '/api/agents': {
        const p = page();
        const q = query.get('q') ?? '';
        if (p === undefined) return;
        if (q.length > 200) return sendError(res, 400, 'ERR_BAD_REQUEST', 'q is longer than 200 characters');
        return sendJson(res, agents(ctx, q, p[0], p[1]));
      }
      case '/api/queues': {
        const p = page();
        if (p === undefined) return;
        return sendJson(res, queues(ctx, p[0], p[1]));
      }
      case '/api/undeliverable': {
        const limit = intParam(query, 'limit', 50, RECENT_REPORTS);
        if (limit === undefined) return sendError(res, 400, 'ERR_BAD_REQUEST', `limit must be an integer from 1 to ${RECENT_REPORTS}`);
        return sendJson(res, { reports: ctx.router.tracer?.recentReports(limit) ?? [] });
      }
      case '/api/trace': {
        const id = query.get('id') ?? '';
        const from = query.get('from') ?? undefined;
        if (id === '' || id.length > 255 || (from !== undefined && from.length > 255)) return sendError(res, 400, 'ERR_BAD_REQUEST', 'id (1 to 255 characters) is required; from, when given, is an address');
        if (query.get('local') === '1') return sendJson(res, { id, hops: [localHop(ctx, id, from)] });
        return sendJson(res, await trace(ctx, id, from));
      }
      case '/api/history':
        return sendJson(res, { ticks: ticker.history });
      case '/api/stream':
        if (!ticker.open(res)) sendError(res, 503, 'ERR_UNAVAILABLE', `at most ${STREAM_LIMITS.maxStreams} event streams per router`);
        return;
      default:
        return sendError(res, 404, 'ERR_NOT_FOUND', `no such API: ${path.slice(0, 100)}`);
    }
  };

  const send = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const body = await readBody(req, res);
    if (body === undefined) return;
    let input: unknown;
    try {
      input = JSON.parse(body.toString('utf8'));
    } catch {
      return sendError(res, 400, 'ERR_BAD_REQUEST', 'the body is not JSON');
    }
    const { to, text, timeoutMs = 10_000 } = (typeof input === 'object' && input !== null ? input : {}) as { to?: unknown; text?: unknown; timeoutMs?: unknown };
    if (typeof to !== 'string' || to.length === 0 || to.length > 300) return sendError(res, 400, 'ERR_BAD_REQUEST', 'to must be an address of 1 to 300 characters');
    if (typeof text !== 'string' || Buffer.byteLength(text) > 8192) return sendError(res, 400, 'ERR_BAD_REQUEST', 'text must be a string of at most 8 KiB');
    if (typeof timeoutMs !== 'number' || !Number.isSafeInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 60_000) return sendError(res, 400, 'ERR_BAD_REQUEST', 'timeoutMs must be an integer from 1 to 60000');
    try {
      sendJson(res, await ctx.send(to, text, timeoutMs));
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      const c = typeof code === 'string' && code.startsWith('ERR_') ? code : 'ERR_INTERNAL';
      sendError(res, c === 'ERR_UNAVAILABLE' ? 503 : c === 'ERR_INTERNAL' ? 500 : 400, c, (err as Error).message);
    }
  };

  const route = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (!hostAllowed(req.headers.host, hosts)) {
      res.writeHead(421, { 'content-type': 'text/plain; charset=utf-8' }).end('this admin listener does not answer to that host name (--admin-host)\n');
      return;
    }
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname;
    if (req.method === 'POST' && !originAllowed(req)) return sendError(res, 403, 'ERR_FORBIDDEN', 'a request from another origin');
    if (path === '/' && req.method === 'GET') return redirect(res, '/dashboard/');
    if (path === '/api/login' && req.method === 'POST') return login(req, res);
    if (path.startsWith('/dashboard/') && (req.method === 'GET' || req.method === 'HEAD')) {
      const rel = path.slice('/dashboard/'.length);
      // Without an admin token there is nothing to log in with: the login page leads on.
      if (rel === 'login' && tokenBytes === undefined) return redirect(res, '/dashboard/');
      const file = rel === '' ? 'index.html' : rel === 'login' ? 'login.html' : rel;
      if (PUBLIC_ASSETS.has(file)) return asset(res, file);
      if (!authed(req)) return redirect(res, '/dashboard/login');
      return asset(res, file);
    }
    if (path === '/dashboard') return redirect(res, '/dashboard/');
    if (!authed(req)) {
      if (path.startsWith('/api/')) return sendError(res, 401, 'ERR_UNAUTHORIZED', 'log in (/dashboard/login) or send Authorization: Bearer <admin token>');
      res.writeHead(401, { 'content-type': 'text/plain; charset=utf-8', 'www-authenticate': 'Bearer realm="postern admin"', 'cache-control': 'no-store' }).end('an admin token is required (Authorization: Bearer ...)\n');
      return;
    }
    if (path.startsWith('/api/')) return api(req, res, path, url.searchParams);
    if (ctx.legacy(req, res, path)) return;
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('the admin listener serves /dashboard/, /api/*, GET /metrics and GET /healthz\n');
  };

  return {
    handle(req, res) {
      route(req, res).catch((err: unknown) => {
        ctx.log.error('http.request_failed', 'an admin request failed', { url: (req.url ?? '').slice(0, 200), error: (err as Error).message });
        sendError(res, 500, 'ERR_INTERNAL', 'internal error');
      });
    },
    commit: (ms) => ticker.commit(ms),
    close: () => ticker.close(),
  };
}

/** A non-negative integer query parameter within [0, max] (limit: [1, max]); undefined when bad. */
function intParam(q: URLSearchParams, name: string, dflt: number, max: number): number | undefined {
  const v = q.get(name);
  if (v === null || v === '') return dflt;
  if (!/^\d{1,15}$/.test(v)) return undefined;
  const n = Number(v);
  if (n > max || (name === 'limit' && n < 1)) return undefined;
  return n;
}

/** Reads a request body of at most MAX_BODY_BYTES; past it answers 413 and returns undefined. */
function readBody(req: IncomingMessage, res: ServerResponse): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        done = true;
        res.writeHead(413, { ...JSON_HEADERS, connection: 'close' }).end(JSON.stringify({ error: { code: 'ERR_TOO_LARGE', message: `the body is larger than ${MAX_BODY_BYTES} bytes` } }));
        req.resume();
        resolve(undefined);
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!done) resolve(Buffer.concat(chunks));
    });
    req.on('error', () => {
      done = true;
      resolve(undefined);
    });
  });
}
