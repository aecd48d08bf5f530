// Shared by the tests that run real routers and SDK agents on loopback: every router and agent
// they start is closed after the file's tests, in reverse order.
import { after } from 'node:test';
import { connect, type Client, type Message } from '@postern/client';
import { startRouter, type KeyPair, type RouterServer, type RouterServerOptions } from '@postern/router';

const cleanup: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

/** Something to close after the tests. */
export function onCleanup(fn: () => Promise<void>): void {
  cleanup.push(fn);
}

/** A router on an ephemeral loopback port, with quick reconnects; `key` gives it that node key. */
export async function router(o: RouterServerOptions & { key?: KeyPair }): Promise<RouterServer> {
  const { key, ...rest } = o;
  const r = await startRouter({ listen: ['127.0.0.1:0'], backoff: { initialMs: 50, maxMs: 500 }, ...(key === undefined ? {} : { nodeKey: key.seed }), ...rest });
  cleanup.push(() => r.close());
  return r;
}

export async function agent(url: string, name?: string, token?: string): Promise<Client> {
  const c = await connect({ url, ...(name === undefined ? {} : { name }), ...(token === undefined ? {} : { token }), backoff: { initialMs: 50, maxMs: 500 } });
  cleanup.push(() => c.close());
  return c;
}

/** The next message `client` receives, or an error after `timeoutMs`. */
export async function next(client: Client, timeoutMs = 5000): Promise<Message> {
  const it = client[Symbol.asyncIterator]();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const r = await Promise.race([it.next(), new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${client.address}: no message`)), timeoutMs)))]);
  clearTimeout(timer);
  if (r.done) throw new Error('client ended');
  return r.value;
}
