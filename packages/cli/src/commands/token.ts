import { issueGrant, issueToken, keyPairFromSeed, publicKeyKind } from '@postern/router';
import { flag, helpText, parseDuration, parse, str, type OptionTable } from '../options.js';
import { out } from '../output.js';
import { readSeedFile } from '../read-file.js';
import { UsageError } from '../usage-error.js';

export const options: OptionTable = {
  secret: { type: 'string', arg: 'S', secret: true, help: "the router's secret" },
  key: { type: 'string', arg: 'FILE', help: "sign a grant with this key's seed instead" },
  domain: { type: 'string', arg: 'NAME', help: 'the domain(s) the credential is for [required]; with --key a comma list' },
  name: { type: 'string', arg: 'NAME', help: '(--secret) restrict the token to this agent name' },
  node: { type: 'string', arg: 'N...', help: '(--key) the router the grant is for' },
  signer: { type: 'string', arg: 'KEY', help: '(--key) the key the grant lets sign further grants' },
  peer: { type: 'boolean', help: 'the router may link as a peer' },
  hub: { type: 'boolean', help: '(--secret) the router is a hub of the domain' },
  ttl: {
    type: 'string',
    arg: 'DURATION',
    help: ['expire after 90s, 15m, 12h or 30d (a plain number: seconds), or never', '[agent tokens (--name): 90d; others: never]. A token is revoked before', "then by listing it in the router's --revoked file"],
  },
};

export const help = helpText(
  'token',
  `Usage: postern token --secret S --domain NAME [--name NAME | --peer | --hub] [--ttl DURATION]
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
`,
  options,
  '',
  21,
);

/** Default lifetime of an agent token (one with --name): 90 days. */
const AGENT_TOKEN_TTL_S = 90 * 86400;

export async function token(argv: string[]): Promise<number> {
  const p = parse('token', argv, options);
  if (p.values.help) return out(help), 0;
  const domain = str(p, 'domain');
  if (domain === undefined) throw new UsageError('token: --domain is required');
  const never = str(p, 'ttl') === 'never';
  const ttlText = str(p, 'ttl');
  const parsedTtl = ttlText === undefined || never ? undefined : parseDuration(ttlText, 's');
  if (typeof parsedTtl === 'string' || parsedTtl === 0) throw new UsageError(`token: --ttl ${typeof parsedTtl === 'string' ? parsedTtl : 'must be at least 1s'} or never, got "${ttlText}"`);
  const given = parsedTtl;
  // An agent's token is the one most likely to leak (it lives on laptops and in scripts): it expires unless told not to.
  const ttl = given ?? (never || str(p, 'name') === undefined ? undefined : AGENT_TOKEN_TTL_S);
  const keyFile = str(p, 'key');
  const peer = flag(p, 'peer');
  const hub = flag(p, 'hub');
  if (hub && (peer || str(p, 'name') !== undefined)) throw new UsageError('token: --hub makes a hub\'s token: no --peer, no --name');
  if (keyFile !== undefined) {
    if (hub) throw new UsageError('token: --hub needs --secret (the bridgehead\'s); with keys, trust the hub\'s node key instead (--trust N...=DOMAIN at the gateway)');
    if (p.sources['secret']?.from === 'flag') throw new UsageError('token: give --secret or --key, not both');
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
  const secret = str(p, 'secret');
  if (secret === undefined) throw new UsageError('token: --secret (or --secret-file, $POSTERN_SECRET) is required, or --key for a grant');
  if (str(p, 'node') !== undefined || str(p, 'signer') !== undefined) throw new UsageError('token: --node and --signer make grants: give --key');
  const name = str(p, 'name');
  out(await issueToken(secret, { domain, ...(name === undefined ? {} : { name }), ...(peer ? { peer: true } : {}), ...(hub ? { hub: true } : {}), ...(ttl === undefined ? {} : { ttlSeconds: ttl }) }));
  return 0;
}
