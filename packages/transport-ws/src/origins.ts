import { ConfigError } from '@postern/protocol';

/**
 * Which web origins may open a WebSocket or a long-poll session (cross-site WebSocket hijacking:
 * any page a user opens could otherwise reach a router on the user's network and claim names
 * on it). A request without an Origin header is not a browser's and is not affected; one with an
 * Origin is let only when that origin is listed. `*` lets every origin.
 */
export interface AllowedOrigins {
  /** Every origin (the list held `*`). */
  readonly any: boolean;
  /** Normalised origins: `scheme://host[:port]`, lower case, default ports left out. */
  readonly list: ReadonlySet<string>;
}

export const NO_ORIGINS: AllowedOrigins = Object.freeze({ any: false, list: new Set<string>() });

/** Checks and normalises configured origins (`https://app.example.com`, `http://localhost:8080`, `*`). */
export function resolveAllowedOrigins(origins: readonly string[] | undefined): AllowedOrigins {
  if (origins === undefined || origins.length === 0) return NO_ORIGINS;
  const list = new Set<string>();
  let any = false;
  for (const raw of origins) {
    const o = raw.trim();
    if (o === '*') {
      any = true;
      continue;
    }
    const n = normaliseOrigin(o);
    if (n === undefined) throw new ConfigError(`an allowed origin is a scheme, a host and an optional port, such as https://app.example.com; got "${raw}"`);
    list.add(n);
  }
  return Object.freeze({ any, list });
}

/** `scheme://host[:port]` in the form browsers send, or undefined when `s` is not an origin. */
function normaliseOrigin(s: string): string | undefined {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return undefined;
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.host === '') return undefined;
  // An origin has no path, query, fragment or credentials.
  if (u.username !== '' || u.password !== '' || u.search !== '' || u.hash !== '' || (u.pathname !== '/' && u.pathname !== '')) return undefined;
  return u.origin;
}

/**
 * The verdict on a request's Origin header: true when it may go on (no header, or a listed
 * origin). A header that is not a valid origin (`null` from a sandboxed page or a file) is
 * let only by `*`.
 */
export function originAllowed(header: string | string[] | undefined, allowed: AllowedOrigins): boolean {
  if (header === undefined) return true;
  if (allowed.any) return true;
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined) return true;
  const n = normaliseOrigin(value);
  return n !== undefined && allowed.list.has(n);
}
