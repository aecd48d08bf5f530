// The router's HTTP side against bad requests from anyone who can reach a listener: a request
// target URL cannot parse, a request body that stops arriving, and pages of origins not allowed
// (cross-site WebSocket hijacking). Real sockets.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { FrameDecoder, FrameType, WireCode, type Frame } from '@postern/protocol';
import { startRouter, type RouterServer } from '@postern/router';

/** Writes `request` on a fresh connection; resolves with what came back before the server closed it, and when. */
function exchange(port: number, request: string, timeoutMs = 10_000): Promise<{ answer: string; closedAfterMs: number }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const sock = net.connect({ host: '127.0.0.1', port });
    let answer = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`the server kept the connection open for ${timeoutMs} ms; got ${JSON.stringify(answer)}`));
    }, timeoutMs);
    sock.setEncoding('latin1');
    sock.on('connect', () => sock.write(request));
    sock.on('data', (d: string) => (answer += d));
    sock.on('error', () => {});
    sock.on('close', () => {
      clearTimeout(timer);
      resolve({ answer, closedAfterMs: Date.now() - t0 });
    });
  });
}

async function healthy(r: RouterServer): Promise<boolean> {
  const res = await fetch(`http://127.0.0.1:${r.addresses[0]!.port}/healthz`);
  return res.status === 200 && ((await res.json()) as { status: string }).status === 'ok';
}

describe('router HTTP hardening', () => {
  let r: RouterServer;
  before(async () => {
    r = await startRouter({ domain: 'acme', listen: ['127.0.0.1:0'], requestTimeoutMs: 1000 });
  });
  after(() => r.close());

  it('answers a request target that URL cannot parse, and keeps serving', async () => {
    const port = r.addresses[0]!.port;
    for (const target of ['//[/postern/http/sessions', 'http://[/x']) {
      const { answer } = await exchange(port, `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      assert.match(answer, /^HTTP\/1\.1 (4\d\d)/, `an answer to GET ${target}`);
    }
    assert.ok(await healthy(r), 'the router still serves');
  });

  it('closes a connection whose request body stops arriving, after requestTimeoutMs', async () => {
    const port = r.addresses[0]!.port;
    const { answer, closedAfterMs } = await exchange(port, 'POST /postern/http/sessions HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\nab');
    assert.ok(closedAfterMs >= 900, `closed after ${closedAfterMs} ms, before the timeout`);
    assert.ok(closedAfterMs < 5000, `closed after ${closedAfterMs} ms`);
    assert.ok(answer === '' || /^HTTP\/1\.1 408/.test(answer), `408 or nothing: ${JSON.stringify(answer)}`);
    assert.ok(await healthy(r));
  });

  it('refuses a requestTimeoutMs below 1000 ms', async () => {
    await assert.rejects(startRouter({ domain: 'acme', requestTimeoutMs: 10 }), { code: 'ERR_CONFIG' });
  });
});

/** Opens a WebSocket to `url` with an Origin header (as a browser page would); resolves with the HTTP status of a refusal, or 101. */
function upgrade(url: string, origin: string | undefined): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, origin === undefined ? {} : { origin });
    ws.on('open', () => {
      ws.terminate();
      resolve({ status: 101, body: '' });
    });
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.on('error', reject);
  });
}

describe('router: web origins (cross-site WebSocket hijacking)', () => {
  it('refuses WebSocket upgrades and long-poll opens from pages of origins not allowed; programs (no Origin) and allowed pages get through', async () => {
    const warnings: string[] = [];
    const logger = { debug: () => {}, info: () => {}, warn: (_e: string, m: string, f?: object) => warnings.push(`${m} ${JSON.stringify(f)}`), error: () => {} };
    // An open router, as a gateway's LAN side often is: without the check, any page a user on that LAN opens could claim alice and read her messages.
    const r = await startRouter({ domain: 'acme', listen: ['127.0.0.1:0'], allowOrigins: ['https://chat.acme.example'], logger });
    after(() => r.close());
    const port = r.addresses[0]!.port;
    const url = `ws://127.0.0.1:${port}`;
    const evil = await upgrade(url, 'https://evil.example');
    assert.equal(evil.status, 403);
    assert.match(evil.body, /does not let web pages of this origin connect/);
    assert.equal((await upgrade(url, 'https://evil.example')).status, 403);
    assert.equal((await upgrade(url, 'https://chat.acme.example')).status, 101);
    assert.equal((await upgrade(url, undefined)).status, 101, 'no Origin: not a page');
    const lp = await fetch(`http://127.0.0.1:${port}/postern/http/sessions`, { method: 'POST', headers: { origin: 'https://evil.example' } });
    assert.equal(lp.status, 403);
    const ok = await fetch(`http://127.0.0.1:${port}/postern/http/sessions`, { method: 'POST', headers: { origin: 'https://chat.acme.example' } });
    assert.equal(ok.status, 201);
    assert.equal(ok.headers.get('access-control-allow-origin'), 'https://chat.acme.example');
    // Logged once per origin, whichever way it came.
    assert.equal(warnings.filter((w) => w.includes('evil.example')).length, 1, warnings.join('\n'));
    assert.ok(await healthy(r));
  });

  it('lets no web page connect by default', async () => {
    const r = await startRouter({ domain: 'acme', listen: ['127.0.0.1:0'], logger: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} } });
    after(() => r.close());
    assert.equal((await upgrade(`ws://127.0.0.1:${r.addresses[0]!.port}`, 'http://localhost:3000')).status, 403);
    assert.equal((await upgrade(`ws://127.0.0.1:${r.addresses[0]!.port}`, undefined)).status, 101);
  });
});

describe('router: frames that never complete', () => {
  it('closes a connection that leaves a frame half-sent with TIMEOUT after partialFrameTimeoutMs, and keeps serving', async () => {
    const r = await startRouter({ domain: 'acme', listen: ['127.0.0.1:0'], partialFrameTimeoutMs: 300, logger: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} } });
    after(() => r.close());
    const ws = new WebSocket(`ws://127.0.0.1:${r.addresses[0]!.port}`);
    await new Promise((resolve, reject) => ws.on('open', resolve).on('error', reject));
    const frames: Frame[] = [];
    const dec = new FrameDecoder();
    ws.on('message', (d: Buffer) => dec.push(new Uint8Array(d), (f) => frames.push(f)));
    const t0 = Date.now();
    // A header announcing a 1000-byte frame, then nothing more.
    ws.send(Buffer.from([0, 0, 3, 232, FrameType.MSG, 0]));
    const code = await new Promise<number>((resolve) => ws.on('close', (c: number) => resolve(c)));
    const waited = Date.now() - t0;
    const close = frames.find((f) => f.type === FrameType.CLOSE);
    assert.ok(close !== undefined && close.type === FrameType.CLOSE, JSON.stringify(frames));
    assert.equal(close.code, WireCode.TIMEOUT);
    assert.match(close.reason, /still incomplete \(6 bytes of it came\)/);
    assert.ok(waited >= 250 && waited < 5000, `closed after ${waited} ms`);
    assert.equal(code, 1000);
    assert.ok(await healthy(r));
  });
});
