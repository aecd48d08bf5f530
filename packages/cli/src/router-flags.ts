import { homedir } from 'node:os';
import { join } from 'node:path';
import type { ParseArgsConfig } from 'node:util';
import { createConsoleLogger, parseListen, parseTrustAnchor, resolveAllowedOrigins, type LogFormat, type LogLevel, type RouterServerOptions } from '@postern/router';
import { MAX_TIMER_MS, isValidName } from '@postern/protocol';
import { int, str, type Parsed } from './args.js';
import { readPemFile, readSeedFile } from './read-file.js';
import { UsageError } from './usage-error.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** Flags every router command takes. */
export const routerFlags: Options = {
  listen: { type: 'string', multiple: true },
  secret: { type: 'string' },
  data: { type: 'string' },
  memory: { type: 'boolean' },
  'max-age': { type: 'string' },
  'max-queue': { type: 'string' },
  'max-queue-bytes': { type: 'string' },
  'max-stored-bytes': { type: 'string' },
  'max-stored-messages': { type: 'string' },
  'max-body-memory': { type: 'string' },
  domain: { type: 'string' },
  'allow-guests': { type: 'boolean' },
  'max-connections-per-address': { type: 'string' },
  'connect-rate': { type: 'string' },
  'max-connections-per-credential': { type: 'string' },
  'sender-rate': { type: 'string' },
  'sender-byte-rate': { type: 'string' },
  'max-stored-per-sender': { type: 'string' },
  'guest-rate': { type: 'string' },
  'guest-byte-rate': { type: 'string' },
  'guest-stored-bytes': { type: 'string' },
  'max-guest-stored-bytes': { type: 'string' },
  'log-level': { type: 'string' },
  'ping-interval': { type: 'string' },
  'handshake-timeout': { type: 'string' },
  'partial-frame-timeout': { type: 'string' },
  'request-timeout': { type: 'string' },
  'max-frame': { type: 'string' },
  'max-outbound': { type: 'string' },
  'max-connections': { type: 'string' },
  'hop-limit': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  trust: { type: 'string', multiple: true },
  'node-key': { type: 'string' },
  'no-anonymous': { type: 'boolean' },
  known: { type: 'string', multiple: true },
  'unknown-recipients': { type: 'string' },
  'allow-origin': { type: 'string', multiple: true },
  'previous-secret': { type: 'string', multiple: true },
  revoked: { type: 'string' },
  // Operations (issue 13: logs, metrics, shutdown); see opsOptions() below.
  'log-format': { type: 'string' },
  'admin-listen': { type: 'string' },
  'admin-token': { type: 'string' },
  'shutdown-timeout': { type: 'string' },
};

export const routerFlagsHelp = `  --secret S              signs and checks tokens (or set POSTERN_SECRET)
  --previous-secret S     a secret being rotated out: tokens it signed are still accepted;
                          repeatable (or POSTERN_PREVIOUS_SECRETS, comma-separated)
  --revoked FILE          revoked tokens, one per line (the token or its SHA-256 in hex); re-read
                          when it changes: new connections with one are refused, open ones closed
  --tls-cert FILE         serve TLS (wss://, https://) on every --listen with this certificate
                          (PEM, any intermediates after it); needs --tls-key
  --tls-key FILE          the certificate's private key (PEM)
  --data DIR              keep durable state there (router.db, SQLite): the messages this router
                          holds, and the key that lets agents resume with the same id [$POSTERN_DATA, else ~/.local/state/postern/<command>-<domain>]
  --memory                hold messages in memory only: a restart loses what was queued
  --max-age MS            a message not handed on within this time is dropped and its sender
                          told ERR_EXPIRED [86400000]
  --max-queue N           messages one recipient (or domain) may have waiting [100000]
  --max-queue-bytes B     bytes one recipient (or domain) may have waiting [67108864]
  --max-stored-bytes B    bytes of messages held in all (on disk with --data) [268435456]
  --max-stored-messages N messages held in all [1000000]
  --max-body-memory B     bytes of message bodies kept in memory; the others stay on disk and
                          are read back when sent (with --data) [33554432]
  --allow-guests          with --secret: let agents without a token in as guests (an id, no
                          name) under the guest quotas below [refused: AUTH_FAILED]
  --trust KEY[=DOMAINS]   trust a key; repeatable. A router's node key (N...) with the domains it
                          may speak for (N...=r2,globex): that router may link as a peer. An
                          operator or domain key (O... or A...): its grants are accepted, within
                          DOMAINS [all]. No shared secret is needed for either
  --node-key FILE         this router's node key (a seed from 'postern key new --type node');
                          default: the one kept in --data, made at the first start
  --no-anonymous          refuse anonymous messages and pseudonyms from this router's agents
  --known NAME            a name of this router's domain known before it first connects: messages
                          to it wait (provisioning); repeatable. Names that once connected are known
  --unknown-recipients P  refuse: a message to a name or id nobody of this domain ever held is
                          refused at once (ERR_UNKNOWN_RECIPIENT); queue: it waits [refuse]
  --allow-origin ORIGIN   web pages of this origin (https://app.example.com; * for any) may
                          connect; repeatable. A WebSocket or long-poll request with any other
                          Origin header gets 403; clients that send none (Node, this CLI) are
                          not affected [none: no web page may connect]
  --log-level LEVEL       debug, info, warn, error or silent [info]
  --ping-interval MS      ping after this much silence; drop a link silent twice as long [20000]
  --handshake-timeout MS  HELLO must arrive within this time [5000]
  --partial-frame-timeout MS
                          a frame begun must be complete within this time [10000]
  --request-timeout MS    an HTTP request (a long-poll send with its body) must arrive
                          within this time [60000]
  --max-frame BYTES       largest frame accepted [1048576]
  --max-outbound BYTES    per connection; a slower reader is disconnected [8388608]
  --max-connections N     connections at once [10000]
  Quotas (per sender: a token, or a source address (IPv6: its /64) for agents without one; the
  routers of the mesh are not limited). Rates pause reading from the sender (a rate of 0: none):
  --max-connections-per-address N
                          connections without a token (or in their handshake) per address [256]
  --connect-rate N        new connections per address a second, bursts of 2N; more get 429 [100]
  --max-connections-per-credential N
                          connections made with one token at once [1000]
  --sender-rate N         messages a second per sender [0: no limit]
  --sender-byte-rate B    body bytes a second per sender [0: no limit]
  --max-stored-per-sender B
                          bytes of one sender's messages held; more get ERR_QUEUE_FULL
                          [a quarter of --max-stored-bytes]
  --guest-rate N          messages a second from the guests of one address [50]
  --guest-byte-rate B     body bytes a second from the guests of one address [262144]
  --guest-stored-bytes B  bytes held for the guests of one address [1048576]
  --max-guest-stored-bytes B
                          bytes held for all guests together [a 16th of --max-stored-bytes]
  --hop-limit N           routers a message may cross [16]
  Operations (docs/OPERATIONS.md):
  --log-format F          text (one line for people) or json (one object a line, with a stable
                          "event" name) [text]
  --admin-listen HOST:PORT
                          serve GET /metrics (Prometheus) and the full GET /healthz (counters)
                          there, plain HTTP; a host other than loopback needs --admin-token [off]
  --admin-token T         bearer token for /metrics and the full /healthz, then also served on
                          --listen (Authorization: Bearer T); at least 16 characters
                          [$POSTERN_ADMIN_TOKEN; none: the public /healthz says liveness only]
  --shutdown-timeout MS   on SIGTERM or SIGINT: time to close links and commit the store before
                          exiting anyway (a second signal exits at once) [10000]
  -h, --help              this help`;

/** Per command and domain, so that a relay and a gateway on one machine keep apart. */
function defaultDataDir(command: string, domain: string): string {
  // Empty counts as unset (the XDG spec), or the store would land in the current directory.
  const xdg = process.env['XDG_STATE_HOME'];
  const base = xdg !== undefined && xdg !== '' ? xdg : join(homedir(), '.local', 'state');
  return join(base, 'postern', `${command}-${domain.toLowerCase()}`);
}

const LEVELS = new Set(['debug', 'info', 'warn', 'error', 'silent']);

export function routerOptions(command: string, p: Parsed, domain: string, prefix: string): RouterServerOptions {
  const level = str(p, 'log-level') ?? 'info';
  if (!LEVELS.has(level)) throw new UsageError(`${command}: --log-level must be one of debug, info, warn, error, silent`);
  const listen = p.values.listen as unknown as string[] | undefined;
  // A bad flag value is a usage error (exit 2), found before anything starts.
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
    logger: createConsoleLogger(level as LogLevel, prefix, undefined, logFormat(command, p)),
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
  const trust = p.values.trust as unknown as string[] | undefined;
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
  const known = p.values.known as unknown as string[] | undefined;
  if (known !== undefined) {
    const names = known.flatMap((k) => k.split(',')).map((k) => k.trim().toLowerCase()).filter((k) => k !== '');
    for (const n of names) if (!isValidName(n)) throw new UsageError(`${command}: --known takes names (1-64 of a-z 0-9 . _ -), got "${n}"`);
    o.knownNames = names;
  }
  const origins = p.values['allow-origin'] as unknown as string[] | undefined;
  if (origins !== undefined) {
    const list = origins.flatMap((x) => x.split(',')).map((x) => x.trim()).filter((x) => x !== '');
    try {
      resolveAllowedOrigins(list);
    } catch (err) {
      throw new UsageError(`${command}: --allow-origin: ${(err as Error).message}`);
    }
    o.allowOrigins = list;
  }
  const unknown = str(p, 'unknown-recipients');
  if (unknown !== undefined) {
    if (unknown !== 'refuse' && unknown !== 'queue') throw new UsageError(`${command}: --unknown-recipients must be refuse or queue, got "${unknown}"`);
    o.unknownRecipients = unknown;
  }
  const secret = str(p, 'secret', 'POSTERN_SECRET');
  if (secret !== undefined) o.secret = secret;
  const previous = (p.values['previous-secret'] as unknown as string[] | undefined) ?? (process.env['POSTERN_PREVIOUS_SECRETS'] ?? '').split(',').filter((x) => x !== '');
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
  const data = str(p, 'data', 'POSTERN_DATA');
  if (p.values.memory === true) {
    if (str(p, 'data') !== undefined) throw new UsageError(`${command}: give --data or --memory, not both`);
  } else {
    o.dataDir = data ?? defaultDataDir(command, domain);
  }
  const set = <K extends keyof RouterServerOptions>(key: K, flag: string, min = 1, max?: number): void => {
    const v = int(command, p, flag, min, max);
    if (v !== undefined) (o as unknown as Record<string, unknown>)[key] = v;
  };
  set('pingIntervalMs', 'ping-interval', 0, MAX_TIMER_MS / 2);
  set('handshakeTimeoutMs', 'handshake-timeout', 1, MAX_TIMER_MS);
  set('partialFrameTimeoutMs', 'partial-frame-timeout', 1, MAX_TIMER_MS);
  set('requestTimeoutMs', 'request-timeout', 1000, MAX_TIMER_MS);
  set('maxFrameBytes', 'max-frame', 1024);
  set('maxOutboundBytes', 'max-outbound', 1024);
  set('maxConnections', 'max-connections');
  set('maxMessageAgeMs', 'max-age');
  set('maxQueueMessages', 'max-queue');
  set('maxQueueBytes', 'max-queue-bytes', 1024);
  set('maxStoredBytes', 'max-stored-bytes', 1024);
  set('maxStoredMessages', 'max-stored-messages');
  set('maxBodyMemoryBytes', 'max-body-memory', 0);
  set('hopLimit', 'hop-limit');
  set('maxConnectionsPerAddress', 'max-connections-per-address');
  set('connectRatePerAddress', 'connect-rate');
  set('maxConnectionsPerCredential', 'max-connections-per-credential');
  set('senderMsgRate', 'sender-rate', 0);
  set('senderByteRate', 'sender-byte-rate', 0);
  set('maxStoredBytesPerSender', 'max-stored-per-sender');
  set('guestMsgRate', 'guest-rate', 0);
  set('guestByteRate', 'guest-byte-rate', 0);
  set('guestStoredBytes', 'guest-stored-bytes');
  set('maxGuestStoredBytes', 'max-guest-stored-bytes');
  opsOptions(command, p, o);
  return o;
}

// Operations (issue 13): log format, admin endpoints, shutdown, where the secret came from.
function logFormat(command: string, p: Parsed): LogFormat {
  const f = str(p, 'log-format') ?? 'text';
  if (f !== 'text' && f !== 'json') throw new UsageError(`${command}: --log-format must be text or json, got "${f}"`);
  return f;
}

function opsOptions(command: string, p: Parsed, o: RouterServerOptions): void {
  o.role = command;
  if (o.secret !== undefined) o.secretSource = p.values.secret !== undefined ? '--secret' : 'POSTERN_SECRET env';
  const adminListen = str(p, 'admin-listen');
  const adminToken = str(p, 'admin-token', 'POSTERN_ADMIN_TOKEN');
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
  const timeout = int(command, p, 'shutdown-timeout', 1, MAX_TIMER_MS);
  if (timeout !== undefined) o.shutdownTimeoutMs = timeout;
}
