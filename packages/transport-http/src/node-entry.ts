export {
  LongPollClientDuplex,
  createLongPollDialer,
  toLongPollUrl,
  createFetchRequester,
  createFetchHttpDialer,
  createAutoDialer,
  UPGRADE_REASON,
  LONG_POLL_SERVER_DEFAULTS,
  LONG_POLL_CLIENT_DEFAULTS,
  AUTO_DIALER_DEFAULTS,
  DEFAULT_PATH,
  LONG_POLL_VERSION,
  HEADER_OFFSET,
  HEADER_END,
  encodeEnvelopes,
  decodeEnvelopes,
} from './index.js';
export type {
  LongPollDialerOptions,
  FetchHttpDialerOptions,
  HttpAnswer,
  HttpRequest,
  HttpRequester,
  AutoDialerOptions,
  AutoDialerEvent,
  OpenAnswer,
} from './index.js';
export { createLongPollServer, resolveLongPollServerOptions } from './server.js';
export type { LongPollServer, LongPollServerOptions, ResolvedLongPollServerOptions } from './server.js';
export { LongPollSession } from './session.js';
export { createNodeHttpDialer } from './node-requester.js';
export type { NodeLongPollDialerOptions } from './node-requester.js';
