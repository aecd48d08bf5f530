import { connect, type Client, type Message } from '@postern/client';
import { isValidName } from '@postern/protocol';
import { UsageError } from '../usage-error.js';
import { flag, helpText, num, parse, required, str, type OptionTable } from '../options.js';
import { connectTimeoutFlags, dialFlags, dialSettings, withTokenHint, oldTimeoutFlag } from '../dial-flags.js';
import { out, untilSignal } from '../output.js';

export const options: OptionTable = {
  connect: { type: 'string', arg: 'URL', help: 'a router (relay or gateway): ws://, wss://, http(s):// or HOST:PORT [required]' },
  as: { type: 'string', arg: 'NAME', help: 'the name to claim [required]' },
  token: { type: 'string', arg: 'T', secret: true, help: 'credential allowing the name, where the router checks' },
  json: { type: 'boolean', help: 'one JSON object per line: id, from, to, body (UTF-8 text), volatile' },
  count: { type: 'string', kind: 'int', min: 1, help: 'exit 0 after N messages' },
  pseudonym: {
    type: 'boolean',
    help: ['also ask for a pseudonym: an address that reaches this listener without', 'revealing its name or (behind a gateway) its organisation; printed at', 'start on standard error as "postern listen: pseudonym ADDRESS"'],
  },
  'pseudonym-ttl': { type: 'string', kind: 'duration', unit: 's', min: 1, arg: 'D', help: "its lifetime: 3600, 90s, 15m, 12h or 30d (a plain number: seconds) [the router's, 7d]" },
  ...connectTimeoutFlags,
  timeout: oldTimeoutFlag,
  ...dialFlags,
};

export const help = helpText(
  'listen',
  `Usage: postern listen --connect URL --as NAME [--token T] [--json] [--count N]

Connects as NAME@DOMAIN and prints each message it receives. Each is acknowledged once it
was written to standard output, so a message is never lost between the router and the output
(if listen dies first, the router sends it again on the next connection).
Reconnects (same session) when the connection drops.
`,
  options,
  `Plain output is one line per message: FROM: BODY`,
  21,
);

/** After a signal, how long the message being written may take before listen closes anyway. */
const STOP_GRACE_MS = 2000;

/** Resolves when the line was handed to the OS (pipe, file or terminal). */
function print(text: string): Promise<void> {
  return new Promise((resolve, reject) =>
    process.stdout.write(`${text}\n`, (err) => {
      if (err === null || err === undefined) resolve();
      else reject((err as NodeJS.ErrnoException).code === 'EPIPE' ? new Error('standard output was closed') : err);
    }),
  );
}

const fatal = new TextDecoder('utf-8', { fatal: true });

function line(m: Message, json: boolean): string {
  if (!json) return `${m.from}: ${m.text()}`;
  let body: string;
  const extra: Record<string, string> = {};
  try {
    body = fatal.decode(m.body);
  } catch {
    body = m.text();
    extra.body_base64 = Buffer.from(m.body).toString('base64');
  }
  return JSON.stringify({ id: m.id, from: m.from, to: m.to, body, volatile: m.volatile, ...extra });
}

export async function listen(argv: string[]): Promise<number> {
  const p = parse('listen', argv, options);
  if (p.values.help) return out(help), 0;
  const url = required(p, 'connect');
  const name = required(p, 'as');
  if (!isValidName(name.toLowerCase())) throw new UsageError(`listen: --as must be a name of 1-64 of a-z 0-9 . _ -, starting with a letter or digit, got "${name}"`);
  const token = str(p, 'token');
  const count = num(p, 'count');
  const json = flag(p, 'json');
  const dial = dialSettings('listen', p);
  // Installed before connecting: Ctrl-C while the first connection is made is a normal stop.
  const signal = untilSignal();
  const giveUp = new AbortController();
  void signal.then(() => giveUp.abort());
  let client: Client;
  try {
    client = await withTokenHint(p, connect({
      ...dial,
      url,
      name,
      agent: 'postern-cli/listen',
      autoAck: false,
      connectTimeoutMs: num(p, 'connect-timeout') ?? 10_000,
      signal: giveUp.signal,
      ...(token === undefined ? {} : { token }),
    }));
  } catch (err) {
    if (giveUp.signal.aborted) return 0;
    throw err;
  }
  process.stderr.write(`postern listen: connected as ${client.address}\n`);
  const ttl = num(p, 'pseudonym-ttl');
  if (ttl !== undefined && !flag(p, 'pseudonym')) throw new UsageError('listen: --pseudonym-ttl needs --pseudonym');
  if (flag(p, 'pseudonym')) {
    try {
      const ps = await client.pseudonym(ttl === undefined ? {} : { ttlMs: ttl * 1000 });
      process.stderr.write(`postern listen: pseudonym ${ps.address} (until ${new Date(ps.expiresAt).toISOString()})\n`);
    } catch (err) {
      await client.close();
      throw err;
    }
  }
  client.onStatus((s) => {
    if (s.type === 'disconnected' && s.willReconnect) process.stderr.write(`postern listen: connection lost (${s.error.message}); reconnecting in ${s.retryInMs} ms\n`);
    else if (s.type === 'connected') {
      process.stderr.write(`postern listen: connected as ${s.address}${s.resumed ? ' (resumed)' : ''}\n`);
      if (s.lost) process.stderr.write(`postern listen: warning: the router did not recover this session (its store was lost or replaced): messages it held for ${s.address} may be lost\n`);
    }
  });
  let n = 0;
  // On a signal, the message being written is finished and acknowledged, and nothing after it is
  // printed: a message printed after the connection closed could not be acknowledged, and the
  // router would send it again to the next listen.
  let stopping = false;
  let busy = false;
  void signal.then(() => {
    stopping = true;
    if (!busy) void client.close();
    // An output that never drains must not keep listen from stopping.
    else setTimeout(() => void client.close(), STOP_GRACE_MS).unref();
  });
  try {
    for await (const m of client) {
      if (stopping) break;
      busy = true;
      await print(line(m, json));
      m.ack();
      busy = false;
      if (stopping || (count !== undefined && ++n >= count)) break;
    }
  } finally {
    await client.close();
  }
  return 0;
}
