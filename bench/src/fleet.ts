// Many agents in one process, for the active-agents bench (bench/dist/active.js): a paced load
// spread evenly over the agents of a process, and the receivers' counts that prove every message
// arrived once, in order, at the right agent. Payload: load.ts's header (send time, sequence,
// kind), then the sending agent's index (u32), padding up to the size.
import { setTimeout as sleep } from 'node:timers/promises';
import { HEADER_BYTES, KIND_BULK, KIND_TIMED, payload } from './load.js';

export const FLEET_HEADER_BYTES = HEADER_BYTES + 4;

/** Runs `fn(0)` .. `fn(n - 1)`, at most `concurrency` at once. */
export async function pool(n: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, n)) }, worker));
}

export interface FleetPacedArgs {
  /** Messages a second per agent. */
  rate: number;
  size: number;
  /** `process.hrtime.bigint()` at which to start, decimal: one clock for every process of the machine. */
  startNs: string;
  /** Sent but not timed, before the measured window. */
  warmupMs: number;
  durationMs: number;
  /** After the last send, how long to wait for the sends to settle. */
  settleWaitMs: number;
}

export interface FleetPacedResult {
  agents: number;
  sent: number;
  /** Scheduled in the measured window (after the warm-up): these carry their send time. */
  timed: number;
  settled: number;
  failed: number;
  /** Neither settled nor failed when the wait ended. */
  unsettled: number;
  /** Failed sends by error code. */
  errors: Record<string, number>;
  failedSample: string[];
  /** Sends per agent of this process. */
  perAgent: number[];
  /** From send() to its promise resolving, for the timed sends, µs (rounded). */
  settleUs: number[];
  /** How far the loop fell behind its schedule at most, ms: one that cannot keep up offers less than asked. */
  maxLagMs: number;
  /** `process.hrtime.bigint()` of the last send, decimal. */
  lastSendNs: string;
}

/**
 * Sends `rate` messages a second from each of `agents` agents, round robin (message k of the
 * process goes to agent k mod agents, as its sequence number floor(k / agents)), so each agent's
 * sends are 1/rate apart and the process's are spread evenly. Every ~1 ms tick sends what is
 * due. `send` is the system's reliable send; `from` is the index written into the payload.
 */
export async function pushFleet(send: (agent: number, body: Uint8Array) => Promise<unknown>, agents: number, from: (agent: number) => number, a: FleetPacedArgs): Promise<FleetPacedResult> {
  const perSec = agents * a.rate;
  const total = Math.round((perSec * (a.warmupMs + a.durationMs)) / 1000);
  const start = BigInt(a.startNs);
  const r: FleetPacedResult = { agents, sent: 0, timed: 0, settled: 0, failed: 0, unsettled: 0, errors: {}, failedSample: [], perAgent: new Array<number>(agents).fill(0), settleUs: [], maxLagMs: 0, lastSendNs: '0' };
  const untilStart = (): number => Number(start - process.hrtime.bigint()) / 1e6;
  const hardStop = Date.now() + Math.max(0, untilStart()) + a.warmupMs + a.durationMs + 5000;
  for (let w = untilStart(); w > 0; w = untilStart()) await sleep(Math.min(w, 50));
  let last = 0n;
  while (r.sent < total && Date.now() < hardStop) {
    const elapsedMs = Number(process.hrtime.bigint() - start) / 1e6;
    // Message k is due at k / perSec.
    const due = Math.min(total, Math.floor((elapsedMs / 1000) * perSec) + 1);
    if (due > r.sent) r.maxLagMs = Math.max(r.maxLagMs, elapsedMs - (r.sent / perSec) * 1000);
    while (r.sent < due) {
      const k = r.sent++;
      const agent = k % agents;
      const seq = Math.floor(k / agents);
      const timed = (k / perSec) * 1000 >= a.warmupMs;
      const body = payload(Math.max(a.size, FLEET_HEADER_BYTES), timed ? KIND_TIMED : KIND_BULK, seq);
      new DataView(body.buffer).setUint32(HEADER_BYTES, from(agent), true);
      r.perAgent[agent]!++;
      if (timed) r.timed++;
      const t = (last = process.hrtime.bigint());
      send(agent, body).then(
        () => {
          r.settled++;
          if (timed) r.settleUs.push(Math.round(Number(process.hrtime.bigint() - t) / 1000));
        },
        (err: unknown) => {
          r.failed++;
          const code = (err as { code?: unknown }).code;
          const key = typeof code === 'string' ? code : 'other';
          r.errors[key] = (r.errors[key] ?? 0) + 1;
          if (r.failedSample.length < 10) r.failedSample.push(`agent ${from(agent)} #${seq}: ${key} ${err instanceof Error ? err.message : String(err)}`);
        },
      );
    }
    await sleep(1);
  }
  r.lastSendNs = last.toString();
  const stop = Date.now() + a.settleWaitMs;
  while (r.settled + r.failed < r.sent && Date.now() < stop) await sleep(10);
  r.unsettled = r.sent - r.settled - r.failed;
  return r;
}

export interface FleetCollected {
  /** Messages taken from the SDK, duplicates included. */
  received: number;
  /** Received in the measured window (by receive time). */
  inWindow: number;
  expected: number;
  missing: number;
  missingSample: string[];
  duplicates: number;
  /** Arrived after a later message of the same sender. */
  reordered: number;
  /** From a sender other than this receiver's pair. */
  misrouted: number;
  /** A sequence number its sender did not send (or a payload too short to read). */
  unexpected: number;
  /** `process.hrtime.bigint()` of the last message received, decimal. */
  lastNs: string;
  /** Why the wait ended: all expected arrived, nothing arrived for idleMs (the rest is lost or stuck), or maxWaitMs passed while messages still came. */
  ended: 'complete' | 'idle' | 'max-wait';
  /** One-way latency of the timed messages, µs (rounded). */
  latencyUs: number[];
}

/**
 * What the receivers of one process got: receiver j of this process (index `first + j`) expects
 * messages from sender `first + j` only, sequence numbers 0, 1, ... each once and in order.
 */
export class FleetRecorder {
  readonly #first: number;
  #seen: Uint8Array[] = [];
  #maxSeq: Int32Array;
  #distinct = 0;
  #c = FleetRecorder.#empty();
  #fromNs = 0n;
  #toNs = 0n;
  #lastNs = 0n;

  constructor(first: number, count: number) {
    this.#first = first;
    this.#maxSeq = new Int32Array(count);
    this.arm('0', '0');
  }

  static #empty(): Omit<FleetCollected, 'expected' | 'missing' | 'missingSample' | 'lastNs' | 'ended'> {
    return { received: 0, inWindow: 0, duplicates: 0, reordered: 0, misrouted: 0, unexpected: 0, latencyUs: [] };
  }

  get received(): number {
    return this.#c.received;
  }

  /** Forgets all; messages received between `fromNs` and `toNs` count as in the window. */
  arm(fromNs: string, toNs: string): void {
    this.#seen = Array.from({ length: this.#maxSeq.length }, () => new Uint8Array(64));
    this.#maxSeq.fill(-1);
    this.#distinct = 0;
    this.#c = FleetRecorder.#empty();
    this.#fromNs = BigInt(fromNs);
    this.#toNs = BigInt(toNs);
    this.#lastNs = 0n;
  }

  onMessage(j: number, b: Uint8Array): void {
    const now = process.hrtime.bigint();
    const c = this.#c;
    c.received++;
    this.#lastNs = now;
    if (now >= this.#fromNs && now < this.#toNs) c.inWindow++;
    if (b.byteLength < FLEET_HEADER_BYTES) {
      c.unexpected++;
      return;
    }
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    if (v.getUint32(HEADER_BYTES, true) !== this.#first + j) {
      c.misrouted++;
      return;
    }
    const seq = v.getUint32(8, true);
    let seen = this.#seen[j]!;
    if (seq >= seen.length) {
      const grown = new Uint8Array(Math.max(seq + 1, seen.length * 2));
      grown.set(seen);
      seen = this.#seen[j] = grown;
    }
    if (seen[seq]! > 0) c.duplicates++;
    else this.#distinct++;
    seen[seq] = Math.min(255, seen[seq]! + 1);
    if (seq < this.#maxSeq[j]!) c.reordered++;
    else this.#maxSeq[j] = seq;
    if (b[12] === KIND_TIMED) c.latencyUs.push(Math.round(Number(now - v.getBigUint64(0, true)) / 1000));
  }

  /**
   * Waits until `expected[j]` distinct messages reached each receiver j, or nothing arrived for
   * `idleMs`, or `maxWaitMs` passed; then reports.
   */
  async collect(expected: number[], idleMs: number, maxWaitMs: number): Promise<FleetCollected> {
    const want = expected.reduce((x, y) => x + y, 0);
    const stop = Date.now() + maxWaitMs;
    let seen = this.#c.received;
    let lastAt = Date.now();
    let ended: FleetCollected['ended'] = 'max-wait';
    for (;;) {
      if (this.#distinct >= want) ended = 'complete';
      else if (Date.now() - lastAt >= idleMs) ended = 'idle';
      else if (Date.now() < stop) {
        await sleep(10);
        if (this.#c.received !== seen) {
          seen = this.#c.received;
          lastAt = Date.now();
        }
        continue;
      }
      break;
    }
    let missing = 0;
    let unexpected = this.#c.unexpected;
    const missingSample: string[] = [];
    expected.forEach((n, j) => {
      const s = this.#seen[j]!;
      for (let q = 0; q < Math.max(n, s.length); q++) {
        const got = s[q] ?? 0;
        if (q < n && got === 0) {
          missing++;
          if (missingSample.length < 10) missingSample.push(`from ${this.#first + j} #${q}`);
        } else if (q >= n && got > 0) unexpected++;
      }
    });
    return { ...this.#c, unexpected, expected: want, missing, missingSample, lastNs: this.#lastNs.toString(), ended };
  }
}
