/**
 * UTF-8 lengths of JavaScript strings, without encoding them. Wire strings are limited in
 * bytes (str8: 255) while JavaScript counts UTF-16 code units: limits on ids and names must be
 * checked in bytes.
 */

/** Bytes of `s` in UTF-8 (a lone surrogate counts 3, as TextEncoder writes U+FFFD). */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** The longest prefix of `s` of at most `maxBytes` bytes in UTF-8, never splitting a code point. */
export function truncateUtf8(s: string, maxBytes: number): string {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const pair = c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00;
    const size = c < 0x80 ? 1 : c < 0x800 ? 2 : pair ? 4 : 3;
    if (n + size > maxBytes) return s.slice(0, i);
    n += size;
    if (pair) i++;
  }
  return s;
}
