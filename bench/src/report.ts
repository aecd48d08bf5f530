// Formatting shared by the bench's reports.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const repoDir = fileURLToPath(new URL('../..', import.meta.url));

/** A number for a table: thousands separated, `digits` decimals; '-' when there is none. */
export function fmt(x: number | undefined, digits = 0): string {
  if (x === undefined || !Number.isFinite(x)) return '-';
  return x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** `git <args>` in the repository, trimmed; 'unknown' when git cannot say. */
export function git(args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: repoDir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}
