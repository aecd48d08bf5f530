import { connect, type Client, type PresenceEvent } from '@postern/client';
import { isValidName } from '@postern/protocol';
import { UsageError } from '../usage-error.js';
import { flag, helpText, num, parse, required, str, type OptionTable } from '../options.js';
import { connectTimeoutFlags, dialFlags, dialSettings, withTokenHint, oldTimeoutFlag } from '../dial-flags.js';
import { out, untilSignal } from '../output.js';

export const options: OptionTable = {
  connect: { type: 'string', arg: 'URL', help: 'a router (hub, gateway or relay) [required]' },
  as: { type: 'string', arg: 'NAME', help: ["watch as this name (else the router assigns an id); the watched agent's", 'policy decides by it: its own domain may, others if it allowed them'] },
  token: { type: 'string', arg: 'T', secret: true, help: 'credential' },
  json: { type: 'boolean', help: 'one JSON object per line: address, state, since (ISO 8601), properties' },
  count: { type: 'string', kind: 'int', min: 1, help: 'exit 0 after N states printed' },
  ...connectTimeoutFlags,
  timeout: oldTimeoutFlag,
  ...dialFlags,
};

export const help = helpText(
  'watch',
  `Usage: postern watch --connect URL [--as NAME] [--token T] [--json] ADDRESS...

Watches the presence and properties of each ADDRESS (name@domain or _id@domain; a bare name
means the connected router's domain): prints the current state of each, then every change,
until stopped. The state is online, offline (with when it was last seen) or unreachable (its
home router, or the way to it, is lost). Watches are made again after a reconnect.
Another domain's agent may be watched only where it allowed it (postern set --allow).
`,
  options,
  `Plain output is one line per state: ADDRESS STATE since TIME [KEY=VALUE ...]
A watch its target's home refuses (ERR_FORBIDDEN, ERR_UNKNOWN_RECIPIENT, ...) is printed on
standard error; watch exits 1 when every watch was refused.`,
  21,
);

export function formatPresence(e: PresenceEvent, json: boolean): string {
  if (json) return JSON.stringify({ address: e.address, state: e.state, since: e.since.toISOString(), properties: e.properties });
  const props = Object.entries(e.properties).map(([k, v]) => ` ${k}=${JSON.stringify(v)}`).join('');
  return `${e.address} ${e.state} since ${e.since.toISOString()}${props}`;
}

export async function watch(argv: string[]): Promise<number> {
  const p = parse('watch', argv, options, true);
  if (p.values.help) return out(help), 0;
  const url = required(p, 'connect');
  const targets = p.positionals;
  if (targets.length === 0) throw new UsageError('watch: give at least one ADDRESS to watch');
  const name = str(p, 'as');
  if (name !== undefined && !isValidName(name.toLowerCase())) throw new UsageError(`watch: --as must be a name of 1-64 of a-z 0-9 . _ -, got "${name}"`);
  const token = str(p, 'token');
  const json = flag(p, 'json');
  const count = num(p, 'count');
  const signal = untilSignal();
  const stop = new AbortController();
  void signal.then(() => stop.abort());
  let client: Client;
  try {
    client = await withTokenHint(p, connect({
      ...dialSettings('watch', p),
      url,
      agent: 'postern-cli/watch',
      connectTimeoutMs: num(p, 'connect-timeout') ?? 10_000,
      signal: stop.signal,
      ...(name === undefined ? {} : { name }),
      ...(token === undefined ? {} : { token }),
    }));
  } catch (err) {
    if (stop.signal.aborted) return 0;
    throw err;
  }
  process.stderr.write(`postern watch: connected as ${client.address}\n`);
  client.onStatus((s) => {
    if (s.type === 'disconnected' && s.willReconnect) process.stderr.write(`postern watch: connection lost (${s.error.message}); reconnecting in ${s.retryInMs} ms\n`);
  });
  let printed = 0;
  let refused = 0;
  try {
    await Promise.all(
      targets.map(async (t) => {
        try {
          for await (const e of client.watch(t, { signal: stop.signal })) {
            out(formatPresence(e, json));
            if (count !== undefined && ++printed >= count) stop.abort();
          }
        } catch (err) {
          refused++;
          process.stderr.write(`postern watch: ${t}: [${(err as { code?: string }).code ?? 'ERR'}] ${(err as Error).message}\n`);
        }
      }),
    );
  } finally {
    await client.close();
  }
  return refused === targets.length ? 1 : 0;
}
