import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';

/**
 * Which build of better-sqlite3 this process loads. Node-API 10 runtimes (Node 22.14+, 24, 26)
 * get better-sqlite3 13, a Node-API addon shipped prebuilt. Older runtimes (Node 20: Node-API 9)
 * get better-sqlite3 12, built from source on install. 12 cannot stay everywhere: on Node 24 its
 * ObjectWrap statements abort the process when the garbage collector finalizes one
 * (`RemoveEnvironmentCleanupHook: Assertion (env) != nullptr`, WiseLibs/better-sqlite3#1515);
 * 13 needs Node-API 10, which Node 20 lacks. Both have the same API. Drop 12 with Node 20.
 */
export const sqliteModule: string = Number(process.versions.napi) >= 10 ? 'better-sqlite3-napi' : 'better-sqlite3';

const require = createRequire(import.meta.url);

/** Resolved path of {@link sqliteModule}, for tests that open a store file from a child process. */
export const sqliteModulePath: string = require.resolve(sqliteModule);

export const Database = require(sqliteModule) as typeof BetterSqlite3;
export type Database = BetterSqlite3.Database;
export type Statement = BetterSqlite3.Statement;
