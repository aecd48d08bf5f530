import { startRouter, type RouterServer } from '@postern/router';
import type { UplinkStatus } from '@postern/core';
import { PosternError } from '@postern/protocol';
import { parse, required, str } from '../args.js';
import { out, untilSignal } from '../output.js';
import { dialFlags, dialFlagsHelp, dialSettings } from '../dial-flags.js';
import { routerFlags, routerFlagsHelp, routerOptions } from '../router-flags.js';
import { UsageError } from '../usage-error.js';

export const help = `Usage: postern gateway --relay URL --domain NAME [--token T] --listen HOST:PORT [options]

Runs a gateway: a router inside the firewall. It dials out to the relay over one WebSocket
(or HTTP long-poll where WebSocket is blocked; no inbound port), claims its --domain there with
a token from the relay's operator, and carries all traffic of the agents that connect to it on
--listen, both ways, over that one connection.
It reconnects with backoff when the tunnel drops; internal agents keep reaching each other
meanwhile. At start, a refused credential, a proxy refusing the tunnel (4xx) or a relay
certificate that is not trusted exits with status 1; later they are retried at the longest backoff.

Options:
  --relay URL             the relay, e.g. wss://relay.example.com [required]; repeatable: the gateway
                          claims its domain at each, and sends each message through the relay
                          that reaches its destination (else the first one connected)
  --domain NAME           the domain this gateway serves, e.g. acme [required]
  --token T               domain token from 'postern token', or a grant for this gateway's node
                          key (or set POSTERN_TOKEN); leave it out where the relay trusts this
                          gateway's node key (--trust N...=DOMAIN there)
  --listen HOST:PORT      where internal agents connect; repeatable [required]
${dialFlagsHelp(26)}
                          (these apply to the connection to --relay)
${routerFlagsHelp}
                          (--secret here checks the tokens of internal agents; without it the
                          LAN side is open: any agent, any free name)

Example:
  postern gateway --relay wss://relay.example.com --domain acme --token "$TOKEN" --listen 10.0.0.5:7000`;

export async function gateway(argv: string[]): Promise<number> {
  const p = parse('gateway', argv, { ...routerFlags, ...dialFlags, relay: { type: 'string', multiple: true }, token: { type: 'string' } });
  if (p.values.help) return out(help), 0;
  const relays = p.values.relay as unknown as string[] | undefined;
  if (relays === undefined) throw new UsageError('gateway: --relay URL is required');
  const domain = required('gateway', p, 'domain');
  // Optional: a relay that trusts this gateway's node key (--trust N...=DOMAIN) needs no token.
  const token = str(p, 'token', 'POSTERN_TOKEN') ?? '';
  if (p.values.listen === undefined) throw new UsageError('gateway: --listen HOST:PORT is required');
  const dial = dialSettings('gateway', p);
  const options = routerOptions('gateway', p, domain, 'gateway: ');
  let first: ((s: UplinkStatus) => void) | undefined;
  const firstResult = new Promise<UplinkStatus>((resolve) => (first = resolve));
  const server: RouterServer = await startRouter({
    ...options,
    uplinks: relays.map((url) => ({ url, token, ...dial })),
    onUplinkStatus: (_url, s) => {
      if (s.type !== 'up' && s.type !== 'down') return false;
      const settle = first;
      first = undefined;
      settle?.(s);
      // A refusal of the very first attempt ends the command with its own one-line error.
      return settle !== undefined && s.type === 'down' && s.refused;
    },
  });
  for (const a of server.addresses) {
    out(`postern gateway: domain "${server.router.domain}" listening on ${options.tls === undefined ? 'ws' : 'wss'}://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`);
  }
  out(`postern gateway: node ${server.node}`);
  const s = await Promise.race([firstResult, untilSignal()]);
  if (typeof s === 'object' && s.type === 'down' && s.refused) {
    await server.close();
    // A transport error here is a proxy or certificate refusal: its message names what refused.
    throw new PosternError(s.error.code, s.error.code === 'ERR_TRANSPORT' ? `cannot reach the relay: ${s.error.message}` : `the relay refused this gateway: ${s.error.message}`);
  }
  if (typeof s === 'object' && s.type === 'up') out(`postern gateway: uplink to ${relays.join(', ')} is up`);
  if (typeof s === 'object') await untilSignal();
  await server.close();
  return 0;
}
