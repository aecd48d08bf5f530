import type { Clock, Logger, UplinkStatus } from '@postern/core';

/** While a link is down: the first reminder after this long, then each one twice as late, up to LINK_REMINDER_MAX_MS. */
export const LINK_REMINDER_FIRST_MS = 60_000;
export const LINK_REMINDER_MAX_MS = 15 * 60_000;
/** A reason longer than this is cut: a log line is read by people, the whole chain is at debug level. */
const MAX_REASON = 300;

function short(reason: string): string {
  return reason.length <= MAX_REASON ? reason : `${reason.slice(0, MAX_REASON - 1)}…`;
}

/**
 * Logs the life of one link this router dials (an uplink, a bridgehead link of a hub, a peer):
 * one WARN when it goes down (again when the reason changes), one INFO when it comes back, with
 * how long it was down and how many attempts it took; in between a reminder at most every
 * LINK_REMINDER_FIRST_MS, doubling up to LINK_REMINDER_MAX_MS, never a line per retry (those
 * are at debug level).
 */
export function linkLog(clock: Clock, log: Logger, kind: 'uplink' | 'peer', label: string, url: string): (s: UplinkStatus) => void {
  const down = kind === 'uplink' ? 'uplink.down' : 'peer.down';
  const still = kind === 'uplink' ? 'uplink.still_down' : 'peer.still_down';
  const upEvent = kind === 'uplink' ? 'uplink.up' : 'peer.up';
  let since: number | undefined;
  let attempts = 0;
  let lastCode = '';
  let every = LINK_REMINDER_FIRST_MS;
  let remindAt = 0;
  return (s) => {
    const now = clock.now();
    if (s.type === 'down') {
      const code = `${s.error.code}${s.refused ? ' refused' : ''}`;
      const fields = { url, code: s.error.code, reason: short(s.error.message), retry_ms: s.retryInMs };
      if (since === undefined || code !== lastCode) {
        const changed = since !== undefined;
        if (since === undefined) {
          since = now;
          attempts = 0;
          every = LINK_REMINDER_FIRST_MS;
          remindAt = now + every;
        }
        attempts++;
        lastCode = code;
        // The message stays short and fixed ("uplink down", "peer refused"): people and scripts
        // match on it; what changes is in the fields.
        log.warn(down, `${label} ${s.refused ? 'refused' : 'down'}`, changed ? { ...fields, reason_changed: true, down_ms: now - since } : fields);
        return;
      }
      attempts++;
      if (now >= remindAt) {
        every = Math.min(every * 2, LINK_REMINDER_MAX_MS);
        remindAt = now + every;
        log.warn(still, `${label} still down`, { url, down_ms: now - since, attempts, code: s.error.code, reason: fields.reason });
      } else {
        log.debug(down, `${label} still down, retrying`, { ...fields, reason: s.error.message, attempts });
      }
      return;
    }
    if (s.type === 'up') {
      const fields = kind === 'uplink' ? { url, domain: s.domain } : { url, node: s.node, domain: s.domain };
      if (since === undefined) log.info(upEvent, `${label} connected`, fields);
      else log.info(upEvent, `${label} connected`, { ...fields, down_ms: now - since, attempts });
      since = undefined;
      lastCode = '';
      return;
    }
    if (s.type === 'standby') log.info('peer.standby', `${label} linked from its side; not dialing meanwhile`, { url, node: s.node });
  };
}
