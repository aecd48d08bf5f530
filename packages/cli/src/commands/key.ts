import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { createKeyPair, keyPairFromSeed, nodeIdOfDataDir, type KeyKind } from '@postern/router';
import { ConfigError } from '@postern/protocol';
import { flag, helpText, parse, str, type OptionTable } from '../options.js';
import { out } from '../output.js';
import { readSeedFile } from '../read-file.js';
import { UsageError } from '../usage-error.js';

export const options: OptionTable = {
  type: { type: 'string', kind: 'enum', values: ['operator', 'domain', 'node'], arg: 'TYPE', default: 'operator', help: 'operator, domain or node' },
  out: { type: 'string', arg: 'FILE', help: 'write the seed here (refuses to overwrite)' },
  data: { type: 'string', arg: 'DIR', help: "(show) a router's data directory" },
  force: { type: 'boolean', help: 'with --out: overwrite an existing file' },
};

export const help = helpText(
  'key',
  `Usage: postern key new [--type operator|domain|node] [--out FILE]
       postern key show FILE
       postern key show --data DIR

Ed25519 keys, in the text form of NATS nkeys. A public key (56 characters) is safe to share; a
seed (58 characters, starting with S) is the private key.

  new    makes a key pair: writes the seed to FILE (readable by its owner only) and prints the
         public key. Without --out it prints the seed, then the public key.
         operator (O...): signs grants for the routers and domain owners it vouches for
         domain (A...): a domain owner's key, signs grants for the routers of its domain
         node (N...): a router's own key, for --node-key (routers make their own otherwise)
  show   prints the public key of a seed file, or the node id of the router whose data
         directory is DIR (while that router is stopped)
`,
  options,
  `Example:
  postern key new --type domain --out acme.seed          # prints A...
  postern token --key acme.seed --domain acme --node N...  # a grant for acme's gateway`,
  15,
);

const TYPES = new Set(['operator', 'domain', 'node']);

export async function key(argv: string[]): Promise<number> {
  const p = parse('key', argv, options, true);
  if (p.values.help) return out(help), 0;
  const [sub, file, ...rest] = p.positionals;
  if (rest.length > 0) throw new UsageError('key: too many arguments');
  if (sub === 'new') {
    if (file !== undefined) throw new UsageError('key new: give the file as --out FILE');
    const type = str(p, 'type') ?? 'operator';
    if (!TYPES.has(type)) throw new UsageError(`key new: --type must be operator, domain or node, got "${type}"`);
    const kp = createKeyPair(type as KeyKind);
    const dest = str(p, 'out');
    if (dest === undefined) {
      out(kp.seed);
      out(kp.publicKey);
      return 0;
    }
    if (existsSync(dest) && !flag(p, 'force')) throw new ConfigError(`key new: ${dest} exists; a seed is not overwritten (remove it first)`);
    writeFileSync(dest, `# postern ${type} key ${kp.publicKey}\n${kp.seed}\n`, { mode: 0o600 });
    chmodSync(dest, 0o600);
    out(kp.publicKey);
    return 0;
  }
  if (sub === 'show') {
    // A $POSTERN_DATA meant for a router gives way to a seed FILE named here.
    const data = file !== undefined && p.sources['data']?.from !== 'flag' ? undefined : str(p, 'data');
    if ((file === undefined) === (data === undefined)) throw new UsageError('key show: give a seed FILE or --data DIR');
    if (file !== undefined) {
      out(keyPairFromSeed(readSeedFile('key show', 'FILE', file)).publicKey);
      return 0;
    }
    const node = await nodeIdOfDataDir(data!);
    if (node === undefined) throw new ConfigError(`key show: no router has run with --data ${data} yet (a router makes its node key at its first start)`);
    out(node);
    return 0;
  }
  throw new UsageError(`key: say new or show${sub === undefined ? '' : `, not "${sub}"`}`);
}
