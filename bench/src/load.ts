// What every sender and receiver shares: payload layout, the throughput and paced loops, the
// receiver's counters, and the RSS sampler. Both systems run exactly this code; only the Sink
// (how one application message is handed to the system) differs.
import { setImmediate as immediate, setTimeout as sleep } from 'node:timers/promises';

/**
 * Payload layout (little endian): u64 send time (process.hrtime.bigint, ns), u32 sequence,
 * u8 kind, then padding up to the payload size.
 */
export const HEADER_BYTES = 13;
export const KIND_BULK = 0;
export const KIND_TIMED = 1;
export const KIND_PROBE = 2;

export function payload(size: number, kind: number, seq = 0): Uint8Array {
  const b = new Uint8Array(Math.max(size, HEADER_BYTES));
  const v = new DataView(b.buffer);
  v.setBigUint64(0, kind === KIND_TIMED ? process.hrtime.bigint() : 0n, true);
  v.setUint32(8, seq >>> 0, true);
  b[12] = kind;
  return b;
}

/** How a sender hands one application message to the system under test. */
export interface Sink {
  /** True when each send is acknowledged end to end (`settled` is called once it is). */
  readonly reliable: boolean;
  send(body: Uint8Array, settled: (ok: boolean) => void): void;
  /** Bytes queued in the sender's own transport and not yet written to the socket. */
  buffered(): number;
}

export interface ThroughputArgs {
  n: number;
  size: number;
  capMs: number;
  /** Pause while the sender's transport holds more than this many bytes. */
  highWaterBytes: number;
  /** Reliable sinks: sends awaiting their ack at once. */
  inFlight: number;
  /** Messages handed to the sink between two yields to the event loop. */
  batch: number;
  /** End-to-end window in messages (sent minus received by the receiver); 0 disables. */
  window: number;
}

export interface ThroughputResult {
  sent: number;
  /** Reliable: acknowledged; volatile: not counted (same as sent). */
  settled: number;
  failed: number;
  elapsedMs: number;
  /** Times the sender paused for its own transport buffer and for the end-to-end window. */
  pausesBuffered: number;
  pausesWindow: number;
  peakBufferedBytes: number;
}

async function until(cond: () => boolean, deadline: number): Promise<boolean> {
  while (!cond()) {
    if (Date.now() >= deadline) return false;
    await sleep(1);
  }
  return true;
}

/**
 * Pushes `n` messages as fast as the sink takes them, yielding to the event loop every
 * `batch` messages (so batched transports flush), pausing while the transport buffer is above
 * the high-water mark, and for reliable sinks keeping at most `inFlight` sends unacknowledged.
 */
export async function pushThroughput(sink: Sink, a: ThroughputArgs, received: () => number): Promise<ThroughputResult> {
  const body = payload(a.size, KIND_BULK);
  const start = Date.now();
  const deadline = start + a.capMs;
  let sent = 0;
  let settled = 0;
  let failed = 0;
  let pausesBuffered = 0;
  let pausesWindow = 0;
  let peakBuffered = 0;
  let wake: (() => void) | undefined;
  const onSettled = (ok: boolean): void => {
    settled++;
    if (!ok) failed++;
    const w = wake;
    wake = undefined;
    w?.();
  };
  const noop = (ok: boolean): void => {
    if (!ok) failed++;
  };
  while (sent < a.n && Date.now() < deadline) {
    const end = Math.min(a.n, sent + a.batch);
    if (sink.reliable) {
      while (sent < end && sent - settled < a.inFlight) {
        sink.send(body, onSettled);
        sent++;
      }
      if (sent - settled >= a.inFlight) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 100);
        });
      }
    } else {
      while (sent < end) {
        sink.send(body, noop);
        sent++;
      }
    }
    await immediate();
    const buffered = sink.buffered();
    if (buffered > peakBuffered) peakBuffered = buffered;
    if (buffered > a.highWaterBytes) {
      pausesBuffered++;
      await until(() => sink.buffered() <= a.highWaterBytes / 2, deadline);
    }
    if (a.window > 0 && sent - received() > a.window) {
      pausesWindow++;
      await until(() => sent - received() <= a.window / 2, deadline);
    }
  }
  if (sink.reliable) await until(() => settled >= sent, Date.now() + 10_000);
  return {
    sent,
    settled: sink.reliable ? settled : sent,
    failed,
    elapsedMs: Date.now() - start,
    pausesBuffered,
    pausesWindow,
    peakBufferedBytes: peakBuffered,
  };
}

export interface PacedArgs {
  rate: number;
  size: number;
  warmupMs: number;
  durationMs: number;
}

export interface PacedResult {
  sent: number;
  timed: number;
  failed: number;
  elapsedMs: number;
}

/**
 * Sends at a fixed rate: every millisecond tick, whatever is due by now, each message stamped
 * with its own send time. Messages of the warm-up are not timed.
 */
export async function pushPaced(sink: Sink, a: PacedArgs): Promise<PacedResult> {
  const total = Math.round((a.rate * (a.warmupMs + a.durationMs)) / 1000);
  const t0 = process.hrtime.bigint();
  const warmupNs = BigInt(a.warmupMs) * 1_000_000n;
  let sent = 0;
  let timed = 0;
  let failed = 0;
  const onSettled = (ok: boolean): void => {
    if (!ok) failed++;
  };
  const hardStop = Date.now() + a.warmupMs + a.durationMs + 5000;
  while (sent < total && Date.now() < hardStop) {
    const elapsed = process.hrtime.bigint() - t0;
    const due = Math.min(total, Math.floor((Number(elapsed) / 1e9) * a.rate));
    const kind = elapsed >= warmupNs ? KIND_TIMED : KIND_BULK;
    while (sent < due) {
      sink.send(payload(a.size, kind, sent), onSettled);
      if (kind === KIND_TIMED) timed++;
      sent++;
    }
    await sleep(1);
  }
  return { sent, timed, failed, elapsedMs: Number(process.hrtime.bigint() - t0) / 1e6 };
}

export interface Collected {
  received: number;
  probes: number;
  firstNs: string;
  lastNs: string;
  /** (received - 1) / (last - first): messages per second from first to last received. */
  msgPerSec: number;
  latency: { count: number; p50Us: number; p99Us: number; p999Us: number; maxUs: number; meanUs: number } | undefined;
}

/** The receiver's counters: every message goes through `onMessage`. */
export class Recorder {
  count = 0;
  probes = 0;
  #first = 0n;
  #last = 0n;
  #lastAt = 0;
  #lat: number[] = [];

  onMessage(b: Uint8Array): void {
    const kind = b[12];
    if (kind === KIND_PROBE) {
      this.probes++;
      return;
    }
    const now = process.hrtime.bigint();
    if (this.count === 0) this.#first = now;
    this.#last = now;
    this.count++;
    if (kind === KIND_TIMED) {
      const sentAt = new DataView(b.buffer, b.byteOffset, HEADER_BYTES).getBigUint64(0, true);
      this.#lat.push(Number(now - sentAt) / 1000);
    }
  }

  reset(): void {
    this.count = 0;
    this.probes = 0;
    this.#first = 0n;
    this.#last = 0n;
    this.#lat = [];
  }

  /** Waits until `expected` arrived, or nothing arrived for `idleMs`, or `maxWaitMs` passed. */
  async collect(expected: number, idleMs: number, maxWaitMs: number): Promise<Collected> {
    const stop = Date.now() + maxWaitMs;
    let seen = this.count;
    this.#lastAt = Date.now();
    while (this.count < expected && Date.now() < stop) {
      await sleep(5);
      if (this.count !== seen) {
        seen = this.count;
        this.#lastAt = Date.now();
      } else if (Date.now() - this.#lastAt >= idleMs) break;
    }
    const spanNs = Number(this.#last - this.#first);
    return {
      received: this.count,
      probes: this.probes,
      firstNs: this.#first.toString(),
      lastNs: this.#last.toString(),
      msgPerSec: this.count > 1 && spanNs > 0 ? ((this.count - 1) * 1e9) / spanNs : 0,
      latency: summarize(this.#lat),
    };
  }
}

export function summarize(xs: number[]): Collected['latency'] {
  if (xs.length === 0) return undefined;
  const s = Float64Array.from(xs).sort();
  const q = (p: number): number => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? 0;
  let sum = 0;
  for (const x of s) sum += x;
  return { count: s.length, p50Us: q(0.5), p99Us: q(0.99), p999Us: q(0.999), maxUs: s[s.length - 1] ?? 0, meanUs: sum / s.length };
}

export interface MemoryReport {
  /** Highest process.memoryUsage().rss seen by the 100 ms sampler, MiB. */
  peakRssMiB: number;
  /** process.resourceUsage().maxRSS at the time of the report, MiB. */
  maxRssMiB: number;
  rssNowMiB: number;
}

const MiB = 1024 * 1024;

/** Samples RSS every 100 ms for the life of the process. */
export function startRssSampler(): () => MemoryReport {
  let peak = process.memoryUsage.rss();
  const t = setInterval(() => {
    const r = process.memoryUsage.rss();
    if (r > peak) peak = r;
  }, 100);
  t.unref();
  return () => {
    const now = process.memoryUsage.rss();
    if (now > peak) peak = now;
    return { peakRssMiB: peak / MiB, maxRssMiB: process.resourceUsage().maxRSS / 1024, rssNowMiB: now / MiB };
  };
}
