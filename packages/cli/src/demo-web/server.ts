// The small HTTP server of `postern demo --web`: the page, its script and style, the client's
// browser bundle, and POST /token, which hands each page load a short-lived token for a fresh
// guest name on the relay. No router secret or admin token ever leaves the process: the page gets
// the relay's URL, its own guest token and the dashboards' URLs (loopback admin listeners).
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { formatListen, issueToken, type ListenAddress } from '@postern/router';
import { INDEX_HTML, STYLE_CSS } from './assets.js';

/** How long a guest token is good for: a page left open longer is asked to reload. */
export const GUEST_TTL_S = 3600;
/** Tokens handed out per minute at most (a page load takes one). */
const TOKENS_PER_MINUTE = 120;

/** What the page is told, besides its token; set once the routers run. */
export interface DemoWebConfig {
  /** The relay's secret: signs the guest tokens, never sent. */
  secret: string;
  /** The relay's domain (the guests' domain). */
  domain: string;
  /** `ws://HOST:PORT` of the relay. */
  relayUrl: string;
  /** The inside agent the page talks to. */
  alice: string;
  /** `http://HOST:PORT/dashboard/` of the relay's and the gateway's admin listeners. */
  dashboards: { relay: string; gateway: string };
}

export interface DemoWebServer {
  /** `http://HOST:PORT/`: what to open. */
  readonly url: string;
  /** The page's origins (what the relay must allow): the bound address, and `localhost` for loopback. */
  readonly origins: string[];
  /** Starts answering with the page (503 until then). */
  ready(config: DemoWebConfig): void;
  /** Closes the listener and its connections; again: the same promise. */
  close(): Promise<void>;
}

/** The client's browser bundle (built by `npm run build`; shipped in @postern/client). */
function readBundle(): Buffer {
  const path = fileURLToPath(import.meta.resolve('@postern/client/postern.min.js'));
  try {
    return readFileSync(path);
  } catch {
    throw new Error(`the browser bundle ${path} is missing: run \`npm run build\` (or \`npm run build:browser -w @postern/client\`)`);
  }
}

const escapeAttr = (s: string): string => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Origins without a path: `http://127.0.0.1:7000`. */
const originOf = (url: string): string => new URL(url).origin;

/** Binds the page's address now (the relay must know the page's origin before it starts). */
export async function startDemoWeb(at: ListenAddress): Promise<DemoWebServer> {
  const bundle = readBundle();
  const script = readFileSync(new URL('./page.js', import.meta.url));
  let config: DemoWebConfig | undefined;
  let page: { html: string; csp: string } | undefined;
  let issued = { minute: 0, count: 0 };
  let closing: Promise<void> | undefined;

  const server: Server = createServer((req, res) => {
    try {
      handle(req, res);
    } catch {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('internal error\n');
    }
  });
  const origins: string[] = [];

  const headers = (type: string, csp = "default-src 'none'; frame-ancestors 'none'"): Record<string, string> => ({
    'content-type': type,
    'content-security-policy': csp,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-store',
  });
  const text = (res: ServerResponse, status: number, body: string): void => void res.writeHead(status, headers('text/plain; charset=utf-8')).end(`${body}\n`);

  function handle(req: IncomingMessage, res: ServerResponse): void {
    // DNS rebinding: a page of another site that resolves its name to this address is not served.
    const host = (req.headers.host ?? '').replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
    if (!(host === 'localhost' || /^[\d.]+$/.test(host) || host.includes(':'))) return text(res, 421, 'use the address printed by postern demo');
    if (config === undefined || page === undefined) return text(res, 503, 'starting');
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'POST' && path === '/token') return token(req, res, config);
    if (req.method !== 'GET' && req.method !== 'HEAD') return text(res, 405, 'GET or POST /token');
    if (path === '/') return void res.writeHead(200, headers('text/html; charset=utf-8', page.csp)).end(page.html);
    if (path === '/page.js') return void res.writeHead(200, headers('text/javascript; charset=utf-8')).end(script);
    if (path === '/postern.min.js') return void res.writeHead(200, headers('text/javascript; charset=utf-8')).end(bundle);
    if (path === '/style.css') return void res.writeHead(200, headers('text/css; charset=utf-8')).end(STYLE_CSS);
    text(res, 404, 'not found');
  }

  function token(req: IncomingMessage, res: ServerResponse, c: DemoWebConfig): void {
    // Another site's page may not take tokens (a browser always sends Origin on a POST).
    const origin = req.headers.origin;
    if (origin !== undefined && !origins.includes(origin)) return text(res, 403, 'not from the demo page');
    req.resume();
    const minute = Math.floor(Date.now() / 60_000);
    if (issued.minute !== minute) issued = { minute, count: 0 };
    if (++issued.count > TOKENS_PER_MINUTE) return text(res, 429, 'too many guests this minute');
    const name = `guest-${randomBytes(3).toString('hex')}`;
    issueToken(c.secret, { domain: c.domain, name, ttlSeconds: GUEST_TTL_S }).then(
      (t) => {
        const body = { url: c.relayUrl, name, address: `${name}@${c.domain}`, token: t, expiresAt: Date.now() + GUEST_TTL_S * 1000, alice: c.alice };
        res.writeHead(200, headers('application/json')).end(JSON.stringify(body));
      },
      () => text(res, 500, 'no token'),
    );
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  const base = `http://${formatListen({ host: bound.address, port: bound.port })}`;
  origins.push(base);
  if (bound.address === '127.0.0.1' || bound.address === '::1') origins.push(`http://localhost:${bound.port}`);

  return {
    url: `${base}/`,
    origins,
    ready(c) {
      config = c;
      const relay = new URL(c.relayUrl);
      const http = `${relay.protocol === 'wss:' ? 'https:' : 'http:'}//${relay.host}`;
      const frames = [originOf(c.dashboards.relay), originOf(c.dashboards.gateway)];
      // No 'unsafe-inline': the page's code and style are files of this server.
      const csp =
        `default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; ` +
        `connect-src 'self' ${relay.origin} ${http}; ` +
        `frame-src ${frames.join(' ')}; form-action 'self'; base-uri 'none'; frame-ancestors 'none'`;
      const html = INDEX_HTML.replace('{{RELAY_DASHBOARD}}', escapeAttr(c.dashboards.relay)).replace('{{GATEWAY_DASHBOARD}}', escapeAttr(c.dashboards.gateway));
      page = { html, csp };
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
