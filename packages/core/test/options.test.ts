import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ROUTER_DEFAULTS, Router, resolveRouterOptions, systemClock, type RouterOptions } from '@postern/core';
import { ConfigError } from '@postern/protocol';
import { testSessionTokens } from '@postern/testing';

const base = (): RouterOptions => ({ domain: 'acme', sessionTokens: testSessionTokens() });

/** Asserts that resolving `o` throws a ConfigError whose message names `field`. */
function rejects(o: RouterOptions, field: string): void {
  assert.throws(
    () => resolveRouterOptions(o),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
      assert.equal(e.code, 'ERR_CONFIG');
      assert.match(e.message, new RegExp(`\\b${field}\\b`));
      return true;
    },
    `bad ${field} must be refused`,
  );
}

describe('resolveRouterOptions', () => {
  it('fills every default and returns a frozen object', () => {
    const o = resolveRouterOptions({ ...base(), domain: 'eu.acme.com' });
    assert.ok(Object.isFrozen(o));
    assert.equal(o.domain, 'eu.acme.com');
    for (const [k, v] of Object.entries(ROUTER_DEFAULTS)) assert.equal(o[k as keyof typeof ROUTER_DEFAULTS], v, k);
    assert.equal(o.clock, systemClock);
    assert.equal(typeof o.scheduler, 'function');
    assert.equal(o.authenticator, undefined);
    assert.match(o.node, /^[0-9a-f]{16}$/);
    assert.notEqual(resolveRouterOptions(base()).node, o.node, 'a random node id per router');
    assert.throws(() => {
      (o as { hopLimit: number }).hopLimit = 99;
    }, TypeError);
  });

  it('accepts a domain in any case and stores it in lower case', () => {
    // Addresses, tokens (issueToken) and router HELLOs all lower-case a domain before checking it.
    assert.equal(resolveRouterOptions({ ...base(), domain: 'EU.Acme.com' }).domain, 'eu.acme.com');
  });

  it('keeps valid values as given', () => {
    const o = resolveRouterOptions({ ...base(), node: 'gw-1.eu', hopLimit: 255, maxFrameBytes: 1024, pingIntervalMs: 0, allowGuests: true });
    assert.deepEqual(
      [o.node, o.hopLimit, o.maxFrameBytes, o.pingIntervalMs, o.allowGuests],
      ['gw-1.eu', 255, 1024, 0, true],
    );
  });

  it('throws ConfigError naming the field for each bad value', () => {
    rejects({ ...base(), domain: 'Not A Domain' }, 'domain');
    rejects({ ...base(), domain: '' }, 'domain');
    rejects({ ...base(), domain: 7 as unknown as string }, 'domain');
    rejects({ domain: 'acme' } as RouterOptions, 'sessionTokens');
    rejects({ ...base(), node: 'has space' }, 'node');
    rejects({ ...base(), node: 'n'.repeat(65) }, 'node');
    rejects({ ...base(), hopLimit: 0 }, 'hopLimit');
    rejects({ ...base(), hopLimit: 256 }, 'hopLimit');
    rejects({ ...base(), hopLimit: 2.5 }, 'hopLimit');
    rejects({ ...base(), maxFrameBytes: 1023 }, 'maxFrameBytes');
    rejects({ ...base(), maxOutboundBytes: 100 }, 'maxOutboundBytes');
    rejects({ ...base(), batchBytes: 511 }, 'batchBytes');
    rejects({ ...base(), handshakeTimeoutMs: 0 }, 'handshakeTimeoutMs');
    rejects({ ...base(), pingIntervalMs: -1 }, 'pingIntervalMs');
    rejects({ ...base(), maxConnections: Number.NaN }, 'maxConnections');
    rejects({ ...base(), maxInFlightPerLink: 0 }, 'maxInFlightPerLink');
    rejects({ ...base(), maxMessageAgeMs: Infinity }, 'maxMessageAgeMs');
    rejects({ ...base(), maxMessageAgeMs: 10_000, dedupWindowMs: 5_000 }, 'dedupWindowMs');
    rejects({ ...base(), maxQueueBytes: 0.5 }, 'maxQueueBytes');
    rejects({ ...base(), maxDomainsPerLink: -5 }, 'maxDomainsPerLink');
  });

  it('makes the Router constructor fail at start on bad config', () => {
    assert.throws(() => new Router({ ...base(), maxConnections: 0 }), ConfigError);
  });
});
