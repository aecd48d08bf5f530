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
    const opening = new Opening(options, resolve, reject);
    const channel = new Channel(duplex, options, opening);
    opening.channel = channel;
    opening.timer = options.clock.setTimeout(() => {
      opening.timer = undefined;
      // Reject first: closing reports its own (local) reason through `closed` below.
      reject(new TimeoutError(`no WELCOME from ${duplex.remote} within ${timeoutMs} ms`));
      channel.close(WireCode.HANDSHAKE_TIMEOUT, 'no WELCOME');
    }, timeoutMs);
    channel.start();
    try {
      channel.send(hello);
    } catch (err) {
      opening.stopTimer();
      channel.close(WireCode.PROTOCOL, 'HELLO could not be encoded');
      reject(err instanceof Error ? err : new Error(String(err)));
    }
  });
}

/**
 * The channel's handler until its owner attaches: waits for WELCOME, then keeps what comes
 * before `attach`. `attach` hands the channel to the owner's handler, and nothing of this stays
 * alive with the connection.
 */
class Opening implements ChannelHandler {
  readonly #options: ChannelOptions;
  readonly #resolve: (e: Established) => void;
  readonly #reject: (err: unknown) => void;
  channel!: Channel;
  timer: unknown = undefined;
  #welcome: WelcomeFrame | undefined;
  #early: Array<[Frame, Uint8Array, number]> | undefined;
  #earlyClose: PosternError | undefined;

  constructor(options: ChannelOptions, resolve: (e: Established) => void, reject: (err: unknown) => void) {
    this.#options = options;
    this.#resolve = resolve;
    this.#reject = reject;
  }

  stopTimer(): void {
    if (this.timer !== undefined) this.#options.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  frame(f: Frame, raw: Uint8Array, num: number): void {
    if (this.#welcome !== undefined) {
      (this.#early ??= []).push([f, raw.slice(), num]);
      return;
    }
    const channel = this.channel;
    if (f.type !== FrameType.WELCOME) {
      channel.close(WireCode.PROTOCOL, `expected WELCOME, got frame 0x${f.type.toString(16)}`);
      return;
    }
    this.#welcome = f;
    // Before any MSG either way: numbered acknowledgements if the router granted them.
    channel.numbered = (f.features & Feature.ACKS) !== 0;
    this.stopTimer();
    this.#resolve({ channel, welcome: f, attach: (handler) => this.#attach(handler) });
  }

  closed(reason: PosternError): void {
    if (this.#welcome !== undefined) {
      this.#earlyClose = reason;
      return;
    }
    this.stopTimer();
    this.#reject(reason);
  }

  #attach(handler: ChannelHandler): void {
    const early = this.#early;
    this.#early = undefined;
    if (early !== undefined) for (const [ef, raw, num] of early) handler.frame(ef, raw, num);
    // A close while the early frames were handed over was kept in #earlyClose.
    this.channel.setHandler(handler);
    if (this.#earlyClose !== undefined) handler.closed(this.#earlyClose);
  }
}
