import { issueToken } from '@postern/router';
import { duration, parse, required, str } from '../args.js';
import { out } from '../output.js';

export const help = `Usage: postern token --secret S --domain NAME [--name NAME] [--ttl DURATION]

Prints a credential signed with the router's secret.
  Without --name: a domain token. A gateway presents it to its relay to claim the domain; an
  agent holding it may claim any name in that domain.
  With --name: an agent token, good for that one name only.

Options:
  --secret S         the router's secret (or set POSTERN_SECRET) [required]
  --domain NAME      the domain the token belongs to [required]
  --name NAME        restrict the token to this agent name
  --ttl DURATION     expire after 3600, 90s, 15m, 12h or 30d [never]
  -h, --help         this help`;

export async function token(argv: string[]): Promise<number> {
  const p = parse('token', argv, { secret: { type: 'string' }, domain: { type: 'string' }, name: { type: 'string' }, ttl: { type: 'string' } });
  if (p.values.help) return out(help), 0;
  const secret = required('token', p, 'secret', 'POSTERN_SECRET');
  const domain = required('token', p, 'domain');
  const name = str(p, 'name');
  const ttl = duration('token', p, 'ttl');
  out(await issueToken(secret, { domain, ...(name === undefined ? {} : { name }), ...(ttl === undefined ? {} : { ttlSeconds: ttl }) }));
  return 0;
}
