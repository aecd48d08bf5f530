// docs/ERRORS.md must list every code a caller can branch on (cf. fastify's errors test).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { WireCode, errorCodeOf, type ErrorCode, type WireCodeName } from '@postern/protocol';

// Compiled to packages/protocol/dist/test/: the repository root is four levels up.
const doc = readFileSync(new URL('../../../../docs/ERRORS.md', import.meta.url), 'utf8');

/**
 * Every ErrorCode. `satisfies` makes this list exactly the union: a code added to ErrorCode and
 * not here (or here and not in ErrorCode) breaks the build, so the doc check below covers it.
 */
const ERROR_CODES = {
  ERR_PROTOCOL: true,
  ERR_VERSION: true,
  ERR_FRAME_TOO_LARGE: true,
  ERR_HANDSHAKE_TIMEOUT: true,
  ERR_AUTH_FAILED: true,
  ERR_NAME_TAKEN: true,
  ERR_NAME_NOT_ALLOWED: true,
  ERR_DOMAIN_NOT_ALLOWED: true,
  ERR_NO_ROUTE: true,
  ERR_HOP_LIMIT: true,
  ERR_SLOW_CONSUMER: true,
  ERR_SHUTDOWN: true,
  ERR_BAD_ADDRESS: true,
  ERR_REPLACED: true,
  ERR_LINK_LOST: true,
  ERR_IDLE_TIMEOUT: true,
  ERR_LOOP: true,
  ERR_INTERNAL: true,
  ERR_TOO_MANY_CONNECTIONS: true,
  ERR_QUEUE_FULL: true,
  ERR_EXPIRED: true,
  ERR_TIMEOUT: true,
  ERR_UNAVAILABLE: true,
  ERR_FORBIDDEN: true,
  ERR_UNKNOWN_RECIPIENT: true,
  ERR_RATE_LIMITED: true,
  ERR_LIMIT_EXCEEDED: true,
  ERR_STORE_UNAVAILABLE: true,
  ERR_DOMAIN_TAKEN: true,
  ERR_UNKNOWN: true,
  ERR_CONFIG: true,
  ERR_ABORTED: true,
  ERR_TRANSPORT: true,
  ERR_CLOSED: true,
  ERR_USAGE: true,
} as const satisfies Record<ErrorCode, true>;

/** The local codes: ErrorCode members that are not `ERR_` + a WireCode name. */
const LOCAL_CODES = ['ERR_UNKNOWN', 'ERR_CONFIG', 'ERR_TIMEOUT', 'ERR_ABORTED', 'ERR_TRANSPORT', 'ERR_CLOSED', 'ERR_USAGE'] as const satisfies readonly ErrorCode[];

/** The cells of each markdown table row, without backticks or surrounding spaces. */
const rows: string[][] = doc
  .split('\n')
  .filter((l) => l.trimStart().startsWith('|'))
  .map((l) =>
    l
      .trim()
      .replace(/^\||\|$/g, '')
      .split('|')
      .map((c) => c.trim().replace(/`/g, '')),
  );

/** Rows of the wire code table: number | name | string code | sent by | when | retry. */
const wireRows = rows.filter((cells) => cells.length === 6 && /^\d+$/.test(cells[0] ?? ''));

function mentions(code: string): boolean {
  return new RegExp(`(?<![A-Z_])${code}(?![A-Z_])`).test(doc);
}

describe('docs/ERRORS.md', () => {
  const wire = Object.entries(WireCode) as Array<[WireCodeName, number]>;

  test('has a table row for every wire code: number, name and ERR_ string together', () => {
    const missing: string[] = [];
    for (const [name, n] of wire) {
      const row = wireRows.find((cells) => cells[0] === String(n));
      if (row === undefined || !row.includes(name) || !row.includes(`ERR_${name}`)) missing.push(`${n} ${name} ERR_${name}`);
    }
    assert.deepEqual(missing, [], `rows missing or incomplete in docs/ERRORS.md: ${missing.join(', ')}`);
  });

  test('numbers its wire codes as the code does', () => {
    const known = new Set(wire.map(([, n]) => String(n)));
    assert.equal(wireRows.length, wire.length, 'one row per wire code');
    for (const cells of wireRows) {
      const n = Number(cells[0]);
      assert.ok(known.has(cells[0]!), `docs/ERRORS.md lists wire code ${n}, which does not exist`);
      assert.equal(cells[1], errorCodeOf(n).slice(4), `row ${n} names the wrong code`);
      assert.equal(cells[2], errorCodeOf(n), `row ${n} names the wrong code`);
    }
  });

  test('mentions every ErrorCode string', () => {
    const missing = Object.keys(ERROR_CODES).filter((c) => !mentions(c));
    assert.deepEqual(missing, [], `codes missing from docs/ERRORS.md: ${missing.join(', ')}`);
  });

  test('has a row for every local code', () => {
    for (const code of LOCAL_CODES) {
      assert.ok(ERROR_CODES[code], code);
      assert.ok(
        rows.some((cells) => cells[0] === code),
        `docs/ERRORS.md has no row starting with ${code} in its local codes table`,
      );
    }
  });

  test('the list of codes is exactly ErrorCode (wire codes but OK, plus the local ones)', () => {
    const expected = new Set<string>([...wire.filter(([name]) => name !== 'OK').map(([name]) => `ERR_${name}`), ...LOCAL_CODES]);
    assert.deepEqual(new Set(Object.keys(ERROR_CODES)), expected);
  });

  test('documents the CLI exit codes 0, 1 and 2', () => {
    for (const status of ['0', '1', '2']) {
      assert.ok(
        rows.some((cells) => cells.length === 2 && cells[0] === status),
        `no exit status ${status} row`,
      );
    }
  });
});
