import type { ParseArgsConfig } from 'node:util';
import { MAX_TIMER_MS } from '@postern/protocol';
import { int, str, type Parsed } from './args.js';
import { readPemFile } from './read-file.js';
import { UsageError } from './usage-error.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** Flags of the commands that dial a router (gateway, listen, send): how to reach and trust it. */
export const dialFlags: Options = {
  ca: { type: 'string' },
  fingerprint: { type: 'string' },
  proxy: { type: 'string' },
  'no-proxy': { type: 'boolean' },
  transport: { type: 'string' },
  'ws-probe-interval': { type: 'string' },
};

/** Help lines for `dialFlags`, descriptions starting at column `width`. */
export function dialFlagsHelp(width: number): string {
  const rows: Array<[string, string[]]> = [
    ['--ca FILE', ['trust this CA (PEM) for wss:// instead of the system CAs']],
    ['--fingerprint SHA256', ["pin the router's certificate by its SHA-256 (hex, colons optional);", 'the chain then need not verify (self-signed is fine)']],
    [
      '--proxy URL',
      [
        'reach the router through this HTTP proxy (CONNECT):',
        'http://[USER:PASSWORD@]HOST:PORT [$HTTPS_PROXY for wss://,',
        '$HTTP_PROXY for ws://, except hosts in $NO_PROXY]',
      ],
    ],
    ['--no-proxy', ['connect directly, ignoring the proxy variables']],
    [
      '--transport MODE',
      [
        'auto: WebSocket, or HTTP long-poll where WebSocket is blocked',
        '(back to WebSocket once it gets through); ws; http [auto]',
      ],
    ],
    ['--ws-probe-interval MS', ['on long-poll (auto), try WebSocket again this often; doubles after', 'each failed try, up to 10 minutes [30000]']],
  ];
  const lines: string[] = [];
  for (const [flag, text] of rows) {
    const head = `  ${flag}`;
    if (head.length < width) lines.push(`${head.padEnd(width)}${text[0]}`);
    else lines.push(head, `${' '.repeat(width)}${text[0]}`);
    for (const t of text.slice(1)) lines.push(`${' '.repeat(width)}${t}`);
  }
  return lines.join('\n');
}

export interface DialSettings {
  ca?: string;
  fingerprint?: string;
  proxy?: string | false;
  transport?: 'auto' | 'ws' | 'http';
  wsProbeIntervalMs?: number;
}

const TRANSPORTS = new Set(['auto', 'ws', 'http']);

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
  if (transport !== undefined) {
    if (!TRANSPORTS.has(transport)) throw new UsageError(`${command}: --transport must be auto, ws or http, got "${transport}"`);
    o.transport = transport as DialSettings['transport'];
  }
  const probe = int(command, p, 'ws-probe-interval', 100, MAX_TIMER_MS);
  if (probe !== undefined) {
    if (o.transport !== undefined && o.transport !== 'auto') throw new UsageError(`${command}: --ws-probe-interval applies to --transport auto only`);
    o.wsProbeIntervalMs = probe;
  }
  return o;
}
