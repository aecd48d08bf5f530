// The admin JSON API as the page uses it (docs/OPERATIONS.md "Dashboard"). Same origin; the
// session cookie (HttpOnly) goes along by itself: the page never sees a token.
import type { LinkView, SendResult, Tick } from '../../src/dashboard/api-types.js';

export type { LinkView, SendResult, Tick };

export interface Overview {
  name: string;
  domain: string;
  node: string;
  role: string;
  version: string;
  startedAt: number;
  now: number;
  login: boolean;
  store: { ok: boolean; since?: number; reason?: string };
  counts: { agents: number; downlinks: number; uplinks: number; peers: number; hubs: number; connections: number };
  held: Record<string, { messages: number; bytes: number; oldestAt: number | null }>;
  totals: Record<string, number>;
}

export interface AgentsPage {
  total: number;
  matched: number;
  offset: number;
  limit: number;
  agents: Array<{ id: string; name: string | null; address: string; transport: string | null; remote: string; since: number; queued: number; queuedBytes: number }>;
}

export interface QueuesPage {
  total: number;
  queues: Array<{ kind: string; dest: string; messages: number; bytes: number; oldestAt: number | null }>;
}

export interface Routes {
  routes: Array<{ domain: string; via: Array<{ node: string; kind: string; metric: number; path: string[] }> }>;
}

export interface Reports {
  reports: Array<{ at: number; id: string; from: string; to: string; code: string; reason: string }>;
}

export interface Trace {
  id: string;
  hops: Array<{
    router: { name: string; domain: string; node: string };
    reachable: boolean;
    error?: string;
    events: Array<{ at: number; event: string; from?: string; to?: string; link?: { kind: string; node?: string; agent?: string }; detail?: string }>;
  }>;
}

/** An answer of the API that was not 2xx: its coded error, as the server wrote it. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

async function answer<T>(r: Response): Promise<T> {
  if (r.status === 401) {
    // The session expired or was never made: back to the login page.
    location.assign('/dashboard/login');
    throw new ApiError(401, 'ERR_UNAUTHORIZED', 'log in again');
  }
  const body = (await r.json().catch(() => ({}))) as { error?: { code?: string; message?: string } };
  if (!r.ok) throw new ApiError(r.status, body.error?.code ?? `HTTP_${r.status}`, body.error?.message ?? r.statusText);
  return body as T;
}

export const get = async <T>(path: string, query: Record<string, string | number> = {}): Promise<T> => {
  const q = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)]));
  const s = q.toString();
  return answer<T>(await fetch(s === '' ? path : `${path}?${s}`, { credentials: 'same-origin', cache: 'no-store' }));
};

export const post = async <T>(path: string, body: unknown): Promise<T> =>
  answer<T>(await fetch(path, { method: 'POST', credentials: 'same-origin', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }));
