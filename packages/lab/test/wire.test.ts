// The tap decoder (wire.ts) on made-up recordings: runs without root, unlike the lab itself.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FrameType, MsgFlag, Role, encodeBatch, encodeFrame, type Frame } from '@postern/protocol';
import { decodeConnection, decodeWebSocket, frameTexts, tapConnections } from '../src/index.js';

/** One WebSocket frame (RFC 6455), masked as a client sends it when `mask` is given. */
function wsFrame(op: number, payload: Uint8Array, fin = true, mask?: Uint8Array): Buffer {
  const len = payload.length;
  const ext = len < 126 ? [len] : len < 65536 ? [126, len >> 8, len & 255] : [127, 0, 0, 0, 0, (len >>> 24) & 255, (len >> 16) & 255, (len >> 8) & 255, len & 255];
  const head = Buffer.from([(fin ? 0x80 : 0) | op, (mask === undefined ? 0 : 0x80) | ext[0]!, ...ext.slice(1)]);
  const body = Buffer.from(payload);
  if (mask !== undefined) for (let i = 0; i < body.length; i++) body[i]! ^= mask[i & 3]!;
  return Buffer.concat([head, mask === undefined ? Buffer.alloc(0) : Buffer.from(mask), body]);
}

const hello: Frame = { type: FrameType.HELLO, version: 2, role: Role.AGENT, token: '', resume: '', name: 'alice', node: '', agent: 'test', maxFrame: 1 << 20, features: 0, nonce: '', link: 0 };
const msg: Frame = { type: FrameType.MSG, flags: MsgFlag.ANONYMOUS, hops: 16, id: 'abc123.0', from: '', to: 'bob@globex', body: new TextEncoder().encode('x'.repeat(200)) };
const ack: Frame = { type: FrameType.ACK, id: 'abc123.0', from: '~h@r1' };

describe('wire: reading what a tap recorded', () => {
  it('splits connections, skips the upgrade, unmasks and reassembles fragments, decodes frames', () => {
    const mask = new Uint8Array([1, 2, 3, 4]);
    const batch = encodeBatch([hello, msg]);
    const up = Buffer.concat([
      Buffer.from('GET /postern HTTP/1.1\r\nHost: 10.77.0.2:7443\r\nUpgrade: websocket\r\n\r\n'),
      wsFrame(2, batch.subarray(0, 50), false, mask),
      wsFrame(9, new Uint8Array(0), true, mask), // a ping between fragments
      wsFrame(0, batch.subarray(50), true, mask),
    ]);
    const down = Buffer.concat([Buffer.from('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n'), wsFrame(2, encodeFrame(ack))]);
    // Chunks cut anywhere, lines interleaved with another connection's.
    const lines = [
      'tap: listening on 10.77.0.2:7444, forwarding to 10.77.0.2:7443 (tls)',
      'tap: open 1 from 10.77.0.1:40000 via 10.77.0.2:50000',
      'tap: open 2 from 10.77.0.1:40001 via 10.77.0.2:50001',
      `tap: 1 > ${up.subarray(0, 30).toString('base64')}`,
      `tap: 2 > ${Buffer.from('GET / HTTP/1.1\r\n\r\n').toString('base64')}`,
      `tap: 1 > ${up.subarray(30).toString('base64')}`,
      `tap: 1 < ${down.toString('base64')}`,
      'tap: close 1',
    ];
    const conns = tapConnections(lines.join('\n'));
    assert.deepEqual(conns.map((c) => [c.n, c.from, c.via]), [[1, '10.77.0.1:40000', '10.77.0.2:50000'], [2, '10.77.0.1:40001', '10.77.0.2:50001']]);
    const c = decodeConnection(conns[0]!);
    assert.match(c.upHead, /^GET \/postern HTTP\/1\.1/);
    assert.match(c.downHead, /^HTTP\/1\.1 101/);
    assert.deepEqual(c.upFrames.map((f) => f.type), [FrameType.HELLO, FrameType.MSG]);
    assert.deepEqual(c.downFrames, [ack]);
    assert.ok(frameTexts(c.upFrames[0]!).includes('alice'));
    assert.deepEqual(frameTexts(c.upFrames[1]!), ['abc123.0', '', 'bob@globex', 'x'.repeat(200)]);
  });

  it('keeps what a cut left half-sent out, and reads no frames after a refused upgrade', () => {
    const whole = wsFrame(2, encodeFrame(ack));
    const cut = decodeWebSocket(Buffer.concat([whole, whole.subarray(0, 5)]));
    assert.equal(cut.messages.length, 1);
    assert.equal(cut.trailing, 5);
    const refused = decodeWebSocket(Buffer.from('HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno\n'));
    assert.equal(refused.messages.length, 0);
    assert.match(refused.head, /403/);
  });
});
