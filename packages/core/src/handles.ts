import type { Clock } from './clock.js';
import type { Logger } from './logger.js';
import type { Store } from './store.js';

/**
 * Why a handle exists. `message`: one anonymous message's reply handle; `sticky`: a sender's
 * one long-lived handle; `wrap`: a handle of a router below, wrapped in one of ours; `pseudonym`:
 * an agent's address for being written to first.
 */
export type HandleKind = 'message' | 'sticky' | 'wrap' | 'pseudonym';

export interface Handle {
  /** Where a message to the handle goes: an agent of this router, or a handle of another router. */
  readonly target: string;
  readonly expiresAt: number;
  readonly kind: HandleKind;
  /** A wrap of a hub's handle (bridgehead): the node id of that hub, where messages to it go. '' otherwise. */
  readonly via: string;
}

const PREFIX = 'h:';
const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * The reply handles of one router: `~token@domain` → where messages to it go. Kept in the
 * store (a value per handle, written in the same commit as the message that carries it, so a
 * handle that left in a message is never lost to a crash) and in memory; swept when expired.
 */
export class Handles {
  readonly #map = new Map<string, Handle>();
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #logger: Logger;

  constructor(store: Store, clock: Clock, logger: Logger) {
    this.#store = store;
    this.#clock = clock;
    this.#logger = logger;
  }

  get size(): number {
    return this.#map.size;
  }

  async load(): Promise<void> {
    const now = this.#clock.now();
    const gone: string[] = [];
    for (const [key, value] of await this.#store.listValues(PREFIX)) {
      const h = decode(value);
      if (h === undefined || h.expiresAt <= now) gone.push(key);
      else this.#map.set(key.slice(PREFIX.length), h);
    }
    if (gone.length > 0) await this.#store.deleteValues(gone);
  }

  /** The live handle of `token`, or undefined (unknown or expired). */
  get(token: string): Handle | undefined {
    const h = this.#map.get(token);
    if (h === undefined || h.expiresAt > this.#clock.now()) return h;
    return undefined;
  }

  has(token: string): boolean {
    return this.get(token) !== undefined;
  }

  /**
   * Makes or renews a handle. Stored (in the commit of this tick) only when new, pointing
   * elsewhere, or renewed by more than a tenth of its life: retries of one message cost nothing.
   */
  put(token: string, target: string, ttlMs: number, kind: HandleKind, via = ''): Handle {
    const now = this.#clock.now();
    const old = this.#map.get(token);
    const expiresAt = Math.max(now + ttlMs, old?.target === target ? old.expiresAt : 0);
    if (old !== undefined && old.target === target && old.kind === kind && old.via === via && expiresAt - old.expiresAt <= ttlMs / 10) return old;
    const h: Handle = { target, expiresAt, kind, via };
    this.#map.set(token, h);
    this.#store.setValue(PREFIX + token, encode(h)).catch((err: unknown) => this.#logger.error('store.write_failed', 'a reply handle could not be stored', { err: String(err) }));
    return h;
  }

  /** Forgets expired handles. */
  sweep(): void {
    const now = this.#clock.now();
    const gone: string[] = [];
    for (const [token, h] of this.#map) {
      if (h.expiresAt > now) continue;
      this.#map.delete(token);
      gone.push(PREFIX + token);
    }
    if (gone.length > 0) this.#store.deleteValues(gone).catch((err: unknown) => this.#logger.error('store.write_failed', 'expired reply handles could not be removed', { err: String(err) }));
  }
}

function encode(h: Handle): Uint8Array {
  return enc.encode(`${h.expiresAt} ${h.kind} ${h.target}${h.via === '' ? '' : ` ${h.via}`}`);
}

function decode(b: Uint8Array): Handle | undefined {
  const [at, kind, target, via = ''] = dec.decode(b).split(' ');
  const expiresAt = Number(at);
  if (!Number.isFinite(expiresAt) || target === undefined || !(kind === 'message' || kind === 'sticky' || kind === 'wrap' || kind === 'pseudonym')) return undefined;
  return { target, expiresAt, kind, via };
}
