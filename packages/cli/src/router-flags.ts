import { homedir } from 'node:os';
import { join } from 'node:path';
import { createConsoleLogger, parseListen, parseTrustAnchor, resolveAllowedOrigins, type LogFormat, type LogLevel, type RouterServerOptions } from '@postern/router';
import { MAX_TIMER_MS, isValidDomain, isValidName } from '@postern/protocol';
import { list, num, str, type OptionSpec, type OptionTable, type Parsed } from './options.js';
import { readPemFile, readSeedFile } from './read-file.js';
import { UsageError } from './usage-error.js';

const TIMER = { kind: 'duration', unit: 'ms', max: MAX_TIMER_MS } as const;

/** Flags every router command takes (relay, gateway, hub). */
export const routerFlags: OptionTable = {
  secret: { type: 'string', arg: 'S', secret: true, help: 'signs and checks tokens' },
  'previous-secret': {
    type: 'string',
    multiple: true,
    arg: 'S',
    secret: true,
    envAliases: ['POSTERN_PREVIOUS_SECRETS'],
    help: ['a secret being rotated out: tokens it signed are still accepted;', 'repeatable (env: comma-separated)'],
  },
  revoked: { type: 'string', arg: 'FILE', help: ['revoked tokens, one per line (the token or its SHA-256 in hex); re-read', 'when it changes: new connections with one are refused, open ones closed'] },
  'tls-cert': { type: 'string', arg: 'FILE', help: ['serve TLS (wss://, https://) on every --listen with this certificate', '(PEM, any intermediates after it); needs --tls-key'] },
  'tls-key': { type: 'string', arg: 'FILE', help: "the certificate's private key (PEM)" },
  data: {
    type: 'string',
    arg: 'DIR',
    default: '~/.local/state/postern/<command>-<domain>',
    help: ['keep durable state there (router.db, SQLite): the messages this router', 'holds, and the key that lets agents resume with the same id'],
  },
  memory: { type: 'boolean', help: 'hold messages in memory only: a restart loses what was queued' },
  'max-age': { type: 'string', ...TIMER, max: Number.MAX_SAFE_INTEGER, min: 1, default: '24h', help: ['a message not handed on within this time is dropped and its sender', 'told ERR_EXPIRED (a plain number: ms)'] },
  'max-queue': { type: 'string', kind: 'int', min: 1, default: '100000', help: 'messages one recipient (or domain) may have waiting' },
  'max-queue-bytes': { type: 'string', kind: 'size', min: 1024, default: '64MiB', help: 'bytes one recipient (or domain) may have waiting' },
  'max-stored-bytes': { type: 'string', kind: 'size', min: 1024, default: '256MiB', help: 'bytes of messages held in all (on disk with --data)' },
  'max-stored-messages': { type: 'string', kind: 'int', min: 1, default: '1000000', help: 'messages held in all' },
  'max-body-memory': { type: 'string', kind: 'size', min: 0, default: '32MiB', help: ['bytes of message bodies kept in memory; the others stay on disk and', 'are read back when sent (with --data)'] },
  'allow-guests': { type: 'boolean', help: ['with --secret: let agents without a token in as guests (an id, no', 'name) under the guest quotas below [refused: AUTH_FAILED]'] },
  trust: {
    type: 'string',
    multiple: true,
    arg: 'KEY[=DOMAINS]',
    sep: ' ',
    help: [
      "trust a key; repeatable (env: space-separated). A router's node key (N...) with",
      'the domains it may speak for (N...=r2,globex): that router may link as a peer. An',
      'operator or domain key (O... or A...): its grants are accepted, within',
      'DOMAINS [all]. No shared secret is needed for either',
    ],
  },
  'node-key': { type: 'string', arg: 'FILE', help: ["this router's node key (a seed from 'postern key new --type node');", 'default: the one kept in --data, made at the first start'] },
  'no-anonymous': { type: 'boolean', help: "refuse anonymous messages and pseudonyms from this router's agents" },
  known: {
    type: 'string',
    multiple: true,
    arg: 'NAME',
    help: ["a name of this router's domain known before it first connects: messages", 'to it wait (provisioning); repeatable. Names that once connected are known'],
  },
  'unknown-recipients': {
    type: 'string',
    kind: 'enum',
    values: ['refuse', 'queue'],
    arg: 'P',
    default: 'refuse',
    help: ['refuse: a message to a name or id nobody of this domain ever held is', 'refused at once (ERR_UNKNOWN_RECIPIENT); queue: it waits'],
  },
  'allow-origin': {
    type: 'string',
    multiple: true,
    arg: 'ORIGIN',
    help: [
      'web pages of this origin (https://app.example.com; * for any) may',
      'connect; repeatable. A WebSocket or long-poll request with any other',
      'Origin header gets 403; clients that send none (Node, this CLI) are',
      'not affected [none: no web page may connect]',
    ],
  },
  'log-level': { type: 'string', kind: 'enum', values: ['debug', 'info', 'warn', 'error', 'silent'], arg: 'LEVEL', default: 'info', help: 'debug, info, warn, error or silent' },
  'ping-interval': { type: 'string', ...TIMER, min: 0, max: MAX_TIMER_MS / 2, default: '20s', help: 'ping after this much silence; drop a link silent twice as long (ms)' },
  'handshake-timeout': { type: 'string', ...TIMER, min: 1, default: '5s', help: 'HELLO must arrive within this time (ms)' },
  'partial-frame-timeout': { type: 'string', ...TIMER, min: 1, default: '10s', help: 'a frame begun must be complete within this time (ms)' },
  'request-timeout': { type: 'string', ...TIMER, min: 1000, default: '60s', help: ['an HTTP request (a long-poll send with its body) must arrive', 'within this time (ms)'] },
  'max-frame': { type: 'string', kind: 'size', min: 1024, default: '1MiB', help: 'largest frame accepted' },
  'max-outbound': { type: 'string', kind: 'size', min: 1024, default: '8MiB', help: 'per connection; a slower reader is disconnected' },
  'max-connections': { type: 'string', kind: 'int', min: 1, default: '10000', help: 'connections at once' },
  'max-connections-per-address': {
    type: 'string',
    kind: 'int',
    min: 1,
    default: '256',
    heading: 'Quotas (per sender: a token, or a source address (IPv6: its /64) for agents without one; the\n  routers of the mesh are not limited). Rates pause reading from the sender (a rate of 0: none):',
    help: 'connections without a token (or in their handshake) per address',
  },
  'connect-rate': { type: 'string', kind: 'int', min: 1, default: '100', help: 'new connections per address a second, bursts of 2N; more get 429' },
  'max-connections-per-credential': { type: 'string', kind: 'int', min: 1, default: '1000', help: 'connections made with one token at once' },
  'sender-rate': { type: 'string', kind: 'int', min: 0, default: '0: no limit', help: 'messages a second per sender' },
  'sender-byte-rate': { type: 'string', kind: 'size', min: 0, default: '0: no limit', help: 'body bytes a second per sender' },
  'max-stored-per-sender': {
    type: 'string',
    kind: 'size',
    min: 1,
    default: 'a quarter of --max-stored-bytes',
    help: ["bytes of one sender's messages held; more get ERR_QUEUE_FULL"],
  },
  'guest-rate': { type: 'string', kind: 'int', min: 0, default: '50', help: 'messages a second from the guests of one address' },
  'guest-byte-rate': { type: 'string', kind: 'size', min: 0, default: '256KiB', help: 'body bytes a second from the guests of one address' },
  'guest-stored-bytes': { type: 'string', kind: 'size', min: 1, default: '1MiB', help: 'bytes held for the guests of one address' },
  'max-guest-stored-bytes': { type: 'string', kind: 'size', min: 1, default: 'a 16th of --max-stored-bytes', help: 'bytes held for all guests together' },
  'hop-limit': { type: 'string', kind: 'int', min: 1, default: '16', help: 'routers a message may cross' },
  // Operations (issue 13: logs, metrics, shutdown); read by opsOptions() below.
  'log-format': {
    type: 'string',
    kind: 'enum',
    values: ['text', 'json'],
    arg: 'F',
    default: 'text',
    heading: 'Operations (docs/OPERATIONS.md):',
    help: ['text (one line for people) or json (one object a line, with a stable', '"event" name)'],
  },
  'admin-listen': {
    type: 'string',
    arg: 'HOST:PORT',
    default: 'off',
    help: [
      'serve the dashboard (http://HOST:PORT/), its JSON API (/api/), GET /metrics',
      '(Prometheus) and the full GET /healthz there, plain HTTP; a host other',
      'than loopback needs --admin-token (the dashboard then asks for it)',
    ],
  },
  'admin-host': {
    type: 'string',
    multiple: true,
    arg: 'HOST',
    help: ['a host name the admin listener answers to besides IP addresses and', 'localhost (others get 421: DNS rebinding); repeatable'],
  },
  'dashboard-peer': {
    type: 'string',
    multiple: true,
    arg: 'URL',
    help: ["another router's admin listener (http://HOST:PORT) the dashboard asks", "for its part of a message's path; repeatable"],
  },
  'dashboard-peer-token': {
    type: 'string',
    multiple: true,
    arg: 'T',
    secret: true,
    help: ['the admin tokens of the --dashboard-peer routers, in their order (one:', 'for all of them)'],
  },
  'trace-capacity': {
    type: 'string',
    kind: 'int',
    min: 1,
    max: 10_000_000,
    default: '10000',
    help: ['with --admin-listen: messages whose path (events at this router) is', 'kept for the dashboard; the oldest are forgotten first'],
  },
  'admin-token': {
    type: 'string',
    arg: 'T',
    secret: true,
    help: ['bearer token for /metrics and the full /healthz, then also served on', '--listen (Authorization: Bearer T); at least 16 characters. None: the', 'public /healthz says liveness only'],
  },
  'shutdown-timeout': {
    type: 'string',
    ...TIMER,
    min: 1,
    arg: 'DURATION',
    default: '10s',
    help: ['on SIGTERM or SIGINT: time to close links and commit the store before', 'exiting anyway (a second signal exits at once)'],
  },
};

/** The `--listen` option of the router commands (first in their help). */
export const listenFlag: OptionSpec = { type: 'string', multiple: true, arg: 'HOST:PORT', help: 'where to accept WebSocket connections; repeatable [required]' };

/** Per command and domain, so that a relay and a gateway on one machine keep apart. */
function defaultDataDir(command: string, domain: string): string {
  // Empty counts as unset (the XDG spec), or the store would land in the current directory.
  const xdg = process.env['XDG_STATE_HOME'];
  const base = xdg !== undefined && xdg !== '' ? xdg : join(homedir(), '.local', 'state');
  return join(base, 'postern', `${command}-${domain.toLowerCase()}`);
}

/** The router's options from the parsed flags; every bad value is a usage error (exit 2), found before anything starts. */
export function routerOptions(command: string, p: Parsed, domain: string, prefix: string): RouterServerOptions {
  if (!isValidDomain(domain.toLowerCase())) throw new UsageError(`${command}: --domain must be a domain (1-253 of a-z 0-9 . -, labels starting with a letter or digit), got "${domain}"`);
  const level = str(p, 'log-level') ?? 'info';
  const listen = list(p, 'listen');
  for (const l of listen ?? []) {
    try {
      parseListen(l);
    } catch {
      throw new UsageError(`${command}: --listen must be HOST:PORT (e.g. 0.0.0.0:7443 or [::1]:7443), got "${l}"`);
    }
  }
  const o: RouterServerOptions = {
    domain,
    listen: listen ?? [],
    logger: createConsoleLogger(level as LogLevel, prefix, undefined, (str(p, 'log-format') ?? 'text') as LogFormat),
    allowGuests: p.values['allow-guests'] === true,
    // The router logged why; a supervisor restarts it and it recovers from its store.
    onFatal: () => process.exit(70),
  };
  const cert = str(p, 'tls-cert');
  const key = str(p, 'tls-key');
  if ((cert === undefined) !== (key === undefined)) throw new UsageError(`${command}: give --tls-cert and --tls-key together`);
  if (cert !== undefined && key !== undefined) {
    o.tls = { cert: readPemFile(command, '--tls-cert', cert, /CERTIFICATE/, 'certificate'), key: readPemFile(command, '--tls-key', key, /[A-Z ]*PRIVATE KEY/, 'private key') };
  }
  const trust = list(p, 'trust');
  if (trust !== undefined) {
    try {
      o.trust = trust.map((t) => parseTrustAnchor(t));
    } catch (err) {
      throw new UsageError(`${command}: ${(err as Error).message}`);
    }
  }
  const nodeKey = str(p, 'node-key');
  if (nodeKey !== undefined) o.nodeKey = readSeedFile(command, '--node-key', nodeKey);
  if (p.values['no-anonymous'] === true) o.allowAnonymous = false;
  const known = list(p, 'known');
  if (known !== undefined) {
    const names = known.flatMap((k) => k.split(',')).map((k) => k.trim().toLowerCase()).filter((k) => k !== '');
    for (const n of names) if (!isValidName(n)) throw new UsageError(`${command}: --known takes names (1-64 of a-z 0-9 . _ -), got "${n}"`);
    o.knownNames = names;
  }
  const origins = list(p, 'allow-origin');
  if (origins !== undefined) {
    const all = origins.flatMap((x) => x.split(',')).map((x) => x.trim()).filter((x) => x !== '');
    try {
      resolveAllowedOrigins(all);
    } catch (err) {
      throw new UsageError(`${command}: --allow-origin: ${(err as Error).message}`);
    }
    o.allowOrigins = all;
  }
  const unknown = str(p, 'unknown-recipients');
  if (unknown !== undefined) o.unknownRecipients = unknown as 'refuse' | 'queue';
  const secret = str(p, 'secret');
  if (secret !== undefined) o.secret = secret;
  const previous = list(p, 'previous-secret') ?? [];
  if (previous.length > 0) {
    if (secret === undefined) throw new UsageError(`${command}: --previous-secret needs --secret (the one that signs new tokens)`);
    o.previousSecrets = previous;
  }
  const revoked = str(p, 'revoked');
  if (revoked !== undefined) {
    if (secret === undefined) throw new UsageError(`${command}: --revoked needs --secret (it lists tokens signed with it)`);
    o.revokedFile = revoked;
  }
  if (secret === undefined && p.values['allow-guests'] === true) throw new UsageError(`${command}: --allow-guests needs --secret (without one every agent connects without a token)`);
  if (p.values.data === '') throw new UsageError(`${command}: --data needs a directory`);
  const data = str(p, 'data');
  if (p.values.memory === true) {
    // --data from the environment or a file (a shared $POSTERN_DATA) gives way to --memory given here.
    if (data !== undefined && p.sources['data']?.from === p.sources['memory']?.from) throw new UsageError(`${command}: give --data or --memory, not both`);
  } else {
    o.dataDir = data ?? defaultDataDir(command, domain);
  }
  const set = <K extends keyof RouterServerOptions>(key: K, flag: string): void => {
    const v = num(p, flag);
    if (v !== undefined) (o as unknown as Record<string, unknown>)[key] = v;
  };
  set('pingIntervalMs', 'ping-interval');
  set('handshakeTimeoutMs', 'handshake-timeout');
  set('partialFrameTimeoutMs', 'partial-frame-timeout');
  set('requestTimeoutMs', 'request-timeout');
  set('maxFrameBytes', 'max-frame');
  set('maxOutboundBytes', 'max-outbound');
  set('maxConnections', 'max-connections');
  set('maxMessageAgeMs', 'max-age');
  set('maxQueueMessages', 'max-queue');
  set('maxQueueBytes', 'max-queue-bytes');
  set('maxStoredBytes', 'max-stored-bytes');
  set('maxStoredMessages', 'max-stored-messages');
  set('maxBodyMemoryBytes', 'max-body-memory');
  set('hopLimit', 'hop-limit');
  set('maxConnectionsPerAddress', 'max-connections-per-address');
  set('connectRatePerAddress', 'connect-rate');
  set('maxConnectionsPerCredential', 'max-connections-per-credential');
  set('senderMsgRate', 'sender-rate');
  set('senderByteRate', 'sender-byte-rate');
  set('maxStoredBytesPerSender', 'max-stored-per-sender');
  set('guestMsgRate', 'guest-rate');
  set('guestByteRate', 'guest-byte-rate');
  set('guestStoredBytes', 'guest-stored-bytes');
  set('maxGuestStoredBytes', 'max-guest-stored-bytes');
  opsOptions(command, p, o);
  return o;
}

/** Operations (issue 13): the router's role, where its secret came from, admin endpoints, shutdown. */
function opsOptions(command: string, p: Parsed, o: RouterServerOptions): void {
  o.role = command;
  if (o.secret !== undefined) o.secretSource = p.sources['secret']?.where ?? '--secret';
  const adminListen = str(p, 'admin-listen');
  const adminToken = str(p, 'admin-token');
  if (adminToken !== undefined && adminToken.length < 16) throw new UsageError(`${command}: --admin-token must be at least 16 characters`);
  if (adminListen !== undefined) {
    let at;
    try {
      at = parseListen(adminListen);
    } catch {
      throw new UsageError(`${command}: --admin-listen must be HOST:PORT (e.g. 127.0.0.1:9464), got "${adminListen}"`);
    }
    if (adminToken === undefined && !(at.host === 'localhost' || at.host === '::1' || at.host.startsWith('127.'))) {
      throw new UsageError(`${command}: --admin-listen on ${at.host} (not loopback) needs --admin-token`);
    }
    o.adminListen = at;
  }
  if (adminToken !== undefined) o.adminToken = adminToken;
  const hosts = list(p, 'admin-host');
  if (hosts !== undefined) {
    const all = hosts.flatMap((h) => h.split(',')).map((h) => h.trim().toLowerCase()).filter((h) => h !== '');
    for (const h of all) if (!/^[a-z0-9.-]{1,253}$/.test(h)) throw new UsageError(`${command}: --admin-host takes host names, got "${h}"`);
    o.adminHosts = all;
  }
  const peers = list(p, 'dashboard-peer') ?? [];
  const peerTokens = list(p, 'dashboard-peer-token') ?? [];
  for (const u of peers) if (!/^https?:\/\/[^\s/]+\/?$/.test(u)) throw new UsageError(`${command}: --dashboard-peer takes the URL of an admin listener (http://HOST:PORT), got "${u}"`);
  if (peerTokens.length > 1 && peerTokens.length !== peers.length) throw new UsageError(`${command}: give one --dashboard-peer-token for all --dashboard-peer, or one each (${peers.length}), not ${peerTokens.length}`);
  if (peers.length > 0) {
    o.dashboardPeers = peers.map((url, i) => {
      const token = peerTokens.length === 1 ? peerTokens[0] : peerTokens[i];
      return token === undefined ? { url } : { url, token };
    });
  }
  const traceCapacity = num(p, 'trace-capacity');
  if (traceCapacity !== undefined) o.traceCapacity = traceCapacity;
  const timeout = num(p, 'shutdown-timeout');
  if (timeout !== undefined) o.shutdownTimeoutMs = timeout;
}

/** `--secret` and `--previous-secret` of a gateway or hub: not from $POSTERN_SECRET, which is the relay's. */
export const lanSecretFlags: OptionTable = {
  secret: { ...routerFlags['secret']!, genericEnv: false, help: ["checks the tokens of this router's agents; without it any agent may", 'claim any free name. Not read from $POSTERN_SECRET (the relay\'s)'] },
  'previous-secret': { ...routerFlags['previous-secret']!, genericEnv: false, envAliases: [] },
};

/**
 * What a gateway or hub says at start about its agents' tokens: a $POSTERN_SECRET exported for a
 * relay in the same shell is not used (it once turned token checks on in silence); a secret that
 * is used is named with where it came from.
 */
export function lanSecretNotice(command: string, p: Parsed, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const src = p.sources['secret'];
  if (src !== undefined) return `postern ${command}: agents connecting here need a token for a name ('postern token --domain D --name N' with this secret; from ${src.where})`;
  if ((env['POSTERN_SECRET'] ?? '') !== '') {
    return `postern ${command}: $POSTERN_SECRET is the relay's and is not used here: agents connecting here need no token (to check them: --secret-file or $POSTERN_${command.toUpperCase()}_SECRET)`;
  }
  return undefined;
}
