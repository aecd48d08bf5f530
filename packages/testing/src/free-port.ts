import { createServer } from 'node:net';

/**
 * A loopback port nothing listens on at the moment of the call: for a test that must name a
 * port before its server starts (a router started later, a config file). Another process may
 * take it meanwhile; tests that start several servers at once ask for all their ports first.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, host, resolve);
  });
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}
