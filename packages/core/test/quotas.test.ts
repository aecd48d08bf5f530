// Pure bookkeeping of quotas.ts: which address a connection counts against, and the buckets.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock, testSessionTokens } from '@postern/testing';
import { Quotas, sourceOf } from '../src/quotas.js';
import { resolveRouterOptions } from '../src/options.js';

describe('quotas', () => {
  it('counts IPv4 by address, IPv4 mapped into IPv6 as IPv4, and IPv6 by its /64', () => {
    assert.equal(sourceOf('192.0.2.7:51234'), '192.0.2.7');
    assert.equal(sourceOf('::ffff:192.0.2.7:51234'), '192.0.2.7');
    assert.equal(sourceOf('2001:db8:1:2:aaaa::1:443'), '2001:db8:1:2::/64');
    assert.equal(sourceOf('[2001:db8:1:2:bbbb:cccc:dddd:eeee]:443'), '2001:db8:1:2::/64');
    assert.equal(sourceOf('2001:db8::1:443'), '2001:db8:0:0::/64');
    assert.equal(sourceOf('::1:5000'), '0:0:0:0::/64');
    assert.equal(sourceOf('fe80::1%eth0:80'), 'fe80:0:0:0::/64');
    assert.equal(sourceOf('memory:dialer'), 'memory:dialer', 'a transport without addresses: its name');
  });

  it('refuses connections past the per-address limit and rate, and gives slots back', () => {
    const clock = new ManualClock();
    const o = resolveRouterOptions({ domain: 'acme', node: 'r1', sessionTokens: testSessionTokens(), maxConnectionsPerAddress: 2, connectRatePerAddress: 2 });
    const q = new Quotas(o, clock);
    assert.equal(q.opened('a'), undefined);
    assert.equal(q.opened('a'), undefined);
    assert.match(q.opened('a') ?? '', /limit of 2 connections/);
    assert.match(q.admit('a') ?? '', /limit of 2 connections/);
    assert.equal(q.opened('b'), undefined, 'another address');
    q.released('a');
    // Rate: a burst of twice the rate, then one more per half second.
    const r = new Quotas(resolveRouterOptions({ domain: 'acme', node: 'r1', sessionTokens: testSessionTokens(), connectRatePerAddress: 2 }), clock);
    assert.deepEqual([1, 2, 3, 4, 5].map(() => r.admit('c') === undefined), [true, true, true, true, false]);
    clock.tick(500);
    assert.equal(r.admit('c'), undefined);
    assert.notEqual(r.admit('c'), undefined);
  });

  it('shapes a sender to its rates (a wait, never a refusal) and holds each to its share of the store', () => {
    const clock = new ManualClock();
    const o = resolveRouterOptions({ domain: 'acme', node: 'r1', sessionTokens: testSessionTokens(), authenticator: { verify: () => Promise.reject(new Error('unused')) }, guestMsgRate: 10, guestByteRate: 0, guestStoredBytes: 100, maxGuestStoredBytes: 150 });
    const q = new Quotas(o, clock);
    const g1 = q.principal(undefined, '192.0.2.1', true);
    const g2 = q.principal(undefined, '192.0.2.2', true);
    assert.equal(g1.tier, 'guest');
    for (let i = 0; i < 10; i++) {
      assert.equal(q.wait(g1), 0, 'within the burst');
      q.spend(g1, 10);
    }
    assert.equal(q.wait(g1), 0, 'a bucket at 0 is not in debt: one more is taken...');
    q.spend(g1, 10);
    assert.equal(q.wait(g1), 100, '...and then it waits 100 ms');
    clock.tick(60);
    assert.equal(q.wait(g1), 40, 'shared by all its connections: the debt is paid back with time only');
    clock.tick(40);
    assert.equal(q.wait(g1), 0);
    assert.equal(q.store(g1, 100), undefined);
    assert.match(q.store(g1, 1) ?? '', /holds 100 bytes sent by this address, its limit is 100/);
    assert.match(q.store(g2, 60) ?? '', /limit of 150 bytes sent by agents without a token/, 'all guests together');
    q.unstore(g1, 100);
    assert.equal(q.store(g2, 60), undefined);
    const token = q.principal({ domain: 'acme', name: 'alice', tokenId: 't1' }, '192.0.2.1', true);
    assert.equal(token.tier, 'credential');
    q.spend(token, 1_000_000);
    assert.equal(q.wait(token), 0, 'no rate for credentials by default');
  });
});
