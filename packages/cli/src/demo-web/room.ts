// Alice's side of the web demo: the inside agent that the page's visitors talk to. She greets a
// visitor that says hello, echoes what it says, and keeps the list of who is online (watching each
// visitor's presence across the firewall), which she sends to every visitor when it changes, so
// that tabs find each other and write to each other directly through the relay.
import type { Client, Message } from '@postern/client';

/**
 * What the page and alice send each other, as JSON text:
 * page -> alice: `{ t: 'hello' }` once connected, `{ t: 'say', text }`;
 * alice -> page: `{ t: 'say', text }`, `{ t: 'roster', online: string[] }`;
 * page -> page: `{ t: 'say', text, all?: true }` (`all`: sent to everyone online).
 */
export type RoomMessage = { t: 'hello' } | { t: 'say'; text: string; all?: boolean } | { t: 'roster'; online: string[] };

/** A guest of the demo page: the names its token endpoint hands out. */
export const GUEST = /^guest-[a-z0-9]{1,16}$/;

/** Visitors tracked at once; more still get echoes but stay off the list. */
export const MAX_VISITORS = 64;
/** Longest text alice echoes (characters). */
const MAX_TEXT = 500;

export class Room {
  readonly #alice: Client;
  readonly #domain: string;
  readonly #fail: () => void;
  /** Visitor address -> the watch of its presence. */
  readonly #online = new Map<string, AbortController>();

  /** `domain`: where the visitors are (the relay's); `fail` counts a send that failed. */
  constructor(alice: Client, domain: string, fail: () => void) {
    this.#alice = alice;
    this.#domain = domain;
    this.#fail = fail;
  }

  get visitors(): number {
    return this.#online.size;
  }

  /** Takes a message of a page's visitor and answers it; false for any other message (bob's). */
  handle(m: Message): boolean {
    const at = m.from.lastIndexOf('@');
    if (!GUEST.test(m.from.slice(0, at)) || m.from.slice(at + 1) !== this.#domain) return false;
    let msg: RoomMessage;
    try {
      msg = m.json<RoomMessage>();
    } catch {
      return true;
    }
    if (msg.t === 'hello') this.#join(m.from);
    else if (msg.t === 'say' && typeof msg.text === 'string') this.#say(m.from, `you said "${msg.text.slice(0, MAX_TEXT)}" (from outside, through the relay and the gateway's tunnel)`);
    return true;
  }

  #send(to: string, msg: RoomMessage): void {
    this.#alice.send(to, JSON.stringify(msg)).catch(this.#fail);
  }

  #say(to: string, text: string): void {
    this.#send(to, { t: 'say', text });
  }

  #join(address: string): void {
    this.#say(address, `hello ${address}! I am alice@acme, inside the firewall: my gateway dialed out to the relay, nothing dialed in. Write to me and I echo; the others online are in the list.`);
    if (this.#online.has(address) || this.#online.size >= MAX_VISITORS) {
      this.#roster([address]);
      return;
    }
    const watching = new AbortController();
    this.#online.set(address, watching);
    for (const other of this.#online.keys()) if (other !== address) this.#say(other, `${address} joined`);
    this.#roster();
    // The visitor allowed alice to watch it: she learns when its tab closes.
    void (async () => {
      try {
        for await (const e of this.#alice.watch(address, { signal: watching.signal })) if (e.state !== 'online') break;
      } catch {
        // Aborted at stop, or refused: either way the visitor leaves the list.
      }
      if (this.#online.get(address) !== watching) return;
      this.#online.delete(address);
      watching.abort();
      for (const other of this.#online.keys()) this.#say(other, `${address} left`);
      this.#roster();
    })();
  }

  /** Sends the list of who is online to `to` (everyone online by default). */
  #roster(to: Iterable<string> = this.#online.keys()): void {
    const online = [...this.#online.keys()].sort();
    for (const a of [...to]) this.#send(a, { t: 'roster', online });
  }

  close(): void {
    const watches = [...this.#online.values()];
    this.#online.clear();
    for (const w of watches) w.abort();
  }
}
