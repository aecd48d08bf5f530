import { ProtocolError } from './errors.js';

/**
 * The body of a MSG flagged REPORT: what became of an earlier message.
 *
 *   u16 code    WireCode: OK (0) = delivered to the recipient's application; else why it was dropped
 *   u8  len     then `len` bytes: the earlier message's id (UTF-8)
 *   ...         the rest: a human-readable reason (UTF-8), empty for OK
 *
 * The report's `from` is the earlier message's recipient and its `to` the earlier sender, so
 * the pair (report.from, ref) names the message the report is about.
 */
export interface Report {
  code: number;
  ref: string;
  reason: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: false });

export function encodeReport(r: Report): Uint8Array {
  const reason = encoder.encode(r.reason);
  const ref = encoder.encode(r.ref);
  if (ref.length > 255) throw new ProtocolError('ERR_PROTOCOL', 'report ref longer than 255 bytes');
  const out = new Uint8Array(3 + ref.length + reason.length);
  out[0] = r.code >>> 8;
  out[1] = r.code & 0xff;
  out[2] = ref.length;
  out.set(ref, 3);
  out.set(reason, 3 + ref.length);
  return out;
}

/** Throws ERR_PROTOCOL on a body too short for its own lengths. */
export function decodeReport(body: Uint8Array): Report {
  if (body.length < 3) throw new ProtocolError('ERR_PROTOCOL', 'report body shorter than 3 bytes');
  const len = body[2]!;
  if (body.length < 3 + len) throw new ProtocolError('ERR_PROTOCOL', 'report ref runs past the body');
  const ref = decoder.decode(body.subarray(3, 3 + len));
  return { code: (body[0]! << 8) | body[1]!, ref, reason: decoder.decode(body.subarray(3 + len)) };
}
