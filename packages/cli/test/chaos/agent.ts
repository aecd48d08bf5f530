// A chaos-suite agent, run as its own process so that it outlives the routers being killed.
// It talks to the test over stdout, one JSON object a line; stderr carries its status changes.
//
//   node agent.js send URL NAME TOKEN COUNT RATE TO1,TO2,...
//     Sends COUNT reliable messages, body {"s":NAME,"n":n} for n = 1..COUNT, to TO1, TO2, ...
//     in turn, at RATE per second, without waiting for each other. Prints
//     {"ev":"ready","address":A}, then per message {"ev":"ok","n":n} when `send` resolved or
//     {"ev":"fail","n":n,"code":C} when it rejected, and {"ev":"done"} when all settled.
//   node agent.js receive URL[,URL2,...] NAME
//     Prints {"ev":"ready","address":A,"url":U}, then {"ev":"msg","from":F,"to":T,"id":I,"body":B}
//     for each message it takes (the SDK acks it then). Runs until killed. On SIGUSR2 it moves:
//     closes its session (the acks of what it printed go with it) and connects as the same name
//     to the next URL of the list (round), retrying while the name is still taken there; then
//     prints "ready" again. What its old session had received but it had not taken is not printed:
//     that was never acked, so the routers hand it on to the new session.
import { connect, PosternError, type Client } from '@postern/client';

/** Long enough that the SDK keeps retrying across every restart of a scenario. */
const SEND_TIMEOUT_MS = 10 * 60_000;
/** Agents come back quickly after a router restart; the suite is short. */
const BACKOFF = { initialMs: 50, maxMs: 1000 };
/** A receiver moves when told to (SIGUSR2); more often than any scenario asks is a bug. */
const MAX_MOVES = 1000;

function emit(o: object): void {
  // stdout on a pipe is synchronous on Linux: a line is out before the next message is taken.
  process.stdout.write(`${JSON.stringify(o)}\n`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

type Options = Parameters<typeof connect>[0];

/**
 * Connects, retrying the first connection too: the router may be down at that moment (an armed
 * router can crash before the traffic starts), and later ones the SDK retries by itself.
 */
async function connectRetrying(o: Options): Promise<Client> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      return await connect(o);
    } catch (e) {
      if (Date.now() > deadline) throw e;
      process.stderr.write(`agent ${o.name ?? ''}: first connect failed (${e instanceof Error ? e.message : String(e)}); retrying\n`);
      await sleep(100);
    }
  }
}

function watch(c: Client, name: string, closing: () => boolean = () => false): void {
  c.onStatus((s) => {
    const detail = s.type === 'disconnected' ? ` ${s.error.code} ${s.error.message}` : s.type === 'closed' && s.error ? ` ${s.error.code}` : '';
    process.stderr.write(`agent ${name}: ${s.type}${detail}\n`);
    // The SDK gave up for good: nothing more will happen here, and the test must hear it.
    if (s.type === 'closed' && !closing()) process.exit(3);
  });
}

async function send(url: string, name: string, token: string, count: number, rate: number, targets: string[]): Promise<void> {
  const c = await connectRetrying({ url, name, token, sendTimeoutMs: SEND_TIMEOUT_MS, backoff: BACKOFF, connectTimeoutMs: 5000 });
  watch(c, name);
  emit({ ev: 'ready', address: c.address });
  const t0 = Date.now();
  const all: Array<Promise<void>> = [];
  for (let n = 1; n <= count; n++) {
    const ahead = t0 + ((n - 1) * 1000) / rate - Date.now();
    if (ahead > 0) await sleep(ahead);
    const to = targets[(n - 1) % targets.length]!;
    all.push(
      c.send(to, JSON.stringify({ s: name, n })).then(
        () => emit({ ev: 'ok', n }),
        (e: unknown) => emit({ ev: 'fail', n, code: e instanceof PosternError ? e.code : String(e) }),
      ),
    );
  }
  await Promise.all(all);
  emit({ ev: 'done' });
  // Stay connected until killed: closing would be one more event the routers see.
  setInterval(() => undefined, 60_000);
}

async function receive(urls: string[], name: string): Promise<void> {
  // Before anything else: SIGUSR2's default action ends the process.
  let moves = 0;
  let wake: (() => void) | undefined;
  process.on('SIGUSR2', () => {
    moves++;
    wake?.();
  });
  for (let i = 0; i <= MAX_MOVES; i++) {
    const url = urls[i % urls.length]!;
    let leaving = false;
    const c = await connectRetrying({ url, name, backoff: BACKOFF, connectTimeoutMs: 5000 });
    watch(c, name, () => leaving);
    emit({ ev: 'ready', address: c.address, url });
    // Each message's body runs in the same turn as its take (and ack): once `leaving` is set and
    // the client closed, a message still taken here was acked nowhere and comes again elsewhere.
    const reading = (async () => {
      for await (const m of c) if (!leaving) emit({ ev: 'msg', from: m.from, to: m.to, id: m.id, body: m.text() });
    })();
    if (moves <= i) await new Promise<void>((r) => (wake = r));
    wake = undefined;
    process.stderr.write(`agent ${name}: moving from ${url}\n`);
    leaving = true;
    await c.close();
    await reading;
  }
  throw new Error(`receiver ${name} was told to move more than ${MAX_MOVES} times`);
}

const [mode, url, name, ...rest] = process.argv.slice(2);
if (url === undefined || name === undefined) throw new Error('usage: agent.js send|receive URL NAME ...');
if (mode === 'send') {
  const [token, count, rate, to] = rest;
  await send(url, name, token ?? '', Number(count), Number(rate), (to ?? '').split(','));
} else if (mode === 'receive') {
  await receive(url.split(','), name);
} else {
  throw new Error(`unknown mode ${String(mode)}`);
}
