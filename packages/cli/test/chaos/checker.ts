// The chaos suite's verdict: what happened to every message a sender tried to send.
// A pure function of what the senders reported and what the receivers printed, so that it can
// be tested on made-up inputs (checker.test.ts) and trusted when it says 0.

/** One send as its sender reported it. `n` counts per sender from 1; `s` names the sender. */
export interface Sent {
  s: string;
  n: number;
  /** The sender's address, as recipients should see it in `from`. */
  from: string;
  /** The recipient's address. */
  to: string;
  /**
   * accepted: `send` resolved (the first router has it); failed: `send` rejected with `code`;
   * pending: neither, when the run ended.
   */
  outcome: 'accepted' | 'failed' | 'pending';
  code?: string;
}

/**
 * One message as a receiver printed it, in the order that receiver printed them. `s` and `n`
 * come from the body; a body that did not parse has them undefined.
 */
export interface Received {
  /** The receiver's address. */
  receiver: string;
  from: string;
  to: string;
  s: string | undefined;
  n: number | undefined;
}

export interface ChaosCounts {
  /**
   * Sends that resolved. Each is counted in one of: duplicated, lost, reordered, delivered
   * (checked in that order).
   */
  accepted: number;
  /** Accepted, received once, and not after a later message of the same sender -> receiver pair. */
  delivered: number;
  /** Accepted and never received. */
  lost: number;
  /** Received more than once, accepted or not (exactly once holds for every message). */
  duplicated: number;
  /** Accepted, received once, but after a higher `n` of the same sender -> receiver pair. */
  reordered: number;
  /** Received although never sent (to this receiver, from this sender), or unparsable. */
  unexpected: number;
  /** Not accepted (failed or pending) yet received once: allowed, the outcome was unknown. */
  deliveredUnconfirmed: number;
  /** Sends that rejected, by error code. */
  failed: Record<string, number>;
  /** Sends neither resolved nor rejected when the run ended. */
  pending: number;
}

export interface ChaosReport {
  counts: ChaosCounts;
  /** A few examples of each bad class, for the failure message (`s1#17->r2@acme`). */
  examples: { lost: string[]; duplicated: string[]; reordered: string[]; unexpected: string[] };
}

const MAX_EXAMPLES = 5;

function label(s: string | undefined, n: number | undefined, to: string): string {
  return `${s ?? '?'}#${n ?? '?'}->${to}`;
}

/** Classifies every send against what the receivers printed. */
export function check(sent: readonly Sent[], received: readonly Received[]): ChaosReport {
  const bySn = new Map<string, Sent>();
  for (const m of sent) bySn.set(`${m.s}#${m.n}`, m);

  // Receipts per sent message; first receipts that came after a higher n of the same pair.
  const receipts = new Map<Sent, number>();
  const late = new Set<Sent>();
  const highest = new Map<string, number>(); // per `${s}>${receiver}`: highest n received so far
  const examples: ChaosReport['examples'] = { lost: [], duplicated: [], reordered: [], unexpected: [] };
  const note = (list: string[], what: string): void => {
    if (list.length < MAX_EXAMPLES) list.push(what);
  };
  let unexpected = 0;
  for (const r of received) {
    const m = r.s === undefined || r.n === undefined ? undefined : bySn.get(`${r.s}#${r.n}`);
    if (m === undefined || m.to !== r.receiver || m.to !== r.to || m.from !== r.from) {
      unexpected++;
      note(examples.unexpected, `${label(r.s, r.n, r.receiver)} from ${r.from}`);
      continue;
    }
    const count = (receipts.get(m) ?? 0) + 1;
    receipts.set(m, count);
    const pair = `${m.s}>${r.receiver}`;
    const top = highest.get(pair) ?? 0;
    if (count === 1 && top > m.n) late.add(m);
    if (m.n > top) highest.set(pair, m.n);
  }

  const counts: ChaosCounts = {
    accepted: 0,
    delivered: 0,
    lost: 0,
    duplicated: 0,
    reordered: 0,
    unexpected,
    deliveredUnconfirmed: 0,
    failed: {},
    pending: 0,
  };
  for (const m of sent) {
    const got = receipts.get(m) ?? 0;
    if (m.outcome === 'failed') {
      const code = m.code ?? 'unknown';
      counts.failed[code] = (counts.failed[code] ?? 0) + 1;
    } else if (m.outcome === 'pending') {
      counts.pending++;
    } else {
      counts.accepted++;
    }
    if (got > 1) {
      counts.duplicated++;
      note(examples.duplicated, `${label(m.s, m.n, m.to)} x${got}`);
      continue;
    }
    if (m.outcome !== 'accepted') {
      if (got === 1) counts.deliveredUnconfirmed++;
      continue;
    }
    if (got === 0) {
      counts.lost++;
      note(examples.lost, label(m.s, m.n, m.to));
    } else if (late.has(m)) {
      counts.reordered++;
      note(examples.reordered, label(m.s, m.n, m.to));
    } else {
      counts.delivered++;
    }
  }
  return { counts, examples };
}

/** Whether the run kept every promise: nothing lost, duplicated, reordered or unexpected. */
export function clean(c: ChaosCounts): boolean {
  return c.lost === 0 && c.duplicated === 0 && c.reordered === 0 && c.unexpected === 0;
}

/** One line: `chaos relay-kill: accepted=812 delivered=812 lost=0 ... failed-sends=3{ERR_X:3}`. */
export function formatCounts(scenario: string, c: ChaosCounts): string {
  const failedTotal = Object.values(c.failed).reduce((a, b) => a + b, 0);
  const codes = Object.entries(c.failed)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([code, k]) => `${code}:${k}`)
    .join(',');
  return (
    `chaos ${scenario}: accepted=${c.accepted} delivered=${c.delivered} lost=${c.lost} duplicated=${c.duplicated} ` +
    `reordered=${c.reordered} unexpected=${c.unexpected} delivered-unconfirmed=${c.deliveredUnconfirmed} ` +
    `failed-sends=${failedTotal}${failedTotal > 0 ? `{${codes}}` : ''} pending=${c.pending}`
  );
}
