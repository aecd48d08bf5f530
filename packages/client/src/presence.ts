import { Pushable, type Channel } from '@postern/core';
import {
  FrameType,
  PosternError,
  PresenceState,
  PropsOp,
  RemoteError,
  TransportError,
  WatchOp,
  WireCode,
  type PresenceFrame,
  type Property,
  type PropsetFrame,
  type WatchedFrame,
} from '@postern/protocol';

/** What a watcher hears of an address: its presence and all its properties, now and on every change. */
export interface PresenceEvent {
  /** The watched address, normalised (`name@domain` or `_id@domain`). */
  address: string;
  /**
   * online: connected to its home router. offline: known, not connected. unreachable: its home
   * (a hub, a gateway, a relay on the way) cannot be reached now, so nobody can say.
   */
  state: 'online' | 'offline' | 'unreachable';
  /** When it came online, was last seen, or became unreachable. */
  since: Date;
  /** What it published (`setProperties`), as of now. */
  properties: Record<string, string>;
}

const STATES = { [PresenceState.ONLINE]: 'online', [PresenceState.OFFLINE]: 'offline', [PresenceState.UNREACHABLE]: 'unreachable' } as const;

/** The connection the watches use: the current channel, or undefined while disconnected. */
export interface PresenceLink {
  channel(): Channel | undefined;
  /** Turns a user's address into `local@domain` (its domain defaults to ours); throws ERR_BAD_ADDRESS. */
  target(address: string): string;
}

/**
 * The SDK's side of presence (PROTOCOL.md section 16): the addresses watched, each with its
 * readers, sent again after every reconnect (so watches outlive connections and router
 * restarts); and the properties and allow-list this agent set, sent again too (its home may
 * have changed: a move between hubs).
 */
export class Watches {
  readonly #link: PresenceLink;
  readonly #readers = new Map<string, Set<Pushable<PresenceEvent>>>();
  readonly #last = new Map<string, PresenceEvent>();
  #props = new Map<string, string>();
  #allow: string[] | undefined;
  readonly #pending = new Map<number, { resolve(): void; reject(e: Error): void }>();
  #ref = 0;

  constructor(link: PresenceLink) {
    this.#link = link;
  }

  /** Watches `address` until the iteration ends (break, return, or `signal`). */
  watch(address: string, options: { signal?: AbortSignal } = {}): AsyncIterable<PresenceEvent> {
    const target = this.#link.target(address);
    return {
      [Symbol.asyncIterator]: (): AsyncIterator<PresenceEvent> => {
        const p = new Pushable<PresenceEvent>();
        let readers = this.#readers.get(target);
        if (readers === undefined) {
          this.#readers.set(target, (readers = new Set()));
          this.#link.channel()?.send({ type: FrameType.WATCH, op: WatchOp.WATCH, target, watcher: '' });
        } else {
          const last = this.#last.get(target);
          if (last !== undefined) p.push(last);
        }
        readers.add(p);
        const stop = (): void => {
          p.end();
          this.#remove(target, p);
        };
        options.signal?.addEventListener('abort', stop, { once: true });
        return {
          next: () => p.next(),
          return: () => {
            stop();
            options.signal?.removeEventListener('abort', stop);
            return Promise.resolve({ value: undefined, done: true });
          },
        };
      },
    };
  }

  #remove(target: string, p: Pushable<PresenceEvent>): void {
    const readers = this.#readers.get(target);
    if (readers === undefined || !readers.delete(p) || readers.size > 0) return;
    this.#readers.delete(target);
    this.#last.delete(target);
    this.#link.channel()?.send({ type: FrameType.WATCH, op: WatchOp.UNWATCH, target, watcher: '' });
  }

  /** Merges `props` into this agent's properties (null or '' removes a key); resolves when its home stored them. */
  setProperties(props: Record<string, string | null>): Promise<void> {
    const list: Property[] = Object.entries(props).map(([key, value]) => ({ key, value: value ?? '' }));
    return this.#request(PropsOp.SET, list).then(() => {
      for (const p of list) {
        if (p.value === '') this.#props.delete(p.key);
        else this.#props.set(p.key, p.value);
      }
    });
  }

  /** Who may watch this agent besides its own domain (replaces the list): addresses, `*@domain`, or `*`. */
  allowWatchers(addresses: readonly string[]): Promise<void> {
    const list = addresses.map((a) => ({ key: a, value: '' }));
    return this.#request(PropsOp.ALLOW, list).then(() => {
      this.#allow = [...addresses];
    });
  }

  #request(op: (typeof PropsOp)[keyof typeof PropsOp], props: Property[]): Promise<void> {
    const ch = this.#link.channel();
    if (ch === undefined) return Promise.reject(new TransportError('not connected'));
    const ref = (this.#ref = (this.#ref + 1) >>> 0);
    return new Promise<void>((resolve, reject) => {
      this.#pending.set(ref, { resolve, reject });
      ch.send({ type: FrameType.PROPS, ref, op, props });
    });
  }

  /** After each WELCOME: watches, properties and the allow-list again (its router may be new). */
  connected(ch: Channel): void {
    for (const target of this.#readers.keys()) ch.send({ type: FrameType.WATCH, op: WatchOp.WATCH, target, watcher: '' });
    const ref = 0; // answers to these are not awaited
    if (this.#props.size > 0) ch.send({ type: FrameType.PROPS, ref, op: PropsOp.SET, props: [...this.#props].map(([key, value]) => ({ key, value })) });
    if (this.#allow !== undefined) ch.send({ type: FrameType.PROPS, ref, op: PropsOp.ALLOW, props: this.#allow.map((key) => ({ key, value: '' })) });
  }

  disconnected(reason: PosternError): void {
    for (const p of this.#pending.values()) p.reject(reason);
    this.#pending.clear();
  }

  /** The client closed: every watch ends (with `reason` when it failed). */
  close(reason?: PosternError): void {
    this.disconnected(reason ?? new PosternError('ERR_CLOSED', 'the client is closed'));
    for (const readers of this.#readers.values()) for (const p of readers) p.end(reason);
    this.#readers.clear();
  }

  onPresence(f: PresenceFrame): void {
    const target = f.target.toLowerCase();
    const readers = this.#readers.get(target);
    if (readers === undefined) return;
    const e: PresenceEvent = { address: target, state: STATES[f.state], since: new Date(f.since * 1000), properties: Object.fromEntries(f.props.map((p) => [p.key, p.value])) };
    // The same state again (a re-watch after a reconnect, a router that restarted) is no change.
    const last = this.#last.get(target);
    if (last !== undefined && sameEvent(last, e)) return;
    this.#last.set(target, e);
    for (const p of readers) p.push(e);
  }

  onWatched(f: WatchedFrame): void {
    if (f.code === WireCode.OK) return;
    const target = f.target.toLowerCase();
    const readers = this.#readers.get(target);
    if (readers === undefined) return;
    // Refused (the watched agent's policy, an unknown name, a limit): every reader of it ends with why.
    this.#readers.delete(target);
    this.#last.delete(target);
    const err = new RemoteError(f.code, f.reason);
    for (const p of readers) p.end(err);
  }

  onPropset(f: PropsetFrame): void {
    const p = this.#pending.get(f.ref);
    if (p === undefined) return;
    this.#pending.delete(f.ref);
    if (f.code === WireCode.OK) p.resolve();
    else p.reject(new RemoteError(f.code, f.reason));
  }
}

function sameEvent(a: PresenceEvent, b: PresenceEvent): boolean {
  if (a.state !== b.state || a.since.getTime() !== b.since.getTime()) return false;
  const ka = Object.keys(a.properties);
  return ka.length === Object.keys(b.properties).length && ka.every((k) => b.properties[k] === a.properties[k]);
}
