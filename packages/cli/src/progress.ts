/** Counts of a run of sends, as the progress line and the summary show them. */
export interface SendCounts {
  /** Handed to the client. */
  sent: number;
  /** Accepted by the router (or with --receipt: delivered; volatile: written). */
  done: number;
  failed: number;
  /** What `done` means: accepted, delivered or sent. */
  doneWord: 'accepted' | 'delivered' | 'sent';
  elapsedMs: number;
}

function rate(c: SendCounts): string {
  const r = c.elapsedMs <= 0 ? 0 : (c.done * 1000) / c.elapsedMs;
  return `${r >= 100 ? Math.round(r) : r.toFixed(1)}/s`;
}

/** `sent 1200  accepted 1100  failed 0  850/s`: the line a terminal sees rewritten while sending. */
export function formatProgress(c: SendCounts): string {
  return `postern send: sent ${c.sent}  ${c.doneWord === 'sent' ? '' : `${c.doneWord} ${c.done}  `}failed ${c.failed}  ${rate(c)}`;
}

/** ` in 1.2 s (850/s)`: what the summary gains when a terminal watched the run. */
export function formatTiming(c: SendCounts): string {
  return ` in ${(c.elapsedMs / 1000).toFixed(1)} s (${rate(c)})`;
}

/**
 * A progress line on standard error, rewritten in place every `intervalMs`, for a terminal only:
 * a pipe or a file (or --quiet) gets nothing, so scripts see the same output as before.
 */
export class Progress {
  readonly #started = Date.now();
  readonly #timer: NodeJS.Timeout | undefined;
  #drawn = false;

  constructor(
    readonly counts: Omit<SendCounts, 'elapsedMs'>,
    readonly enabled: boolean,
    intervalMs = 250,
  ) {
    if (enabled) this.#timer = setInterval(() => this.#draw(), intervalMs);
  }

  snapshot(): SendCounts {
    return { ...this.counts, elapsedMs: Date.now() - this.#started };
  }

  #draw(): void {
    process.stderr.write(`\r\x1b[K${formatProgress(this.snapshot())}`);
    this.#drawn = true;
  }

  /** Stops and clears the line, so that what is printed next starts at the left margin. */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    if (this.#drawn) process.stderr.write('\r\x1b[K');
  }
}
