import { Feature, FrameType, TimeoutError, WireCode, type PosternError, type Frame, type HelloFrame, type WelcomeFrame } from '@postern/protocol';
import { Channel, type ChannelHandler, type ChannelOptions } from './channel.js';
import type { Duplex } from './transport.js';

export interface Established {
  channel: Channel;
  welcome: WelcomeFrame;
  /**
   * Hands the channel to its owner. Frames that arrived after WELCOME, and a close that
   * happened meanwhile, are replayed to `handler` first.
   */
  attach(handler: ChannelHandler): void;
}

/**
 * The dialer's side of the handshake: sends HELLO, waits for WELCOME. Rejects with the
 * router's reason (RemoteError carrying its wire code) when it answers with CLOSE, with
 * TimeoutError when it is silent.
 */
export function openChannel(duplex: Duplex, options: ChannelOptions, hello: HelloFrame, timeoutMs: number): Promise<Established> {
  return new Promise((resolve, reject) => {
    let welcome: WelcomeFrame | undefined;
    let target: ChannelHandler | undefined;
    const early: Array<[Frame, Uint8Array, number]> = [];
    let earlyClose: PosternError | undefined;
    const timer = options.clock.setTimeout(() => {
      // Reject first: closing reports its own (local) reason through `closed` below.
      reject(new TimeoutError(`no WELCOME from ${duplex.remote} within ${timeoutMs} ms`));
      channel.close(WireCode.HANDSHAKE_TIMEOUT, 'no WELCOME');
    }, timeoutMs);
    const channel = new Channel(duplex, options, {
      frame(f, raw, num) {
        if (target !== undefined) return target.frame(f, raw, num);
        if (welcome !== undefined) {
          early.push([f, raw.slice(), num]);
          return;
        }
        if (f.type !== FrameType.WELCOME) {
          channel.close(WireCode.PROTOCOL, `expected WELCOME, got frame 0x${f.type.toString(16)}`);
          return;
        }
        welcome = f;
        // Before any MSG either way: numbered acknowledgements if the router granted them.
        channel.numbered = (f.features & Feature.ACKS) !== 0;
        options.clock.clearTimeout(timer);
        resolve({
          channel,
          welcome: f,
          attach(handler) {
            for (const [ef, raw, num] of early) handler.frame(ef, raw, num);
            early.length = 0;
            target = handler;
            if (earlyClose !== undefined) handler.closed(earlyClose);
          },
        });
      },
      closed(reason) {
        if (target !== undefined) return target.closed(reason);
        if (welcome !== undefined) {
          earlyClose = reason;
          return;
        }
        options.clock.clearTimeout(timer);
        reject(reason);
      },
    });
    channel.start();
    try {
      channel.send(hello);
    } catch (err) {
      options.clock.clearTimeout(timer);
      channel.close(WireCode.PROTOCOL, 'HELLO could not be encoded');
      reject(err instanceof Error ? err : new Error(String(err)));
    }
  });
}
