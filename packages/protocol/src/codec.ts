import { DEFAULT_MAX_FRAME_BYTES, FRAME_HEADER_BYTES, FrameType, HandleOp, HomeOp, PresenceState, PropsOp, RouteOp, Role, WatchOp } from './constants.js';
import { ProtocolError } from './errors.js';
import type { Frame, HomeFrame, MsgFrame, PresenceFrame, Property } from './frames.js';

const encoder = new TextEncoder();
// ignoreBOM: a leading U+FEFF is part of the string, not a byte-order mark to drop.
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** What a writer holds before its first frame: nothing. */
const EMPTY = new Uint8Array(0);
/** take() keeps no buffer this small between batches (see take()). */
const HAND_OUT_BYTES = 1024;

/**
 * Appends frames to one growing buffer, so that many frames leave as one transport message.
 * `take()` hands out what was written and resets; the writer never shares memory with what it
 * returned. It holds no buffer until the first frame: a writer per connection costs an idle
 * connection nothing (issue 12).
 */
export class FrameWriter {
  #buf: Uint8Array = EMPTY;
  #pos = 0;
  /** The size of the next buffer: the initial size, or that of the last one handed out (batches tend to repeat their size). */
  #next: number;

  constructor(initialBytes = 16 * 1024) {
    this.#next = Math.max(64, initialBytes);
  }

  /** Bytes of the buffer held now (0 after a small batch was handed out, or before the first frame). */
  get capacity(): number {
    return this.#buf.length;
  }

  /** Bytes written since the last take(). */
  get length(): number {
    return this.#pos;
  }

  /** Appends one encoded frame. */
  frame(frame: Frame): void {
    const start = this.#begin(frame.type);
    try {
      this.#body(frame);
    } catch (err) {
      this.#pos = start;
      throw err;
    }
    this.#end(start);
  }

  /** Appends a MSG frame without building a frame object (the forwarding hot path). */
  msg(flags: number, hops: number, id: string, from: string, to: string, body: Uint8Array): void {
    const start = this.#begin(FrameType.MSG);
    try {
      this.#u8(flags);
      this.#u8(hops);
      this.#str8(id, 'id');
      this.#str8(from, 'from');
      this.#str8(to, 'to');
      this.#bytes(body);
    } catch (err) {
      this.#pos = start;
      throw err;
    }
    this.#end(start);
  }

  /** Appends already encoded, complete frames. */
  raw(bytes: Uint8Array): void {
    this.#ensure(bytes.length);
    this.#buf.set(bytes, this.#pos);
    this.#pos += bytes.length;
  }

  /** Overwrites one byte at an offset relative to the end (used to patch a forwarded hop count). */
  patchFromEnd(back: number, value: number): void {
    this.#buf[this.#pos - back] = value;
  }

  /**
   * Returns everything written as an array of its own and empties the writer. A small buffer (up
   * to 1 KiB) is not kept between batches, so a connection that writes a little now and then
   * holds none: when the batch fills at least half of it, it is handed out as it is (a view of
   * its first bytes, no copy), else the batch is copied out. Either way what is handed out pins
   * at most twice its length, for a transport that queues it. A larger buffer is copied out and
   * kept for the next batch (up to 4 MiB).
   */
  take(): Uint8Array {
    const buf = this.#buf;
    const n = this.#pos;
    this.#pos = 0;
    if (buf.length > HAND_OUT_BYTES) {
      const out = buf.slice(0, n);
      // Do not keep a huge buffer alive after a burst.
      if (buf.length > 4 * 1024 * 1024) this.#buf = EMPTY;
      return out;
    }
    this.#buf = EMPTY;
    if (n * 2 < buf.length) return buf.slice(0, n);
    if (buf.length > this.#next) this.#next = buf.length;
    return buf.subarray(0, n);
  }

  /** Lets go of the buffer when nothing is waiting in it (a connection gone quiet); the next frame allocates anew. */
  release(): void {
    if (this.#pos === 0) this.#buf = EMPTY;
  }

  #begin(type: number): number {
    const start = this.#pos;
    this.#ensure(FRAME_HEADER_BYTES);
    this.#pos += 4;
    this.#buf[this.#pos++] = type;
    return start;
  }

  #end(start: number): void {
    const len = this.#pos - start - 4;
    const b = this.#buf;
    b[start] = len >>> 24;
    b[start + 1] = (len >>> 16) & 0xff;
    b[start + 2] = (len >>> 8) & 0xff;
    b[start + 3] = len & 0xff;
  }

  #body(f: Frame): void {
    switch (f.type) {
      case FrameType.HELLO:
        this.#u8(f.version);
        this.#u8(f.role);
        this.#str16(f.token, 'token');
        this.#str8(f.resume, 'resume');
        this.#str8(f.name, 'name');
        this.#str8(f.node, 'node');
        this.#str8(f.agent, 'agent');
        this.#u32(f.maxFrame);
        // Version 2 trailers: a version 1 router ignores them (and refuses the version anyway).
        if (f.version >= 2) {
          this.#u32(f.features);
          this.#str8(f.nonce, 'nonce');
          this.#u8(f.link);
        }
        return;
      case FrameType.WELCOME:
        this.#u8(f.version);
        this.#str8(f.id, 'id');
        this.#str8(f.domain, 'domain');
        this.#str8(f.name, 'name');
        this.#str8(f.resume, 'resume');
        this.#str8(f.node, 'node');
        this.#u32(f.maxFrame);
        this.#u32(f.pingMs);
        if (f.version >= 2) {
          this.#u32(f.features);
          this.#str8(f.nonce, 'nonce');
          this.#str8(f.proof, 'proof');
        }
        return;
      case FrameType.REGISTER:
        this.#u32(f.ref);
        this.#str8(f.name, 'name');
        return;
      case FrameType.REGISTERED:
        this.#u32(f.ref);
        this.#u16(f.code);
        this.#str8(f.name, 'name');
        this.#str16(f.reason, 'reason');
        return;
      case FrameType.ROUTE:
        if (f.path.length > 255) throw new ProtocolError('ERR_PROTOCOL', 'ROUTE path longer than 255');
        this.#u8(f.op);
        this.#u8(f.metric);
        this.#str8(f.domain, 'domain');
        this.#u8(f.path.length);
        for (const p of f.path) this.#str8(p, 'path');
        // Trailing: written only when there is one, so a version 1 frame stays byte-identical.
        if (f.proof !== '' || (f.flags ?? 0) !== 0) this.#str16(f.proof, 'proof');
        if ((f.flags ?? 0) !== 0) this.#u8(f.flags!);
        return;
      case FrameType.AUTH:
        this.#str8(f.proof, 'proof');
        return;
      case FrameType.HOME:
        this.#u8(f.op);
        this.#u32(f.ref);
        this.#str8(f.local, 'local');
        this.#str8(f.id, 'id');
        this.#u32(f.since);
        return;
      case FrameType.HOMED:
        this.#u32(f.ref);
        this.#u16(f.code);
        this.#str16(f.reason, 'reason');
        return;
      case FrameType.WATCH:
        this.#u8(f.op);
        this.#str8(f.target, 'target');
        this.#str8(f.watcher, 'watcher');
        return;
      case FrameType.WATCHED:
        this.#str8(f.target, 'target');
        this.#str8(f.watcher, 'watcher');
        this.#u16(f.code);
        this.#str16(f.reason, 'reason');
        return;
      case FrameType.PRESENCE:
        this.#str8(f.target, 'target');
        this.#u8(f.state);
        this.#u32(f.since);
        this.#props(f.props);
        return;
      case FrameType.PROPS:
        this.#u32(f.ref);
        this.#u8(f.op);
        this.#props(f.props);
        return;
      case FrameType.PROPSET:
        this.#u32(f.ref);
        this.#u16(f.code);
        this.#str16(f.reason, 'reason');
        return;
      case FrameType.HANDLE:
        this.#u32(f.ref);
        this.#u8(f.op);
        this.#u32(f.ttl);
        this.#str8(f.address, 'address');
        return;
      case FrameType.HANDLED:
        this.#u32(f.ref);
        this.#u16(f.code);
        this.#str8(f.address, 'address');
        this.#u32(f.expires);
        this.#str16(f.reason, 'reason');
        return;
      case FrameType.MSG:
        this.#u8(f.flags);
        this.#u8(f.hops);
        this.#str8(f.id, 'id');
        this.#str8(f.from, 'from');
        this.#str8(f.to, 'to');
        this.#bytes(f.body);
        return;
      case FrameType.ACK:
      case FrameType.HELD:
        this.#str8(f.id, 'id');
        this.#str8(f.from, 'from');
        return;
      case FrameType.NACK:
        this.#u16(f.code);
        this.#str8(f.id, 'id');
        this.#str8(f.from, 'from');
        this.#str16(f.reason, 'reason');
        return;
      case FrameType.RELEASE:
        this.#u32(f.count);
        return;
      case FrameType.ACKS:
        this.#u32(f.first);
        this.#u32(f.count);
        return;
      case FrameType.PING:
      case FrameType.PONG:
        this.#u32(f.nonce);
        return;
      case FrameType.CLOSE:
        this.#u16(f.code);
        this.#str16(f.reason, 'reason');
        return;
    }
  }

  #ensure(n: number): void {
    const need = this.#pos + n;
    if (need <= this.#buf.length) return;
    let size = Math.max(this.#next, this.#buf.length * 2);
    while (size < need) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(0, this.#pos));
    this.#buf = next;
  }

  #props(props: readonly Property[]): void {
    if (props.length > 0xffff) throw new ProtocolError('ERR_PROTOCOL', 'more than 65535 properties');
    this.#u16(props.length);
    for (const p of props) {
      this.#str8(p.key, 'property key');
      this.#str16(p.value, 'property value');
    }
  }

  #u8(v: number): void {
    this.#ensure(1);
    this.#buf[this.#pos++] = v & 0xff;
  }

  #u16(v: number): void {
    this.#ensure(2);
    this.#buf[this.#pos++] = (v >>> 8) & 0xff;
    this.#buf[this.#pos++] = v & 0xff;
  }

  #u32(v: number): void {
    this.#ensure(4);
    const b = this.#buf;
    b[this.#pos++] = v >>> 24;
    b[this.#pos++] = (v >>> 16) & 0xff;
    b[this.#pos++] = (v >>> 8) & 0xff;
    b[this.#pos++] = v & 0xff;
  }

  #bytes(v: Uint8Array): void {
    this.#ensure(v.length);
    this.#buf.set(v, this.#pos);
    this.#pos += v.length;
  }

  #str8(s: string, field: string): void {
    this.#str(s, 1, 0xff, field);
  }

  #str16(s: string, field: string): void {
    this.#str(s, 2, 0xffff, field);
  }

  // Addresses and ids are short ASCII: copy char codes directly, fall back to UTF-8 otherwise.
  #str(s: string, prefix: 1 | 2, max: number, field: string): void {
    const n = s.length;
    this.#ensure(prefix + n);
    const b = this.#buf;
    const at = this.#pos + prefix;
    let ascii = n <= max;
    if (ascii) {
      for (let i = 0; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) {
          ascii = false;
          break;
        }
        b[at + i] = c;
      }
    }
    let len = n;
    if (!ascii) {
      const utf8 = encoder.encode(s);
      len = utf8.length;
      if (len > max) throw new ProtocolError('ERR_PROTOCOL', `${field} is ${len} bytes; at most ${max} fit`);
      this.#ensure(prefix + len);
      this.#buf.set(utf8, this.#pos + prefix);
    }
    if (prefix === 1) this.#buf[this.#pos] = len;
    else {
      this.#buf[this.#pos] = len >>> 8;
      this.#buf[this.#pos + 1] = len & 0xff;
    }
    this.#pos += prefix + len;
  }
}

/** Encodes one frame (header included) into a new array. */
export function encodeFrame(frame: Frame): Uint8Array {
  const w = new FrameWriter(64);
  w.frame(frame);
  return w.take();
}

/** Encodes frames back to back: the body of one transport message or long-poll response. */
export function encodeBatch(frames: readonly Frame[]): Uint8Array {
  const w = new FrameWriter();
  for (const f of frames) w.frame(f);
  return w.take();
}

/** Decodes a whole batch; throws ProtocolError if it does not end on a frame boundary. */
export function decodeBatch(bytes: Uint8Array, maxFrameBytes = DEFAULT_MAX_FRAME_BYTES): Frame[] {
  const out: Frame[] = [];
  const d = new FrameDecoder({ maxFrameBytes });
  d.push(bytes, (f) => out.push(f));
  if (d.bufferedBytes !== 0) throw new ProtocolError('ERR_PROTOCOL', 'batch ends inside a frame');
  return out;
}

function readProps(r: Reader): Property[] {
  const n = r.u16();
  const props: Property[] = [];
  for (let i = 0; i < n; i++) props.push({ key: r.str8(), value: r.str16() });
  return props;
}

class Reader {
  pos: number;
  constructor(
    readonly b: Uint8Array,
    start: number,
    readonly end: number,
    readonly what: string,
  ) {
    this.pos = start;
  }
  #need(n: number): void {
    if (this.pos + n > this.end) throw new ProtocolError('ERR_PROTOCOL', `truncated ${this.what} frame`);
  }
  u8(): number {
    this.#need(1);
    return this.b[this.pos++]!;
  }
  u16(): number {
    this.#need(2);
    const b = this.b;
    const v = (b[this.pos]! << 8) | b[this.pos + 1]!;
    this.pos += 2;
    return v;
  }
  u32(): number {
    this.#need(4);
    const b = this.b;
    const p = this.pos;
    this.pos += 4;
    return ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;
  }
  str8(): string {
    return this.#str(this.u8());
  }
  /** A str8 that repeats from frame to frame (an address): the same string object each time. */
  addr8(): string {
    const len = this.u8();
    this.#need(len);
    const start = this.pos;
    if (len > INTERN_MAX) return this.#str(len);
    const b = this.b;
    let h = len;
    for (let i = start; i < start + len; i++) {
      const c = b[i]!;
      if (c >= 0x80) return this.#str(len);
      h = Math.imul(h ^ c, 0x01000193);
    }
    const slot = (h >>> 0) & (INTERN_SLOTS - 1);
    const hit = interned[slot];
    if (hit !== undefined && hit.length === len) {
      let same = true;
      for (let i = 0; i < len; i++) {
        if (hit.charCodeAt(i) !== b[start + i]) {
          same = false;
          break;
        }
      }
      if (same) {
        this.pos += len;
        return hit;
      }
    }
    const str = this.#str(len);
    interned[slot] = str;
    return str;
  }
  str16(): string {
    return this.#str(this.u16());
  }
  rest(): Uint8Array {
    const v = this.b.subarray(this.pos, this.end);
    this.pos = this.end;
    return v;
  }
  #str(len: number): string {
    this.#need(len);
    const b = this.b;
    const start = this.pos;
    this.pos += len;
    if (len <= 128) {
      for (let i = start; i < start + len; i++) if (b[i]! >= 0x80) return this.#utf8(start, len);
      // One flat string: concatenating char by char builds a rope that every Map lookup must
      // flatten again, and addresses are looked up at every hop.
      return String.fromCharCode.apply(null, b.subarray(start, start + len) as unknown as number[]);
    }
    return this.#utf8(start, len);
  }
  #utf8(start: number, len: number): string {
    try {
      return decoder.decode(this.b.subarray(start, start + len));
    } catch (cause) {
      throw new ProtocolError('ERR_PROTOCOL', `invalid UTF-8 in ${this.what} frame`, { cause });
    }
  }
}

/**
 * Addresses decoded recently, by a hash of their bytes (direct-mapped, last one wins): a router
 * or client decodes the same few senders and recipients in every MSG, and handing out the same
 * string object saves its allocation and lets every Map lookup by it reuse its cached hash.
 */
const INTERN_SLOTS = 1024;
const INTERN_MAX = 64;
const interned: Array<string | undefined> = new Array<string | undefined>(INTERN_SLOTS).fill(undefined);

const names: Record<number, string> = Object.fromEntries(
  Object.entries(FrameType).map(([k, v]) => [v, k]),
);

/** Decodes the frame whose type byte is at `start` and whose last byte is at `end - 1`. */
export function decodeFrameAt(bytes: Uint8Array, start: number, end: number): Frame {
  const type = bytes[start]!;
  const name = names[type];
  if (name === undefined) {
    throw new ProtocolError('ERR_PROTOCOL', `unknown frame type 0x${type.toString(16).padStart(2, '0')}`);
  }
  const r = new Reader(bytes, start + 1, end, name);
  switch (type) {
    case FrameType.MSG: {
      const flags = r.u8();
      const hops = r.u8();
      const id = r.str8();
      const from = r.addr8();
      const to = r.addr8();
      const f: MsgFrame = { type: FrameType.MSG, flags, hops, id, from, to, body: r.rest() };
      return f;
    }
    case FrameType.ACK:
      return { type: FrameType.ACK, id: r.str8(), from: r.addr8() };
    case FrameType.HELD:
      return { type: FrameType.HELD, id: r.str8(), from: r.str8() };
    case FrameType.NACK:
      return { type: FrameType.NACK, code: r.u16(), id: r.str8(), from: r.str8(), reason: r.str16() };
    case FrameType.RELEASE:
      return { type: FrameType.RELEASE, count: r.u32() };
    case FrameType.ACKS: {
      const first = r.u32();
      const count = r.u32();
      if (first === 0 || count === 0 || first + count - 1 > 0xffffffff) throw new ProtocolError('ERR_PROTOCOL', `ACKS names no message numbers (first ${first}, count ${count})`);
      return { type: FrameType.ACKS, first, count };
    }
    case FrameType.PING:
      return { type: FrameType.PING, nonce: r.u32() };
    case FrameType.PONG:
      return { type: FrameType.PONG, nonce: r.u32() };
    case FrameType.HELLO: {
      const version = r.u8();
      const role = r.u8();
      if (role !== Role.AGENT && role !== Role.ROUTER) throw new ProtocolError('ERR_PROTOCOL', `unknown role ${role}`);
      const token = r.str16();
      const resume = r.str8();
      const name = r.str8();
      const node = r.str8();
      const agent = r.str8();
      // Optional trailing fields: older dialers end after `agent`, version 1 after `maxFrame`.
      const maxFrame = r.pos < r.end ? r.u32() : DEFAULT_MAX_FRAME_BYTES;
      const v2 = r.pos < r.end;
      return {
        type: FrameType.HELLO,
        version,
        role,
        token,
        resume,
        name,
        node,
        agent,
        maxFrame,
        features: v2 ? r.u32() : 0,
        nonce: v2 ? r.str8() : '',
        link: v2 ? r.u8() : 0,
      };
    }
    case FrameType.WELCOME: {
      const version = r.u8();
      const id = r.str8();
      const domain = r.str8();
      const name = r.str8();
      const resume = r.str8();
      const node = r.str8();
      const maxFrame = r.u32();
      const pingMs = r.u32();
      const v2 = r.pos < r.end;
      return {
        type: FrameType.WELCOME,
        version,
        id,
        domain,
        name,
        resume,
        node,
        maxFrame,
        pingMs,
        features: v2 ? r.u32() : 0,
        nonce: v2 ? r.str8() : '',
        proof: v2 ? r.str8() : '',
      };
    }
    case FrameType.AUTH:
      return { type: FrameType.AUTH, proof: r.str8() };
    case FrameType.HOME: {
      const op = r.u8();
      if (op < HomeOp.CLAIM || op > HomeOp.SETTLED) throw new ProtocolError('ERR_PROTOCOL', `unknown HOME op ${op}`);
      return { type: FrameType.HOME, op: op as HomeFrame['op'], ref: r.u32(), local: r.str8(), id: r.str8(), since: r.u32() };
    }
    case FrameType.HOMED:
      return { type: FrameType.HOMED, ref: r.u32(), code: r.u16(), reason: r.str16() };
    case FrameType.WATCH: {
      const op = r.u8();
      if (op !== WatchOp.WATCH && op !== WatchOp.UNWATCH) throw new ProtocolError('ERR_PROTOCOL', `unknown WATCH op ${op}`);
      return { type: FrameType.WATCH, op, target: r.str8(), watcher: r.str8() };
    }
    case FrameType.WATCHED:
      return { type: FrameType.WATCHED, target: r.str8(), watcher: r.str8(), code: r.u16(), reason: r.str16() };
    case FrameType.PRESENCE: {
      const target = r.str8();
      const state = r.u8();
      if (state < PresenceState.ONLINE || state > PresenceState.UNREACHABLE) throw new ProtocolError('ERR_PROTOCOL', `unknown PRESENCE state ${state}`);
      return { type: FrameType.PRESENCE, target, state: state as PresenceFrame['state'], since: r.u32(), props: readProps(r) };
    }
    case FrameType.PROPS: {
      const ref = r.u32();
      const op = r.u8();
      if (op !== PropsOp.SET && op !== PropsOp.ALLOW) throw new ProtocolError('ERR_PROTOCOL', `unknown PROPS op ${op}`);
      return { type: FrameType.PROPS, ref, op: op, props: readProps(r) };
    }
    case FrameType.PROPSET:
      return { type: FrameType.PROPSET, ref: r.u32(), code: r.u16(), reason: r.str16() };
    case FrameType.HANDLE: {
      const ref = r.u32();
      const op = r.u8();
      if (op !== HandleOp.PSEUDONYM && op !== HandleOp.WRAP) throw new ProtocolError('ERR_PROTOCOL', `unknown HANDLE op ${op}`);
      return { type: FrameType.HANDLE, ref, op, ttl: r.u32(), address: r.str8() };
    }
    case FrameType.HANDLED:
      return { type: FrameType.HANDLED, ref: r.u32(), code: r.u16(), address: r.str8(), expires: r.u32(), reason: r.str16() };
    case FrameType.REGISTER:
      return { type: FrameType.REGISTER, ref: r.u32(), name: r.str8() };
    case FrameType.REGISTERED:
      return { type: FrameType.REGISTERED, ref: r.u32(), code: r.u16(), name: r.str8(), reason: r.str16() };
    case FrameType.ROUTE: {
      const op = r.u8();
      if (op !== RouteOp.ADD && op !== RouteOp.WITHDRAW) throw new ProtocolError('ERR_PROTOCOL', `unknown ROUTE op ${op}`);
      const metric = r.u8();
      const domain = r.str8();
      const n = r.u8();
      const path: string[] = [];
      for (let i = 0; i < n; i++) path.push(r.str8());
      const proof = r.pos < r.end ? r.str16() : '';
      // Trailing flags (PROTOCOL.md 7.6): present only when the sender set one.
      return r.pos < r.end ? { type: FrameType.ROUTE, op, metric, domain, path, proof, flags: r.u8() } : { type: FrameType.ROUTE, op, metric, domain, path, proof };
    }
    case FrameType.CLOSE:
      return { type: FrameType.CLOSE, code: r.u16(), reason: r.str16() };
    default:
      throw new ProtocolError('ERR_PROTOCOL', `unknown frame type 0x${type.toString(16)}`);
  }
}

export interface FrameDecoderOptions {
  /** @default 1 MiB (DEFAULT_MAX_FRAME_BYTES) */
  maxFrameBytes?: number;
}

/**
 * Incremental decoder: feed it bytes split anywhere, it calls back once per complete frame.
 * A decoded MSG body and the raw frame are views into the pushed bytes (no copy): the caller
 * must not reuse a pushed buffer while it holds them. After it throws, the decoder is broken
 * and the connection must be closed.
 */
export class FrameDecoder {
  readonly #max: number;
  /** The start of a frame (in pieces) while it is incomplete; made when needed. */
  #chunks: Uint8Array[] | undefined;
  #queued = 0;
  #need = FRAME_HEADER_BYTES;

  constructor(options: FrameDecoderOptions = {}) {
    this.#max = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  }

  /** Bytes held that do not yet make a whole frame. */
  get bufferedBytes(): number {
    return this.#queued;
  }

  push(chunk: Uint8Array, onFrame: (frame: Frame, raw: Uint8Array) => void): void {
    let bytes = chunk;
    if (this.#queued > 0) {
      const chunks = (this.#chunks ??= []);
      chunks.push(chunk);
      this.#queued += chunk.length;
      if (this.#queued < this.#need) return;
      bytes = concat(chunks, this.#queued);
      this.#chunks = undefined;
      this.#queued = 0;
    }
    let pos = 0;
    const n = bytes.length;
    while (n - pos >= 4) {
      const len = ((bytes[pos]! << 24) | (bytes[pos + 1]! << 16) | (bytes[pos + 2]! << 8) | bytes[pos + 3]!) >>> 0;
      if (len === 0) throw new ProtocolError('ERR_PROTOCOL', 'frame of length 0 has no type');
      if (len > this.#max) {
        throw new ProtocolError('ERR_FRAME_TOO_LARGE', `frame of ${len} bytes exceeds the limit of ${this.#max}`);
      }
      const end = pos + 4 + len;
      if (end > n) {
        this.#need = 4 + len;
        break;
      }
      onFrame(decodeFrameAt(bytes, pos + 4, end), bytes.subarray(pos, end));
      pos = end;
    }
    if (pos < n) {
      // With fewer than 4 bytes, the length is not known yet: ask for exactly those 4.
      if (n - pos < 4) this.#need = 4;
      const rest = bytes.subarray(pos);
      this.#chunks = [rest];
      this.#queued = rest.length;
    } else {
      this.#need = FRAME_HEADER_BYTES;
    }
  }
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
