import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Channel, defaultScheduler, systemClock } from '@postern/core';
import { FrameDecoder, FrameType, WireCode, encodeFrame, type Frame } from '@postern/protocol';
import { memoryPair, waitFor } from '@postern/testing';

describe('Channel', () => {
  it('closes only its connection with INTERNAL when a frame handler has a bug, and reports it', async () => {
    const [near, far] = memoryPair();
    const reported: unknown[] = [];
    let closedWith = '';
    const ch = new Channel(
      near,
      { maxFrameBytes: 1 << 20, maxOutboundBytes: 1 << 20, batchBytes: 1 << 16, pingMs: 0, clock: systemClock, scheduler: defaultScheduler, report: (e) => reported.push(e) },
      {
        frame: () => {
          throw new TypeError('a bug');
        },
        closed: (r) => {
          closedWith = r.code;
        },
      },
    );
    ch.start();
    const got: Frame[] = [];
    const dec = new FrameDecoder();
    far.start({ message: (m) => dec.push(m, (f) => got.push(f)), close: () => {} });
    far.send(encodeFrame({ type: FrameType.ACK, id: 'x', from: 'a@b' }));
    await waitFor(() => got.some((f) => f.type === FrameType.CLOSE), 'a CLOSE frame');
    const close = got.find((f) => f.type === FrameType.CLOSE);
    assert.equal(close?.type === FrameType.CLOSE && close.code, WireCode.INTERNAL);
    assert.equal(closedWith, 'ERR_INTERNAL');
    assert.equal(reported.length, 1);
    assert.ok(reported[0] instanceof TypeError);
  });
});
