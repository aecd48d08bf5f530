import { readFileSync } from 'node:fs';
import { UsageError } from './usage-error.js';

/** A text file named by a flag; one line naming the flag and the file when it cannot be read. */
export function readFlagFile(command: string, flag: string, file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.code === 'EISDIR' ? 'is a directory' : (e.code ?? e.message);
    throw new UsageError(`${command}: cannot read ${flag} ${file}: ${why}`);
  }
}

/** A PEM file: readable and holding a `-----BEGIN <label>` block, else one line naming it. */
export function readPemFile(command: string, flag: string, file: string, label: RegExp, what: string): string {
  const text = readFlagFile(command, flag, file);
  if (!new RegExp(`-----BEGIN ${label.source}-----`).test(text)) throw new UsageError(`${command}: ${flag} ${file} holds no PEM ${what}`);
  return text;
}

/** A seed file (`postern key new --out FILE`): its first non-empty line, which must look like a seed. */
export function readSeedFile(command: string, flag: string, file: string): string {
  const text = readFlagFile(command, flag, file);
  const seed = text.split('\n').map((l) => l.trim()).find((l) => l !== '' && !l.startsWith('#'));
  if (seed === undefined || !/^S[A-Z2-7]{57}$/.test(seed)) throw new UsageError(`${command}: ${flag} ${file} holds no seed (a line of 58 characters starting with S, as 'postern key new' writes it)`);
  return seed;
}
