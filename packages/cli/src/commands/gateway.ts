import { parse, required, str } from '../args.js';
import { runDialingRouter } from '../dial-out.js';
import { out } from '../output.js';
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
  return runDialingRouter(options, relays, token, dial, { command: 'gateway', target: 'relay', up: `uplink to ${relays.join(', ')} is up` });
}
