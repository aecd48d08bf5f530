import { parseAddress, type Address } from '@postern/protocol';

export interface ParsedAddress extends Address {
  /** `local@domain`, normalised. */
  readonly text: string;
}

/** Entries of each parsed-address cache; cleared whole when full. */
const SIZE = 4096;

/**
 * Parses and normalises addresses through a small cache: the same few recipients recur on a
 * busy link, and parsing is regex work on the hot path.
 */
export class AddressCache {
  readonly #full = new Map<string, ParsedAddress | null>();
  readonly #bare = new Map<string, ParsedAddress | null>();

  constructor(readonly domain: string) {}

  /** `text` as a full address; `bare` also takes `local` alone, in this router's domain (agents). */
  parse(text: string, bare = false): ParsedAddress | undefined {
    const cache = bare ? this.#bare : this.#full;
    let a = cache.get(text);
    if (a === undefined) {
      const p = bare ? parseAddress(text, this.domain) : parseAddress(text);
      a = p === undefined ? null : { local: p.local, domain: p.domain, text: `${p.local}@${p.domain}` };
      if (cache.size >= SIZE) cache.clear();
      cache.set(text, a);
    }
    return a ?? undefined;
  }
}
