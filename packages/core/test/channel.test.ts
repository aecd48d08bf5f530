import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Channel, defaultScheduler, systemClock } from '@postern/core';
import { FrameDecoder, FrameType, WireCode, encodeFrame, type Frame } from '@postern/protocol';
import { ManualClock, memoryPair, waitFor } from '@postern/testing';

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

  it('closes with TIMEOUT a connection that leaves a frame half-sent past partialFrameMs; complete frames reset the clock', async () => {
    const [near, far] = memoryPair();
    const clock = new ManualClock();
    const frames: Frame[] = [];
    let closedWith = '';
    const ch = new Channel(
      near,
      { maxFrameBytes: 1 << 20, maxOutboundBytes: 1 << 20, batchBytes: 1 << 16, pingMs: 0, partialFrameMs: 1000, clock, scheduler: defaultScheduler },
      { frame: (f) => frames.push(f), closed: (r) => (closedWith = `${r.code} ${r.message}`) },
    );
    ch.start();
    far.start({ message: () => {}, close: () => {} });
    const ack = encodeFrame({ type: FrameType.ACK, id: 'x', from: 'a@b' });
    // Split, then completed in time: fine.
    far.send(ack.subarray(0, 5));
    await waitFor(() => ch.stats.bytesIn === 5, 'delivery');
    clock.tick(900);
    far.send(ack.subarray(5));
    await waitFor(() => frames.length === 1, 'the frame, completed');
    clock.tick(900);
    assert.equal(closedWith, '', 'a complete frame stopped the clock');
    // Begun and never completed: closed once the time is up, not before.
    far.send(ack.subarray(0, 7));
    await waitFor(() => ch.stats.bytesIn === ack.length + 7, 'delivery');
    clock.tick(999);
    assert.equal(closedWith, '');
    clock.tick(1);
    await waitFor(() => closedWith !== '', 'the close');
    assert.match(closedWith, /^ERR_TIMEOUT a frame begun 1000 ms ago is still incomplete \(7 bytes of it came\)/);
  });
});
