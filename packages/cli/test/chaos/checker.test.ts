// The chaos checker on made-up runs: each class of failure is detected, and a clean run is clean.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { check, clean, formatCounts, type Received, type Sent } from './checker.js';

const R1 = 'r1@acme';
const R2 = 'r2@acme';

function sent(s: string, n: number, outcome: Sent['outcome'] = 'accepted', code?: string): Sent {
  return { s, n, from: `${s}@relay`, to: n % 2 === 1 ? R1 : R2, outcome, ...(code === undefined ? {} : { code }) };
}

function got(s: string, n: number, receiver = n % 2 === 1 ? R1 : R2, from = `${s}@relay`): Received {
  return { receiver, from, to: receiver, s, n };
}

/** Sends 1..6 of s1 and 1..4 of s2, all accepted. */
const SENT: Sent[] = [1, 2, 3, 4, 5, 6].map((n) => sent('s1', n)).concat([1, 2, 3, 4].map((n) => sent('s2', n)));
/** Every message once, in order per pair, pairs interleaved. */
const ALL: Received[] = [got('s1', 1), got('s2', 1), got('s1', 2), got('s1', 3), got('s2', 2), got('s2', 3), got('s1', 4), got('s1', 5), got('s2', 4), got('s1', 6)];

describe('chaos checker', () => {
  it('calls a run where everything arrived once, in order, clean', () => {
    const { counts } = check(SENT, ALL);
    assert.deepEqual(counts, {
      accepted: 10,
      delivered: 10,
      lost: 0,
      duplicated: 0,
      reordered: 0,
      unexpected: 0,
      deliveredUnconfirmed: 0,
      failed: {},
      pending: 0,
    });
    assert.ok(clean(counts));
    assert.equal(
      formatCounts('x', counts),
      'chaos x: accepted=10 delivered=10 lost=0 duplicated=0 reordered=0 unexpected=0 delivered-unconfirmed=0 failed-sends=0 pending=0',
    );
  });

  it('detects a lost message', () => {
    const r = check(
      SENT,
      ALL.filter((m) => !(m.s === 's1' && m.n === 4)),
    );
    assert.equal(r.counts.lost, 1);
    assert.equal(r.counts.delivered, 9);
    assert.deepEqual(r.examples.lost, ['s1#4->r2@acme']);
    assert.ok(!clean(r.counts));
  });

  it('detects a duplicate, accepted or not', () => {
    const withFailed = [...SENT, sent('s3', 1, 'failed', 'ERR_LINK_LOST')];
    const r = check(withFailed, [...ALL, got('s2', 3), got('s3', 1), got('s3', 1)]);
    assert.equal(r.counts.duplicated, 2);
    assert.equal(r.counts.delivered, 9);
    assert.equal(r.counts.accepted, 10);
    assert.deepEqual(r.examples.duplicated, ['s2#3->r1@acme x2', 's3#1->r1@acme x2']);
    assert.ok(!clean(r.counts));
  });

  it('detects a message received after a later one of the same sender and receiver', () => {
    // s1#3 and s1#5 both go to r1; s1#5 first. s1#2 after s2#3 is a different pair: fine.
    const order = [got('s1', 1), got('s1', 2), got('s2', 1), got('s2', 2), got('s2', 3), got('s1', 5), got('s1', 3), got('s1', 4), got('s2', 4), got('s1', 6)];
    const r = check(SENT, order);
    assert.equal(r.counts.reordered, 1);
    assert.equal(r.counts.delivered, 9);
    assert.deepEqual(r.examples.reordered, ['s1#3->r1@acme']);
    assert.ok(!clean(r.counts));
  });

  it('detects messages never sent, sent to someone else, from someone else, or unreadable', () => {
    const strays: Received[] = [
      got('s1', 99), // never sent
      got('s9', 1), // no such sender
      got('s1', 1, R2), // s1#1 went to r1, not r2
      got('s1', 3, R1, 'mallory@relay'), // right body, wrong sender address
      { receiver: R1, from: 's1@relay', to: R1, s: undefined, n: undefined }, // body did not parse
    ];
    const r = check(SENT, [...ALL, ...strays]);
    assert.equal(r.counts.unexpected, 5);
    assert.equal(r.counts.delivered, 10, 'strays do not count as receipts of the real messages');
    assert.equal(r.examples.unexpected.length, 5);
    assert.ok(!clean(r.counts));
  });

  it('counts failed and pending sends, and those received anyway as delivered-unconfirmed', () => {
    const withOthers = [
      ...SENT,
      sent('s3', 1, 'failed', 'ERR_LINK_LOST'),
      sent('s3', 2, 'failed', 'ERR_LINK_LOST'),
      sent('s3', 3, 'failed', 'ERR_NO_ROUTE'),
      sent('s3', 4, 'pending'),
    ];
    const r = check(withOthers, [...ALL, got('s3', 2), got('s3', 4)]);
    assert.deepEqual(r.counts.failed, { ERR_LINK_LOST: 2, ERR_NO_ROUTE: 1 });
    assert.equal(r.counts.pending, 1);
    assert.equal(r.counts.deliveredUnconfirmed, 2);
    assert.equal(r.counts.accepted, 10);
    assert.equal(r.counts.unexpected, 0);
    assert.ok(clean(r.counts), 'a failed send that arrives anyway breaks no promise');
    assert.match(formatCounts('y', r.counts), / delivered-unconfirmed=2 failed-sends=3\{ERR_LINK_LOST:2,ERR_NO_ROUTE:1\} pending=1$/);
  });
});
