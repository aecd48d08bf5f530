import type { UplinkStatus } from '@postern/core';
import { PosternError } from '@postern/protocol';
import { startRouter, type RouterServerOptions } from '@postern/router';
import type { DialSettings } from './dial-flags.js';
import { out, untilSignal } from './output.js';
import { serveUntilSignal } from './shutdown.js';

/** How a router that dials out names itself and the routers it dials, in what it prints. */
export interface DialOutWords {
  /** `gateway`, `hub`. */
  command: string;
  /** What it dials: `relay`, `gateway`. */
  target: string;
  /** Printed once the first link is up. */
  up: string;
}

/**
 * Runs a router that dials out (a gateway to its relays, a hub to its gateways) until a signal.
 * It prints where it listens and its node id; a refusal of the very first attempt ends the
 * command with its own one-line error, naming what refused; the first link up is printed.
 */
export async function runDialingRouter(options: RouterServerOptions, urls: readonly string[], token: string, dial: DialSettings, w: DialOutWords): Promise<number> {
  let first: ((s: UplinkStatus) => void) | undefined;
  const firstResult = new Promise<UplinkStatus>((resolve) => (first = resolve));
  const server = await startRouter({
    ...options,
    uplinks: urls.map((url) => ({ url, token, ...dial })),
    onUplinkStatus: (_url, s) => {
      if (s.type !== 'up' && s.type !== 'down') return false;
      const settle = first;
      first = undefined;
      settle?.(s);
      // A refusal of the very first attempt ends the command with its own one-line error.
      return settle !== undefined && s.type === 'down' && s.refused;
    },
  });
  for (const a of server.addresses) {
    out(`postern ${w.command}: domain "${server.router.domain}" listening on ${options.tls === undefined ? 'ws' : 'wss'}://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`);
  }
  out(`postern ${w.command}: node ${server.node}`);
  const signal = untilSignal();
  const s = await Promise.race([firstResult, signal]);
  if (typeof s === 'object' && s.type === 'down' && s.refused) {
    await server.close();
    // A transport error here is a proxy or certificate refusal: its message names what refused.
    throw new PosternError(s.error.code, s.error.code === 'ERR_TRANSPORT' ? `cannot reach the ${w.target}: ${s.error.message}` : `the ${w.target} refused this ${w.command}: ${s.error.message}`);
  }
  if (typeof s === 'object' && s.type === 'up') out(`postern ${w.command}: ${w.up}`);
  return serveUntilSignal(server, signal);
}
