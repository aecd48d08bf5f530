export { SqliteStore } from './sqlite-store.js';
export type { SqliteStoreOptions } from './sqlite-store.js';
export { sqliteModule, sqliteModulePath } from './driver.js';
