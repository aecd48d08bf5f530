import { readFileSync } from 'node:fs';
import { dirname, extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The dashboard's static files. `path` is relative to `/dashboard/` (`index.html`,
 * `login.html`, `app.js`, ...; the HTTP layer maps `/dashboard/` and `/dashboard/login`
 * to the two pages). Returns undefined when there is no such asset (the caller answers 404).
 *
 * Placeholder (dash-api): serves files from packages/router/web/ when present. The page's
 * branch (dash-ui) replaces this module; keep the signature.
 */
export function serveDashboardAsset(path: string): { status: number; type: string; body: Buffer } | undefined {
  if (!/^[A-Za-z0-9._/-]{1,200}$/.test(path) || path.includes('..')) return undefined;
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'web');
  const file = normalize(join(root, path));
  if (!file.startsWith(root + sep)) return undefined;
  try {
    return { status: 200, type: TYPES[extname(file)] ?? 'application/octet-stream', body: readFileSync(file) };
  } catch {
    return undefined;
  }
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.json': 'application/json',
};
