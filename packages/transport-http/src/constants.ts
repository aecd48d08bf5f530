/** Defaults of LongPollServerOptions. docs/LIMITS.md lists each with its reason. */
export const LONG_POLL_SERVER_DEFAULTS = Object.freeze({
  /** One transport message is at most maxFrame + batch (1 MiB + 64 KiB by default), plus envelopes. */
  maxBodyBytes: 2 * 1024 * 1024,
  /** Under the 30 s or more after which proxies and NATs commonly drop an idle request. */
  pollTimeoutMs: 25_000,
  /** A client polls again at once; this much silence means it is gone. */
  sessionTimeoutMs: 30_000,
  maxSessions: 10_000,
  /** A session the server closed keeps its last bytes this long for the client to fetch. */
  closeTimeoutMs: 5_000,
});

/** Defaults of LongPollDialerOptions (the client half). */
export const LONG_POLL_CLIENT_DEFAULTS = Object.freeze({
  /** Added to the server's poll timeout before a poll without an answer is given up and sent again. */
  pollGraceMs: 10_000,
  /** close() waits this long for queued sends to leave before it ends the session anyway. */
  closeTimeoutMs: 2_000,
  /** First and longest wait between retries of a failed request. */
  retryInitialMs: 50,
  retryMaxMs: 2_000,
});

/** Defaults of AutoDialerOptions. */
export const AUTO_DIALER_DEFAULTS = Object.freeze({
  /** A WebSocket that has not opened by then is taken as blocked (at most half the dial's own timeout). */
  wsTimeoutMs: 5_000,
  probeIntervalMs: 30_000,
  maxProbeIntervalMs: 600_000,
  /** WebSocket links that break this many times in a row, each soon after opening, mean WebSocket does not work here. */
  wsFailures: 3,
  /** A WebSocket link that lasted this long proved WebSocket works. */
  wsStableMs: 10_000,
});
