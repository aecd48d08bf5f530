import { helpText, list, parse, required, str, type OptionTable } from '../options.js';
import { runDialingRouter } from '../dial-out.js';
import { out } from '../output.js';
import { dialFlags, dialSettings } from '../dial-flags.js';
import { lanSecretFlags, lanSecretNotice, listenFlag, routerFlags, routerOptions } from '../router-flags.js';
import { UsageError } from '../usage-error.js';

export const options: OptionTable = {
  gateway: { type: 'string', multiple: true, arg: 'URL', help: ['a gateway (bridgehead) of --domain [required]; repeatable: the hub', 'dials every one, and sends through the first connected'] },
  domain: { type: 'string', arg: 'NAME', help: "the domain, the same as its gateways' [required]" },
  token: {
    type: 'string',
    arg: 'T',
    secret: true,
    help: ["a hub token from the gateway's operator (postern token --hub); leave it", "out where the gateways trust this hub's node key (--trust N...=DOMAIN there)"],
  },
  listen: { ...listenFlag, help: 'where agents connect; repeatable [required]' },
  ...dialFlags,
  ...routerFlags,
  ...lanSecretFlags,
};

export const help = helpText(
  'hub',
  `Usage: postern hub --gateway URL --domain NAME --token T --listen HOST:PORT [options]

Runs a hub: a messaging server of the domain where its agents are homed, inside the firewall.
It only dials out: to every gateway of its domain (the domain's bridgeheads), which keep the
domain's directory. A message for name@domain reaches the gateway and goes on to the hub the
name is homed at; senders outside never learn of, or reach, the hub. One name has one live
session across the domain's hubs.

--ca, --fingerprint, --proxy, --no-proxy, --transport and --ws-probe-interval apply to the
connections to --gateway.`,
  options,
  `Example:
  postern hub --gateway ws://10.0.0.5:7000 --domain acme --token-file hub.token --listen 10.0.1.7:7100`,
);

export async function hub(argv: string[]): Promise<number> {
  const p = parse('hub', argv, options);
  if (p.values.help) return out(help), 0;
  const gateways = list(p, 'gateway');
  if (gateways === undefined) throw new UsageError('hub: --gateway URL is required');
  const domain = required(p, 'domain');
  const token = str(p, 'token') ?? '';
  if (p.values.listen === undefined) throw new UsageError('hub: --listen HOST:PORT is required');
  const dial = dialSettings('hub', p);
  const options_ = routerOptions('hub', p, domain, 'hub: ');
  const notice = lanSecretNotice('hub', p);
  if (notice !== undefined) out(notice);
  return runDialingRouter({ ...options_, hub: true }, gateways, token, dial, { command: 'hub', target: 'gateway', up: `linked to ${gateways.join(', ')}` });
}
