import type { HttpAnswer, HttpRequest, HttpRequester } from './requester.js';

/**
 * Requests over the WHATWG fetch (browsers; Node has it too). The browser decides proxies, TLS
 * trust and connection reuse. `headers` go on every request.
 */
export function createFetchRequester(headers: Record<string, string> = {}): HttpRequester {
  return {
    async request(req: HttpRequest): Promise<HttpAnswer> {
      const ac = new AbortController();
      const onAbort = (): void => ac.abort();
      req.signal.addEventListener('abort', onAbort, { once: true });
      const timer = setTimeout(() => ac.abort(), req.timeoutMs);
      try {
        if (req.signal.aborted) throw new Error('aborted');
        const r = await fetch(req.url, {
          method: req.method,
          signal: ac.signal,
          cache: 'no-store',
          credentials: 'omit',
          headers: req.body === undefined ? headers : { ...headers, 'content-type': 'application/octet-stream' },
          // A SharedArrayBuffer-backed view is not a BodyInit; ours never are.
          ...(req.body === undefined ? {} : { body: req.body as Uint8Array<ArrayBuffer> }),
        });
        const body = new Uint8Array(await r.arrayBuffer());
        return { status: r.status, header: (name) => r.headers.get(name) ?? undefined, body };
      } catch (err) {
        if (ac.signal.aborted && !req.signal.aborted) throw new Error(`no answer within ${req.timeoutMs} ms`, { cause: err });
        throw err;
      } finally {
        clearTimeout(timer);
        req.signal.removeEventListener('abort', onAbort);
      }
    },
    close() {
      // fetch pools connections itself
    },
  };
}
