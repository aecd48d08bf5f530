import { issueGrant, issueToken, keyPairFromSeed, publicKeyKind } from '@postern/router';
import { duration, flag, parse, str } from '../args.js';
import { out } from '../output.js';
import { readSeedFile } from '../read-file.js';
import { UsageError } from '../usage-error.js';

export const help = `Usage: postern token --secret S --domain NAME [--name NAME | --peer | --hub] [--ttl DURATION]
       postern token --key FILE --domain NAME[,NAME...] (--node N... [--peer] | --signer KEY) [--ttl DURATION]

Prints a credential.

With --secret: a token signed with a router's secret, checked by that router only.
  Without --name: a domain token. A gateway presents it to its relay to claim the domain; an
  agent holding it may claim any name in that domain. With --peer: the relay holding it may
  link as a peer of the router with that secret.
  With --name: an agent token, good for that one name only.
  With --hub: a hub's token. The hub ('postern hub') presents it to the gateways of its domain
  (its bridgeheads) to link as a server where agents of the domain are homed.

With --key: a grant, signed with an operator or domain key ('postern key new'). Any router
that trusts that key (--trust KEY[=DOMAINS]) accepts it; no secret is shared.
  --node N...: the router with that node id (it prints it at start) may serve, announce and
  send from the domains (a gateway's grant, or with --peer a relay's: it may link as a peer).
  --signer KEY: the key KEY (a domain owner's A... or another operator's O...) may sign
  grants itself, within the domains. A router presents the whole chain: --token G1,G2.

Options:
  --secret S         the router's secret (or set POSTERN_SECRET)
  --key FILE         sign a grant with this key's seed instead
  --domain NAME      the domain(s) the credential is for [required]; with --key a comma list
  --name NAME        (--secret) restrict the token to this agent name
  --node N...        (--key) the router the grant is for
  --signer KEY       (--key) the key the grant lets sign further grants
  --peer             the router may link as a peer
  --hub              (--secret) the router is a hub of the domain
  --ttl DURATION     expire after 3600, 90s, 15m, 12h or 30d, or never [agent tokens
                     (--name): 90d; others: never]. A token is revoked before then by
                     listing it in the router's --revoked file
  -h, --help         this help`;

/** Default lifetime of an agent token (one with --name): 90 days. */
const AGENT_TOKEN_TTL_S = 90 * 86400;

export async function token(argv: string[]): Promise<number> {
  const p = parse('token', argv, {
    secret: { type: 'string' },
    key: { type: 'string' },
    domain: { type: 'string' },
    name: { type: 'string' },
    node: { type: 'string' },
    signer: { type: 'string' },
    peer: { type: 'boolean' },
    hub: { type: 'boolean' },
    ttl: { type: 'string' },
  });
  if (p.values.help) return out(help), 0;
  const domain = str(p, 'domain');
  if (domain === undefined) throw new UsageError('token: --domain is required');
  const never = str(p, 'ttl') === 'never';
  const given = never ? undefined : duration('token', p, 'ttl');
  // An agent's token is the one most likely to leak (it lives on laptops and in scripts): it expires unless told not to.
  const ttl = given ?? (never || str(p, 'name') === undefined ? undefined : AGENT_TOKEN_TTL_S);
  const keyFile = str(p, 'key');
  const peer = flag(p, 'peer');
  const hub = flag(p, 'hub');
  if (hub && (peer || str(p, 'name') !== undefined)) throw new UsageError('token: --hub makes a hub\'s token: no --peer, no --name');
  if (keyFile !== undefined) {
    if (hub) throw new UsageError('token: --hub needs --secret (the bridgehead\'s); with keys, trust the hub\'s node key instead (--trust N...=DOMAIN at the gateway)');
    if (str(p, 'secret') !== undefined) throw new UsageError('token: give --secret or --key, not both');
    if (str(p, 'name') !== undefined) throw new UsageError('token: --name is for agent tokens (--secret); a grant is for a router (--node)');
    const node = str(p, 'node');
    const signer = str(p, 'signer');
    if ((node === undefined) === (signer === undefined)) throw new UsageError('token: with --key give --node N... (a router) or --signer KEY (a key that signs grants)');
    if (signer !== undefined && peer) throw new UsageError('token: --peer is for a router (--node), not for --signer');
    const subject = (node ?? signer)!;
    if (publicKeyKind(subject) === undefined) throw new UsageError(`token: "${subject}" is not a public key (check for a typo)`);
    if (node !== undefined && publicKeyKind(node) !== 'node') throw new UsageError(`token: --node takes a router's node id (N...), got a ${publicKeyKind(node)} key`);
    if (signer !== undefined && publicKeyKind(signer) === 'node') throw new UsageError('token: --signer takes a domain (A...) or operator (O...) key; a router is --node');
    const issuer = keyPairFromSeed(readSeedFile('token', '--key', keyFile));
    out(
      issueGrant(issuer, {
        subject,
        domains: domain.split(',').map((d) => d.trim()).filter((d) => d !== ''),
        ...(peer ? { peer: true } : {}),
        ...(signer === undefined ? {} : { signer: true }),
        ...(ttl === undefined ? {} : { ttlSeconds: ttl }),
      }),
    );
    return 0;
  }
  const secret = str(p, 'secret', 'POSTERN_SECRET');
  if (secret === undefined) throw new UsageError('token: --secret is required (or set POSTERN_SECRET), or --key for a grant');
  if (str(p, 'node') !== undefined || str(p, 'signer') !== undefined) throw new UsageError('token: --node and --signer make grants: give --key');
  const name = str(p, 'name');
  out(await issueToken(secret, { domain, ...(name === undefined ? {} : { name }), ...(peer ? { peer: true } : {}), ...(hub ? { hub: true } : {}), ...(ttl === undefined ? {} : { ttlSeconds: ttl }) }));
  return 0;
}
