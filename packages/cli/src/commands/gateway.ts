import { helpText, list, parse, required, str, type OptionTable } from '../options.js';
import { runDialingRouter } from '../dial-out.js';
import { out } from '../output.js';
import { dialFlags, dialSettings } from '../dial-flags.js';
import { lanSecretFlags, lanSecretNotice, listenFlag, routerFlags, routerOptions } from '../router-flags.js';
import { UsageError } from '../usage-error.js';

export const options: OptionTable = {
  relay: {
    type: 'string',
    multiple: true,
    arg: 'URL',
    help: ['the relay, e.g. wss://relay.example.com [required]; repeatable: the gateway', 'claims its domain at each, and sends each message through the relay', 'that reaches its destination (else the first one connected)'],
  },
  domain: { type: 'string', arg: 'NAME', help: 'the domain this gateway serves, e.g. acme [required]' },
  token: {
    type: 'string',
    arg: 'T',
    secret: true,
    help: ["domain token from 'postern token', or a grant for this gateway's node", "key; leave it out where the relay trusts this gateway's node key", '(--trust N...=DOMAIN there)'],
  },
  listen: { ...listenFlag, help: 'where internal agents connect; repeatable [required]' },
  ...dialFlags,
  ...routerFlags,
  ...lanSecretFlags,
};

export const help = helpText(
  'gateway',
  `Usage: postern gateway --relay URL --domain NAME [--token T] --listen HOST:PORT [options]

Runs a gateway: a router inside the firewall. It dials out to the relay over one WebSocket
(or HTTP long-poll where WebSocket is blocked; no inbound port), claims its --domain there with
a token from the relay's operator, and carries all traffic of the agents that connect to it on
--listen, both ways, over that one connection.
It reconnects with backoff when the tunnel drops; internal agents keep reaching each other
meanwhile. At start, a refused credential, a proxy refusing the tunnel (4xx) or a relay
certificate that is not trusted exits with status 1; later they are retried at the longest backoff.

--ca, --fingerprint, --proxy, --no-proxy, --transport and --ws-probe-interval apply to the
connection to --relay.`,
  options,
  `Example:
  postern gateway --relay wss://relay.example.com --domain acme --token-file acme.token --listen 10.0.0.5:7000`,
);

export async function gateway(argv: string[]): Promise<number> {
  const p = parse('gateway', argv, options);
  if (p.values.help) return out(help), 0;
  const relays = list(p, 'relay');
  if (relays === undefined) throw new UsageError('gateway: --relay URL is required');
  const domain = required(p, 'domain');
  // Optional: a relay that trusts this gateway's node key (--trust N...=DOMAIN) needs no token.
  const token = str(p, 'token') ?? '';
  if (p.values.listen === undefined) throw new UsageError('gateway: --listen HOST:PORT is required');
  const dial = dialSettings('gateway', p);
  const options_ = routerOptions('gateway', p, domain, 'gateway: ');
  const notice = lanSecretNotice('gateway', p);
  if (notice !== undefined) out(notice);
  return runDialingRouter(options_, relays, token, dial, { command: 'gateway', target: 'relay', up: `uplink to ${relays.join(', ')} is up` });
}
