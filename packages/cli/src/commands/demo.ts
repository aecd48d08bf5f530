import { randomBytes } from 'node:crypto';
import { connect, type Client } from '@postern/client';
import { issueToken, startRouter } from '@postern/router';
import { int, parse } from '../args.js';
import { out, untilSignal } from '../output.js';

export const help = `Usage: postern demo [--rate N] [--seconds S]

Starts, in this one process, a relay, a gateway for domain "acme" that dials out to it, two
internal agents (alice and carol) on the gateway and one external agent (bob) on the relay.
Bob sends to the internal agents through the relay and the gateway's single tunnel; they
reply back out through it. A live count runs until Ctrl-C.

Options:
  --rate N        messages per second from each side [200]
  --seconds S     stop by itself after S seconds
  -h, --help      this help`;

export async function demo(argv: string[]): Promise<number> {
  const p = parse('demo', argv, { rate: { type: 'string' }, seconds: { type: 'string' } });
  if (p.values.help) return out(help), 0;
  const rate = int('demo', p, 'rate', 1) ?? 200;
  const seconds = int('demo', p, 'seconds', 1);
  const secret = randomBytes(24).toString('base64url');
  const relay = await startRouter({ domain: 'relay', listen: ['127.0.0.1:0'], secret });
  const gateway = await startRouter({
    domain: 'acme',
    listen: ['127.0.0.1:0'],
    uplinks: [{ url: relay.url, token: await issueToken(secret, { domain: 'acme' }) }],
  });
  await new Promise<void>((resolve) => {
    const u = gateway.uplinks[0];
    if (u === undefined || u.connected) return resolve();
    const off = u.onStatus((s) => {
      if (s.type === 'up') {
        off();
        resolve();
      }
    });
  });
  const alice = await connect({ url: gateway.url, name: 'alice' });
  const carol = await connect({ url: gateway.url, name: 'carol' });
  const bob = await connect({ url: relay.url, name: 'bob', token: await issueToken(secret, { domain: 'relay', name: 'bob' }) });
  out(`relay    ${relay.url}  (domain "relay", on the internet side)`);
  out(`gateway  ${gateway.url}  (domain "acme", inside; it dialed out to the relay: no inbound port)`);
  out(`agents   ${alice.address} and ${carol.address} on the gateway, ${bob.address} on the relay`);
  out(`bob sends to alice@acme and carol@acme; they reply to bob@relay. Ctrl-C to stop.\n`);

  const counts = { in: 0, out: 0, failed: 0 };
  const fail = (): void => {
    counts.failed++;
  };
  const reply = async (agent: Client): Promise<void> => {
    for await (const m of agent) {
      counts.in++;
      agent.send(m.from, `re: ${m.text()}`).catch(fail);
    }
  };
  void reply(alice);
  void reply(carol);
  void (async () => {
    for await (const _ of bob) counts.out++;
  })();
  let seq = 0;
  const tick = setInterval(() => {
    for (let i = 0; i < Math.max(1, Math.round(rate / 20)); i++) {
      seq++;
      bob.send(seq % 2 === 0 ? 'alice@acme' : 'carol@acme', `hello #${seq}`).catch(fail);
    }
  }, 50);
  const started = Date.now();
  let last = { in: 0, out: 0, t: started };
  const tty = process.stdout.isTTY;
  const show = setInterval(() => {
    const now = Date.now();
    const dt = (now - last.t) / 1000;
    const s = relay.router.stats();
    const line =
      `external->internal ${counts.in} (${Math.round((counts.in - last.in) / dt)}/s)   ` +
      `internal->external ${counts.out} (${Math.round((counts.out - last.out) / dt)}/s)   ` +
      `failed ${counts.failed}   relay connections ${s.connections} (1 tunnel for ${gateway.router.stats().agents} agents)`;
    last = { in: counts.in, out: counts.out, t: now };
    if (tty) process.stdout.write(`\r${line}   `);
    else out(line);
  }, 1000);
  const stop: Promise<unknown> = seconds === undefined ? untilSignal() : Promise.race([untilSignal(), new Promise((r) => setTimeout(r, seconds * 1000))]);
  await stop;
  clearInterval(tick);
  clearInterval(show);
  if (tty) out('');
  out(`stopped: ${counts.in} messages crossed inward, ${counts.out} outward, ${counts.failed} failed`);
  await Promise.all([alice.close(), carol.close(), bob.close()]);
  await gateway.close();
  await relay.close();
  return 0;
}
