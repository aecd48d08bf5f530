/**
 * Addresses are `local@domain`. `local` is either a claimed name or a router-assigned id; ids
 * begin with `_`, names never do, so a router tells them apart without a lookup.
 * Everything is compared in lower case; an address fits in 255 bytes.
 */
export interface Address {
  local: string;
  domain: string;
}

const NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const ID = /^_[a-z0-9]{4,40}$/;
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
  if (!(isValidName(local) || isValidId(local))) return undefined;
  return { local, domain };
}

export function formatAddress(a: Address): string {
  return `${a.local}@${a.domain}`;
}
