import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger, Router } from '@postern/core';
import type { SendResult } from './api-types.js';

/** A link this router dials (uplink or peer), as the dashboard sees it. */
export interface DialedView {
  url: string;
  mode: 'uplink' | 'peer';
  connected: boolean;
  /** The far router's node id, once known ('' before). */
  node: string;
  transport: 'ws' | 'http';
  /** When it last went up or down (epoch ms). */
  since: number;
}

/** A router whose trace part the dashboard asks for (`dashboardPeers`). */
export interface DashboardPeer {
  /** The peer's admin listener, `http://host:port`. */
  url: string;
  /** Its admin token, if it has one. */
  token?: string;
}


/** Everything the dashboard reads of its router process; given by server.ts. */
export interface DashboardContext {
  readonly router: Router;
  readonly role: string;
  readonly version: string;
  readonly startedAt: number;
  /** The admin token; undefined: the listener is loopback-only and asks for no login. */
  readonly token: string | undefined;
  /** Host names (besides IP literals and localhost) the listener answers to. */
  readonly hosts: readonly string[];
  /** CSP frame-ancestors sources; empty: 'none'. */
  readonly frameAncestors: readonly string[];
  readonly peers: readonly DashboardPeer[];
  readonly log: Logger;
  dialed(): DialedView[];
  longPollSessions(): number;
  /** Sends a test message from the router's own agent and waits for its receipt. */
  send(to: string, text: string, timeoutMs: number): Promise<SendResult>;
  /** Answers /metrics and /healthz as before (auth already checked); false when `path` is neither. */
  legacy(req: IncomingMessage, res: ServerResponse, path: string): boolean;
}
