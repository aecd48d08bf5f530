import { X509Certificate } from 'node:crypto';
import { startRouter } from '@postern/router';
import { parse, str } from '../args.js';
import { out, untilSignal } from '../output.js';
import { routerFlags, routerFlagsHelp, routerOptions } from '../router-flags.js';
import { UsageError } from '../usage-error.js';

export const help = `Usage: postern relay --listen HOST:PORT [options]

Runs a relay: a router reachable from the internet. Gateways dial out to it and claim their
domain with a token signed by --secret; agents outside any firewall connect to it directly and
get addresses in the relay's own domain. Without --secret the relay is open to agents and
refuses every gateway.

Options:
  --listen HOST:PORT      where to accept WebSocket connections; repeatable [required]
  --domain NAME           the relay's own domain, for agents connected to it [relay]
${routerFlagsHelp}

Example:
  postern relay --listen 0.0.0.0:7443 --secret "$(cat relay.secret)"
  postern relay --listen 0.0.0.0:443 --tls-cert relay.crt --tls-key relay.key --secret "$(cat relay.secret)"`;

export async function relay(argv: string[]): Promise<number> {
  const p = parse('relay', argv, routerFlags);
  if (p.values.help) return out(help), 0;
  if (p.values.listen === undefined) throw new UsageError('relay: --listen HOST:PORT is required');
  const domain = str(p, 'domain') ?? 'relay';
  const options = routerOptions('relay', p, domain, 'relay: ');
  const server = await startRouter(options);
  const scheme = options.tls === undefined ? 'ws' : 'wss';
  for (const a of server.addresses) out(`postern relay: domain "${domain}" listening on ${scheme}://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`);
  if (options.tls !== undefined) out(`postern relay: TLS certificate SHA-256 ${new X509Certificate(options.tls.cert).fingerprint256} (agents may pin it: --fingerprint)`);
  if (!server.router.options.authenticator) out('postern relay: no --secret: agents only, gateways will be refused');
  await untilSignal();
  await server.close();
  return 0;
}
