import { connect } from '@postern/client';
import { isValidName } from '@postern/protocol';
import { UsageError } from '../usage-error.js';
import { helpText, list, num, parse, required, str, type OptionTable } from '../options.js';
import { connectTimeoutFlags, dialFlags, dialSettings, withTokenHint, oldTimeoutFlag } from '../dial-flags.js';
import { out } from '../output.js';

export const options: OptionTable = {
  connect: { type: 'string', arg: 'URL', help: "NAME's router (its hub, gateway or relay) [required]" },
  as: { type: 'string', arg: 'NAME', help: 'whose properties [required]' },
  token: { type: 'string', arg: 'T', secret: true, help: 'credential allowing the name' },
  allow: {
    type: 'string',
    multiple: true,
    arg: 'ADDRESS',
    help: ['who may watch NAME besides its own domain: an address, *@DOMAIN or *;', "repeatable; replaces the earlier list (--allow '' allows nobody again)"],
  },
  ...connectTimeoutFlags,
  timeout: oldTimeoutFlag,
  ...dialFlags,
};

export const help = helpText(
  'set',
  `Usage: postern set --connect URL --as NAME [--token T] [--allow ADDRESS]... KEY=VALUE...

Publishes properties of NAME (a status text, capabilities, a public key): its home router keeps
them, also while NAME is offline, and everyone watching NAME hears of the change at once.
KEY= (empty value) removes a key. Connects as NAME for this, so NAME must not be connected
elsewhere at the time (use 'postern chat' and /set there to change them while connected).
`,
  options,
  `Example:
  postern set --connect ws://10.0.1.7:7100 --as alice status="in a meeting" --allow '*@globex'`,
  21,
);

export async function set(argv: string[]): Promise<number> {
  const p = parse('set', argv, options, true);
  if (p.values.help) return out(help), 0;
  const url = required(p, 'connect');
  const name = required(p, 'as');
  if (!isValidName(name.toLowerCase())) throw new UsageError(`set: --as must be a name of 1-64 of a-z 0-9 . _ -, got "${name}"`);
  const props: Record<string, string | null> = {};
  for (const kv of p.positionals) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new UsageError(`set: properties are KEY=VALUE, got "${kv}"`);
    const value = kv.slice(eq + 1);
    props[kv.slice(0, eq)] = value === '' ? null : value;
  }
  const allow = list(p, 'allow')?.filter((a) => a !== '');
  if (p.positionals.length === 0 && allow === undefined) throw new UsageError('set: give KEY=VALUE properties, or --allow');
  const token = str(p, 'token');
  const client = await withTokenHint(p, connect({
    ...dialSettings('set', p),
    url,
    name,
    agent: 'postern-cli/set',
    reconnect: false,
    connectTimeoutMs: num(p, 'connect-timeout') ?? 10_000,
    ...(token === undefined ? {} : { token }),
  }));
  try {
    if (p.positionals.length > 0) await client.setProperties(props);
    if (allow !== undefined) await client.allowWatchers(allow);
  } finally {
    await client.close();
  }
  out(`postern set: ${client.address} updated`);
  return 0;
}
