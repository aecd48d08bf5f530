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
}

class ReceivedMessage implements Message {
  constructor(
    readonly id: string,
    readonly from: string,
    readonly to: string,
    readonly body: Uint8Array,
    readonly volatile: boolean,
  ) {}

  text(): string {
    return decoder.decode(this.body);
  }

  json<T = unknown>(): T {
    return JSON.parse(decoder.decode(this.body)) as T;
  }
}

export function createMessage(id: string, from: string, to: string, body: Uint8Array, volatile: boolean): Message {
  return new ReceivedMessage(id, from, to, body, volatile);
}
