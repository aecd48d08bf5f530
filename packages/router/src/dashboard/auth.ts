import { randomBytes, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { sourceOf } from '@postern/core';

/** The address a login failure counts against, as connections count (IPv4 as is, IPv6 by its /64). */
const loginSource = (remoteAddress: string): string => sourceOf(`[${remoteAddress}]:0`);

/** Limits of the dashboard's sessions and login (docs/LIMITS.md). */
export const AUTH_LIMITS = Object.freeze({
  /** Sessions held at once; a new login past it ends the oldest. */
  maxSessions: 64,
  /** A session's life (the cookie's Max-Age): 12 h. */
  sessionMs: 12 * 60 * 60 * 1000,
  /** Failed logins per minute from one address (IPv6: its /64); past it that address's logins fail until the minute ends. */
  loginTriesPerMinute: 10,
  /** Failed logins per minute from all addresses together: bounds a guess from many addresses (and the map below). */
  loginTriesPerMinuteTotal: 100,
});

/**
 * The session cookie's name for the admin listener on `port`. Browsers keep cookies per host,
 * not per port: two routers' dashboards on one host (a relay and a gateway on 127.0.0.1) would
 * otherwise overwrite each other's session, logging one out when the other logs in.
 */
export const sessionCookie = (port: number | undefined): string => `postern_admin_${port ?? 0}`;

/**
 * Server-side sessions of the dashboard: the cookie holds a random id (256 bits), never the
 * admin token; the map is bounded (oldest dropped) and each session expires.
 */
export class Sessions {
  readonly #sessions = new Map<string, number>();
  /** Failed logins this minute, per source address; at most loginTriesPerMinuteTotal entries. */
  readonly #failures = new Map<string, number>();
  #failuresTotal = 0;
  #windowAt = 0;

  constructor(readonly now: () => number = Date.now) {}

  create(): string {
    const id = randomBytes(32).toString('base64url');
    while (this.#sessions.size >= AUTH_LIMITS.maxSessions) {
      const oldest = this.#sessions.keys().next().value;
      if (oldest === undefined) break;
      this.#sessions.delete(oldest);
    }
    this.#sessions.set(id, this.now() + AUTH_LIMITS.sessionMs);
    return id;
  }

  valid(id: string | undefined): boolean {
    if (id === undefined) return false;
    const until = this.#sessions.get(id);
    if (until === undefined) return false;
    if (until <= this.now()) {
      this.#sessions.delete(id);
      return false;
    }
    return true;
  }

  drop(id: string | undefined): void {
    if (id !== undefined) this.#sessions.delete(id);
  }

  get size(): number {
    return this.#sessions.size;
  }

  /**
   * True while `remote` may still try a login this minute: a wrong-token burst from one address
   * locks out that address, not the operator logging in from another.
   */
  mayTry(remote: string): boolean {
    const now = this.now();
    if (now - this.#windowAt >= 60_000) {
      this.#windowAt = now;
      this.#failures.clear();
      this.#failuresTotal = 0;
    }
    return this.#failuresTotal < AUTH_LIMITS.loginTriesPerMinuteTotal && (this.#failures.get(loginSource(remote)) ?? 0) < AUTH_LIMITS.loginTriesPerMinute;
  }

  failed(remote: string): void {
    const k = loginSource(remote);
    this.#failures.set(k, (this.#failures.get(k) ?? 0) + 1);
    this.#failuresTotal++;
  }
}

/** Compares a presented secret with the expected one in constant time (for equal lengths). */
export function sameSecret(got: string, want: Buffer): boolean {
  const g = Buffer.from(got);
  return g.length === want.length && timingSafeEqual(g, want);
}

/** The value of cookie `name` in the request, if any. */
export function cookieOf(req: IncomingMessage, name: string): string | undefined {
  const header = req.headers.cookie;
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** The host name of a Host header, without the port (brackets of an IPv6 literal dropped). */
export function hostName(host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end < 0 ? host : host.slice(1, end);
  }
  const colon = host.lastIndexOf(':');
  return (colon < 0 ? host : host.slice(0, colon)).toLowerCase();
}

/**
 * DNS rebinding guard: a page of a hostile site whose name resolves to this listener sends
 * its own name as Host. Only IP literals, `localhost` and the names the operator listed pass.
 */
export function hostAllowed(host: string | undefined, allowed: ReadonlySet<string>): boolean {
  if (host === undefined || host === '') return false;
  const name = hostName(host);
  return isIP(name) !== 0 || name === 'localhost' || allowed.has(name);
}

/**
 * A POST from a page must come from this listener's own origin (when the browser says which):
 * `http://<Host>`, or `https://<Host>` behind a TLS-terminating proxy.
 */
export function originAllowed(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  const host = req.headers.host ?? '';
  return origin === `http://${host}` || origin === `https://${host}`;
}
