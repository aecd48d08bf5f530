// Request/response over the IPC channel of child_process.fork: the parent drives, each child
// answers. Children may also emit events (progress, errors) that the parent routes.
import type { ChildProcess } from 'node:child_process';

export interface Request {
  kind: 'req';
  id: number;
  cmd: string;
  args: unknown;
}

export interface Response {
  kind: 'res';
  id: number;
  ok: boolean;
  value?: unknown;
  error?: string;
}

export interface Event {
  kind: 'event';
  name: string;
  data: unknown;
}

export type Message = Request | Response | Event;

function isMessage(m: unknown): m is Message {
  return typeof m === 'object' && m !== null && typeof (m as { kind?: unknown }).kind === 'string';
}

/** The parent's handle on one child: `call` sends a command and awaits its answer. */
export class Peer {
  readonly role: string;
  readonly proc: ChildProcess;
  readonly #pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void; timer: NodeJS.Timeout }>();
  readonly #listeners = new Map<string, (data: unknown) => void>();
  #next = 0;
  #exited: string | undefined;

  constructor(role: string, proc: ChildProcess) {
    this.role = role;
    this.proc = proc;
    proc.on('message', (m: unknown) => {
      if (!isMessage(m)) return;
      if (m.kind === 'res') {
        const p = this.#pending.get(m.id);
        if (p === undefined) return;
        this.#pending.delete(m.id);
        clearTimeout(p.timer);
        if (m.ok) p.resolve(m.value);
        else p.reject(new Error(`${this.role}: ${m.error ?? 'failed'}`));
      } else if (m.kind === 'event') {
        this.#listeners.get(m.name)?.(m.data);
      }
    });
    proc.on('exit', (code, signal) => {
      this.#exited = `${this.role} exited (code ${String(code)}, signal ${String(signal)})`;
      for (const p of this.#pending.values()) {
        clearTimeout(p.timer);
        p.reject(new Error(this.#exited));
      }
      this.#pending.clear();
    });
  }

  get alive(): boolean {
    return this.#exited === undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  on(name: string, fn: (data: unknown) => void): void {
    this.#listeners.set(name, fn);
  }

  /** Resolves once the child emits 'ready' (child.js does when its role is set up); rejects if it exits first or takes longer than `timeoutMs`. */
  ready(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${this.role} did not start within ${timeoutMs / 1000} s`)), timeoutMs);
      this.on('ready', () => {
        clearTimeout(t);
        resolve();
      });
      this.proc.once('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`${this.role} exited during start (code ${String(code)})`));
      });
    });
  }

  /** Sends an event the child handles without answering (e.g. credit for the sender). */
  notify(name: string, data: unknown): void {
    if (!this.alive || !this.proc.connected) return;
    const e: Event = { kind: 'event', name, data };
    this.proc.send(e);
  }

  call<T>(cmd: string, args: unknown, timeoutMs: number): Promise<T> {
    if (!this.alive) return Promise.reject(new Error(this.#exited ?? `${this.role} is not running`));
    const id = ++this.#next;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`${this.role}: "${cmd}" did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      const r: Request = { kind: 'req', id, cmd, args };
      this.proc.send(r);
    });
  }
}

/**
 * Asks each peer to exit (so that it closes its servers and removes its temp dirs) and SIGKILLs
 * the ones still running after `graceMs`.
 */
export async function stopPeers(peers: Peer[], graceMs = 3000): Promise<void> {
  await Promise.all(
    peers.map(async (p) => {
      if (!p.alive) return;
      const exited = new Promise<void>((r) => p.proc.once('exit', () => r()));
      await p.call('exit', null, 2000).catch(() => undefined);
      await Promise.race([exited, new Promise<void>((r) => setTimeout(r, graceMs).unref())]);
      if (p.alive) p.proc.kill('SIGKILL');
    }),
  );
}

/**
 * The parent's children: each started as a Peer that must say 'ready', all SIGKILLed when the
 * parent exits, on Ctrl-C and on SIGTERM (and `onKill` hooks run then, for what else must go).
 */
export class Children {
  readonly live = new Set<Peer>();
  /** Every 'fatal' event a child sent (also printed). */
  readonly fatals: string[] = [];
  readonly #onKill: Array<() => void> = [];

  constructor() {
    process.on('exit', () => this.killAll());
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      process.on(sig, () => {
        this.killAll();
        process.exit(130);
      });
    }
  }

  onKill(fn: () => void): void {
    this.#onKill.push(fn);
  }

  /** Wraps `proc` (a child.js role with an IPC channel) and waits until it is ready. */
  async start(role: string, proc: ChildProcess): Promise<Peer> {
    const peer = new Peer(role, proc);
    this.live.add(peer);
    peer.on('fatal', (m) => {
      this.fatals.push(String(m));
      console.error(String(m));
    });
    await peer.ready(10_000);
    return peer;
  }

  /** Stops `peers` with stopPeers. */
  async stop(peers: Peer[]): Promise<void> {
    await stopPeers(peers);
    for (const p of peers) this.live.delete(p);
  }

  killAll(): void {
    for (const p of this.live) if (p.alive) p.proc.kill('SIGKILL');
    for (const fn of this.#onKill) fn();
  }
}

export type Handler = (args: unknown) => Promise<unknown>;

/** The child's side: answers requests with `handlers` and hands events to `onEvent`. */
export function serve(handlers: Record<string, Handler>, onEvent: (name: string, data: unknown) => void = () => {}): void {
  process.on('message', (m: unknown) => {
    if (!isMessage(m)) return;
    if (m.kind === 'event') {
      onEvent(m.name, m.data);
      return;
    }
    if (m.kind !== 'req') return;
    const h = handlers[m.cmd];
    const answer = (r: Response): void => {
      if (process.connected) process.send?.(r);
    };
    if (h === undefined) {
      answer({ kind: 'res', id: m.id, ok: false, error: `unknown command "${m.cmd}"` });
      return;
    }
    h(m.args).then(
      (value) => answer({ kind: 'res', id: m.id, ok: true, value }),
      (err: unknown) => answer({ kind: 'res', id: m.id, ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
    );
  });
}

export function emit(name: string, data: unknown): void {
  const e: Event = { kind: 'event', name, data };
  if (process.connected) process.send?.(e);
}
