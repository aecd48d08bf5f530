import { isId } from '@postern/protocol';
import type { Clock } from './clock.js';
import type { Logger } from './logger.js';
import type { Store } from './store.js';

/**
 * Where a name or id of this router's domain lives (its *home*), whether it is online, and
 * when it was last seen. Every router keeps the entries of its own agents (home ''); a
 * bridgehead also keeps those of its hubs (home = the hub's node id). A name or id with an
 * entry is *known*: a message to it waits while it is offline; one to an unknown name is
 * refused at once (UNKNOWN_RECIPIENT), unless the router queues for unknown names.
 *
 * Entries are stored (kv `d:<local>`), so what is known survives restarts. An entry that has
 * been offline for `ttlMs` is forgotten (ids come and go with every new session); the number
 * of entries is bounded by `max`, the longest offline going first.
 */
export interface HomeEntry {
  /** '' for this router; else the node id of the hub the name or id is homed at. */
  home: string;
  online: boolean;
  /** Epoch ms: when it went offline, or came online. */
  since: number;
  /** For a name: the id of the session that holds it (one session per name across the domain). */
  id: string;
  /**
   * Bridgeheads: the hub it moved away from, while that hub still hands back what it held for
   * it (see Homes); '' otherwise. Messages for it wait meanwhile, so that none overtakes those.
   */
  from: string;
}

const PREFIX = 'd:';
const enc = new TextEncoder();
const dec = new TextDecoder();

export interface DirectoryOptions {
  ttlMs: number;
  max: number;
}

export class Directory {
  readonly #map = new Map<string, HomeEntry>();
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #o: DirectoryOptions;

  constructor(store: Store, clock: Clock, logger: Logger, o: DirectoryOptions) {
    this.#store = store;
    this.#clock = clock;
    this.#logger = logger;
    this.#o = o;
  }

  get size(): number {
    return this.#map.size;
  }

  /** Loads the stored entries; every one is offline after a restart (its sessions went with it). */
  async load(): Promise<void> {
    const now = this.#clock.now();
    const gone: string[] = [];
    for (const [key, value] of await this.#store.listValues(PREFIX)) {
      const [home = '', since = '0', id = '', from = ''] = dec.decode(value).split('\t');
      const e: HomeEntry = { home, online: false, since: Number(since) || now, id, from };
      if (now - e.since > this.#o.ttlMs && e.home === '' && isId(key.slice(PREFIX.length))) gone.push(key);
      else this.#map.set(key.slice(PREFIX.length), e);
    }
    if (gone.length > 0) await this.#store.deleteValues(gone);
  }

  get(local: string): HomeEntry | undefined {
    return this.#map.get(local);
  }

  entries(): IterableIterator<[string, HomeEntry]> {
    return this.#map.entries();
  }

  /** Every entry homed at `home` ('' here). */
  *homedAt(home: string): Iterable<[string, HomeEntry]> {
    for (const kv of this.#map) if (kv[1].home === home) yield kv;
  }

  /**
   * `local` lives at `home` and is online (true) or not, held by session `id` (undefined: as
   * before), moving away from hub `from` (undefined: as before). Stored when its home, session or
   * move changes, and on going offline.
   */
  set(local: string, home: string, online: boolean, id?: string, from?: string): HomeEntry {
    const now = this.#clock.now();
    const old = this.#map.get(local);
    const e: HomeEntry = {
      home,
      online,
      since: old !== undefined && old.online === online && old.home === home ? old.since : now,
      id: id ?? old?.id ?? '',
      from: from ?? old?.from ?? '',
    };
    this.#map.set(local, e);
    if (old === undefined || old.home !== home || old.id !== e.id || old.from !== e.from || !online) this.#save(local, e);
    if (old === undefined && this.#map.size > this.#o.max) this.#evict();
    return e;
  }

  forget(local: string): void {
    if (this.#map.delete(local)) this.#store.deleteValues([PREFIX + local]).catch((err: unknown) => this.#logger.error('store.write_failed', 'a directory entry could not be removed', { err: String(err) }));
  }

  /** Forgets ids offline for longer than `ttlMs` (names stay: they are someone's). */
  sweep(): void {
    const now = this.#clock.now();
    const gone: string[] = [];
    for (const [local, e] of this.#map) {
      if (!e.online && isId(local) && now - e.since > this.#o.ttlMs) {
        this.#map.delete(local);
        gone.push(PREFIX + local);
      }
    }
    if (gone.length > 0) this.#store.deleteValues(gone).catch((err: unknown) => this.#logger.error('store.write_failed', 'directory entries could not be removed', { err: String(err) }));
  }

  #evict(): void {
    // The longest offline first; a tenth at a time, so that a full directory does not evict per entry.
    const offline = [...this.#map].filter(([, e]) => !e.online).sort((a, b) => a[1].since - b[1].since);
    const n = Math.max(1, Math.floor(this.#o.max / 10));
    const gone = offline.slice(0, n).map(([local]) => local);
    for (const l of gone) this.#map.delete(l);
    if (gone.length > 0) this.#store.deleteValues(gone.map((l) => PREFIX + l)).catch((err: unknown) => this.#logger.error('store.write_failed', 'directory entries could not be removed', { err: String(err) }));
  }

  #save(local: string, e: HomeEntry): void {
    this.#store.setValue(PREFIX + local, enc.encode(`${e.home}\t${e.since}\t${e.id}\t${e.from}`)).catch((err: unknown) => this.#logger.error('store.write_failed', 'a directory entry could not be stored', { err: String(err) }));
  }
}
