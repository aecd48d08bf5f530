import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { TransportError, connect, type Client, type ClientStatus, type Message } from '@postern/client';
import type { Dialer, Duplex } from '@postern/core';
import { FrameType, WireCode, decodeBatch, encodeFrame } from '@postern/protocol';
import { attachWsServer, createNodeWsDialer } from '@postern/transport-ws/node';
import { issueToken, startRouter, type RouterServer } from '@postern/router';
import { MemoryStore, type NewMessage } from '@postern/core';
import { waitFor, TEST_GUESTS } from '@postern/testing';

const secret = 'client-test-secret';

/** A MemoryStore whose appends wait until `open()`: a router that cannot accept yet. */
class GatedStore extends MemoryStore {
  #open = false;
  #held: Array<() => void> = [];
  /** Messages in appends not yet let through. */
  waiting = 0;
  override append(messages: readonly NewMessage[]): Promise<number[]> {
    if (this.#open) return super.append(messages);
    this.waiting += messages.length;
    return new Promise((resolve, reject) => {
      this.#held.push(() => void super.append(messages).then(resolve, reject));
    });
  }
  open(): void {
    this.#open = true;
    for (const h of this.#held.splice(0)) h();
  }
}

describe('client SDK against a real router', () => {
  let relay: RouterServer;
  const clients: Client[] = [];
  const open = async (o: Parameters<typeof connect>[0]): Promise<Client> => {
    const c = await connect(o);
    clients.push(c);
    return c;
  };
  const token = (name: string): Promise<string> => issueToken(secret, { domain: 'relay', name });

  before(async () => {
    // `later` is provisioned: messages to it wait before it ever connects.
    relay = await startRouter({ domain: 'relay', listen: ['127.0.0.1:0'], secret, ...TEST_GUESTS, knownNames: ['later'] });
  });
  after(async () => {
    for (const c of clients) await c.close();
    await relay.close();
  });

  it('rejects bad input before it reaches the wire', async () => {
    const c = await open({ url: relay.url });
    await assert.rejects(c.send('not an address!', 'x'), { code: 'ERR_BAD_ADDRESS' });
    await assert.rejects(c.send('x@y', new Uint8Array(2 * 1024 * 1024)), { code: 'ERR_FRAME_TOO_LARGE' });
    // 100 characters, 300 bytes: more than the wire's 255-byte id field. Refused, and not left in flight.
    await assert.rejects(c.send('x@relay', 'y', { id: '€'.repeat(100) }), (e: unknown) => (e as { code?: string }).code === 'ERR_BAD_ADDRESS' && /255 bytes/.test((e as Error).message));
    assert.equal(c.inFlight, 0);
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(c.send('x@relay', 'y', { signal: ac.signal }), { code: 'ERR_ABORTED' });
    await assert.rejects(connect({ url: relay.url, name: 'Not Valid' }), { code: 'ERR_CONFIG' });
    await assert.rejects(connect({ url: '' }), { code: 'ERR_CONFIG' });
    // A window that could forget a message not yet taken would let its resend through twice.
    await assert.rejects(connect({ url: relay.url, dedupWindow: 1000 }), { code: 'ERR_CONFIG' });
    await assert.rejects(connect({ url: relay.url, maxQueued: 100_000 }), /dedupWindow \(65536\) must be at least maxQueued \(100000\)/);
    // The connection is still fine after all of that.
    assert.equal(c.connected, true);
  });

  it('reports refusals with stable codes', async () => {
    await assert.rejects(connect({ url: relay.url, name: 'mallory' }), { code: 'ERR_NAME_NOT_ALLOWED' });
    await assert.rejects(connect({ url: relay.url, name: 'mallory', token: await token('eve') }), { code: 'ERR_NAME_NOT_ALLOWED' });
    await assert.rejects(connect({ url: relay.url, token: 'garbage' }), { code: 'ERR_AUTH_FAILED' });
    await assert.rejects(connect({ url: relay.url, token: await issueToken(secret, { domain: 'elsewhere' }) }), { code: 'ERR_AUTH_FAILED' });
    await assert.rejects(connect({ url: 'ws://127.0.0.1:1', connectTimeoutMs: 2000 }), { code: 'ERR_TRANSPORT' });
    const first = await open({ url: relay.url, name: 'taken', token: await token('taken') });
    await assert.rejects(connect({ url: relay.url, name: 'taken', token: await token('taken') }), { code: 'ERR_NAME_TAKEN' });
    assert.equal(first.connected, true);
  });

  it('claims a name after connecting with register()', async () => {
    const domainWide = await issueToken(secret, { domain: 'relay' });
    const c = await open({ url: relay.url, token: domainWide });
    assert.match(c.address, /^_/);
    await c.register('late-name');
    assert.equal(c.address, 'late-name@relay');
    const other = await open({ url: relay.url, name: 'sender', token: await token('sender') });
    const got = (async () => {
      for await (const m of c) return m;
      return undefined;
    })();
    await other.send('late-name', 'found you');
    assert.equal((await got)?.text(), 'found you');
    await assert.rejects(c.register('bad name'), { code: 'ERR_BAD_ADDRESS' });
  });

  it('applies backpressure at maxInFlight and keeps order', async () => {
    // A router whose store commits only when the test says so: nothing is accepted meanwhile.
    const gate = new GatedStore();
    const slow = await startRouter({ domain: 'relay', listen: ['127.0.0.1:0'], secret, ...TEST_GUESTS, store: gate });
    try {
      const rx = await connect({ url: slow.url, name: 'slowpoke', token: await token('slowpoke') });
      const tx = await connect({ url: slow.url, maxInFlight: 8 });
      const sends = Array.from({ length: 50 }, (_, i) => tx.send('slowpoke', String(i)));
      await waitFor(() => gate.waiting >= 8, 'eight appends', 2000);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(tx.inFlight, 8, 'only maxInFlight messages leave before acks come back');
      assert.equal(gate.waiting, 8);
      gate.open();
      const got: string[] = [];
      for await (const m of rx) {
        got.push(m.text());
        if (got.length === 50) break;
      }
      await Promise.all(sends);
      assert.deepEqual(got, Array.from({ length: 50 }, (_, i) => String(i)));
      await tx.close();
      await rx.close();
    } finally {
      await slow.close();
    }
  });

  it('with receipt "delivered", resolves once the recipient took it and rejects with the recipient refusal', async () => {
    const rx = await open({ url: relay.url, name: 'quitter', token: await token('quitter') });
    const tx = await open({ url: relay.url });
    const first = tx.send('quitter', 'one', { receipt: 'delivered' });
    for await (const m of rx) {
      assert.equal(m.text(), 'one');
      break;
    }
    await first;
    // The application stopped iterating: the message is refused, and the sender hears it.
    await assert.rejects(tx.send('quitter', 'two', { receipt: 'delivered' }), { code: 'ERR_UNAVAILABLE' });
  });

  it('reports an accepted message that cannot be delivered through onUndeliverable', async () => {
    const rx = await open({ url: relay.url, name: 'quitter2', token: await token('quitter2') });
    const tx = await open({ url: relay.url });
    await rx[Symbol.asyncIterator]().return?.(); // the application stops reading before anything came
    const failed = new Promise<{ id: string; to: string; code: string; volatile: boolean }>((resolve) =>
      tx.onUndeliverable((u) => resolve({ id: u.id, to: u.to, code: u.error.code, volatile: u.volatile })),
    );
    const { id } = await tx.send('quitter2', 'never read');
    assert.deepEqual(await failed, { id, to: 'quitter2@relay', code: 'ERR_UNAVAILABLE', volatile: false });
  });

  it('reports a volatile send the router refuses (NO_ROUTE, UNKNOWN_RECIPIENT) through onUndeliverable', async () => {
    const tx = await open({ url: relay.url });
    const refused: Array<{ id: string; to: string; code: string; volatile: boolean }> = [];
    tx.onUndeliverable((u) => refused.push({ id: u.id, to: u.to, code: u.error.code, volatile: u.volatile }));
    // A volatile send resolves as it leaves; the router's refusal comes after.
    const a = await tx.send('someone@nowhere', 'no route to that domain', { volatile: true });
    const b = await tx.send('nobody-ever', 'no such agent here', { volatile: true });
    await waitFor(() => refused.length === 2, 'both refusals');
    assert.deepEqual(refused, [
      { id: a.id, to: 'someone@nowhere', code: 'ERR_NO_ROUTE', volatile: true },
      { id: b.id, to: 'nobody-ever@relay', code: 'ERR_UNKNOWN_RECIPIENT', volatile: true },
    ]);
  });

  it('waits for an offline recipient: accepted at once, delivered when it connects', async () => {
    const tx = await open({ url: relay.url });
    const accepted = await tx.send('later', 'waited for you');
    const delivered = tx.send('later', 'and me', { receipt: 'delivered' });
    const rx = await open({ url: relay.url, name: 'later', token: await token('later') });
    const got: string[] = [];
    for await (const m of rx) {
      got.push(m.text());
      if (got.length === 2) break;
    }
    assert.deepEqual(got, ['waited for you', 'and me']);
    assert.ok(accepted.id.length > 0);
    await delivered;
  });

  it('with autoAck false, the router keeps a message until ack() and resends it after a reconnect', async () => {
    const tx = await open({ url: relay.url });
    const rx1 = await connect({ url: relay.url, name: 'manual', token: await token('manual'), autoAck: false });
    const sent = tx.send('manual', 'ack me', { receipt: 'delivered' });
    const it1 = rx1[Symbol.asyncIterator]();
    const first = await it1.next();
    assert.equal(first.done, false);
    const resume = rx1.resumeToken;
    await rx1.close(); // taken but never acked
    const rx2 = await open({ url: relay.url, name: 'manual', token: await token('manual'), autoAck: false, resume });
    const it2 = rx2[Symbol.asyncIterator]();
    const again = await it2.next();
    assert.equal(again.done, false);
    assert.equal(again.value.text(), 'ack me');
    again.value.ack();
    await sent;
  });

  it('acknowledges a message taken after a reconnect by the number of its resent copy (feature ACKS), once, on either order of take and resend', async () => {
    const ws = createNodeWsDialer({ proxy: false });
    let link: Duplex | undefined;
    const dialer: Dialer = async (url, o) => (link = await ws(url, o));
    const tx = await open({ url: relay.url });
    const rx = await open({ url: relay.url, name: 'renum', token: await token('renum'), dialer, backoff: { initialMs: 10, maxMs: 50 } });
    const reconnected = (): Promise<void> =>
      new Promise((resolve) => {
        const off = rx.onStatus((st) => {
          if (st.type === 'connected') {
            off();
            resolve();
          }
        });
      });
    const it = rx[Symbol.asyncIterator]();
    // (a) The resend arrives while the first copy waits in the inbox; then the application takes it.
    const a = tx.send('renum', 'a', { receipt: 'delivered' });
    let up = reconnected();
    await new Promise((r) => setTimeout(r, 100)); // the copy is in rx's inbox, not taken
    link!.close();
    await up;
    await new Promise((r) => setTimeout(r, 100)); // the router resent it on the new connection
    assert.equal(((await it.next()).value as Message).text(), 'a');
    await a;
    // (b) Taken while the connection is down: acknowledged when the resend comes (a duplicate then).
    const b = tx.send('renum', 'b', { receipt: 'delivered' });
    await new Promise((r) => setTimeout(r, 100)); // in the inbox
    up = reconnected();
    const down = new Promise<void>((resolve) => {
      const off = rx.onStatus((st) => {
        if (st.type === 'disconnected') {
          off();
          resolve();
        }
      });
    });
    link!.close();
    await down;
    assert.equal(((await it.next()).value as Message).text(), 'b', 'taken with no connection to acknowledge it on');
    await up;
    await b;
    const more = await Promise.race([it.next().then(() => 'delivered twice'), new Promise((r) => setTimeout(() => r('once'), 200))]);
    assert.equal(more, 'once');
  });

  it('does not lose a wake-up to an aborted send waiting for a slot', async () => {
    const rx = await open({ url: relay.url, name: 'slots', token: await token('slots') });
    const tx = await open({ url: relay.url, maxInFlight: 1 });
    const a = tx.send('slots', 'a');
    const ac = new AbortController();
    const b = tx.send('slots', 'b', { signal: ac.signal });
    ac.abort();
    await assert.rejects(b, { code: 'ERR_ABORTED' });
    const c = tx.send('slots', 'c');
    const got: string[] = [];
    for await (const m of rx) {
      got.push(m.text());
      if (got.length === 2) break;
    }
    await Promise.all([a, c]);
    assert.deepEqual(got, ['a', 'c']);
  });

  it('retries safely with the same id: the recipient takes it once', async () => {
    const rx = await open({ url: relay.url, name: 'once', token: await token('once') });
    const tx = await open({ url: relay.url });
    const first = tx.send('once', 'pay 100', { id: 'invoice-42' });
    const it = rx[Symbol.asyncIterator]();
    const m = await it.next();
    assert.equal((m.value as Message | undefined)?.id, 'invoice-42');
    await first;
    // The application retries (say its first attempt timed out): acknowledged, not delivered again.
    await tx.send('once', 'pay 100', { id: 'invoice-42' });
    const more = await Promise.race([it.next().then(() => 'delivered twice'), new Promise((r) => setTimeout(() => r('once'), 200))]);
    assert.equal(more, 'once');
  });

  it('holds volatile sends back while its connection drains, keeping their order', async () => {
    const rx = await open({ url: relay.url, name: 'vdrain', token: await token('vdrain') });
    const tx = await open({ url: relay.url, maxOutboundBytes: 4096 });
    const body = 'x'.repeat(1000);
    const sends = Array.from({ length: 300 }, (_, i) => tx.send('vdrain', `${i} ${body}`, { volatile: true }));
    await Promise.all(sends);
    const got: number[] = [];
    for await (const m of rx) {
      got.push(Number(m.text().split(' ')[0]));
      if (got.length === 300) break;
    }
    assert.deepEqual(got, Array.from({ length: 300 }, (_, i) => i));
  });

  it('streams status changes and ends them on close', async () => {
    const c = await connect({ url: relay.url });
    const seen: ClientStatus['type'][] = [];
    const reader = (async () => {
      for await (const s of c.status()) seen.push(s.type);
    })();
    await c.close();
    await reader;
    assert.deepEqual(seen, ['closed']);
    await assert.rejects(c.send('x@relay', 'y'), { code: 'ERR_CLOSED' });
  });

  it('replaced by another connection resuming its session: ERR_REPLACED reaches status, pending calls and a reader, and nothing goes unhandled', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown): void => void unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      const tk = await token('replaced');
      const first = await open({ url: relay.url, name: 'replaced', token: tk });
      const statuses: string[] = [];
      first.onStatus((s) => statuses.push(s.type === 'closed' || s.type === 'disconnected' ? `${s.type}:${s.error?.code}` : s.type));
      const reading = (async () => {
        for await (const m of first) void m;
      })().then(
        () => 'ended',
        (e: { code?: string }) => e.code,
      );
      const watching = (async () => {
        for await (const e of first.watch('later@relay')) void e;
      })().then(
        () => 'ended',
        (e: { code?: string }) => e.code,
      );
      // Sends of every kind under way when it is replaced: each settles with a code.
      const sends = [first.send('someone@nowhere', 'waits for a route', { receipt: 'delivered' }), first.send('someone@nowhere', 'accepted'), first.send('later@relay', 'volatile', { volatile: true })].map((p) =>
        p.then(
          () => 'ok',
          (e: { code?: string }) => e.code,
        ),
      );
      await waitFor(() => first.inFlight === 0, 'the reliable sends to be accepted');
      const second = await open({ url: relay.url, name: 'replaced', token: tk, resume: first.resumeToken });
      assert.equal(second.id, first.id);
      await waitFor(() => statuses.includes('closed:ERR_REPLACED'), 'the first client to close with ERR_REPLACED');
      assert.deepEqual(statuses, ['disconnected:ERR_REPLACED', 'closed:ERR_REPLACED']);
      assert.equal(await reading, 'ERR_REPLACED');
      assert.equal(await watching, 'ERR_REPLACED');
      assert.deepEqual(await Promise.all(sends), ['ERR_REPLACED', 'ok', 'ok']);
      await assert.rejects(first.send('later@relay', 'after'), { code: 'ERR_CLOSED' });
      await assert.rejects(first.setProperties({ a: 'b' }), { code: 'ERR_TRANSPORT' });
      await first.close();
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(unhandled, []);
      assert.equal(second.connected, true);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('after a permanent transport error (a proxy refusing it), retries at the longest backoff, not the next step', async () => {
    const ws = createNodeWsDialer({ proxy: false });
    let refuse = false;
    let link: Duplex | undefined;
    const dialer: Dialer = async (url, o) => {
      if (refuse) throw new TransportError('proxy http://p:3128 refused the tunnel: 407 Proxy Authentication Required', { permanent: true });
      link = await ws(url, o);
      return link;
    };
    const c = await open({ url: relay.url, dialer, backoff: { initialMs: 20, maxMs: 60_000 } });
    const events: ClientStatus[] = [];
    void (async () => {
      for await (const s of c.status()) events.push(s);
    })();
    refuse = true;
    link!.close();
    await waitFor(() => events.filter((e) => e.type === 'disconnected').length >= 2, 'the link lost, then a refused redial', 5000);
    const [lost, refused] = events.filter((e): e is Extract<ClientStatus, { type: 'disconnected' }> => e.type === 'disconnected');
    assert.ok(lost!.retryInMs < 1000, `a lost link is retried soon (${lost!.retryInMs} ms)`);
    assert.equal(refused!.retryInMs, 60_000);
    assert.equal(refused!.willReconnect, true);
    assert.match(refused!.error.message, /407/);
  });

  it('delivers volatile messages without acks', async () => {
    const rx = await open({ url: relay.url, name: 'vrx', token: await token('vrx') });
    const tx = await open({ url: relay.url });
    for (let i = 0; i < 100; i++) await tx.send('vrx', `v${i}`, { volatile: true });
    assert.equal(tx.inFlight, 0);
    const got: string[] = [];
    for await (const m of rx) {
      assert.equal(m.volatile, true);
      got.push(m.text());
      if (got.length === 100) break;
    }
    assert.equal(got[99], 'v99');
    await waitFor(() => relay.router.stats().msgsDelivered >= 100, 'router counters');
  });
});

describe('client SDK and protocol versions', () => {
  it('speaks version 1 to a router that refuses version 2 (no anonymity there), and version 2 otherwise', async () => {
    const relay = await startRouter({ domain: 'relay', listen: [] });
    // A version 1 router answers any other version with CLOSE VERSION: put that in front of a real one.
    const http = createServer();
    const ws = attachWsServer(
      http,
      (d) => {
        let first = true;
        const gate: Duplex = {
          send: (data) => d.send(data),
          close: () => d.close(),
          get bufferedAmount() {
            return d.bufferedAmount;
          },
          done: d.done,
          remote: d.remote,
          kind: d.kind,
          start: (h) =>
            d.start({
            message: (data) => {
              if (first) {
                first = false;
                const [hello] = decodeBatch(data);
                if (hello?.type === FrameType.HELLO && hello.version !== 1) {
                  d.send(encodeFrame({ type: FrameType.CLOSE, code: WireCode.VERSION, reason: `protocol version ${hello.version} is not supported; this router speaks 1` }));
                  d.close();
                  return;
                }
              }
              h.message(data);
            },
            close: (err) => h.close(err),
          }),
        };
        relay.router.accept(gate);
      },
      { maxPayload: 2 * 1024 * 1024 },
    );
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    const url = `ws://127.0.0.1:${(http.address() as { port: number }).port}`;
    try {
      const old = await connect({ url, name: 'old' });
      const peer = await connect({ url, name: 'peer' });
      const got = (async () => {
        for await (const m of peer) return m.text();
        return '';
      })();
      await old.send('peer@relay', 'over version 1');
      assert.equal(await got, 'over version 1');
      assert.equal(relay.router.links().every((l) => l.version === 1), true, 'both spoke version 1');
      await assert.rejects(old.send('peer@relay', 'x', { anonymous: true }), { code: 'ERR_FORBIDDEN' });
      await assert.rejects(old.pseudonym(), { code: 'ERR_FORBIDDEN' });
      await old.close();
      await peer.close();
    } finally {
      ws.close();
      await new Promise((r) => http.close(r));
      await relay.close();
    }
  });
});
