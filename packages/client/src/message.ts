const decoder = new TextDecoder();

/** A message as the application receives it. */
export interface Message {
  /** Sender-made id; with `from` it names the message uniquely. */
  readonly id: string;
  /** Sender address, written by the sender's router (`name@domain` or `_id@domain`). */
  readonly from: string;
  /** The address it was sent to. */
  readonly to: string;
  readonly body: Uint8Array;
  /** True when sent at most once (no ack, no retry). */
  readonly volatile: boolean;
  /** The body as UTF-8 text. */
  text(): string;
  /** The body parsed as JSON. */
  json<T = unknown>(): T;
  /**
   * Acknowledges the message to the router, which then forgets it (and reports delivery to a
   * sender that asked). With `autoAck` (the default) this happens when the application takes
   * the message from the iterator; with `autoAck: false` call it once the message is safe,
   * e.g. written out. Calling it again, or for a volatile message, does nothing.
   */
  ack(): void;
}

class ReceivedMessage implements Message {
  constructor(
    readonly id: string,
    readonly from: string,
    readonly to: string,
    readonly body: Uint8Array,
    readonly volatile: boolean,
    readonly ack: () => void,
  ) {}

  text(): string {
    return decoder.decode(this.body);
  }

  json<T = unknown>(): T {
    return JSON.parse(decoder.decode(this.body)) as T;
  }
}

const noop = (): void => undefined;

export function createMessage(id: string, from: string, to: string, body: Uint8Array, volatile: boolean, ack: () => void = noop): Message {
  return new ReceivedMessage(id, from, to, body, volatile, ack);
}
