// Reading what a tap (tap.ts) recorded: its connections, the WebSocket messages inside each
// direction (the HTTP upgrade first; frames from the client are masked and get unmasked), and
// the Postern frames inside those (FrameDecoder). Pure functions, no I/O.
import { FrameDecoder, FrameType, type Frame } from '@postern/protocol';

/** One connection through a tap, its bytes per direction in order. */
export interface TapConnection {
  n: number;
  /** The client's address, `IP:PORT`. */
  from: string;
  /** The tap's own end towards the target, `IP:PORT` (what the target saw as the client). */
  via: string;
  /** Client to target. */
  up: Uint8Array;
  /** Target to client. */
  down: Uint8Array;
}

/** The connections in a tap's output (its stdout), in the order they opened. */
export function tapConnections(output: string): TapConnection[] {
  const conns = new Map<number, { n: number; from: string; via: string; up: Buffer[]; down: Buffer[] }>();
  for (const line of output.split('\n')) {
    const open = /^tap: open (\d+) from (\S+) via (\S+)$/.exec(line);
    if (open !== null) {
      conns.set(Number(open[1]), { n: Number(open[1]), from: open[2]!, via: open[3]!, up: [], down: [] });
      continue;
    }
    const data = /^tap: (\d+) ([<>]) ([A-Za-z0-9+/=]*)$/.exec(line);
    const c = data === null ? undefined : conns.get(Number(data[1]));
    if (c === undefined) continue;
    (data![2] === '>' ? c.up : c.down).push(Buffer.from(data![3]!, 'base64'));
  }
  return [...conns.values()].map((c) => ({ n: c.n, from: c.from, via: c.via, up: Buffer.concat(c.up), down: Buffer.concat(c.down) }));
}

/** One direction of a WebSocket connection: the HTTP head before it, and the data messages after. */
export interface WebSocketStream {
  /** The HTTP request or response before the frames ('' when there is none). */
  head: string;
  /** Binary and text messages, reassembled from fragments and unmasked. */
  messages: Uint8Array[];
  /** Control frames seen (close, ping, pong). */
  control: number;
  /** Bytes at the end that make no whole frame (a connection cut mid-frame). */
  trailing: number;
}

/** Splits one direction's bytes into its HTTP head and WebSocket messages (RFC 6455 section 5). */
export function decodeWebSocket(bytes: Uint8Array): WebSocketStream {
  let pos = 0;
  let head = '';
  const start = Buffer.from(bytes.subarray(0, Math.min(bytes.length, 16))).toString('latin1');
  if (/^(GET |HTTP\/1\.[01] )/.test(start)) {
    const end = Buffer.from(bytes).indexOf('\r\n\r\n');
    if (end < 0) return { head: Buffer.from(bytes).toString('latin1'), messages: [], control: 0, trailing: 0 };
    head = Buffer.from(bytes.subarray(0, end)).toString('latin1');
    pos = end + 4;
    // A refused upgrade: what follows is an HTTP body, not frames.
    if (head.startsWith('HTTP/') && !/^HTTP\/1\.[01] 101/.test(head)) return { head, messages: [], control: 0, trailing: bytes.length - pos };
  }
  const messages: Uint8Array[] = [];
  let parts: Uint8Array[] | undefined;
  let control = 0;
  while (bytes.length - pos >= 2) {
    const b0 = bytes[pos]!;
    const b1 = bytes[pos + 1]!;
    let len = b1 & 0x7f;
    let at = pos + 2;
    if (len === 126) {
      if (bytes.length - at < 2) break;
      len = (bytes[at]! << 8) | bytes[at + 1]!;
      at += 2;
    } else if (len === 127) {
      if (bytes.length - at < 8) break;
      len = Number(Buffer.from(bytes.subarray(at, at + 8)).readBigUInt64BE());
      at += 8;
    }
    const masked = (b1 & 0x80) !== 0;
    const mask = masked ? bytes.subarray(at, at + 4) : undefined;
    if (masked) at += 4;
    if (at + len > bytes.length) break;
    const payload = new Uint8Array(bytes.subarray(at, at + len));
    if (mask !== undefined) for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i & 3]!;
    pos = at + len;
    const fin = (b0 & 0x80) !== 0;
    const op = b0 & 0x0f;
    if (op >= 8) {
      control++;
      continue;
    }
    if (op !== 0) parts = [];
    if (parts === undefined) continue; // a continuation without a start: not ours to guess
    parts.push(payload);
    if (fin) {
      messages.push(Buffer.concat(parts));
      parts = undefined;
    }
  }
  return { head, messages, control, trailing: bytes.length - pos };
}

/** The Postern frames in one direction's WebSocket messages (one decoder: a frame never spans messages, but it may). */
export function decodeFrames(messages: readonly Uint8Array[]): Frame[] {
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  for (const m of messages) {
    // The decoder keeps views of what it is given: give it copies.
    decoder.push(new Uint8Array(m), (f) => frames.push(copyFrame(f)));
  }
  return frames;
}

function copyFrame(f: Frame): Frame {
  return f.type === FrameType.MSG ? { ...f, body: new Uint8Array(f.body) } : { ...f };
}

/** Both directions of a tapped connection, decoded. */
export interface WireConnection extends TapConnection {
  upHead: string;
  downHead: string;
  /** Frames from the client (towards the target), in order. */
  upFrames: Frame[];
  /** Frames from the target (towards the client), in order. */
  downFrames: Frame[];
}

/** Decodes a tapped WebSocket connection carrying Postern frames. */
export function decodeConnection(c: TapConnection): WireConnection {
  const up = decodeWebSocket(c.up);
  const down = decodeWebSocket(c.down);
  return { ...c, upHead: up.head, downHead: down.head, upFrames: decodeFrames(up.messages), downFrames: decodeFrames(down.messages) };
}

const utf8 = new TextDecoder();

/** Every text a frame carries (string fields, list items, a MSG body as UTF-8); numbers left out. */
export function frameTexts(f: Frame): string[] {
  const out: string[] = [];
  for (const v of Object.values(f)) {
    if (typeof v === 'string') {
      out.push(v);
    } else if (Array.isArray(v)) {
      for (const x of v) if (typeof x === 'string') out.push(x);
    } else if (v instanceof Uint8Array) {
      out.push(utf8.decode(v));
    }
  }
  return out;
}

/** The name of a frame type (MSG, ROUTE, ...), for reports. */
export function frameName(f: Frame): string {
  return Object.entries(FrameType).find(([, v]) => v === f.type)?.[0] ?? `0x${f.type.toString(16)}`;
}
