import { createInterface } from 'node:readline';
import { connect, type SendResult } from '@postern/client';
import { MAX_TIMER_MS, PosternError } from '@postern/protocol';
import { flag, helpText, num, parse, required, str, type OptionTable } from '../options.js';
import { connectTimeoutFlags, dialFlags, dialSettings, withTokenHint } from '../dial-flags.js';
import { out } from '../output.js';
import { formatTiming, Progress } from '../progress.js';
import { UsageError } from '../usage-error.js';

export const options: OptionTable = {
  connect: { type: 'string', arg: 'URL', help: 'a router (relay or gateway) [required]' },
  to: { type: 'string', arg: 'ADDRESS', help: 'the recipient [required]' },
  as: { type: 'string', arg: 'NAME', help: 'claim this name as the sender (else the router assigns an id)' },
  token: { type: 'string', arg: 'T', secret: true, help: 'credential' },
  count: { type: 'string', kind: 'int', min: 1, help: 'send N numbered copies: "TEXT 1" ... "TEXT N"' },
  receipt: { type: 'boolean', help: "wait for delivery to the recipient's application, not only acceptance" },
  volatile: { type: 'boolean', help: 'at most once: not stored, not retried, no acknowledgement' },
  anonymous: {
    type: 'boolean',
    help: ['hide the sender: the router replaces it with a reply handle that only it', 'can map back (a relay wraps it again, hiding the organisation); the', 'recipient can reply to the handle'],
  },
  sticky: { type: 'boolean', help: ['with --anonymous: one long-lived handle for all these messages (the', 'recipient can tell they come from one sender), not one per message'] },
  timeout: {
    type: 'string',
    kind: 'duration',
    unit: 'ms',
    min: 1,
    max: MAX_TIMER_MS,
    default: '60s',
    help: ['per message: fail when not accepted (with --receipt: delivered) in this', 'time (a plain number: ms)'],
  },
  ...connectTimeoutFlags,
  quiet: { type: 'boolean', help: 'print nothing on success, and no progress' },
  ...dialFlags,
};

export const help = helpText(
  'send',
  `Usage: postern send --connect URL --to ADDRESS [--as NAME] [--token T] [--count N] [TEXT]

Sends TEXT, or each line of standard input, to ADDRESS (name@domain or _id@domain; a bare name
means the connected router's domain). Reliable by default: waits until the router has stored
every message (it then delivers it, keeping it while the recipient is offline, for up to the
router's --max-age), and exits 0 only when all were accepted, else prints the reason per
message and exits 1. With --receipt it waits until each one reached the recipient's application.
`,
  options,
  '',
  21,
);

async function* bodies(text: string | undefined, count: number | undefined): AsyncGenerator<string> {
  if (count !== undefined) {
    const t = text ?? 'message';
    for (let i = 1; i <= count; i++) yield `${t} ${i}`;
    return;
  }
  if (text !== undefined) {
    yield text;
    return;
  }
  if (process.stdin.isTTY) throw new UsageError('send: give TEXT, or pipe lines on standard input');
  for await (const l of createInterface({ input: process.stdin, crlfDelay: Infinity })) yield l;
}

export async function send(argv: string[]): Promise<number> {
  const p = parse('send', argv, options, true);
  if (p.values.help) return out(help), 0;
  const url = required(p, 'connect');
  const to = required(p, 'to');
  const name = str(p, 'as');
  const token = str(p, 'token');
  const count = num(p, 'count');
  const timeout = num(p, 'timeout');
  if (p.positionals.length > 1) throw new UsageError('send: give TEXT as one argument (quote it)');
  const text = p.positionals[0];
  const volatile = flag(p, 'volatile');
  const receipt = flag(p, 'receipt');
  if (volatile && receipt) throw new UsageError('send: --receipt and --volatile exclude each other (a volatile message has no receipt)');
  const anonymous = flag(p, 'anonymous');
  const sticky = flag(p, 'sticky');
  if (sticky && !anonymous) throw new UsageError('send: --sticky applies to --anonymous messages');
  const dial = dialSettings('send', p);
  const client = await withTokenHint(p, connect({
    ...dial,
    url,
    agent: 'postern-cli/send',
    reconnect: true,
    ...(name === undefined ? {} : { name }),
    ...(token === undefined ? {} : { token }),
    connectTimeoutMs: num(p, 'connect-timeout') ?? 10_000,
    ...(timeout === undefined ? {} : { sendTimeoutMs: timeout }),
  }));
  const results: Array<Promise<[number, SendResult | PosternError]>> = [];
  let i = 0;
  const quiet = flag(p, 'quiet');
  // Many messages (--count, standard input) on a terminal: a progress line on stderr.
  const counts = { sent: 0, done: 0, failed: 0, doneWord: volatile ? ('sent' as const) : receipt ? ('delivered' as const) : ('accepted' as const) };
  const progress = new Progress(counts, process.stderr.isTTY === true && !quiet && (count !== undefined || text === undefined));
  try {
    for await (const body of bodies(text, count)) {
      const n = ++i;
      counts.sent++;
      results.push(
        client.send(to, body, { volatile, receipt: receipt ? 'delivered' : 'accepted', ...(anonymous ? { anonymous, sticky } : {}) }).then(
          (r): [number, SendResult] => (counts.done++, [n, r]),
          (e: unknown): [number, PosternError] => (counts.failed++, [n, e instanceof PosternError ? e : new PosternError('ERR_UNKNOWN', String(e))]),
        ),
      );
    }
    if (i === 0) throw new UsageError('send: nothing to send (standard input was empty)');
    let failed = 0;
    const settled = await Promise.all(results);
    progress.stop();
    for (const [n, r] of settled) {
      if (r instanceof PosternError) {
        failed++;
        // The SDK's advice (send again with the same id) cannot be followed from here: each run makes new ids.
        const why = r.code === 'ERR_TIMEOUT' ? r.message.replace(/: send again with the same id to retry safely$/, ' (sending it again may deliver it twice)') : r.message;
        process.stderr.write(`postern send: message ${n} to ${to} failed: ${why} [${r.code}]\n`);
      }
    }
    if (!quiet) {
      const timing = progress.enabled ? formatTiming(progress.snapshot()) : '';
      out(`postern send: ${i - failed} of ${i} message${i === 1 ? '' : 's'} ${volatile ? 'sent (volatile)' : receipt ? 'delivered' : 'accepted'} as ${anonymous ? `an anonymous sender (connected as ${client.address})` : client.address}${timing}`);
    }
    return failed === 0 ? 0 : 1;
  } finally {
    progress.stop();
    await client.close();
  }
}
