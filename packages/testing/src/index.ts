export { memoryPair, MemoryDuplex } from './memory-duplex.js';
export { ManualClock } from './manual-clock.js';
export { transportSuite } from './transport-suite.js';
export type { TransportHarness } from './transport-suite.js';
export { testSessionTokens } from './session-tokens.js';
export { waitFor } from './wait-for.js';
export { storeSuite } from './store-suite.js';
export type { StoreHarness } from './store-suite.js';
