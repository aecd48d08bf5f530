// The shapes of the admin JSON API (docs/OPERATIONS.md "Dashboard"): one source for the
// server that writes them and the page (web/src) that reads them. No Node imports here: the
// page's typecheck (DOM library only) reads this file too.

export interface LinkView {
  key: string;
  kind: 'uplink' | 'downlink' | 'peer' | 'hub';
  dialed: boolean;
  url?: string;
  node: string;
  domains: string[];
  state: 'up' | 'down';
  transport: 'ws' | 'http' | null;
  remote: string;
  since: number;
  rttMs: number | null;
  inPerSec: number;
  outPerSec: number;
  pending: number;
}

export interface Tick {
  t: number;
  in: number;
  out: number;
  acked: number;
  nacked: number;
  delivered: number;
  forwarded: number;
  commits: number;
  commitP50Ms: number;
  commitP99Ms: number;
  agents: number;
  connections: number;
  heldMessages: number;
  heldBytes: number;
}

/** What a test message sent from the dashboard became. */
export interface SendResult {
  id: string;
  from: string;
  to: string;
  /** When the router took it (ACK), ms after sending; null when it was refused at once or no ACK came. */
  acceptedMs: number | null;
  receipt: { code: string; ms: number } | null;
}
