/**
 * What the two ends of a router link sign (PROTOCOL.md section 4.6). Each side signs the other
 * side's fresh nonce, bound to both node ids and both nonces, so neither signature can be
 * replayed on another link or by another router.
 */

/** The accepting router's WELCOME `proof` covers this. */
export function acceptPayload(dialerNonce: string, dialerNode: string, acceptorNode: string, acceptorNonce: string): string {
  return `postern-link/2\naccept\n${dialerNonce}\n${dialerNode}\n${acceptorNode}\n${acceptorNonce}`;
}

/** The dialing router's AUTH `proof` covers this. */
export function dialPayload(acceptorNonce: string, acceptorNode: string, dialerNode: string, dialerNonce: string): string {
  return `postern-link/2\ndial\n${acceptorNonce}\n${acceptorNode}\n${dialerNode}\n${dialerNonce}`;
}

/** 32 random bytes, base64url (43 characters). */
export function newNonce(): string {
  const b = new Uint8Array(32);
  crypto.getRandomValues(b);
  let s = '';
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** A nonce as `newNonce()` makes them: what a router insists on from a dialing router. */
export function isNonce(s: string): boolean {
  return /^[A-Za-z0-9_-]{43}$/.test(s);
}

/**
 * What each router on a route's path signs when it tells the route on (PROTOCOL.md section 7.3):
 * the domain, the path so far ending with itself, and the router it tells. A peer therefore
 * cannot make up a path: it can only pass on one that every router on it signed towards the next.
 */
export function routePayload(domain: string, path: readonly string[], next: string): string {
  return `postern-route/2\n${domain}\n${path.join(' ')}\n${next}`;
}
