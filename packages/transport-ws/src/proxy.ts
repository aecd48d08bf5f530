import net from 'node:net';
import { ConfigError, TransportError } from '@postern/protocol';

/** An HTTP proxy that tunnels with CONNECT. */
export interface ProxyConfig {
  /** `http://host:port` without credentials: the only form of the URL that goes into messages. */
  readonly display: string;
  readonly host: string;
  readonly port: number;
  /** `Basic ...` for Proxy-Authorization, when the URL carried credentials. */
  readonly authorization: string | undefined;
}

/** `host:port`, with brackets around an IPv6 host. */
export function authority(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * The URL with everything up to its last `@` replaced, for messages about a URL we could not
 * parse: a password may hold any character, `/` and `@` included, when it is not percent-encoded.
 */
function redact(text: string): string {
  const at = text.lastIndexOf('@');
  if (at < 0) return text;
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(text)?.[0] ?? '';
  return `${scheme}***${text.slice(at)}`;
}

/**
 * Parses `http://[user:password@]host[:port]` (a bare `host:port` is read as http://, as curl
 * does). Credentials are percent-decoded. Only plain-HTTP proxies are supported: the tunnel
 * itself carries TLS when the target is wss://. `source` names the option or variable in errors.
 */
export function parseProxyUrl(text: string, source: string): ProxyConfig {
  const raw = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new ConfigError(`${source}: not a proxy URL: "${redact(text)}" (expected http://[user:password@]host:port)`);
  }
  if (u.protocol !== 'http:') throw new ConfigError(`${source}: only http:// proxies (HTTP CONNECT) are supported, got ${u.protocol}//`);
  if (u.hostname === '') throw new ConfigError(`${source}: the proxy URL has no host: "${redact(text)}"`);
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  const port = u.port === '' ? 80 : Number(u.port);
  let authorization: string | undefined;
  if (u.username !== '' || u.password !== '') {
    let user: string;
    let password: string;
    try {
      user = decodeURIComponent(u.username);
      password = decodeURIComponent(u.password);
    } catch {
      throw new ConfigError(`${source}: bad percent-encoding in the proxy credentials of ${redact(text)}`);
    }
    authorization = `Basic ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`;
  }
  return Object.freeze({ display: `http://${authority(host, port)}`, host, port, authorization });
}

export type Env = Readonly<Record<string, string | undefined>>;

/** The first non-empty variable of `names`: [name, value]. */
function pick(env: Env, names: readonly string[]): [string, string] | undefined {
  for (const name of names) {
    const value = env[name]?.trim();
    if (value !== undefined && value !== '') return [name, value];
  }
  return undefined;
}

/** The proxy settings of an environment, read and checked once. */
export interface EnvProxies {
  /** For wss:// and https:// targets. */
  readonly secure: ProxyConfig | undefined;
  /** For ws:// and http:// targets. */
  readonly plain: ProxyConfig | undefined;
  readonly noProxy: string | undefined;
}

/**
 * Reads the proxy variables as curl does: `https_proxy`/`HTTPS_PROXY` for wss:// and https://
 * targets, `http_proxy`/`HTTP_PROXY` for ws:// and http://, the lowercase name winning when both
 * are set; `no_proxy`/`NO_PROXY` then exempts hosts (see `bypassesProxy`). As in curl, loopback
 * and `localhost` are NOT exempt unless listed: a proxy set for everything is used for everything.
 * A malformed proxy URL throws ConfigError naming the variable.
 */
export function readEnvProxies(env: Env): EnvProxies {
  const secure = pick(env, ['https_proxy', 'HTTPS_PROXY']);
  const plain = pick(env, ['http_proxy', 'HTTP_PROXY']);
  return Object.freeze({
    secure: secure === undefined ? undefined : parseProxyUrl(secure[1], secure[0]),
    plain: plain === undefined ? undefined : parseProxyUrl(plain[1], plain[0]),
    noProxy: pick(env, ['no_proxy', 'NO_PROXY'])?.[1],
  });
}

/** The proxy `proxies` give for `host:port` (secure: a wss:// or https:// target), or undefined. */
export function envProxyFor(proxies: EnvProxies, secure: boolean, host: string, port: number): ProxyConfig | undefined {
  const p = secure ? proxies.secure : proxies.plain;
  if (p === undefined || (proxies.noProxy !== undefined && bypassesProxy(host, port, proxies.noProxy))) return undefined;
  return p;
}

function ipFamily(host: string): 'ipv4' | 'ipv6' | undefined {
  const v = net.isIP(host);
  return v === 4 ? 'ipv4' : v === 6 ? 'ipv6' : undefined;
}

/**
 * Whether a NO_PROXY list exempts `host:port`. Entries are separated by commas or whitespace and
 * compared case-insensitively, as curl does:
 * - `*` exempts every host;
 * - a name (`example.com` or `.example.com`: a leading dot changes nothing) exempts that host and
 *   every host under it, but not `notexample.com`;
 * - an IP address exempts that address, and `10.0.0.0/8` or `fd00::/8` a range, compared only
 *   with targets given as IP addresses (names are not resolved for this);
 * - any of these with `:port` (IPv6 in brackets: `[::1]:7443`) exempts only that port, which
 *   curl ignores and Go honours.
 */
export function bypassesProxy(host: string, port: number, list: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  const family = ipFamily(h);
  for (const raw of list.split(/[\s,]+/)) {
    let entry = raw.trim().toLowerCase();
    if (entry === '') continue;
    if (entry === '*') return true;
    let entryPort: number | undefined;
    const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
    if (bracketed !== null) {
      entry = bracketed[1]!;
      if (bracketed[2] !== undefined) entryPort = Number(bracketed[2]);
    } else {
      const withPort = /^([^:]+):(\d+)$/.exec(entry);
      if (withPort !== null) {
        entry = withPort[1]!;
        entryPort = Number(withPort[2]);
      }
    }
    if (entryPort !== undefined && entryPort !== port) continue;
    const cidr = /^(.+)\/(\d{1,3})$/.exec(entry);
    if (cidr !== null) {
      const base = cidr[1]!;
      const bits = Number(cidr[2]);
      const f = ipFamily(base);
      if (f === undefined || family !== f || bits > (f === 'ipv4' ? 32 : 128)) continue;
      const block = new net.BlockList();
      block.addSubnet(base, bits, f);
      if (block.check(h, family)) return true;
      continue;
    }
    const f = ipFamily(entry);
    if (f !== undefined) {
      if (family !== f) continue;
      const block = new net.BlockList();
      block.addAddress(entry, f);
      if (block.check(h, family)) return true;
      continue;
    }
    const name = entry.replace(/^\.+/, '').replace(/\.$/, '');
    if (name !== '' && (h === name || h.endsWith(`.${name}`))) return true;
  }
  return false;
}

/** Largest CONNECT answer header we read; a proxy sends a few hundred bytes. */
const MAX_ANSWER_BYTES = 16 * 1024;

/**
 * Opens a TCP connection to `proxy` and asks it for a tunnel to `host:port` with
 * `CONNECT host:port HTTP/1.1`. Resolves with the socket once the proxy answered 2xx; what flows
 * next is the caller's (TLS, then the WebSocket upgrade). Every failure is one TransportError
 * naming the proxy by `display`, never with its credentials. On abort the socket is destroyed
 * and the promise rejects (the caller words the error).
 */
export function openTunnel(proxy: ProxyConfig, host: string, port: number, signal: AbortSignal): Promise<net.Socket> {
  const target = authority(host, port);
  return new Promise<net.Socket>((resolve, reject) => {
    if (signal.aborted) {
      reject(new TransportError(`CONNECT to ${target} through proxy ${proxy.display} aborted`));
      return;
    }
    const socket = net.connect({ host: proxy.host, port: proxy.port });
    let connected = false;
    let settled = false;
    let answer = Buffer.alloc(0);
    const cleanup = (): void => {
      signal.removeEventListener('abort', onAbort);
      socket.off('connect', onConnect);
      socket.off('readable', onReadable);
      socket.off('error', onError);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
    };
    const fail = (message: string, cause?: unknown, permanent = false): void => {
      if (settled) return;
      settled = true;
      cleanup();
      // A late 'error' from the destroyed socket must not go unhandled.
      socket.on('error', () => {});
      socket.destroy();
      reject(new TransportError(message, { cause, permanent }));
    };
    const onAbort = (): void => fail(`CONNECT to ${target} through proxy ${proxy.display} aborted`);
    const onError = (err: NodeJS.ErrnoException): void => {
      const why = err.code ?? err.message;
      if (!connected) fail(`cannot reach proxy ${proxy.display}: ${why}`, err);
      else fail(`proxy ${proxy.display} broke the connection during CONNECT to ${target}: ${why}`, err);
    };
    const onEnd = (): void => fail(`proxy ${proxy.display} closed the connection before answering CONNECT to ${target}`);
    const onConnect = (): void => {
      connected = true;
      const lines = [`CONNECT ${target} HTTP/1.1`, `Host: ${target}`];
      if (proxy.authorization !== undefined) lines.push(`Proxy-Authorization: ${proxy.authorization}`);
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    };
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while (!settled && (chunk = socket.read() as Buffer | null) !== null) {
        answer = Buffer.concat([answer, chunk]);
        const end = answer.indexOf('\r\n\r\n');
        if (end === -1) {
          if (answer.length > MAX_ANSWER_BYTES) fail(`proxy ${proxy.display} sent an answer to CONNECT longer than ${MAX_ANSWER_BYTES} bytes`);
          continue;
        }
        const statusLine = answer.subarray(0, answer.indexOf('\r\n')).toString('latin1');
        const rest = answer.subarray(end + 4);
        const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(statusLine);
        if (m === null) {
          fail(`proxy ${proxy.display} did not answer CONNECT to ${target} with HTTP (got "${statusLine.slice(0, 80)}")`);
          return;
        }
        const status = Number(m[1]);
        if (status === 407) {
          const hint =
            proxy.authorization === undefined
              ? 'the proxy wants credentials: give them in the proxy URL, http://USER:PASSWORD@host:port'
              : 'check the proxy credentials';
          fail(`proxy ${proxy.display} refused the tunnel: 407 ${m[2] || 'Proxy Authentication Required'} (${hint})`, undefined, true);
          return;
        }
        if (status < 200 || status > 299) {
          // 4xx: this proxy will not tunnel for us (credentials, policy); 5xx: it could not
          // reach the target right now, which may pass.
          fail(`proxy ${proxy.display} refused CONNECT to ${target}: ${statusLine}`, undefined, status >= 400 && status < 500);
          return;
        }
        settled = true;
        cleanup();
        // From here the next owner's listeners report errors; this one only keeps an error in
        // the moment of hand-over from crashing the process.
        socket.on('error', () => {});
        // Anything after the answer already belongs to the tunnel.
        if (rest.length > 0) socket.unshift(rest);
        resolve(socket);
        return;
      }
    };
    signal.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', onConnect);
    socket.on('readable', onReadable);
    socket.on('error', onError);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
  });
}
