import crypto from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { ConfigError, TransportError } from '@postern/protocol';
import { authority } from './proxy.js';

/** How a dialer decides to trust a TLS server. */
export interface TlsTrust {
  /** PEM CA certificates trusted instead of the system ones; undefined: the system's (Node's default). */
  readonly ca: string | readonly string[] | undefined;
  /** The pinned leaf certificate's SHA-256, as 64 lowercase hex digits; undefined: no pin. */
  readonly fingerprint: string | undefined;
}

/**
 * Reads a SHA-256 certificate fingerprint: 64 hex digits, with or without colons, any case; an
 * `sha256:` / `SHA256 Fingerprint=` prefix (as openssl prints it) is allowed. Returns lowercase
 * hex without colons.
 */
export function parseFingerprint(text: string, source = 'fingerprint'): string {
  const hex = text
    .trim()
    .replace(/^sha-?256(?:\s+fingerprint)?\s*[:=]?\s*/i, '')
    .replace(/:/g, '')
    .toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) {
    throw new ConfigError(`${source} must be the SHA-256 of the certificate: 64 hex digits, with or without colons (openssl x509 -noout -fingerprint -sha256), got "${text}"`);
  }
  return hex;
}

/** `AB:CD:...`, the form openssl and browsers show. */
export function formatFingerprint(hex: string): string {
  return hex.toUpperCase().replace(/(..)(?!$)/g, '$1:');
}

/** The SHA-256 fingerprint of a PEM or DER certificate, in the form `parseFingerprint` returns. */
export function certificateFingerprint(cert: string | Uint8Array): string {
  return parseFingerprint(new crypto.X509Certificate(cert).fingerprint256);
}

/** Errors raised by the certificate checks (OpenSSL verify codes and Node's host name check). */
function isVerifyError(err: NodeJS.ErrnoException): boolean {
  return /CERT|SELF_SIGNED|UNABLE_TO|ISSUER|CHAIN|ALTNAME|SIGNATURE|EXPIRED|NOT_YET_VALID|REVOKED|PURPOSE/.test(err.code ?? '');
}

/** OpenSSL's words for a server that answered a TLS hello in plain text (HTTP, WebSocket). */
function isNotTlsError(err: NodeJS.ErrnoException): boolean {
  return /WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|HTTP_REQUEST|UNKNOWN_PROTOCOL/.test(err.code ?? '') || /wrong version number|packet length too long/.test(err.message);
}

/**
 * Whether `host:port` completes a TLS handshake (any certificate): tells a plain-text dial that
 * was hung up on by a TLS server from a server that went away. False on any error or timeout.
 */
export function speaksTls(host: string, port: number, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tls.connect({ host, port, rejectUnauthorized: false, ...(net.isIP(host) === 0 ? { servername: host } : {}) });
    const done = (v: boolean): void => {
      clearTimeout(timer);
      s.removeAllListeners();
      s.on('error', () => {});
      s.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    s.once('secureConnect', () => done(true));
    s.once('error', () => done(false));
  });
}

/**
 * Runs a TLS client handshake with `host:port`, over `socket` (a proxy tunnel) or a new TCP
 * connection. Without a pin, the chain must verify against `trust.ca` (else the system CAs) and
 * the certificate must name `host`. With a pin, the chain need not verify (self-signed is fine)
 * but the leaf certificate's SHA-256 must equal the pin exactly. Resolves only after the check,
 * so nothing is sent to an unverified server. Failures are one TransportError naming the host.
 */
export function startTls(socket: net.Socket | undefined, host: string, port: number, trust: TlsTrust, signal: AbortSignal): Promise<tls.TLSSocket> {
  const where = authority(host, port);
  return new Promise<tls.TLSSocket>((resolve, reject) => {
    if (signal.aborted) {
      reject(new TransportError(`TLS handshake with ${where} aborted`));
      return;
    }
    const pinned = trust.fingerprint;
    const s = tls.connect({
      host,
      port,
      ...(socket === undefined ? {} : { socket }),
      // SNI carries names only; an IP address is checked against the certificate's IP entries.
      ...(net.isIP(host) === 0 ? { servername: host } : {}),
      ...(trust.ca === undefined ? {} : { ca: trust.ca as string | string[] }),
      rejectUnauthorized: pinned === undefined,
      ALPNProtocols: ['http/1.1'],
    });
    let settled = false;
    const fail = (message: string, cause?: unknown, permanent = false): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      s.on('error', () => {});
      s.destroy();
      socket?.destroy();
      reject(new TransportError(message, { cause, permanent }));
    };
    const onAbort = (): void => fail(`TLS handshake with ${where} aborted`);
    signal.addEventListener('abort', onAbort, { once: true });
    s.once('error', (err: NodeJS.ErrnoException) => {
      if (err.syscall === 'connect') {
        fail(`cannot connect to ${where}: ${err.message}`, err);
      } else if (isVerifyError(err)) {
        fail(
          `TLS to ${where}: certificate not trusted: ${err.message}${err.code !== undefined ? ` [${err.code}]` : ''}; trust its CA (ca, --ca FILE) or pin it (fingerprint, --fingerprint SHA256)`,
          err,
          true,
        );
      } else if (isNotTlsError(err)) {
        // Permanent: the other transport (long-poll over https://) would fail the same way.
        fail(`TLS to ${where}: the server does not speak TLS: use ws:// (or http://)`, err, true);
      } else {
        fail(`TLS to ${where} failed: ${err.code ?? err.message}${err.code !== undefined && err.message !== '' ? ` (${err.message})` : ''}`, err);
      }
    });
    s.once('secureConnect', () => {
      if (settled) return;
      if (pinned !== undefined) {
        const raw = s.getPeerCertificate().fingerprint256;
        const got = raw === undefined || raw === '' ? '' : parseFingerprint(raw);
        if (got !== pinned) {
          fail(`TLS to ${where}: certificate fingerprint mismatch: expected ${formatFingerprint(pinned)}, got ${got === '' ? 'no certificate' : formatFingerprint(got)}`, undefined, true);
          return;
        }
      }
      settled = true;
      signal.removeEventListener('abort', onAbort);
      s.removeAllListeners('error');
      // From here http's own listener reports socket errors; this one only keeps an error in the
      // moment between hand-over and the upgrade request from crashing the process.
      s.on('error', () => {});
      resolve(s);
    });
  });
}
