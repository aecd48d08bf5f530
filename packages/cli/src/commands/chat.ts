import { createInterface } from 'node:readline';
import { connect, type Client } from '@postern/client';
import { isValidName } from '@postern/protocol';
import { UsageError } from '../usage-error.js';
import { helpText, num, parse, required, str, type OptionTable } from '../options.js';
import { connectTimeoutFlags, dialFlags, dialSettings, withTokenHint, oldTimeoutFlag } from '../dial-flags.js';
import { out, untilSignal } from '../output.js';
import { formatPresence } from './watch.js';

export const options: OptionTable = {
  connect: { type: 'string', arg: 'URL', help: 'a router (hub, gateway or relay) [required]' },
  as: { type: 'string', arg: 'NAME', help: 'the name to claim [required]' },
  token: { type: 'string', arg: 'T', secret: true, help: 'credential allowing the name' },
  to: { type: 'string', arg: 'ADDRESS', help: 'the first recipient' },
  ...connectTimeoutFlags,
  timeout: oldTimeoutFlag,
  ...dialFlags,
};

export const help = helpText(
  'chat',
  `Usage: postern chat --connect URL --as NAME [--token T] [--to ADDRESS]

One session as NAME that prints what arrives and sends what is typed, so that a person can talk
both ways from one name. Each line typed goes to the current recipient (reliably: an error is
printed if it is refused or cannot be delivered); commands start with a slash:

  /to ADDRESS        send the next lines to ADDRESS (name@domain; a bare name: this domain)
  /reply             send to whoever wrote last
  /watch ADDRESS     print ADDRESS's presence and properties, now and on every change
  /unwatch ADDRESS   stop that
  /set KEY=VALUE...  publish properties of NAME (KEY= removes one)
  /allow ADDRESS...  who besides this domain may watch NAME (*@DOMAIN, *; none: /allow)
  /quit              leave (or end standard input, or Ctrl-C)
`,
  options,
  `Messages print as "FROM: TEXT", presence as "* ADDRESS STATE since TIME [KEY=VALUE ...]".`,
  21,
);

export async function chat(argv: string[]): Promise<number> {
  const p = parse('chat', argv, options);
  if (p.values.help) return out(help), 0;
  const url = required(p, 'connect');
  const name = required(p, 'as');
  if (!isValidName(name.toLowerCase())) throw new UsageError(`chat: --as must be a name of 1-64 of a-z 0-9 . _ -, got "${name}"`);
  const token = str(p, 'token');
  const client: Client = await withTokenHint(p, connect({
    ...dialSettings('chat', p),
    url,
    name,
    agent: 'postern-cli/chat',
    connectTimeoutMs: num(p, 'connect-timeout') ?? 10_000,
    ...(token === undefined ? {} : { token }),
  }));
  const note = (s: string): void => void process.stderr.write(`${s}\n`);
  note(`postern chat: connected as ${client.address}; /to ADDRESS, then type. /quit to leave`);
  client.onStatus((s) => {
    if (s.type === 'disconnected' && s.willReconnect) note(`postern chat: connection lost (${s.error.message}); reconnecting`);
    else if (s.type === 'connected' && s.resumed) note('postern chat: reconnected');
    else if (s.type === 'connected' && s.lost) note(`postern chat: reconnected, but the router did not recover this session (its store was lost or replaced): messages it held for ${s.address} may be lost`);
  });
  client.onUndeliverable((u) => note(`postern chat: not delivered to ${u.to}: [${u.error.code}] ${u.error.message}`));
  let to = str(p, 'to');
  let last: string | undefined;
  const watches = new Map<string, AbortController>();
  const done = new AbortController();
  const reading = (async () => {
    for await (const m of client) {
      out(`${m.from}: ${m.text()}`);
      last = m.from;
    }
  })();
  const sending = new Set<Promise<void>>();
  const command = async (line: string): Promise<boolean> => {
    const [cmd = '', ...args] = line.trim().split(/\s+/);
    switch (cmd) {
      case '/quit':
        return false;
      case '/to':
        if (args[0] === undefined) note('postern chat: /to ADDRESS');
        else to = args[0];
        return true;
      case '/reply':
        if (last === undefined) note('postern chat: nobody wrote yet');
        else to = last;
        return true;
      case '/watch': {
        const target = args[0];
        if (target === undefined || watches.has(target)) return true;
        const ac = new AbortController();
        watches.set(target, ac);
        void (async () => {
          try {
            for await (const e of client.watch(target, { signal: ac.signal })) out(`* ${formatPresence(e, false)}`);
          } catch (err) {
            note(`postern chat: cannot watch ${target}: [${(err as { code?: string }).code ?? 'ERR'}] ${(err as Error).message}`);
          } finally {
            watches.delete(target);
          }
        })();
        return true;
      }
      case '/unwatch':
        watches.get(args[0] ?? '')?.abort();
        return true;
      case '/set': {
        const props: Record<string, string | null> = {};
        for (const kv of args) {
          const eq = kv.indexOf('=');
          if (eq <= 0) {
            note(`postern chat: /set KEY=VALUE, got "${kv}"`);
            return true;
          }
          props[kv.slice(0, eq)] = kv.slice(eq + 1) === '' ? null : kv.slice(eq + 1);
        }
        await client.setProperties(props).then(
          () => note('postern chat: properties set'),
          (err: Error & { code?: string }) => note(`postern chat: [${err.code ?? 'ERR'}] ${err.message}`),
        );
        return true;
      }
      case '/allow':
        await client.allowWatchers(args).then(
          () => note('postern chat: watchers allowed'),
          (err: Error & { code?: string }) => note(`postern chat: [${err.code ?? 'ERR'}] ${err.message}`),
        );
        return true;
      default:
        note(`postern chat: unknown command ${cmd}; /to /reply /watch /unwatch /set /allow /quit`);
        return true;
    }
  };
  const input = createInterface({ input: process.stdin, crlfDelay: Infinity });
  void untilSignal().then(() => done.abort());
  done.signal.addEventListener('abort', () => input.close(), { once: true });
  try {
    for await (const line of input) {
      if (line.startsWith('/')) {
        if (!(await command(line))) break;
        continue;
      }
      if (line.trim() === '') continue;
      if (to === undefined) {
        note('postern chat: no recipient yet: /to ADDRESS');
        continue;
      }
      const target = to;
      // In order, without waiting for each before reading the next line.
      const s = client.send(target, line).then(
        () => undefined,
        (err: Error & { code?: string }) => note(`postern chat: to ${target}: [${err.code ?? 'ERR'}] ${err.message}`),
      );
      sending.add(s);
      void s.then(() => sending.delete(s));
    }
    await Promise.all([...sending]);
  } finally {
    // A terminal or pipe still open on standard input would keep the process alive.
    input.close();
    process.stdin.destroy();
    for (const ac of watches.values()) ac.abort();
    await client.close();
    await reading.catch(() => undefined);
  }
  return 0;
}
