import type { Clock, Logger, UplinkStatus } from '@postern/core';

/**
 * A fenced link (DOMAIN_TAKEN: another router serves our domain at that relay) is closed right
 * after it comes up, and looks again every two seconds; its log must say so once, at error
 * level, not twice a retry. A link up that is not closed so within this long means the fence
 * is lifted: that is logged once too.
 */
const FENCE_LIFTED_MS = 3_000;

/**
 * Logs the fence of one uplink: returns true for the statuses it logged (or silenced) itself,
 * false for those the caller logs as usual.
 */
export function fenceLog(clock: Clock, log: Logger, url: string): (s: UplinkStatus) => boolean {
  let fenced = false;
  let timer: unknown;
  return (s) => {
    if (s.type === 'fenced') {
      clock.clearTimeout(timer);
      const fields = { url, reason: s.error.message, code: s.error.code, retry_ms: s.retryInMs };
      if (fenced) log.debug('uplink.still_fenced', 'still fenced', fields);
      else log.error('uplink.fenced', 'this router is fenced: another router serves its domain at the relay; standing by, and taking the domain when that one goes', fields);
      fenced = true;
      return true;
    }
    if (!fenced) return false;
    clock.clearTimeout(timer);
    if (s.type !== 'up') return false;
    log.debug('uplink.fence_check', 'uplink connected while fenced; checking whether the fence is lifted', { url });
    timer = clock.setTimeout(() => {
      fenced = false;
      log.info('uplink.fence_lifted', 'uplink connected: the fence is lifted, this router serves its domain at the relay now', { url, domain: s.domain });
    }, FENCE_LIFTED_MS);
    return true;
  };
}
