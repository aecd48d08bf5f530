// The long-poll wire format, shared by the server and both clients. No I/O, no node: imports.
//
// A session carries two byte streams, each a sequence of envelopes: a u32 big-endian length,
// then that many bytes of one transport message (a batch of frames, opaque here). Envelopes
// keep message boundaries, so batches from several sends can travel in one HTTP body and be
// handed over one by one. Offsets count envelope bytes from the start of a session's stream.

/** Version of this HTTP API; the open answer carries it and a client refuses another. */
export const LONG_POLL_VERSION = 1;

/** Where a router serves the long-poll API, under the URL's own path. */
export const DEFAULT_PATH = '/postern/http';

/** Bytes before each message in a body. */
export const ENVELOPE_BYTES = 4;

/** Response headers of a poll (lowercase, as node:http and fetch give them). */
export const HEADER_OFFSET = 'postern-offset';
export const HEADER_END = 'postern-end';

/** The JSON body of a successful open (201). */
export interface OpenAnswer {
  version: number;
  /** The session's id: a bearer secret, it alone lets a request act on the session. */
  session: string;
  /** Largest body of one send. */
  maxBodyBytes: number;
  /** How long the server holds a poll that has nothing to return. */
  pollTimeoutMs: number;
  /** The server drops a session that sees no poll for this long. */
  sessionTimeoutMs: number;
}

/** Parses and checks an open answer; returns a reason string when it is not one. */
export function parseOpenAnswer(text: string): OpenAnswer | string {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return 'the answer is not JSON';
  }
  const o = v as Partial<OpenAnswer> | null;
  if (o === null || typeof o !== 'object') return 'the answer is not a JSON object';
  if (o.version !== LONG_POLL_VERSION) return `long-poll version ${String(o.version)} is not supported; this client speaks ${LONG_POLL_VERSION}`;
  if (typeof o.session !== 'string' || !/^[A-Za-z0-9_-]{16,128}$/.test(o.session)) return 'the answer carries no valid session id';
  for (const k of ['maxBodyBytes', 'pollTimeoutMs', 'sessionTimeoutMs'] as const) {
    const x = o[k];
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x <= 0) return `the answer carries no valid ${k}`;
  }
  return o as OpenAnswer;
}

/** One envelope: length prefix and a copy of `data`. */
export function envelope(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(ENVELOPE_BYTES + data.length);
  new DataView(out.buffer).setUint32(0, data.length);
  out.set(data, ENVELOPE_BYTES);
  return out;
}

/** Envelopes of `messages`, concatenated into one body. */
export function encodeEnvelopes(messages: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const m of messages) n += ENVELOPE_BYTES + m.length;
  const out = new Uint8Array(n);
  const view = new DataView(out.buffer);
  let at = 0;
  for (const m of messages) {
    view.setUint32(at, m.length);
    out.set(m, at + ENVELOPE_BYTES);
    at += ENVELOPE_BYTES + m.length;
  }
  return out;
}

/**
 * Splits a body into its messages (views into `body`, not copies). Returns undefined when the
 * body does not end exactly at an envelope boundary: a truncated or corrupt body.
 */
export function decodeEnvelopes(body: Uint8Array): Uint8Array[] | undefined {
  const out: Uint8Array[] = [];
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  let at = 0;
  while (at < body.length) {
    if (body.length - at < ENVELOPE_BYTES) return undefined;
    const n = view.getUint32(at);
    const start = at + ENVELOPE_BYTES;
    if (n > body.length - start) return undefined;
    out.push(body.subarray(start, start + n));
    at = start + n;
  }
  return out;
}

/** A non-negative decimal integer (as query values and offsets are written), else undefined. */
export function parseCount(text: string | null | undefined): number | undefined {
  if (text === null || text === undefined || !/^\d{1,15}$/.test(text)) return undefined;
  return Number(text);
}

/** `path` without trailing slashes and with one leading slash; '' for the root. */
export function normalizePath(path: string): string {
  const p = path.replace(/\/+$/, '');
  return p === '' ? '' : p.startsWith('/') ? p : `/${p}`;
}
