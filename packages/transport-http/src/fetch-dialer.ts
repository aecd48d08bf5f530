import type { Dialer } from '@postern/core';
import { createLongPollDialer, type LongPollDialerOptions } from './client.js';
import { createFetchRequester } from './fetch-requester.js';

export interface FetchHttpDialerOptions extends LongPollDialerOptions {
  /** Extra headers on every request (a cross-origin router must allow them). */
  headers?: Record<string, string>;
}

/** A long-poll Dialer over fetch, for browsers (the browser applies its proxy and TLS settings). */
export function createFetchHttpDialer(options: FetchHttpDialerOptions = {}): Dialer {
  const headers = { ...(options.headers ?? {}) };
  return createLongPollDialer(() => createFetchRequester(headers), options);
}
