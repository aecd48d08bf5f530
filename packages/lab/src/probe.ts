// A one-shot network probe, run inside a lab namespace. Prints one line and exits 0:
//
//   node probe.js tcp HOST PORT MS
//     connected | refused | timeout | error CODE: whether a TCP connection opens within MS.
//   node probe.js connect PROXY_HOST PROXY_PORT TARGET USER:PASS|- MS
//     status NNN | refused | timeout | error CODE: the proxy's answer to CONNECT TARGET.
//   node probe.js idle PROXY_HOST PROXY_PORT TARGET USER:PASS|- MS
//     closed after N ms | open after MS ms | status NNN | ...: CONNECT TARGET, then say nothing
//     and tell when the proxy closes the tunnel (its idle timeout).
//   node probe.js get HOST PORT PATH MS [websocket]
//     status NNN | ...: the answer to GET PATH, with WebSocket upgrade headers when asked.
//   node probe.js tlsget HOST PORT PATH MS CA_FILE [websocket]
//     the same over TLS, trusting only CA_FILE: a certificate it does not accept is
//     `error CODE` (e.g. error UNABLE_TO_VERIFY_LEAF_SIGNATURE).
//   node probe.js body HOST PORT PATH MS CA_FILE
//     status NNN BODY (BODY on one line, e.g. a router's /healthz JSON, with its counters: the
//     request carries $POSTERN_ADMIN_TOKEN) | error CODE | timeout
import { readFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';

type Outcome = string;

/** Opens a connection (TLS trusting `ca` when given), writes `request` (if any), resolves with the outcome. */
function exchange(host: string, port: number, request: string | undefined, ms: number, ca?: string): Promise<Outcome> {
  return new Promise((resolve) => {
    const sock = ca === undefined ? net.connect({ host, port }) : tls.connect({ host, port, ca });
    let settled = false;
    let data = '';
    const finish = (o: Outcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(o);
    };
    const timer = setTimeout(() => finish('timeout'), ms);
    sock.on(ca === undefined ? 'connect' : 'secureConnect', () => {
      if (request === undefined) finish('connected');
      else sock.write(request);
    });
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      data += d;
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(data);
      if (m !== null) finish(`status ${m[1]}`);
      else if (data.includes('\r\n')) finish(`bad answer ${JSON.stringify(data.slice(0, 80))}`);
    });
    sock.on('end', () => finish(data === '' ? 'closed' : `bad answer ${JSON.stringify(data.slice(0, 80))}`));
    sock.on('error', (e: NodeJS.ErrnoException) => finish(e.code === 'ECONNREFUSED' ? 'refused' : `error ${e.code ?? e.message}`));
  });
}

/** CONNECTs through a proxy, then stays silent: when does the proxy close the idle tunnel? */
function idleTunnel(host: string, port: number, request: string, ms: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    let data = '';
    let since = 0;
    let settled = false;
    const finish = (o: Outcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(o);
    };
    let timer = setTimeout(() => finish('timeout'), 10_000);
    sock.on('connect', () => sock.write(request));
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      if (since > 0) return finish(`bad answer: ${d.length} bytes in the idle tunnel`);
      data += d;
      if (!data.includes('\r\n\r\n')) return;
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(data);
      if (m?.[1] !== '200') return finish(m === null ? `bad answer ${JSON.stringify(data.slice(0, 80))}` : `status ${m[1]}`);
      since = Date.now();
      clearTimeout(timer);
      timer = setTimeout(() => finish(`open after ${ms} ms`), ms);
    });
    const closed = (): void => finish(since > 0 ? `closed after ${Date.now() - since} ms` : 'closed');
    sock.on('end', closed);
    sock.on('close', closed);
    sock.on('error', (e: NodeJS.ErrnoException) => finish(e.code === 'ECONNREFUSED' ? 'refused' : `error ${e.code ?? e.message}`));
  });
}

/** GET https://HOST:PORT/PATH trusting `ca`: the status and the body on one line. */
function fetchBody(host: string, port: number, path: string, ms: number, ca: string): Promise<Outcome> {
  return new Promise((resolve) => {
    // The lab's routers take POSTERN_ADMIN_TOKEN: with it their /healthz has the counters.
    const token = process.env['POSTERN_ADMIN_TOKEN'];
    const headers = token === undefined ? {} : { authorization: `Bearer ${token}` };
    const req = https.get({ host, port, path, ca, timeout: ms, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(`status ${res.statusCode ?? '?'} ${body.replace(/\s*\n\s*/g, ' ').trim()}`));
      res.on('error', (e: NodeJS.ErrnoException) => resolve(`error ${e.code ?? e.message}`));
    });
    req.on('timeout', () => {
      req.destroy();
      resolve('timeout');
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve(`error ${e.code ?? e.message}`));
  });
}

async function main(argv: string[]): Promise<Outcome> {
  const [mode, ...a] = argv;
  if (mode === 'tcp') {
    const [host, port, ms] = a;
    return exchange(host!, Number(port), undefined, Number(ms));
  }
  if (mode === 'connect' || mode === 'idle') {
    const [host, port, target, cred, ms] = a;
    const auth = cred === undefined || cred === '-' ? '' : `Proxy-Authorization: Basic ${Buffer.from(cred).toString('base64')}\r\n`;
    const request = `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${auth}\r\n`;
    return mode === 'connect' ? exchange(host!, Number(port), request, Number(ms)) : idleTunnel(host!, Number(port), request, Number(ms));
  }
  if (mode === 'get' || mode === 'tlsget') {
    const [host, port, path, ms, ...rest] = a;
    const ca = mode === 'tlsget' ? readFileSync(rest.shift()!, 'utf8') : undefined;
    const upgrade = rest[0] === 'websocket' ? 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' : '';
    return exchange(host!, Number(port), `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\n${upgrade}\r\n`, Number(ms), ca);
  }
  if (mode === 'body') {
    const [host, port, path, ms, caFile] = a;
    return fetchBody(host!, Number(port), path!, Number(ms), readFileSync(caFile!, 'utf8'));
  }
  throw new Error(`probe: unknown mode ${String(mode)}`);
}

process.stdout.write(`${await main(process.argv.slice(2))}\n`);
