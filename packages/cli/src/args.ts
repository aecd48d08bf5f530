// The parsing helpers commands use; the model itself (tables, env, config file) is options.ts.
import { UsageError } from './usage-error.js';
import type { Parsed } from './options.js';

export { flag, list, num, parse, required, str, type OptionSpec, type OptionTable, type Parsed } from './options.js';

/**
 * A whole number from an option the table does not type (a plain `{ type: 'string' }` entry);
 * options typed `int`, `duration` or `size` in their table are checked already: read them with num().
 */
export function int(command: string, p: Parsed, name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = p.values[name];
  if (typeof v !== 'string') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`${command}: --${name} must be a whole number ${max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`}, got "${v}"`);
  }
  return n;
}
