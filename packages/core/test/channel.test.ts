import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Channel, defaultScheduler, systemClock } from '@postern/core';
import { FrameDecoder, FrameType, MsgFlag, WireCode, encodeFrame, type Frame } from '@postern/protocol';
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

  it('numbers reliable MSGs each way once numbered (feature ACKS), and writes acknowledged numbers as one ACKS per run, in order', async () => {
    const [near, far] = memoryPair();
    const nums: number[] = [];
    const ch = new Channel(
      near,
      { maxFrameBytes: 1 << 20, maxOutboundBytes: 1 << 20, batchBytes: 1 << 16, pingMs: 0, clock: systemClock, scheduler: defaultScheduler },
      { frame: (f, _raw, num) => f.type === FrameType.MSG && nums.push(num), closed: () => {} },
    );
    ch.start();
    const got: Frame[] = [];
    const dec = new FrameDecoder();
    far.start({ message: (m) => dec.push(m, (f) => got.push(f)), close: () => {} });
    const body = new Uint8Array(1);
    assert.equal(ch.msg(0, 0, 'a', '', 'x@y', body), 0, 'not numbered before the handshake says so');
    ch.numbered = true;
    assert.deepEqual([ch.msg(0, 0, 'b', '', 'x@y', body), ch.msg(MsgFlag.VOLATILE, 0, 'c', '', 'x@y', body), ch.msg(0, 0, 'd', '', 'x@y', body)], [1, 0, 2]);
    const m = (flags: number): Uint8Array => encodeFrame({ type: FrameType.MSG, flags, hops: 0, id: 'i', from: 'a@b', to: 'x@y', body });
    far.send(m(0));
    far.send(m(MsgFlag.VOLATILE));
    far.send(m(0));
    await waitFor(() => nums.length === 3, 'three MSGs');
    assert.deepEqual(nums, [1, 0, 2]);
    for (const n of [1, 2, 3, 5, 4, 6]) ch.ack(n);
    await waitFor(() => got.filter((f) => f.type === FrameType.ACKS).length === 4, 'four ACKS');
    assert.deepEqual(
      got.filter((f) => f.type === FrameType.ACKS).map((f) => (f.type === FrameType.ACKS ? [f.first, f.count] : [])),
      [[1, 3], [5, 1], [4, 1], [6, 1]],
    );
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
