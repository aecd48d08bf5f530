export { WebSocketDuplex, createWsDialer, toWebSocketUrl } from './index.js';
export type { WebSocketLike, WebSocketFactory } from './index.js';
export { attachWsServer } from './server.js';
export type { WsServer, WsServerOptions } from './server.js';
export { createNodeWsDialer } from './node.js';
export type { NodeWsDialerOptions } from './node.js';
