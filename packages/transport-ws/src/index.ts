// Browser-safe entry: no node: imports, no `ws`. Node code imports '@postern/transport-ws/node'.
export { WebSocketDuplex } from './duplex.js';
export type { WebSocketLike } from './duplex.js';
export { createWsDialer, toWebSocketUrl } from './client.js';
export type { WebSocketFactory } from './client.js';
