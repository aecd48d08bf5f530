// How the long-poll client makes HTTP requests: node:http(s) in Node (node-requester.ts), fetch
// in browsers (fetch-requester.ts). The client logic above it is the same for both.

export interface HttpRequest {
  method: 'GET' | 'POST' | 'DELETE';
  /** Absolute URL. */
  url: string;
  /** Sent as application/octet-stream. */
  body?: Uint8Array;
  signal: AbortSignal;
  /** The request (connect, send, whole answer) fails after this long. */
  timeoutMs: number;
}

export interface HttpAnswer {
  status: number;
  /** A header of the answer by lowercase name. */
  header(name: string): string | undefined;
  /** The whole body, a plain Uint8Array (not a Node Buffer, whose slice() shares memory). */
  body: Uint8Array;
}

/** One client's connection pool to one router; `close()` releases its sockets. */
export interface HttpRequester {
  /** Rejects on network errors, timeouts and aborts; any HTTP status resolves. */
  request(req: HttpRequest): Promise<HttpAnswer>;
  close(): void;
}

/** Text of a short error body, for messages. */
export function bodyText(a: HttpAnswer): string {
  const t = new TextDecoder().decode(a.body.subarray(0, 300)).trim();
  return t === '' ? '' : `: ${t}`;
}
