export { startRouter } from './server.js';
export type { RouterServer, RouterServerOptions, TlsConfig, UplinkConfig } from './server.js';
export { issueToken, createTokenAuthenticator } from './credentials.js';
export type { TokenRequest } from './credentials.js';
export { createHmacSessionTokens, resumeKeyFromSecret } from './session-tokens.js';
export { parseListen, formatListen } from './listen.js';
export type { ListenAddress } from './listen.js';
export { createConsoleLogger } from './logger.js';
export type { LogLevel } from './logger.js';
