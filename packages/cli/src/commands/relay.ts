import { X509Certificate } from 'node:crypto';
import { startRouter } from '@postern/router';
import { parse, str } from '../args.js';
import { dialFlags, dialFlagsHelp, dialSettings } from '../dial-flags.js';
import { out } from '../output.js';
import { serveUntilSignal } from '../shutdown.js';
import { routerFlags, routerFlagsHelp, routerOptions } from '../router-flags.js';
import { UsageError } from '../usage-error.js';

export const help = `Usage: postern relay --listen HOST:PORT [options]

Runs a relay: a router reachable from the internet. Gateways dial out to it and claim their
domain with a token signed by --secret (or a grant from a key it --trust-s); agents outside any
firewall connect to it directly and get addresses in the relay's own domain. Relays of
different operators peer with --peer and --trust: either side may dial, both announce the
domains they reach and forward for each other; no shared secret is needed.
Without --secret and --trust the relay is open to agents and refuses every router.

Options:
  --listen HOST:PORT      where to accept WebSocket connections; repeatable [required]
  --domain NAME           the relay's own domain, for agents connected to it; relays that peer
                          need different ones [relay]
  --peer URL              dial this router and keep a peer link to it; repeatable. Its node key
                          must be trusted here (--trust N...=DOMAINS), and ours there
  --token T               this relay's credentials (grants for its node key, from the operators
                          that trust it): sent to peers, and with the announcement of --domain;
                          repeatable [$POSTERN_TOKEN]
${dialFlagsHelp(26)}
                          (these apply to the connections to --peer)
${routerFlagsHelp}

The relay prints its node id (its public key) at start: give it to the operators of its peers.

Example:
  postern relay --listen 0.0.0.0:7443 --secret "$(cat relay.secret)"
  postern relay --listen 0.0.0.0:443 --tls-cert relay.crt --tls-key relay.key --secret "$(cat relay.secret)"
  postern relay --listen 0.0.0.0:443 --domain r1 --peer wss://r2.example.net --trust "$R2_NODE=r2,globex"`;

export async function relay(argv: string[]): Promise<number> {
  const p = parse('relay', argv, { ...routerFlags, ...dialFlags, peer: { type: 'string', multiple: true }, token: { type: 'string', multiple: true } });
  if (p.values.help) return out(help), 0;
  if (p.values.listen === undefined) throw new UsageError('relay: --listen HOST:PORT is required');
  const domain = str(p, 'domain') ?? 'relay';
  const options = routerOptions('relay', p, domain, 'relay: ');
  const peers = (p.values.peer as unknown as string[] | undefined) ?? [];
  const tokens = (p.values.token as unknown as string[] | undefined) ?? (process.env['POSTERN_TOKEN'] ? [process.env['POSTERN_TOKEN']] : []);
  const dial = dialSettings('relay', p);
  if (peers.length === 0 && Object.keys(dial).length > 0) throw new UsageError('relay: --ca, --fingerprint, --proxy and --transport apply to --peer connections; give --peer');
  if (tokens.length > 0) options.credentials = tokens.join(',');
  options.peers = peers.map((url) => ({ url, ...dial }));
  const server = await startRouter(options);
  const scheme = options.tls === undefined ? 'ws' : 'wss';
  for (const a of server.addresses) out(`postern relay: domain "${domain}" listening on ${scheme}://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`);
  out(`postern relay: node ${server.node} (peers trust it with --trust ${server.node}=${domain})`);
  if (options.tls !== undefined) out(`postern relay: TLS certificate SHA-256 ${new X509Certificate(options.tls.cert).fingerprint256} (agents may pin it: --fingerprint)`);
  if (!server.router.options.authenticator && (options.trust ?? []).length === 0) out('postern relay: no --secret and no --trust: agents only, routers will be refused');
  return serveUntilSignal(server);
}
