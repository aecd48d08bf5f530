import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { WireCode, decodeReport, encodeReport } from '@postern/protocol';

describe('report body', () => {
  test('round-trips code, ref and a UTF-8 reason', () => {
    for (const r of [
      { code: WireCode.OK, ref: 'abc.1', reason: '' },
      { code: WireCode.EXPIRED, ref: 'x'.repeat(255), reason: 'not delivered within 1 ms — ünïcode' },
      { code: 65535, ref: '', reason: 'r' },
    ]) {
      assert.deepEqual(decodeReport(encodeReport(r)), r);
    }
  });

  test('lays out u16 code, u8 ref length, ref, reason', () => {
    assert.deepEqual([...encodeReport({ code: 0x0115, ref: 'id', reason: 'no' })], [0x01, 0x15, 2, 0x69, 0x64, 0x6e, 0x6f]);
  });

  test('refuses bodies too short for their lengths with ERR_PROTOCOL', () => {
    assert.throws(() => decodeReport(new Uint8Array([0, 1])), { code: 'ERR_PROTOCOL' });
    assert.throws(() => decodeReport(new Uint8Array([0, 1, 5, 0x61])), { code: 'ERR_PROTOCOL' });
    assert.throws(() => encodeReport({ code: 0, ref: 'x'.repeat(256), reason: '' }), { code: 'ERR_PROTOCOL' });
  });
});
