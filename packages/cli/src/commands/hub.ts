import { parse, required, str } from '../args.js';
import { runDialingRouter } from '../dial-out.js';
import { out } from '../output.js';
import { dialFlags, dialFlagsHelp, dialSettings } from '../dial-flags.js';
import { routerFlags, routerFlagsHelp, routerOptions } from '../router-flags.js';
import { UsageError } from '../usage-error.js';

export const help = `Usage: postern hub --gateway URL --domain NAME --token T --listen HOST:PORT [options]

Runs a hub: a messaging server of the domain where its agents are homed, inside the firewall.
It only dials out: to every gateway of its domain (the domain's bridgeheads), which keep the
domain's directory. A message for name@domain reaches the gateway and goes on to the hub the
name is homed at; senders outside never learn of, or reach, the hub. One name has one live
session across the domain's hubs.

Options:
  --gateway URL           a gateway (bridgehead) of --domain [required]; repeatable: the hub
                          dials every one, and sends through the first connected
  --domain NAME           the domain, the same as its gateways' [required]
  --token T               a hub token from the gateway's operator (postern token --hub), or set
                          POSTERN_TOKEN; leave it out where the gateways trust this hub's node key
                          (--trust N...=DOMAIN there)
  --listen HOST:PORT      where agents connect; repeatable [required]
${dialFlagsHelp(26)}
                          (these apply to the connections to --gateway)
${routerFlagsHelp}
                          (--secret here checks the tokens of the hub's agents)

Example:
  postern hub --gateway ws://10.0.0.5:7000 --domain acme --token "$HUB_TOKEN" --listen 10.0.1.7:7100`;

export async function hub(argv: string[]): Promise<number> {
  const p = parse('hub', argv, { ...routerFlags, ...dialFlags, gateway: { type: 'string', multiple: true }, token: { type: 'string' } });
  if (p.values.help) return out(help), 0;
  const gateways = p.values.gateway as unknown as string[] | undefined;
  if (gateways === undefined) throw new UsageError('hub: --gateway URL is required');
  const domain = required('hub', p, 'domain');
  const token = str(p, 'token', 'POSTERN_TOKEN') ?? '';
  if (p.values.listen === undefined) throw new UsageError('hub: --listen HOST:PORT is required');
  const dial = dialSettings('hub', p);
  const options = routerOptions('hub', p, domain, 'hub: ');
  return runDialingRouter({ ...options, hub: true }, gateways, token, dial, { command: 'hub', target: 'gateway', up: `linked to ${gateways.join(', ')}` });
}
