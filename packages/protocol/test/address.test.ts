import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  WireCode,
  errorCodeOf,
  formatAddress,
  isId,
  isValidDomain,
  isValidId,
  isValidName,
  parseAddress,
  wireCodeOf,
  type WireCodeName,
} from '@postern/protocol';

const RUNS = 200;

const nameArb = fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,63}$/);
const idArb = fc.stringMatching(/^_[a-z0-9]{4,40}$/);
const labelArb = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/);
const domainArb = fc.array(labelArb, { minLength: 1, maxLength: 4 }).map((ls) => ls.join('.')).filter((d) => d.length <= 189);

describe('names, ids and domains', () => {
  test('isValidName: 1-64 of a-z 0-9 . _ -, starting with a letter or digit', () => {
    for (const ok of ['a', '0', 'alice', 'a.b-c_d', 'x'.repeat(64), '9lives', 'a_', 'a-', 'a.']) assert.ok(isValidName(ok), ok);
    for (const bad of ['', '_a', '.a', '-a', 'x'.repeat(65), 'a b', 'a@b', 'Alice', 'é', 'a/b', 'a+b']) {
      assert.equal(isValidName(bad), false, bad);
    }
  });

  test('isValidId: "_" then 4-40 of a-z 0-9', () => {
    for (const ok of ['_abcd', '_0000', `_${'a'.repeat(40)}`, '_abcdefghijklmnop']) assert.ok(isValidId(ok), ok);
    for (const bad of ['', '_', '_abc', `_${'a'.repeat(41)}`, 'abcd', '__abcd', '_ab.cd', '_ABCD', '_ab-cd']) {
      assert.equal(isValidId(bad), false, bad);
    }
  });

  test('names and ids never overlap, and isId tells them apart by the first character', () => {
    fc.assert(
      fc.property(nameArb, idArb, (name, id) => {
        assert.ok(isValidName(name) && !isValidId(name) && !isId(name));
        assert.ok(isValidId(id) && !isValidName(id) && isId(id));
      }),
      { numRuns: RUNS },
    );
  });

  test('isValidDomain: dot-separated DNS labels, at most 189 characters', () => {
    for (const ok of ['acme', 'eu.acme.com', 'a', 'a-b.c', '0.1', 'x'.repeat(63), `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(61)}`]) {
      assert.ok(isValidDomain(ok), ok);
    }
    const long = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(62)}`;
    assert.equal(long.length, 190);
    for (const bad of ['', '.', 'a.', '.a', 'a..b', '-a', 'a-', 'a_b', 'a b', 'x'.repeat(64), 'ACME', 'é.com', 'a@b', '*', long]) {
      assert.equal(isValidDomain(bad), false, bad);
    }
  });
});

describe('parseAddress and formatAddress', () => {
  test('name@domain and _id@domain parse, in lower case', () => {
    assert.deepEqual(parseAddress('alice@acme'), { local: 'alice', domain: 'acme' });
    assert.deepEqual(parseAddress('Alice@EU.Acme.COM'), { local: 'alice', domain: 'eu.acme.com' });
    assert.deepEqual(parseAddress('_ABCD1234@acme'), { local: '_abcd1234', domain: 'acme' });
    assert.deepEqual(parseAddress('ALICE@ACME', 'other'), { local: 'alice', domain: 'acme' }, 'an explicit domain wins over the default');
  });

  test('a bare local part takes the default domain, and only when one is given', () => {
    assert.deepEqual(parseAddress('bob', 'acme'), { local: 'bob', domain: 'acme' });
    assert.deepEqual(parseAddress('BOB', 'acme'), { local: 'bob', domain: 'acme' });
    assert.deepEqual(parseAddress('_abcd', 'acme'), { local: '_abcd', domain: 'acme' });
    assert.equal(parseAddress('bob'), undefined);
    assert.equal(parseAddress('bob', 'not a domain'), undefined);
  });

  test('bad input returns undefined', () => {
    const bad = [
      '',
      '@',
      '@acme',
      'alice@',
      'alice@@acme',
      'a@b@c',
      'alice @acme',
      'alice@acme ',
      'al ice@acme',
      '_ab@acme', // id too short
      '.alice@acme',
      'alice@acme..com',
      'alice@-acme',
      'élise@acme',
      'alice@acmé',
      `${'a'.repeat(65)}@acme`,
      `alice@${'d'.repeat(64)}`,
      `a@${'x'.repeat(300)}`,
    ];
    for (const text of bad) assert.equal(parseAddress(text, 'acme'), undefined, JSON.stringify(text));
  });

  test('text longer than 255 characters is refused before anything else', () => {
    assert.equal(parseAddress('a'.repeat(256), 'acme'), undefined);
  });

  test('formatAddress then parseAddress is the identity on valid addresses', () => {
    fc.assert(
      fc.property(fc.oneof(nameArb, idArb), domainArb, (local, domain) => {
        const text = formatAddress({ local, domain });
        assert.equal(text, `${local}@${domain}`);
        assert.deepEqual(parseAddress(text), { local, domain });
        assert.deepEqual(parseAddress(local, domain), { local, domain });
      }),
      { numRuns: RUNS },
    );
  });

  test('case never matters: any mix of upper and lower case parses to the lower-case address', () => {
    fc.assert(
      fc.property(fc.oneof(nameArb, idArb), domainArb, fc.infiniteStream(fc.boolean()), (local, domain, flips) => {
        const text = Array.from(`${local}@${domain}`, (c) => (flips.next().value === true ? c.toUpperCase() : c)).join('');
        assert.deepEqual(parseAddress(text), { local, domain });
      }),
      { numRuns: RUNS },
    );
  });

  test('whatever parses is valid and lower case', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (text) => {
        const a = parseAddress(text, 'acme');
        if (a === undefined) return;
        assert.ok(isValidName(a.local) || isValidId(a.local));
        assert.ok(isValidDomain(a.domain));
        assert.equal(formatAddress(a), formatAddress(a).toLowerCase());
      }),
      { numRuns: RUNS },
    );
  });
});

describe('wire codes', () => {
  const entries = Object.entries(WireCode) as Array<[WireCodeName, number]>;

  test('numbers are distinct, and OK is 0', () => {
    assert.equal(WireCode.OK, 0);
    assert.equal(new Set(entries.map(([, n]) => n)).size, entries.length);
    for (const [, n] of entries) assert.ok(Number.isInteger(n) && n >= 0 && n <= 0xffff, 'fits the u16 of NACK and CLOSE');
  });

  test('errorCodeOf and wireCodeOf round trip for every WireCode', () => {
    for (const [name, n] of entries) {
      assert.equal(errorCodeOf(n), `ERR_${name}`);
      assert.equal(wireCodeOf(`ERR_${name}`), n);
      assert.equal(wireCodeOf(errorCodeOf(n)), n);
    }
  });

  test('unknown numbers map to ERR_UNKNOWN, and codes without a wire number to undefined', () => {
    const max = Math.max(...entries.map(([, n]) => n));
    for (const n of [max + 1, 999, 0xffff, -1, 1.5]) assert.equal(errorCodeOf(n), 'ERR_UNKNOWN');
    for (const code of ['ERR_UNKNOWN', 'ERR_CONFIG', 'ERR_ABORTED', 'ERR_TRANSPORT', 'ERR_CLOSED', 'ERR_USAGE', 'PROTOCOL', 'err_protocol', '', 'ERR_']) {
      assert.equal(wireCodeOf(code), undefined, code);
    }
  });

  test('wireCodeOf does not answer with inherited object properties', () => {
    // Object.prototype members are not wire codes: wireCodeOf must return undefined for them.
    for (const code of ['ERR_toString', 'ERR_constructor', 'ERR___proto__', 'ERR_hasOwnProperty', 'ERR_valueOf']) {
      assert.equal(wireCodeOf(code), undefined, code);
    }
  });
});
