// The router's HTTP side against bad requests from anyone who can reach a listener: a request
// target URL cannot parse, and a request body that stops arriving. Real sockets.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
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
