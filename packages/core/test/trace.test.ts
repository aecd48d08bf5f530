// The Tracer (the dashboard's path view and recent undeliverable reports): bounded, and off
// unless asked for.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RECENT_REPORTS, Router, Tracer } from '@postern/core';
import { WireCode } from '@postern/protocol';
import { ManualClock, testSessionTokens } from '@postern/testing';

describe('Tracer', () => {
  it('keeps at most `capacity` messages, forgetting the first traced; events in order with their time', () => {
    const clock = new ManualClock();
    const t = new Tracer(3, clock);
    for (let i = 0; i < 5; i++) {
      t.event('bob@relay', `m${i}`, 'received', undefined, undefined, 'alice@acme');
      clock.tick(1);
      t.event('bob@relay', `m${i}`, 'stored');
    }
    assert.equal(t.size, 3);
    assert.deepEqual(t.find('m0'), []);
    const [m4] = t.find('m4', 'bob@relay');
    assert.deepEqual(
      m4!.events.map((e) => [e.event, e.at - clock.now()]),
      [
        ['received', -1],
        ['stored', 0],
      ],
    );
    assert.equal(m4!.events[0]!.to, 'alice@acme');
    assert.equal(t.find('m4', 'carol@relay').length, 0);
  });

  it('keeps the last RECENT_REPORTS reports other than OK, newest first; OK is traced, not listed', () => {
    const t = new Tracer(10, new ManualClock());
    t.report('bob@relay', 'ok', 'alice@acme', WireCode.OK, '');
    assert.deepEqual(t.recentReports(10), []);
    assert.equal(t.find('ok')[0]!.events[0]!.detail, 'OK');
    for (let i = 0; i < RECENT_REPORTS + 5; i++) t.report('bob@relay', `x${i}`, 'nobody@acme', WireCode.UNKNOWN_RECIPIENT, 'no such agent');
    const all = t.recentReports(1000);
    assert.equal(all.length, RECENT_REPORTS);
    assert.equal(all[0]!.id, `x${RECENT_REPORTS + 4}`);
    assert.equal(all.at(-1)!.id, 'x5');
    assert.equal(all[0]!.code, 'ERR_UNKNOWN_RECIPIENT');
    assert.deepEqual(
      t.recentReports(2).map((r) => r.id),
      [`x${RECENT_REPORTS + 4}`, `x${RECENT_REPORTS + 3}`],
    );
  });

  it('a router keeps none unless `trace` is set', () => {
    const off = new Router({ domain: 'acme', sessionTokens: testSessionTokens() });
    const on = new Router({ domain: 'acme', sessionTokens: testSessionTokens(), trace: true, traceCapacity: 5 });
    assert.equal(off.tracer, undefined);
    assert.equal(on.tracer?.capacity, 5);
    assert.throws(() => new Router({ domain: 'acme', sessionTokens: testSessionTokens(), traceCapacity: 0 }), /traceCapacity/);
    off.close();
    on.close();
  });
});
