import { connect } from '@postern/client';
import { MAX_TIMER_MS, isValidName } from '@postern/protocol';
import { UsageError } from '../usage-error.js';
import { int, parse, required, str } from '../args.js';
import { dialFlags, dialFlagsHelp, dialSettings } from '../dial-flags.js';
import { out } from '../output.js';

export const help = `Usage: postern set --connect URL --as NAME [--token T] [--allow ADDRESS]... KEY=VALUE...

Publishes properties of NAME (a status text, capabilities, a public key): its home router keeps
them, also while NAME is offline, and everyone watching NAME hears of the change at once.
KEY= (empty value) removes a key. Connects as NAME for this, so NAME must not be connected
elsewhere at the time (use 'postern chat' and /set there to change them while connected).

Options:
  --connect URL      NAME's router (its hub, gateway or relay) [required]
  --as NAME          whose properties [required]
  --token T          credential allowing the name (or POSTERN_TOKEN)
  --allow ADDRESS    who may watch NAME besides its own domain: an address, *@DOMAIN or *;
                     repeatable; replaces the earlier list (--allow '' allows nobody again)
  --timeout MS       give up connecting after this long [10000]
${dialFlagsHelp(21)}
  -h, --help         this help

Example:
  postern set --connect ws://10.0.1.7:7100 --as alice status="in a meeting" --allow '*@globex'`;

export async function set(argv: string[]): Promise<number> {
  const p = parse('set', argv, { connect: { type: 'string' }, as: { type: 'string' }, token: { type: 'string' }, allow: { type: 'string', multiple: true }, timeout: { type: 'string' }, ...dialFlags }, true);
  if (p.values.help) return out(help), 0;
  const url = required('set', p, 'connect');
  const name = required('set', p, 'as');
  if (!isValidName(name.toLowerCase())) throw new UsageError(`set: --as must be a name of 1-64 of a-z 0-9 . _ -, got "${name}"`);
  const props: Record<string, string | null> = {};
  for (const kv of p.positionals) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new UsageError(`set: properties are KEY=VALUE, got "${kv}"`);
    const value = kv.slice(eq + 1);
    props[kv.slice(0, eq)] = value === '' ? null : value;
  }
  const allow = (p.values.allow as unknown as string[] | undefined)?.filter((a) => a !== '');
  if (p.positionals.length === 0 && allow === undefined) throw new UsageError('set: give KEY=VALUE properties, or --allow');
  const token = str(p, 'token', 'POSTERN_TOKEN');
  const client = await connect({
    ...dialSettings('set', p),
    url,
    name,
    agent: 'postern-cli/set',
    reconnect: false,
    connectTimeoutMs: int('set', p, 'timeout', 1, MAX_TIMER_MS) ?? 10_000,
    ...(token === undefined ? {} : { token }),
  });
  try {
    if (p.positionals.length > 0) await client.setProperties(props);
    if (allow !== undefined) await client.allowWatchers(allow);
  } finally {
    await client.close();
  }
  out(`postern set: ${client.address} updated`);
  return 0;
}
