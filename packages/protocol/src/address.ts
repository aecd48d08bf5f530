/**
 * Addresses are `local@domain`. `local` is a claimed name, a router-assigned id (`_…`) or, in
 * version 2, a reply handle (`~…`) that only the router of `domain` can map back to an agent;
 * names start with a letter or digit, so a router tells the three apart by the first character.
 * Everything is compared in lower case; an address fits in 255 bytes.
 */
export interface Address {
  local: string;
  domain: string;
}

const NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const ID = /^_[a-z0-9]{4,40}$/;
const HANDLE = /^~[a-z0-9]{16,64}$/;
const NODE = /^[A-Za-z0-9._-]{1,64}$/;
const LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const DOMAIN = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`);
const MAX_ADDRESS = 255;
const MAX_DOMAIN = 189;

export function isValidName(name: string): boolean {
  return NAME.test(name);
}

export function isValidId(id: string): boolean {
  return ID.test(id);
}

/** A reply handle: `~` and 16 to 64 of a-z 0-9 (ours: 26 base32 characters). */
export function isValidHandle(local: string): boolean {
  return HANDLE.test(local);
}

export function isHandle(local: string): boolean {
  return local.charCodeAt(0) === 0x7e; // '~'
}

/** A router's node id: 1 to 64 of A-Z a-z 0-9 . _ - (ours: its public key, 56 characters). */
export function isValidNodeId(node: string): boolean {
  return NODE.test(node);
}

export function isValidDomain(domain: string): boolean {
  return domain.length <= MAX_DOMAIN && DOMAIN.test(domain);
}

export function isId(local: string): boolean {
  return local.charCodeAt(0) === 0x5f; // '_'
}

/**
 * Parses `local@domain`, or a bare `local` when `defaultDomain` is given. Returns undefined
 * for anything malformed; callers turn that into ERR_BAD_ADDRESS with their own context.
 */
export function parseAddress(text: string, defaultDomain?: string): Address | undefined {
  if (text.length === 0 || text.length > MAX_ADDRESS) return undefined;
  const s = text.toLowerCase();
  const at = s.lastIndexOf('@');
  const local = at < 0 ? s : s.slice(0, at);
  const domain = at < 0 ? defaultDomain : s.slice(at + 1);
  if (domain === undefined || !isValidDomain(domain)) return undefined;
  if (!(isValidName(local) || isValidId(local) || isValidHandle(local))) return undefined;
  return { local, domain };
}

export function formatAddress(a: Address): string {
  return `${a.local}@${a.domain}`;
}
