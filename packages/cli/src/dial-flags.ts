import { MAX_TIMER_MS, PosternError } from '@postern/protocol';
import { num, str, type OptionSpec, type OptionTable, type Parsed } from './options.js';
import { readPemFile } from './read-file.js';
import { UsageError } from './usage-error.js';

/** Flags of the commands that dial a router (gateway, hub, relay peers, the agent commands): how to reach and trust it. */
export const dialFlags: OptionTable = {
  ca: { type: 'string', arg: 'FILE', help: 'trust this CA (PEM) for wss:// instead of the system CAs' },
  fingerprint: { type: 'string', arg: 'SHA256', help: ["pin the router's certificate by its SHA-256 (hex, colons optional);", 'the chain then need not verify (self-signed is fine)'] },
  proxy: {
    type: 'string',
    arg: 'URL',
    help: ['reach the router through this HTTP proxy (CONNECT):', 'http://[USER:PASSWORD@]HOST:PORT [$HTTPS_PROXY for wss://,', '$HTTP_PROXY for ws://, except hosts in $NO_PROXY]'],
  },
  'no-proxy': { type: 'boolean', help: 'connect directly, ignoring the proxy variables' },
  transport: {
    type: 'string',
    kind: 'enum',
    values: ['auto', 'ws', 'http'],
    arg: 'MODE',
    default: 'auto',
    help: ['auto: WebSocket, or HTTP long-poll where WebSocket is blocked', '(back to WebSocket once it gets through); ws; http'],
  },
  'ws-probe-interval': {
    type: 'string',
    kind: 'duration',
    unit: 'ms',
    min: 100,
    max: MAX_TIMER_MS,
    default: '30s',
    help: ['on long-poll (auto), try WebSocket again this often; doubles after', 'each failed try, up to 10 minutes (a plain number: ms)'],
  },
};

/** `--connect-timeout` of the agent commands; `--timeout`, its old name, still works with a warning. */
export const connectTimeoutFlags: OptionTable = {
  'connect-timeout': { type: 'string', kind: 'duration', unit: 'ms', min: 1, max: MAX_TIMER_MS, default: '10s', help: ['give up a connection attempt that gets no answer after this long (a plain', 'number: ms); a refused or unreachable router fails at once'] },
};
export const oldTimeoutFlag: OptionSpec = { type: 'string', deprecatedFor: 'connect-timeout' };

export interface DialSettings {
  ca?: string;
  fingerprint?: string;
  proxy?: string | false;
  transport?: 'auto' | 'ws' | 'http';
  wsProbeIntervalMs?: number;
}

/** Reads `dialFlags`; files are read now, so a bad one fails at start with one line naming it. */
export function dialSettings(command: string, p: Parsed): DialSettings {
  const o: DialSettings = {};
  const ca = str(p, 'ca');
  if (ca !== undefined) o.ca = readPemFile(command, '--ca', ca, /CERTIFICATE/, 'certificate');
  const fingerprint = str(p, 'fingerprint');
  if (fingerprint !== undefined) {
    if (!/^[0-9a-f]{64}$/i.test(fingerprint.trim().replace(/^sha-?256(?:\s+fingerprint)?\s*[:=]?\s*/i, '').replace(/:/g, ''))) {
      throw new UsageError(`${command}: --fingerprint must be the certificate's SHA-256: 64 hex digits, colons optional (openssl x509 -noout -fingerprint -sha256 -in CERT)`);
    }
    o.fingerprint = fingerprint;
  }
  const proxy = str(p, 'proxy');
  if (proxy !== undefined && p.values['no-proxy'] === true) throw new UsageError(`${command}: give --proxy or --no-proxy, not both`);
  if (proxy !== undefined) o.proxy = proxy;
  if (p.values['no-proxy'] === true) o.proxy = false;
  const transport = str(p, 'transport');
  if (transport !== undefined) o.transport = transport as DialSettings['transport'];
  const probe = num(p, 'ws-probe-interval');
  if (probe !== undefined) {
    if (o.transport !== undefined && o.transport !== 'auto') throw new UsageError(`${command}: --ws-probe-interval applies to --transport auto only`);
    o.wsProbeIntervalMs = probe;
  }
  return o;
}

/**
 * An agent refused a name for want of a token learns how to get one: the router (a gateway
 * whose LAN has a --secret, a relay) checks tokens, and this command gave none.
 */
export async function withTokenHint<T>(p: Parsed, connecting: Promise<T>): Promise<T> {
  try {
    return await connecting;
  } catch (err) {
    if (err instanceof PosternError && (err.code === 'ERR_NAME_NOT_ALLOWED' || err.code === 'ERR_AUTH_FAILED') && p.values['token'] === undefined) {
      throw new PosternError(
        err.code,
        `${err.message}: ask the router's operator for one ('postern token --domain DOMAIN --name ${str(p, 'as') ?? 'NAME'}' with its --secret) and give it with --token-file FILE or $POSTERN_TOKEN`,
        { cause: err },
      );
    }
    throw err;
  }
}
