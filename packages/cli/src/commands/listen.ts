import { connect, type Message } from '@postern/client';
import { flag, int, parse, required, str } from '../args.js';
import { dialFlags, dialFlagsHelp, dialSettings } from '../dial-flags.js';
import { out, untilSignal } from '../output.js';

export const help = `Usage: postern listen --connect URL --as NAME [--token T] [--json] [--count N]

Connects as NAME@DOMAIN and prints each message it receives. Each is acknowledged once it
was written to standard output, so a message is never lost between the router and the output
(if listen dies first, the router sends it again on the next connection).
Reconnects (same session) when the connection drops.

Options:
  --connect URL      a router (relay or gateway): ws://, wss://, http(s):// or HOST:PORT [required]
  --as NAME          the name to claim [required]
  --token T          credential allowing the name, where the router checks (or POSTERN_TOKEN)
  --json             one JSON object per line: id, from, to, body (UTF-8 text), volatile
  --count N          exit 0 after N messages
  --timeout MS       give up connecting after this long [10000]
${dialFlagsHelp(21)}
  -h, --help         this help

Plain output is one line per message: FROM: BODY`;

/** Resolves when the line was handed to the OS (pipe, file or terminal). */
function print(text: string): Promise<void> {
  return new Promise((resolve, reject) => process.stdout.write(`${text}\n`, (err) => (err ? reject(err) : resolve())));
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
  const p = parse('listen', argv, {
    connect: { type: 'string' },
    as: { type: 'string' },
    token: { type: 'string' },
    json: { type: 'boolean' },
    count: { type: 'string' },
    timeout: { type: 'string' },
    ...dialFlags,
  });
  if (p.values.help) return out(help), 0;
  const url = required('listen', p, 'connect');
  const name = required('listen', p, 'as');
  const token = str(p, 'token', 'POSTERN_TOKEN');
  const count = int('listen', p, 'count', 1);
  const json = flag(p, 'json');
  const dial = dialSettings('listen', p);
  const client = await connect({
    ...dial,
    url,
    name,
    agent: 'postern-cli/listen',
    autoAck: false,
    connectTimeoutMs: int('listen', p, 'timeout', 1) ?? 10_000,
    ...(token === undefined ? {} : { token }),
  });
  process.stderr.write(`postern listen: connected as ${client.address}\n`);
  client.onStatus((s) => {
    if (s.type === 'disconnected' && s.willReconnect) process.stderr.write(`postern listen: connection lost (${s.error.message}); reconnecting in ${s.retryInMs} ms\n`);
    else if (s.type === 'connected') process.stderr.write(`postern listen: connected as ${s.address}${s.resumed ? ' (resumed)' : ''}\n`);
  });
  let n = 0;
  const stop = untilSignal().then(() => client.close());
  try {
    for await (const m of client) {
      await print(line(m, json));
      m.ack();
      if (count !== undefined && ++n >= count) break;
    }
  } finally {
    await client.close();
    void stop;
  }
  return 0;
}
