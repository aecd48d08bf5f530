// The auto dialer's decisions, with in-memory transports standing in for WebSocket and
// long-poll: fallback, staying on long-poll, probing with backoff, upgrading back, and falling
// back when WebSocket links keep breaking.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Dialer, DialOptions, Duplex } from '@postern/core';
import { TransportError } from '@postern/protocol';
import { memoryPair, waitFor, type MemoryDuplex } from '@postern/testing';
import { createServer } from 'node:net';
import { createNodeWsDialer } from '@postern/transport-ws/node';
import { createNodeHttpDialer } from '@postern/transport-http/node';
import { UPGRADE_REASON, createAutoDialer, type AutoDialerEvent } from '@postern/transport-http';

interface Fake {
  dial: Dialer;
  works: boolean;
  calls: DialOptions[];
  /** The far ends of the duplexes handed out. */
  peers: MemoryDuplex[];
}

function fake(kind: string, works: boolean): Fake {
  const f: Fake = {
    works,
    calls: [],
    peers: [],
    dial: (_url, o) => {
      f.calls.push(o);
      if (!f.works) return Promise.reject(new TransportError(`${kind} refused`));
      const [a, b] = memoryPair();
      f.peers.push(b);
      b.start({ message: () => {}, close: () => {} });
      return Promise.resolve(a);
    },
  };
  return f;
}

function ended(d: Duplex): Promise<Error | undefined> {
  return new Promise((r) => d.start({ message: () => {}, close: r }));
}

describe('createAutoDialer', () => {
  // The dialer's timers do not hold the process (real transports' sockets do); these fakes have none.
  let hold: ReturnType<typeof setInterval>;
  before(() => (hold = setInterval(() => {}, 1000)));
  after(() => clearInterval(hold));

  it('uses WebSocket when it opens, with at most half the dial timeout', async () => {
    const ws = fake('ws', true);
    const http = fake('http', true);
    const dial = createAutoDialer({ ws: ws.dial, http: http.dial, wsTimeoutMs: 3000 });
    const d = await dial('ws://x', { timeoutMs: 4000 });
    assert.equal(d.kind, 'memory');
    assert.equal(ws.calls.length, 1);
    assert.equal(ws.calls[0]!.timeoutMs, 2000);
    assert.equal(http.calls.length, 0);
    d.close();
  });

  it('falls back to long-poll when WebSocket cannot be opened, stays there, and fails with both reasons when neither works', async () => {
    const ws = fake('ws', false);
    const http = fake('http', true);
    const events: AutoDialerEvent[] = [];
    const dial = createAutoDialer({ ws: ws.dial, http: http.dial, wsProbeIntervalMs: 60_000, onEvent: (e) => events.push(e) });
    const d1 = await dial('ws://x', { timeoutMs: 4000 });
    assert.equal(http.calls.length, 1);
    assert.deepEqual(events, [{ type: 'fallback', reason: 'WebSocket could not be opened: ws refused' }]);
    d1.close();
    await d1.done;
    await dial('ws://x', { timeoutMs: 4000 }).then((d) => d.close());
    assert.equal(ws.calls.length, 1, 'on long-poll, dials go straight to long-poll');
    assert.equal(http.calls.length, 2);
    http.works = false;
    await assert.rejects(dial('ws://x', { timeoutMs: 4000 }), (e: unknown) => {
      assert.ok(e instanceof TransportError);
      assert.match(e.message, /ws refused; HTTP long-poll failed too: http refused/);
      assert.equal(e.permanent, false, 'both down is worth retrying soon');
      return true;
    });
  });

  it('names a cause both transports met once: a router that is down (real sockets)', async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as { port: number }).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const dial = createAutoDialer({ ws: createNodeWsDialer({ proxy: false }), http: createNodeHttpDialer({ proxy: false }) });
    await assert.rejects(dial(`ws://127.0.0.1:${port}`, { timeoutMs: 4000 }), (e: unknown) => {
      assert.ok(e instanceof TransportError);
      assert.equal(e.message.match(/ECONNREFUSED/g)?.length, 1, e.message);
      assert.match(e.message, /\(by WebSocket and by HTTP long-poll\)$/);
      return true;
    });
  });

  it('fails permanently when WebSocket failed for a passing reason and long-poll met a proxy refusal', async () => {
    const ws = fake('ws', false);
    const refusal = new TransportError('proxy http://p:3128 refused the tunnel: 407 Proxy Authentication Required', { permanent: true });
    const dial = createAutoDialer({ ws: ws.dial, http: () => Promise.reject(refusal) });
    await assert.rejects(dial('ws://x', { timeoutMs: 4000 }), (e: unknown) => {
      assert.ok(e instanceof TransportError);
      assert.match(e.message, /ws refused; HTTP long-poll failed too: proxy http:\/\/p:3128 refused the tunnel: 407/);
      assert.equal(e.permanent, true);
      return true;
    });
  });

  it('does not fall back when WebSocket failed permanently (proxy refusal, untrusted certificate): long-poll would meet the same', async () => {
    const http = fake('http', true);
    const events: AutoDialerEvent[] = [];
    const refusal = new TransportError('proxy http://p:3128 refused the tunnel: 407 Proxy Authentication Required', { permanent: true });
    const dial = createAutoDialer({ ws: () => Promise.reject(refusal), http: http.dial, onEvent: (e) => events.push(e) });
    await assert.rejects(dial('ws://x', { timeoutMs: 4000 }), (e: unknown) => e === refusal);
    assert.equal(http.calls.length, 0);
    assert.deepEqual(events, []);
  });

  it('probes WebSocket with backoff while on long-poll, and closes the long-poll link with UPGRADE_REASON when a probe opens', async () => {
    const ws = fake('ws', false);
    const http = fake('http', true);
    const events: AutoDialerEvent[] = [];
    const dial = createAutoDialer({ ws: ws.dial, http: http.dial, wsProbeIntervalMs: 40, onEvent: (e) => events.push(e) });
    const d = await dial('ws://x', {});
    const end = ended(d);
    await waitFor(() => events.filter((e) => e.type === 'probe-failed').length >= 2, 'two failed probes', 3000, 5);
    const delays = events.flatMap((e) => (e.type === 'probe-failed' ? [e.nextInMs] : []));
    assert.deepEqual(delays.slice(0, 2), [80, 160]);
    ws.works = true;
    const err = await end;
    assert.ok(err instanceof TransportError);
    assert.equal(err.message, UPGRADE_REASON);
    assert.equal(events.at(-1)?.type, 'upgrade');
    assert.equal(ws.peers.length, 1);
    await ws.peers[0]!.done; // the probe was closed
    const callsBefore = http.calls.length;
    const next = await dial('ws://x', {});
    assert.equal(ws.peers.length, 2, 'the next dial used WebSocket');
    assert.equal(http.calls.length, callsBefore);
    next.close();
  });

  it('stops probing when the long-poll link ends', async () => {
    const ws = fake('ws', false);
    const http = fake('http', true);
    const dial = createAutoDialer({ ws: ws.dial, http: http.dial, wsProbeIntervalMs: 20 });
    const d = await dial('ws://x', {});
    d.start({ message: () => {}, close: () => {} });
    d.close();
    await d.done;
    const calls = ws.calls.length;
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(ws.calls.length, calls);
  });

  it('stops probing when the long-poll link is closed by its owner before start()', async () => {
    const ws = fake('ws', false);
    const http = fake('http', true);
    const dial = createAutoDialer({ ws: ws.dial, http: http.dial, wsProbeIntervalMs: 20 });
    const d = await dial('ws://x', {});
    d.close(); // an uplink closing while the dial finished: start() never comes
    await d.done;
    const calls = ws.calls.length;
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(ws.calls.length, calls);
  });

  it('where WebSocket opens and is then cut, an upgrade that ends in a fallback doubles the probe interval (no flapping)', async () => {
    const ws = fake('ws', false);
    const http = fake('http', true);
    const events: AutoDialerEvent[] = [];
    const dial = createAutoDialer({ ws: ws.dial, http: http.dial, wsFailures: 2, wsStableMs: 5000, wsProbeIntervalMs: 40, onEvent: (e) => events.push(e) });
    // On long-poll; then the middlebox lets handshakes through and cuts every stream.
    let d = await dial('ws://x', {});
    ws.works = true;
    for (let round = 0; round < 2; round++) {
      const t0 = Date.now();
      await ended(d); // a probe opened: upgrade
      const upgradedAfter = Date.now() - t0;
      assert.ok(upgradedAfter >= 40 * 0.8 * 2 ** round - 5, `round ${round}: upgraded after ${upgradedAfter} ms`);
      for (let i = 0; i < 2; i++) {
        const w = await dial('ws://x', {});
        const end = ended(w);
        ws.peers.at(-1)!.destroy(new Error('cut by middlebox'));
        await end;
      }
      d = await dial('ws://x', {}); // back on long-poll
      assert.equal(d.kind, 'memory');
    }
    d.close();
    const kinds = events.map((e) => e.type);
    assert.deepEqual(kinds, ['fallback', 'upgrade', 'fallback', 'upgrade', 'fallback']);
  });

  it('switches to long-poll when WebSocket links keep breaking soon after opening', async () => {
    const ws = fake('ws', true);
    const http = fake('http', true);
    const events: AutoDialerEvent[] = [];
    const dial = createAutoDialer({ ws: ws.dial, http: http.dial, wsFailures: 3, wsStableMs: 5000, wsProbeIntervalMs: 60_000, onEvent: (e) => events.push(e) });
    for (let i = 0; i < 3; i++) {
      const d = await dial('ws://x', {});
      assert.equal(http.calls.length, 0);
      const end = ended(d);
      ws.peers.at(-1)!.destroy(new Error('reset by middlebox'));
      await end;
    }
    assert.equal(events[0]?.type, 'fallback');
    assert.match((events[0] as { reason: string }).reason, /3 WebSocket links in a row broke within 5000 ms.*reset by middlebox/);
    const d = await dial('ws://x', {});
    assert.equal(http.calls.length, 1);
    d.close();
  });

  it('does not count clean closes or links that lasted as failures', async () => {
    const ws = fake('ws', true);
    const http = fake('http', true);
    const dial = createAutoDialer({ ws: ws.dial, http: http.dial, wsFailures: 2, wsStableMs: 30 });
    for (let i = 0; i < 3; i++) {
      const d = await dial('ws://x', {});
      const end = ended(d);
      d.close();
      await end;
    }
    for (let i = 0; i < 3; i++) {
      const d = await dial('ws://x', {});
      const end = ended(d);
      await new Promise((r) => setTimeout(r, 50));
      ws.peers.at(-1)!.destroy(new Error('late reset'));
      await end;
    }
    await dial('ws://x', {}).then((d) => d.close());
    assert.equal(http.calls.length, 0);
  });
});
