import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from '@postern/core';
import { ConfigError, TransportError } from '@postern/protocol';
import { NO_ORIGINS, originAllowed, resolveAllowedOrigins, type AllowedOrigins } from '@postern/transport-ws/node';
import { LONG_POLL_SERVER_DEFAULTS } from './constants.js';
import { LongPollSession, type Reply } from './session.js';
import { DEFAULT_PATH, HEADER_END, HEADER_OFFSET, LONG_POLL_VERSION, normalizePath, parseCount, type OpenAnswer } from './wire.js';

export interface LongPollServerOptions {
  /** Path the API is served under, after any prefix (`/x/postern/http/...` too). @default '/postern/http' */
  path?: string;
  /** Largest body of one send; larger ones are refused with 413. @default 2 MiB */
  maxBodyBytes?: number;
  /** How long a poll with nothing to return is held before an empty answer. @default 25000 */
  pollTimeoutMs?: number;
  /** A session that sees no poll for this long is closed (expired). @default 30000 */
  sessionTimeoutMs?: number;
  /** Sessions open at once; a further open is refused with 503. @default 10000 */
  maxSessions?: number;
  /** How long a session the router closed keeps its last bytes for the client. @default 5000 */
  closeTimeoutMs?: number;
  /**
   * Web origins whose pages may use the API (`https://app.example.com`, `*` for any). A request
   * with any other Origin header is refused with 403; CORS answers name the allowed origin.
   * Requests without an Origin (non-browser clients) are not affected. @default none
   */
  allowOrigins?: readonly string[];
  /** Told of each request refused for its Origin (to log it). */
  onRefusedOrigin?: (origin: string, remote: string) => void;
  /** Asked before each session is opened, with the peer's "address:port": a reason to refuse it with 429 (quotas), or undefined. */
  admit?: (remote: string) => string | undefined;
}

export type ResolvedLongPollServerOptions = Readonly<Required<Omit<LongPollServerOptions, 'allowOrigins' | 'onRefusedOrigin' | 'admit'>>> & {
  readonly allowOrigins: AllowedOrigins;
  readonly onRefusedOrigin: ((origin: string, remote: string) => void) | undefined;
  readonly admit: ((remote: string) => string | undefined) | undefined;
};

export interface LongPollServer {
  /**
   * Answers `req` when its path is under the prefix and returns true; returns false (and
   * touches nothing) for any other path, which the caller then answers.
   */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
  /** Sessions open now. */
  readonly sessions: number;
  /** Refuses new sessions and ends every open one with an error. */
  close(): void;
}

function positive(name: string, v: number | undefined, dflt: number): number {
  const x = v ?? dflt;
  if (!Number.isSafeInteger(x) || x < 1) throw new ConfigError(`${name} must be a positive integer, got ${String(v)}`);
  return x;
}

export function resolveLongPollServerOptions(o: LongPollServerOptions = {}): ResolvedLongPollServerOptions {
  const d = LONG_POLL_SERVER_DEFAULTS;
  const path = normalizePath(o.path ?? DEFAULT_PATH);
  if (path === '' || /[?#\s]/.test(path)) throw new ConfigError(`path must be a URL path such as ${DEFAULT_PATH}, got "${String(o.path)}"`);
  return Object.freeze({
    path,
    maxBodyBytes: positive('maxBodyBytes', o.maxBodyBytes, d.maxBodyBytes),
    pollTimeoutMs: positive('pollTimeoutMs', o.pollTimeoutMs, d.pollTimeoutMs),
    sessionTimeoutMs: positive('sessionTimeoutMs', o.sessionTimeoutMs, d.sessionTimeoutMs),
    maxSessions: positive('maxSessions', o.maxSessions, d.maxSessions),
    closeTimeoutMs: positive('closeTimeoutMs', o.closeTimeoutMs, d.closeTimeoutMs),
    allowOrigins: o.allowOrigins === undefined ? NO_ORIGINS : resolveAllowedOrigins(o.allowOrigins),
    onRefusedOrigin: o.onRefusedOrigin,
    admit: o.admit,
  });
}

/** Every answer: never cached. CORS headers are added per request, for allowed origins only. */
const COMMON_HEADERS = Object.freeze({
  'cache-control': 'no-store',
  vary: 'Origin',
});

const reply: Reply = (res, status, body = '', headers = {}) => {
  if (res.headersSent || res.destroyed) return;
  if (typeof body === 'string') {
    const text = body === '' ? '' : `${body}\n`;
    const h: Record<string, string> = { ...COMMON_HEADERS };
    if (status !== 204) {
      if (text !== '') h['content-type'] = 'text/plain; charset=utf-8';
      h['content-length'] = String(Buffer.byteLength(text));
    }
    res.writeHead(status, { ...h, ...headers });
    res.end(text);
    return;
  }
  let n = 0;
  for (const c of body) n += c.length;
  res.writeHead(status, { ...COMMON_HEADERS, 'content-length': String(n), ...headers });
  for (const c of body) res.write(c);
  res.end();
};

/** Reads a request body of at most `max` bytes; undefined (after answering 413) when larger or cut off. */
function readBody(req: IncomingMessage, res: ServerResponse, max: number): Promise<Uint8Array | undefined> {
  return new Promise((resolve) => {
    const tooLarge = (): void => {
      reply(res, 413, `the body is larger than ${max} bytes`, { connection: 'close' });
      resolve(undefined);
    };
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > max) {
      tooLarge();
      return;
    }
    const chunks: Buffer[] = [];
    let n = 0;
    let done = false;
    req.on('data', (c: Buffer) => {
      if (done) return;
      n += c.length;
      if (n > max) {
        done = true;
        tooLarge();
        return;
      }
      chunks.push(c);
    });
    req.once('end', () => {
      if (done) return;
      done = true;
      const buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, n);
      // A plain Uint8Array: messages are views into it, and a Buffer's slice() would share memory.
      resolve(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
    });
    req.once('error', () => {
      if (done) return;
      done = true;
      resolve(undefined);
    });
    req.once('close', () => {
      if (done) return;
      done = true;
      resolve(undefined);
    });
  });
}

/**
 * The server half of the long-poll transport, for a node:http(s) server the caller owns (it
 * shares one with WebSocket upgrades and health checks). Each opened session is handed to
 * `onDuplex` as a Duplex of kind 'http', as a WebSocket would be. The API, under `path`:
 *
 *   POST   {path}/sessions                 open: 201 + JSON OpenAnswer
 *   POST   {path}/sessions/{id}/send?seq=N  one batch of envelopes: 204
 *   GET    {path}/sessions/{id}/poll?ack=N[&max=B]  waits for outbound bytes: 200 + envelopes
 *   DELETE {path}/sessions/{id}             ends the session: 204
 *
 * docs/PROTOCOL.md describes headers and status codes.
 */
export function createLongPollServer(onDuplex: (d: Duplex) => void, options: LongPollServerOptions = {}): LongPollServer {
  const o = resolveLongPollServerOptions(options);
  const sessions = new Map<string, LongPollSession>();
  const limits = { pollTimeoutMs: o.pollTimeoutMs, sessionTimeoutMs: o.sessionTimeoutMs, closeTimeoutMs: o.closeTimeoutMs };
  const prefix = `${o.path}/sessions`;
  let closed = false;
  const onEnd = (s: LongPollSession): void => {
    if (sessions.get(s.id) === s) sessions.delete(s.id);
  };

  const open = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    // The body is unused; read it (bounded) so that the connection can be reused.
    if ((await readBody(req, res, 4096)) === undefined) return;
    if (closed) return reply(res, 503, 'the router is shutting down', { 'retry-after': '5' });
    if (sessions.size >= o.maxSessions) return reply(res, 503, `the router holds its limit of ${o.maxSessions} long-poll sessions`, { 'retry-after': '5' });
    const remote = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`;
    const refused = o.admit?.(remote);
    if (refused !== undefined) return reply(res, 429, refused, { 'retry-after': '1' });
    const id = randomBytes(24).toString('base64url');
    const session = new LongPollSession(id, remote, limits, reply, onEnd);
    sessions.set(id, session);
    const answer: OpenAnswer = {
      version: LONG_POLL_VERSION,
      session: id,
      maxBodyBytes: o.maxBodyBytes,
      pollTimeoutMs: o.pollTimeoutMs,
      sessionTimeoutMs: o.sessionTimeoutMs,
    };
    reply(res, 201, JSON.stringify(answer), { 'content-type': 'application/json' });
    onDuplex(session);
  };

  const handle = (req: IncomingMessage, res: ServerResponse): boolean => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://x');
    } catch {
      // node:http takes request targets that URL does not (`//[`): not ours, and no crash.
      return false;
    }
    const path = apiPath(url.pathname, o.path);
    if (path === undefined) return false;
    const method = req.method ?? 'GET';
    const origin = req.headers.origin;
    if (origin !== undefined) {
      if (!originAllowed(origin, o.allowOrigins)) {
        reply(res, 403, 'this router does not let web pages of this origin connect (see --allow-origin)');
        o.onRefusedOrigin?.(origin.slice(0, 200), `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`);
        return true;
      }
      // A browser page of an allowed origin may read the answers (no cookies are used).
      res.setHeader('access-control-allow-origin', origin);
      res.setHeader('access-control-expose-headers', `${HEADER_OFFSET}, ${HEADER_END}`);
    }
    if (method === 'OPTIONS') {
      // CORS preflight of a browser client (its sends carry application/octet-stream).
      reply(res, 204, '', { 'access-control-allow-methods': 'GET, POST, DELETE', 'access-control-allow-headers': 'content-type', 'access-control-max-age': '600' });
      return true;
    }
    if (path === prefix) {
      if (method !== 'POST') reply(res, 405, 'open a session with POST', { allow: 'POST' });
      else void open(req, res);
      return true;
    }
    const m = /^\/([A-Za-z0-9_-]{16,128})(\/send|\/poll)?$/.exec(path.startsWith(prefix) ? path.slice(prefix.length) : '');
    if (m === null) {
      reply(res, 404, `no such long-poll resource: ${path}`);
      return true;
    }
    const id = m[1]!;
    const action = m[2];
    const find = (): LongPollSession | undefined => {
      const s = sessions.get(id);
      if (s === undefined) reply(res, 404, 'no such session: it expired or was closed');
      return s;
    };
    if (action === undefined) {
      if (method !== 'DELETE') reply(res, 405, 'end a session with DELETE', { allow: 'DELETE' });
      else find()?.onDelete(res);
      return true;
    }
    if (action === '/poll') {
      if (method !== 'GET') return reply(res, 405, 'poll with GET', { allow: 'GET' }), true;
      const ack = parseCount(url.searchParams.get('ack'));
      if (ack === undefined) return reply(res, 400, 'poll needs ?ack=N, the stream offset received so far'), true;
      const maxText = url.searchParams.get('max');
      const max = maxText === null ? Infinity : parseCount(maxText);
      if (max === undefined) return reply(res, 400, 'max, when given, is a byte count'), true;
      find()?.onPoll(ack, max, res);
      return true;
    }
    if (method !== 'POST') return reply(res, 405, 'send with POST', { allow: 'POST' }), true;
    const seq = parseCount(url.searchParams.get('seq'));
    if (seq === undefined) return reply(res, 400, 'send needs ?seq=N, the number of this send (0, 1, 2, ...)'), true;
    if (!sessions.has(id)) return find(), true;
    void readBody(req, res, o.maxBodyBytes).then((body) => {
      if (body !== undefined) find()?.onSend(seq, body, res);
    });
    return true;
  };

  return {
    handle,
    get sessions() {
      return sessions.size;
    },
    close() {
      closed = true;
      for (const s of [...sessions.values()]) s.terminate(new TransportError('the router is shutting down'));
    },
  };
}

/**
 * The part of `pathname` from the API's `path` on, or undefined when it is not under it. Any
 * prefix before it is accepted: clients append the API's path to their router URL's own path,
 * and a router takes WebSocket upgrades on any path, so `wss://host/x` works for both.
 */
function apiPath(pathname: string, path: string): string | undefined {
  for (let at = pathname.indexOf(path); at >= 0; at = pathname.indexOf(path, at + 1)) {
    const end = at + path.length;
    if (end === pathname.length || pathname[end] === '/') return pathname.slice(at);
  }
  return undefined;
}
