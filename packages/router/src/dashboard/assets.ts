import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The dashboard's files, built by scripts/build-web.mjs into dist/web; nothing else is served. */
const FILES: Readonly<Record<string, string>> = {
  'index.html': 'text/html; charset=utf-8',
  'login.html': 'text/html; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'login.js': 'text/javascript; charset=utf-8',
};

const root = fileURLToPath(new URL('../../web/', import.meta.url));
const cache = new Map<string, Buffer>();

/**
 * The dashboard's static files. `path` is relative to `/dashboard/` (`index.html`,
 * `login.html`, `app.js`, ...; the HTTP layer maps `/dashboard/` and `/dashboard/login`
 * to the two pages). A fixed list, read once: no path from a request reaches the file system.
 * Undefined for any other path, or when the package was built without its web files (the
 * caller answers 404).
 */
export function serveDashboardAsset(path: string): { status: number; type: string; body: Buffer } | undefined {
  const type = Object.hasOwn(FILES, path) ? FILES[path] : undefined;
  if (type === undefined) return undefined;
  let body = cache.get(path);
  if (body === undefined) {
    try {
      body = readFileSync(`${root}${path}`);
    } catch {
      return undefined;
    }
    cache.set(path, body);
  }
  return { status: 200, type, body };
}
