// A middlebox that breaks WebSocket, as corporate TLS-inspection boxes do. The lab redirects the
// no-WebSocket LAN's TCP for the relay to it, so it must see inside TLS to judge a request: it
// terminates TLS with a certificate for the relay's address signed by its own inspection CA
// (which the LAN's hosts are made to trust, as companies push theirs to their machines), then
// forwards each plain HTTP request (keep-alive, streamed bodies, long polls) over a new TLS
// connection to the relay, checking the relay's certificate against the lab CA. It answers 403
// to every request asking for `Upgrade: websocket` and to CONNECT, until told to let upgrades
// through: then it tunnels them (TLS to the relay, bytes both ways).
//
//   node middlebox.js LISTEN_HOST LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT CERT KEY UPSTREAM_CA
//
// SIGUSR1 lets WebSocket upgrades through from then on, SIGUSR2 refuses them again (the default);
// each prints a line once in effect. Prints one line when listening, then one per decision:
//   middlebox: listening on HOST:PORT, forwarding to HOST:PORT
//   middlebox: upgrades allowed | middlebox: upgrades refused
//   middlebox: refused websocket upgrade GET /path
//   middlebox: tunnelled websocket upgrade GET /path
//   middlebox: refused CONNECT host:port
//   middlebox: forwarded POST /path -> 200
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';

const [listenHost, listenPort, upHost, upPort, certPath, keyPath, caPath] = process.argv.slice(2);
if (caPath === undefined) throw new Error('usage: middlebox.js LISTEN_HOST LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT CERT KEY UPSTREAM_CA');

const log = (line: string): boolean => process.stdout.write(`middlebox: ${line}\n`);
const upstreamCa = readFileSync(caPath, 'utf8');
const agent = new https.Agent({ keepAlive: true, ca: upstreamCa });
let allowUpgrades = false;

process.on('SIGUSR1', () => {
  allowUpgrades = true;
  log('upgrades allowed');
});
process.on('SIGUSR2', () => {
  allowUpgrades = false;
  log('upgrades refused');
});

function refuse(socket: Duplex, what: string): void {
  log(`refused ${what}`);
  socket.end('HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 27\r\nConnection: close\r\n\r\nWebSocket is not allowed.\r\n');
}

/** The path of a request in origin form, also when a client sent the absolute (proxy) form. */
function originPath(url: string): string {
  if (!/^[a-z]+:\/\//i.test(url)) return url;
  const u = new URL(url);
  return `${u.pathname}${u.search}`;
}

/** Passes an upgrade request on to the relay as it came, then joins the two connections. */
function tunnel(req: http.IncomingMessage, socket: Duplex, head: Buffer, what: string): void {
  const up = tls.connect({ host: upHost, port: Number(upPort), ca: upstreamCa });
  const fail = (e: Error): void => {
    log(`upstream error ${what}: ${e.message}`);
    socket.destroy();
    up.destroy();
  };
  up.once('error', fail);
  socket.on('error', () => up.destroy());
  up.once('secureConnect', () => {
    log(`tunnelled ${what}`);
    const lines = [`${req.method ?? 'GET'} ${originPath(req.url ?? '/')} HTTP/1.1`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]!}: ${req.rawHeaders[i + 1]!}`);
    up.write(`${lines.join('\r\n')}\r\n\r\n`);
    if (head.length > 0) up.write(head);
    up.off('error', fail);
    up.on('error', () => socket.destroy());
    up.pipe(socket).pipe(up);
  });
}

const server = https.createServer({ cert: readFileSync(certPath!), key: readFileSync(keyPath!) }, (req, res) => {
  const path = originPath(req.url ?? '/');
  if (/websocket/i.test(req.headers.upgrade ?? '')) {
    // node:http hands upgrades to the 'upgrade' listener; this is a safety net.
    log(`refused websocket upgrade ${req.method ?? '?'} ${path}`);
    res.writeHead(403, { 'content-type': 'text/plain', connection: 'close' }).end('WebSocket is not allowed.\r\n');
    return;
  }
  const up = https.request({ host: upHost, port: Number(upPort), method: req.method, path, headers: req.headers, agent }, (ures) => {
    log(`forwarded ${req.method ?? '?'} ${path} -> ${ures.statusCode ?? '?'}`);
    res.writeHead(ures.statusCode ?? 502, ures.statusMessage, ures.headers);
    ures.pipe(res);
    ures.on('error', () => res.destroy());
  });
  up.on('error', (e) => {
    log(`upstream error ${req.method ?? '?'} ${path}: ${e.message}`);
    if (res.headersSent) res.destroy();
    else res.writeHead(502, { 'content-type': 'text/plain' }).end(`upstream: ${e.message}\r\n`);
  });
  // The client went away (a long poll it gave up on): so does the upstream request.
  res.on('close', () => {
    if (!res.writableFinished) up.destroy();
  });
  req.pipe(up);
});
server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
  const what = `websocket upgrade ${req.method ?? '?'} ${originPath(req.url ?? '/')}`;
  if (allowUpgrades && /websocket/i.test(req.headers.upgrade ?? '')) tunnel(req, socket, head, what);
  else refuse(socket, what);
});
server.on('connect', (req: http.IncomingMessage, socket: Duplex) => refuse(socket, `CONNECT ${req.url ?? '?'}`));
// A client that fails the TLS handshake (it does not trust the inspection CA): one line, no crash.
server.on('tlsClientError', (e: Error) => log(`TLS handshake failed: ${e.message}`));
// Long polls may hang for a while: no request timeout of our own.
server.requestTimeout = 0;
server.listen(Number(listenPort), listenHost, () => log(`listening on ${listenHost}:${listenPort}, forwarding to ${upHost}:${upPort}`));
