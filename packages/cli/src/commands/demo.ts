import { randomBytes } from 'node:crypto';
import { connect, type Client } from '@postern/client';
import { issueToken, parseListen, startRouter, type ListenAddress, type RouterServerOptions } from '@postern/router';
import { Room } from '../demo-web/room.js';
import { startDemoWeb, type DemoWebServer } from '../demo-web/server.js';
import { flag, helpText, num, parse, sourceOf, str, type OptionTable } from '../options.js';
import { out, untilSignal } from '../output.js';
import { UsageError } from '../usage-error.js';

export const options: OptionTable = {
  rate: { type: 'string', kind: 'int', min: 1, default: '200', help: 'messages per second from each side' },
  seconds: { type: 'string', kind: 'int', min: 1, arg: 'S', help: 'stop by itself after S seconds' },
  web: {
    type: 'boolean',
    help: ['also serve a page (URL printed) where you are an outside browser agent', 'chatting with alice inside and with other tabs, beside the dashboards of', 'the relay and the gateway (their admin listeners, on loopback)'],
  },
  'web-listen': { type: 'string', arg: 'HOST:PORT', default: '127.0.0.1:0', help: ['where --web serves the page (port 0: any free port); with --web only'] },
};

export const help = helpText(
  'demo',
  `Usage: postern demo [--rate N] [--seconds S]

Starts, in this one process, a relay, a gateway for domain "acme" that dials out to it, a hub
of acme behind the gateway, two internal agents (alice on the gateway, carol homed on the hub)
and one external agent (bob) on the relay. Bob sends to alice@acme and carol@acme by name only
through the relay and the gateway's single tunnel (the gateway finds carol's hub); they reply
back out through it. Bob also watches carol's presence: she changes her status now and then.
A live count runs until Ctrl-C.

With --web, the relay and the gateway also serve their dashboards on loopback admin listeners,
and a page is served where the visitor, a guest agent on the relay (a token per page load from
the demo; no secret reaches the page), chats with alice and with other tabs.
`,
  options,
  '',
  18,
);

export async function demo(argv: string[]): Promise<number> {
  const p = parse('demo', argv, options);
  if (p.values.help) return out(help), 0;
  const rate = num(p, 'rate') ?? 200;
  const seconds = num(p, 'seconds');
  let webAt: ListenAddress | undefined;
  const listenFrom = sourceOf(p, 'web-listen');
  if (!flag(p, 'web') && listenFrom !== undefined && listenFrom.from !== 'default') throw new UsageError(`demo: ${listenFrom.where} is for --web: give --web too`);
  if (flag(p, 'web')) {
    const at = str(p, 'web-listen') ?? '127.0.0.1:0';
    try {
      webAt = parseListen(at);
    } catch {
      throw new UsageError(`demo: --web-listen must be HOST:PORT (e.g. 127.0.0.1:8080), got "${at}"`);
    }
  }
  // Bound first: the relay lets browsers of the page's origin in, and the dashboards let the page frame them.
  const web: DemoWebServer | undefined = webAt === undefined ? undefined : await startDemoWeb(webAt);
  try {
    return await run(rate, seconds, web);
  } finally {
    // Also when a router fails to start: the page's listener would keep the process alive.
    await web?.close();
  }
}

async function run(rate: number, seconds: number | undefined, web: DemoWebServer | undefined): Promise<number> {
  const webExtras = web === undefined ? {} : webRouterOptions(web);
  const secret = randomBytes(24).toString('base64url');
  const relay = await startRouter({ domain: 'relay', listen: ['127.0.0.1:0'], secret, ...webExtras, ...(web === undefined ? {} : { allowOrigins: web.origins }) });
  const gwSecret = randomBytes(24).toString('base64url');
  const gateway = await startRouter({
    domain: 'acme',
    listen: ['127.0.0.1:0'],
    secret: gwSecret,
    uplinks: [{ url: relay.url, token: await issueToken(secret, { domain: 'acme' }) }],
    ...webExtras,
    // Its dashboard's path view asks the relay for its part (the relay, started first, cannot know the gateway's).
    ...(web === undefined || relay.adminUrl === undefined ? {} : { dashboardPeers: [{ url: relay.adminUrl }] }),
  });
  const hub = await startRouter({ domain: 'acme', hub: true, listen: ['127.0.0.1:0'], uplinks: [{ url: gateway.url, token: await issueToken(gwSecret, { domain: 'acme', hub: true }) }] });
  for (const r of [gateway, hub]) {
    await new Promise<void>((resolve) => {
      const u = r.uplinks[0];
    if (u === undefined || u.connected) return resolve();
      const off = u.onStatus((s) => {
        if (s.type === 'up') {
          off();
          resolve();
        }
      });
    });
  }
  const alice = await connect({ url: gateway.url, name: 'alice', token: await issueToken(gwSecret, { domain: 'acme', name: 'alice' }) });
  const carol = await connect({ url: hub.url, name: 'carol' });
  await carol.allowWatchers(['bob@relay']);
  await carol.setProperties({ status: 'free' });
  const bob = await connect({ url: relay.url, name: 'bob', token: await issueToken(secret, { domain: 'relay', name: 'bob' }) });
  out(`relay    ${relay.url}  (domain "relay", on the internet side)`);
  out(`gateway  ${gateway.url}  (domain "acme", inside; it dialed out to the relay: no inbound port)`);
  out(`hub      ${hub.url}  (domain "acme", inside; it dialed out to the gateway)`);
  out(`agents   ${alice.address} on the gateway, ${carol.address} on the hub, ${bob.address} on the relay`);
  out(`bob sends to alice@acme and carol@acme; they reply to bob@relay; bob watches carol. Ctrl-C to stop.\n`);

  const counts = { in: 0, out: 0, failed: 0 };
  const fail = (): void => {
    counts.failed++;
  };
  // With --web, alice also talks with the page's visitors (guests on the relay).
  const room = web === undefined ? undefined : new Room(alice, relay.router.domain, fail);
  if (web !== undefined) {
    await alice.allowWatchers([`*@${relay.router.domain}`]);
    web.ready({
      secret,
      domain: relay.router.domain,
      relayUrl: relay.url,
      alice: alice.address,
      dashboards: { relay: `${relay.adminUrl ?? ''}/dashboard/`, gateway: `${gateway.adminUrl ?? ''}/dashboard/` },
    });
    out(`web      ${web.url}  (open it: you are a guest on the relay, chatting with alice; other tabs too)`);
    out(`         dashboards: relay ${relay.adminUrl ?? ''}/dashboard/  gateway ${gateway.adminUrl ?? ''}/dashboard/\n`);
  }
  const reply = async (agent: Client): Promise<void> => {
    for await (const m of agent) {
      if (room?.handle(m) === true) continue;
      counts.in++;
      agent.send(m.from, `re: ${m.text()}`).catch(fail);
    }
  };
  // A client closed for good (ERR_REPLACED, ...) ends its loop with the error: counted, not an
  // unhandled rejection that would kill the demo.
  reply(alice).catch(fail);
  reply(carol).catch(fail);
  (async () => {
    for await (const _ of bob) counts.out++;
  })().catch(fail);
  const tty = process.stdout.isTTY;
  const watching = new AbortController();
  void (async () => {
    try {
      for await (const e of bob.watch('carol@acme', { signal: watching.signal })) {
        const props = Object.entries(e.properties).map(([k, v]) => ` ${k}=${v}`).join('');
        out(`${tty ? '\r' : ''}presence: ${e.address} ${e.state}${props}${tty ? ' '.repeat(40) : ''}`);
      }
    } catch (err) {
      out(`presence: ${(err as Error).message}`);
    }
  })();
  const moods = ['busy', 'free', 'in a meeting'];
  const mood = setInterval(() => void carol.setProperties({ status: moods[Math.floor(Date.now() / 5000) % moods.length]! }).catch(fail), 5000);
  let seq = 0;
  const tick = setInterval(() => {
    for (let i = 0; i < Math.max(1, Math.round(rate / 20)); i++) {
      seq++;
      bob.send(seq % 2 === 0 ? 'alice@acme' : 'carol@acme', `hello #${seq}`).catch(fail);
    }
  }, 50);
  const started = Date.now();
  let last = { in: 0, out: 0, t: started };
  const show = setInterval(() => {
    const now = Date.now();
    const dt = (now - last.t) / 1000;
    const s = relay.router.stats();
    const line =
      `external->internal ${counts.in} (${Math.round((counts.in - last.in) / dt)}/s)   ` +
      `internal->external ${counts.out} (${Math.round((counts.out - last.out) / dt)}/s)   ` +
      `failed ${counts.failed}   relay connections ${s.connections} (1 tunnel for ${gateway.router.stats().agents + hub.router.stats().agents} agents)` +
      (room === undefined ? '' : `   web visitors ${room.visitors}`);
    last = { in: counts.in, out: counts.out, t: now };
    if (tty) process.stdout.write(`\r${line}   `);
    else out(line);
  }, 1000);
  // The --seconds timer is cleared on a signal: a pending one would keep the process alive.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stop: Promise<unknown> = seconds === undefined ? untilSignal() : Promise.race([untilSignal(), new Promise((r) => (timer = setTimeout(r, seconds * 1000)))]);
  await stop;
  clearTimeout(timer);
  clearInterval(tick);
  clearInterval(show);
  clearInterval(mood);
  watching.abort();
  room?.close();
  await web?.close();
  if (tty) out('');
  out(`stopped: ${counts.in} messages crossed inward, ${counts.out} outward, ${counts.failed} failed`);
  await Promise.all([alice.close(), carol.close(), bob.close()]);
  await hub.close();
  await gateway.close();
  await relay.close();
  return 0;
}

/** The relay's and the gateway's extras under --web: a dashboard on loopback that the page may frame. */
function webRouterOptions(web: DemoWebServer): Partial<RouterServerOptions> {
  return { adminListen: '127.0.0.1:0', dashboardFrameAncestors: web.origins };
}
