// Browser-safe entry: no node: imports. Node code imports '@postern/transport-http/node'.
export { LongPollClientDuplex, createLongPollDialer, toLongPollUrl } from './client.js';
export type { LongPollDialerOptions } from './client.js';
export { createFetchRequester } from './fetch-requester.js';
export type { HttpAnswer, HttpRequest, HttpRequester } from './requester.js';
export { createAutoDialer, UPGRADE_REASON } from './auto.js';
export type { AutoDialerOptions, AutoDialerEvent } from './auto.js';
export { LONG_POLL_SERVER_DEFAULTS, LONG_POLL_CLIENT_DEFAULTS, AUTO_DIALER_DEFAULTS } from './constants.js';
export { DEFAULT_PATH, LONG_POLL_VERSION, HEADER_OFFSET, HEADER_END, encodeEnvelopes, decodeEnvelopes } from './wire.js';
export type { OpenAnswer } from './wire.js';
export { createFetchHttpDialer } from './fetch-dialer.js';
export type { FetchHttpDialerOptions } from './fetch-dialer.js';
