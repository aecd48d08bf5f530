import type { RouterServer } from '@postern/router';
import { untilSignal } from './output.js';

/**
 * Serves until SIGTERM or SIGINT, then stops gracefully (`server.shutdown()`: stop accepting,
 * CLOSE every link, commit the store, log what it held) and resolves with the exit status: 0
 * when it stopped within its shutdown timeout, 1 when it gave up. A second signal exits at once
 * (status 1). Whatever still holds the event loop afterwards does not keep the process.
 */
export async function serveUntilSignal(server: RouterServer, signal: Promise<NodeJS.Signals> = untilSignal()): Promise<number> {
  const s = await signal;
  const again = (): void => {
    process.stderr.write(`postern: a second signal: exiting now\n`);
    process.exit(1);
  };
  process.on('SIGINT', again);
  process.on('SIGTERM', again);
  const clean = await server.shutdown(s);
  const code = clean ? 0 : 1;
  // A socket or timer someone forgot must not keep a stopped router alive (unref: fires only if
  // something else still holds the loop).
  setTimeout(() => process.exit(code), 1000).unref();
  return code;
}
