import { X509Certificate } from 'node:crypto';
import { startRouter } from '@postern/router';
import { helpText, list, parse, str, type OptionTable } from '../options.js';
import { dialFlags, dialSettings } from '../dial-flags.js';
import { out } from '../output.js';
import { serveUntilSignal } from '../shutdown.js';
import { listenFlag, routerFlags, routerOptions } from '../router-flags.js';
import { UsageError } from '../usage-error.js';

export const options: OptionTable = {
  listen: listenFlag,
  domain: { type: 'string', arg: 'NAME', default: 'relay', help: ["the relay's own domain, for agents connected to it; relays that peer", 'need different ones'] },
  peer: { type: 'string', multiple: true, arg: 'URL', help: ['dial this router and keep a peer link to it; repeatable. Its node key', 'must be trusted here (--trust N...=DOMAINS), and ours there'] },
  token: {
    type: 'string',
    multiple: true,
    arg: 'T',
    secret: true,
    help: ["this relay's credentials (grants for its node key, from the operators", 'that trust it): sent to peers, and with the announcement of --domain;', 'repeatable'],
  },
  ...dialFlags,
  ...routerFlags,
};

export const help = helpText('relay', `Usage: postern relay --listen HOST:PORT [options]

Runs a relay: a router reachable from the internet. Gateways dial out to it and claim their
domain with a token signed by --secret (or a grant from a key it --trust-s); agents outside any
firewall connect to it directly and get addresses in the relay's own domain. Relays of
different operators peer with --peer and --trust: either side may dial, both announce the
domains they reach and forward for each other; no shared secret is needed.
Without --secret and --trust the relay is open to agents and refuses every router.

--ca, --fingerprint, --proxy, --no-proxy, --transport and --ws-probe-interval apply to the
connections to --peer.`, options, `The relay prints its node id (its public key) at start: give it to the operators of its peers.

Example:
  postern relay --listen 0.0.0.0:7443 --secret-file relay.secret
  postern relay --listen 0.0.0.0:443 --tls-cert relay.crt --tls-key relay.key --secret-file relay.secret
  postern relay --listen 0.0.0.0:443 --domain r1 --peer wss://r2.example.net --trust "$R2_NODE=r2,globex"`);

export async function relay(argv: string[]): Promise<number> {
  const p = parse('relay', argv, options);
  if (p.values.help) return out(help), 0;
  if (p.values.listen === undefined) throw new UsageError('relay: --listen HOST:PORT is required');
  const domain = str(p, 'domain') ?? 'relay';
  const ro = routerOptions('relay', p, domain, 'relay: ');
  const peers = list(p, 'peer') ?? [];
  const tokens = list(p, 'token') ?? [];
  const dial = dialSettings('relay', p);
  if (peers.length === 0 && Object.keys(dialFlags).some((n) => p.sources[n]?.from === 'flag')) throw new UsageError('relay: --ca, --fingerprint, --proxy and --transport apply to --peer connections; give --peer');
  if (tokens.length > 0) ro.credentials = tokens.join(',');
  ro.peers = peers.map((url) => ({ url, ...dial }));
  const server = await startRouter(ro);
  const scheme = ro.tls === undefined ? 'ws' : 'wss';
  for (const a of server.addresses) out(`postern relay: domain "${domain}" listening on ${scheme}://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`);
  out(`postern relay: node ${server.node} (peers trust it with --trust ${server.node}=${domain})`);
  if (ro.tls !== undefined) out(`postern relay: TLS certificate SHA-256 ${new X509Certificate(ro.tls.cert).fingerprint256} (agents may pin it: --fingerprint)`);
  if (!server.router.options.authenticator && (ro.trust ?? []).length === 0) out('postern relay: no --secret and no --trust: agents only, routers will be refused');
  return serveUntilSignal(server);
}
