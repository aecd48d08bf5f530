// One benchmark role per process: `node child.js <role>`, driven by run.js (and active.js) over IPC.
//   forwarder, ws-sender, ws-receiver           the baseline (a minimal ws forwarder)
//   relay, gateway, agent-sender, agent-receiver the Postern firewall path
//   fleet-sender, fleet-receiver                many agents in one process (active.js)
//   nats-hub, nats-leaf, nats-sender, nats-receiver       the NATS leaf-node anchor
//   mosquitto-hub, mosquitto-leaf, mqtt-sender, mqtt-receiver  the Mosquitto QoS 1 anchor
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { connect, type Client, type ClientOptions } from '@postern/client';
import { createConsoleLogger, issueToken, startRouter, type RouterServer } from '@postern/router';
import { createNodeWsDialer, createWsDialer, type WebSocketLike } from '@postern/transport-ws/node';
import mqtt, { type MqttClient } from 'mqtt';
import { connect as natsConnect, type NatsConnection } from 'nats';
import WebSocket, { WebSocketServer } from 'ws';
import { RunningServer, type ServerSpec } from './anchors.js';
import { FleetRecorder, pool, pushFleet, type FleetPacedArgs } from './fleet.js';
import { emit, serve, type Handler } from './ipc.js';
import {
  KIND_PROBE,
  Recorder,
  payload,
  pushPaced,
  pushThroughput,
  startRssSampler,
  type PacedArgs,
  type Sink,
  type ThroughputArgs,
} from './load.js';

type Dialer = NonNullable<ClientOptions['dialer']>;
type Duplex = Awaited<ReturnType<Dialer>>;

const role = process.argv[2] ?? '';
/** Diagnostic (--zero-mask): clients send with an all-zero WebSocket mask, which ws skips. */
const zeroMask = process.env.BENCH_ZERO_MASK === '1';
const wsClientOptions = zeroMask
  ? { perMessageDeflate: false, generateMask: (mask: Buffer) => void mask.fill(0) }
  : { perMessageDeflate: false };
const memory = startRssSampler();
/** How late this process's timers ran (event-loop stalls: GC, synchronous work such as a store commit). */
const LOOP_RESOLUTION_MS = 10;
const loopDelay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
loopDelay.enable();
const closers: Array<() => Promise<void> | void> = [];

// The parent owns us: if it goes away (even killed), so do we.
process.on('disconnect', () => process.exit(0));
process.on('uncaughtException', (err) => {
  emit('fatal', `${role}: ${err.stack ?? err.message}`);
  process.exit(1);
});

async function shutdown(): Promise<void> {
  for (const c of closers.reverse()) {
    try {
      await c();
    } catch {
      // exiting anyway
    }
  }
}

const common: Record<string, Handler> = {
  memory: () => Promise.resolve(memory()),
  /** Event-loop delay since the last call (or the start), ms: p50, p99, max (beyond the sampling interval the histogram includes). */
  loop: () => {
    const ms = (ns: number): number => Math.max(0, Math.round(ns / 1e4) / 100 - LOOP_RESOLUTION_MS);
    const r = { p50Ms: ms(loopDelay.percentile(50)), p99Ms: ms(loopDelay.percentile(99)), maxMs: ms(loopDelay.max) };
    loopDelay.reset();
    return Promise.resolve(r);
  },
  /** CPU time used so far (user + system), microseconds. */
  cpu: () => {
    const u = process.cpuUsage();
    return Promise.resolve(u.user + u.system);
  },
  exit: () => {
    // Answer first, then exit normally so --cpu-prof writes its profile.
    setTimeout(() => {
      void shutdown().finally(() => process.exit(0));
    }, 10);
    return Promise.resolve(true);
  },
};

/** Runs `attempt` until it resolves, every 50 ms, for at most `ms`; then its last error. */
async function retryFor(ms: number, attempt: () => Promise<void>): Promise<void> {
  const stop = Date.now() + ms;
  for (;;) {
    try {
      await attempt();
      return;
    } catch (err) {
      if (Date.now() > stop) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

// ---------------------------------------------------------------- receivers

const recorder = new Recorder();
let progressTimer: NodeJS.Timeout | undefined;

function receiverHandlers(transport?: TransportCounts): Record<string, Handler> {
  let at: TransportCounts | undefined;
  return {
    arm: (args) => {
      const { progress } = args as { progress: boolean };
      recorder.reset();
      at = transport === undefined ? undefined : { ...transport };
      clearInterval(progressTimer);
      if (progress) {
        let last = -1;
        progressTimer = setInterval(() => {
          if (recorder.count !== last) emit('progress', (last = recorder.count));
        }, 5);
      }
      return Promise.resolve(true);
    },
    collect: async (args) => {
      const { expected, idleMs, maxWaitMs } = args as { expected: number; idleMs: number; maxWaitMs: number };
      const r = await recorder.collect(expected, idleMs, maxWaitMs);
      clearInterval(progressTimer);
      return transport === undefined || at === undefined ? r : { ...r, transport: countsSince(transport, at) };
    },
  };
}

interface TransportCounts {
  messagesIn: number;
  bytesIn: number;
  messagesOut: number;
  bytesOut: number;
}

function countsSince(now: TransportCounts, then: TransportCounts): TransportCounts & { meanBatchIn: number; meanBatchOut: number } {
  const d = {
    messagesIn: now.messagesIn - then.messagesIn,
    bytesIn: now.bytesIn - then.bytesIn,
    messagesOut: now.messagesOut - then.messagesOut,
    bytesOut: now.bytesOut - then.bytesOut,
  };
  return { ...d, meanBatchIn: d.messagesIn > 0 ? Math.round(d.bytesIn / d.messagesIn) : 0, meanBatchOut: d.messagesOut > 0 ? Math.round(d.bytesOut / d.messagesOut) : 0 };
}

// ---------------------------------------------------------------- senders

let credit = 0;

function senderHandlers(sink: () => Sink, extra: () => Record<string, unknown>, transport?: TransportCounts): Record<string, Handler> {
  const since = <T extends object>(run: () => Promise<T>) => async () => {
    const at = transport === undefined ? undefined : { ...transport };
    const r = await run();
    return { ...r, ...extra(), ...(transport === undefined || at === undefined ? {} : { transport: countsSince(transport, at) }) };
  };
  return {
    throughput: (args) => {
      credit = 0;
      return since(() => pushThroughput(sink(), args as ThroughputArgs, () => credit))();
    },
    paced: (args) => since(() => pushPaced(sink(), args as PacedArgs))(),
  };
}

function onSenderEvent(name: string, data: unknown): void {
  if (name === 'credit') credit = data as number;
}

// ---------------------------------------------------------------- baseline (ws)

async function forwarder(): Promise<void> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 });
  await new Promise<void>((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', reject);
  });
  closers.push(() => new Promise<void>((r) => wss.close(() => r())));
  let receiver: WebSocket | undefined;
  let forwarded = 0;
  let dropped = 0;
  wss.on('connection', (ws, req) => {
    if (req.url === '/recv') {
      receiver = ws;
      ws.on('close', () => (receiver = undefined));
    } else {
      // Every message from the sender connection goes to the receiver connection, one for one.
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        if (receiver === undefined) {
          dropped++;
          return;
        }
        receiver.send(data, { binary: isBinary });
        forwarded++;
      });
    }
  });
  const port = (wss.address() as AddressInfo).port;
  serve({
    ...common,
    init: () => Promise.resolve({ url: `ws://127.0.0.1:${port}` }),
    stats: () => Promise.resolve({ forwarded, dropped, clients: wss.clients.size }),
  });
}

function openWs(url: string): Promise<WebSocket> {
  return new Promise<WebSocket>((resolve, reject) => {
    const ws = new WebSocket(url, wsClientOptions);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    closers.push(() => ws.terminate());
  });
}

function wsSender(): void {
  let ws: WebSocket | undefined;
  const sink = (): Sink => {
    const w = ws;
    if (w === undefined) throw new Error('not initialised');
    return {
      reliable: false,
      send: (body) => w.send(body),
      buffered: () => w.bufferedAmount,
    };
  };
  serve(
    {
      ...common,
      init: async (args) => {
        ws = await openWs(`${(args as { url: string }).url}/send`);
        return true;
      },
      probe: () => Promise.resolve(true),
      ...senderHandlers(sink, () => ({})),
    },
    onSenderEvent,
  );
}

function wsReceiver(): void {
  serve({
    ...common,
    init: async (args) => {
      const ws = await openWs(`${(args as { url: string }).url}/recv`);
      ws.on('message', (data: Buffer) => recorder.onMessage(data));
      return true;
    },
    ...receiverHandlers(),
  });
}

// ---------------------------------------------------------------- Postern

const silent = createConsoleLogger('silent');

function routerStats(server: RouterServer, extra: Record<string, unknown>): Handler {
  return () => Promise.resolve({ ...server.router.stats(), links: server.router.links().map((l) => ({ kind: l.kind, transport: l.transport, pending: l.pending })), ...extra });
}

/**
 * Router options the parent may set: active.js lifts the per-address limits, since all its
 * agents connect from 127.0.0.1.
 */
interface Limits {
  maxConnections?: number;
  maxConnectionsPerAddress?: number;
  connectRatePerAddress?: number;
}

/** A fresh data dir for this process's router, removed when the process exits (the parent removes it after a SIGKILL). */
function dataDir(role: string): string {
  const dir = mkdtempSync(join(tmpdir(), `postern-bench-${role}-`));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** POSTERN_BENCH_SYNC=normal measures the store without an fsync per commit (diagnostic). */
function syncOption(): { sync?: 'full' | 'normal' } {
  const s = process.env['POSTERN_BENCH_SYNC'];
  return s === 'normal' || s === 'full' ? { sync: s } : {};
}

/**
 * POSTERN_BENCH_METRICS=1: the routers run with an admin listener on loopback, so their
 * Prometheus metrics exist (the commit histogram observes every group commit); to show that
 * metrics cost nothing measurable.
 */
function metricsOption(): { adminListen?: string } {
  return process.env['POSTERN_BENCH_METRICS'] === '1' ? { adminListen: '127.0.0.1:0' } : {};
}

function relay(): void {
  const handlers: Record<string, Handler> = {
    ...common,
    init: async (args) => {
      const { secret, limits } = args as { secret: string; limits?: Limits };
      // The default durable store (SQLite, fsync per group commit), as a relay runs in production.
      // The sender connects without a token: a guest, with the guest quotas lifted (the bench measures the path).
      const guests = { allowGuests: true, guestMsgRate: 0, guestByteRate: 0, guestStoredBytes: 1 << 30, maxGuestStoredBytes: 1 << 30 };
      const dir = dataDir('relay');
      const server = await startRouter({ domain: 'relay', listen: ['127.0.0.1:0'], secret, ...guests, ...limits, logger: silent, dataDir: dir, ...syncOption(), ...metricsOption() });
      closers.push(() => server.close());
      handlers.stats = routerStats(server, {});
      return { url: server.url, dataDir: dir };
    },
  };
  serve(handlers);
}

function gateway(): void {
  const handlers: Record<string, Handler> = {
    ...common,
    init: async (args) => {
      const { secret, relayUrl, transport, limits } = args as { secret: string; relayUrl: string; transport?: 'ws' | 'http'; limits?: Limits };
      const token = await issueToken(secret, { domain: 'acme' });
      const uplinkEvents = { up: 0, down: 0, lastError: '' };
      let onUp: (() => void) | undefined;
      const dir = dataDir('gateway');
      const server = await startRouter({
        domain: 'acme',
        listen: ['127.0.0.1:0'],
        uplinks: [{ url: relayUrl, token, ...(transport === undefined ? {} : { transport }) }],
        ...limits,
        logger: silent,
        dataDir: dir,
        ...syncOption(),
        ...metricsOption(),
        onUplinkStatus: (_url, s) => {
          if (s.type === 'up') {
            uplinkEvents.up++;
            onUp?.();
          } else if (s.type === 'down') {
            uplinkEvents.down++;
            uplinkEvents.lastError = `${s.error.code}: ${s.error.message}`;
          }
        },
      });
      closers.push(() => server.close());
      if (!server.uplinks.every((u) => u.connected)) {
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(() => reject(new Error(`uplink to ${relayUrl} not up within 10 s (${uplinkEvents.lastError})`)), 10_000);
          onUp = () => {
            clearTimeout(t);
            resolve();
          };
        });
      }
      handlers.stats = routerStats(server, { uplinkEvents });
      return { url: server.url, dataDir: dir };
    },
  };
  serve(handlers);
}

/**
 * Wraps the SDK's dialer to see its transport: the sender reads the socket buffer from it (as
 * the baseline reads ws.bufferedAmount), and both ends count WebSocket messages, which shows
 * how many frames each batch carried. Costs one call per WebSocket message, not per frame.
 */
function countingDialer(counts: TransportCounts, onDuplex: (d: Duplex) => void = () => {}): Dialer {
  const inner = zeroMask
    ? createWsDialer((url) => new WebSocket(url, { ...wsClientOptions, maxPayload: 2 * 1024 * 1024 }) as unknown as WebSocketLike & { terminate: () => void })
    : createNodeWsDialer();
  return async (url, options) => {
    const d = await inner(url, options);
    const w: Duplex = {
      start: (h) =>
        d.start({
          message: (data) => {
            counts.messagesIn++;
            counts.bytesIn += data.length;
            h.message(data);
          },
          close: (err) => h.close(err),
        }),
      send: (data) => {
        counts.messagesOut++;
        counts.bytesOut += data.length;
        d.send(data);
      },
      get bufferedAmount() {
        return d.bufferedAmount;
      },
      close: () => d.close(),
      done: d.done,
      remote: d.remote,
      kind: d.kind,
    };
    onDuplex(w);
    return w;
  };
}

/** Counts `c`'s disconnects into `s` (which several clients may share). */
function watchStatus(c: Client, s = { disconnects: 0, lastError: '' }): { disconnects: number; lastError: string } {
  c.onStatus((st) => {
    if (st.type === 'disconnected') {
      s.disconnects++;
      s.lastError = `${st.error.code}: ${st.error.message}`;
    }
  });
  return s;
}

function agentReceiver(): void {
  let status = { disconnects: 0, lastError: '' };
  const transport: TransportCounts = { messagesIn: 0, bytesIn: 0, messagesOut: 0, bytesOut: 0 };
  serve({
    ...common,
    init: async (args) => {
      const a = args as { url: string; dedupWindow?: number };
      const client = await connect({ url: a.url, name: 'alice', dialer: countingDialer(transport), dedupWindow: a.dedupWindow });
      closers.push(() => client.close());
      status = watchStatus(client);
      void (async () => {
        for await (const m of client) recorder.onMessage(m.body);
      })().catch((err: unknown) => emit('fatal', `agent-receiver: ${String(err)}`));
      return { address: client.address };
    },
    stats: () => Promise.resolve({ ...status, transport }),
    ...receiverHandlers(transport),
  });
}

function agentSender(): void {
  let client: Client | undefined;
  let duplex: Duplex | undefined;
  let status = { disconnects: 0, lastError: '' };
  let to = '';
  let reliable = false;
  const transport: TransportCounts = { messagesIn: 0, bytesIn: 0, messagesOut: 0, bytesOut: 0 };
  const dialer = countingDialer(transport, (d) => (duplex = d));
  const sink = (): Sink => {
    const c = client;
    if (c === undefined) throw new Error('not initialised');
    return reliable
      ? {
          reliable: true,
          send: (body, settled) => {
            c.send(to, body).then(
              () => settled(true),
              () => settled(false),
            );
          },
          buffered: () => duplex?.bufferedAmount ?? 0,
        }
      : {
          reliable: false,
          send: (body, settled) => {
            c.send(to, body, { volatile: true }).catch(() => settled(false));
          },
          buffered: () => duplex?.bufferedAmount ?? 0,
        };
  };
  // A reliable probe proves the whole path (routes announced, alice registered), also after
  // a link was dropped and restored.
  const probe = (): Promise<void> => retryFor(10_000, async () => void (await client?.send(to, payload(16, KIND_PROBE), { timeoutMs: 2000 })));
  serve(
    {
      ...common,
      init: async (args) => {
        const a = args as { url: string; to: string; reliable: boolean };
        to = a.to;
        reliable = a.reliable;
        client = await connect({ url: a.url, dialer });
        closers.push(() => client?.close());
        status = watchStatus(client);
        await probe();
        return { address: client.address };
      },
      probe: async () => {
        await probe();
        return true;
      },
      stats: () => Promise.resolve({ ...status, transport }),
      ...senderHandlers(sink, () => ({ disconnects: status.disconnects, lastError: status.lastError }), transport),
    },
    onSenderEvent,
  );
}

// ---------------------------------------------------------------- many agents (active.js)

interface FleetInit {
  url: string;
  /** Agent indexes first .. first + count - 1: sender i is `s<i>`, its receiver `r<i>@relay`. */
  first: number;
  count: number;
  /** Connections opened at once. */
  concurrency: number;
}

/** Connects `count` clients (the SDK's defaults otherwise), at most `concurrency` at once. */
async function connectFleet(a: FleetInit, options: (i: number) => Promise<ClientOptions>, status: { disconnects: number; lastError: string }): Promise<{ clients: Client[]; connectMs: number }> {
  const clients: Client[] = [];
  closers.push(async () => {
    await Promise.all(clients.map((c) => c.close()));
  });
  const t0 = Date.now();
  await pool(a.count, a.concurrency, async (i) => {
    const c = await connect(await options(i));
    clients[i] = c;
    watchStatus(c, status);
  });
  return { clients, connectMs: Date.now() - t0 };
}

/** Agents `s<i>` on the gateway, each sending reliable messages to `r<i>@relay` at a paced rate. */
function fleetSender(): void {
  const status = { disconnects: 0, lastError: '' };
  let clients: Client[] = [];
  let first = 0;
  serve({
    ...common,
    init: async (args) => {
      const a = args as FleetInit;
      first = a.first;
      const r = await connectFleet(a, (i) => Promise.resolve({ url: a.url, name: `s${a.first + i}` }), status);
      clients = r.clients;
      return { connectMs: r.connectMs };
    },
    paced: (args) =>
      pushFleet(
        (i, body) => clients[i]!.send(`r${first + i}@relay`, body),
        clients.length,
        (i) => first + i,
        args as FleetPacedArgs,
      ),
    stats: () => Promise.resolve(status),
  });
}

/** Agents `r<i>` on the relay (each with a token naming it), reading with `for await`. */
function fleetReceiver(): void {
  const status = { disconnects: 0, lastError: '' };
  let rec: FleetRecorder | undefined;
  serve({
    ...common,
    init: async (args) => {
      const a = args as FleetInit & { secret: string };
      const recorder = (rec = new FleetRecorder(a.first, a.count));
      const r = await connectFleet(
        a,
        async (i) => {
          const name = `r${a.first + i}`;
          return { url: a.url, name, token: await issueToken(a.secret, { domain: 'relay', name }) };
        },
        status,
      );
      r.clients.forEach((c, i) => {
        void (async () => {
          for await (const m of c) recorder.onMessage(i, m.body);
        })().catch((err: unknown) => emit('fatal', `fleet-receiver r${a.first + i}: ${String(err)}`));
      });
      return { connectMs: r.connectMs };
    },
    arm: (args) => {
      const { fromNs, toNs } = args as { fromNs: string; toNs: string };
      rec?.arm(fromNs, toNs);
      return Promise.resolve(true);
    },
    collect: (args) => {
      const { expected, idleMs, maxWaitMs } = args as { expected: number[]; idleMs: number; maxWaitMs: number };
      if (rec === undefined) return Promise.reject(new Error('not initialised'));
      return rec.collect(expected, idleMs, maxWaitMs);
    },
    stats: () => Promise.resolve(status),
  });
}

// ---------------------------------------------------------------- anchors (NATS, Mosquitto)

/**
 * nats-hub, nats-leaf, mosquitto-hub, mosquitto-leaf: runs the server program as its child and
 * answers memory and cpu with the server's figures (from /proc), so the parent treats it like
 * any middle process. The server dies with this process.
 */
function serverWrapper(): void {
  let server: RunningServer | undefined;
  serve({
    ...common,
    init: async (args) => {
      server = await RunningServer.start(args as ServerSpec, role);
      closers.push(() => server?.kill());
      return { pid: server.proc.pid };
    },
    memory: () => Promise.resolve(server?.memory() ?? memory()),
    cpu: () => Promise.resolve(server?.cpuUs() ?? 0),
    stats: () => Promise.resolve({ pid: server?.proc.pid, log: server?.log.slice(-500) }),
  });
}

const NATS_SUBJECT = 'bench.data';
const NATS_PROBE = 'bench.probe';

/** NATS publisher on the hub. Volatile (core NATS is at most once), like case b. */
function natsSender(): void {
  let nc: NatsConnection | undefined;
  // The client's own buffers, seen through its internals: the protocol's outbound buffer and the socket's.
  const buffered = (): number => {
    const p = (nc as unknown as { protocol?: { outbound?: { size(): number }; transport?: { socket?: { writableLength?: number } } } } | undefined)?.protocol;
    return (p?.outbound?.size() ?? 0) + (p?.transport?.socket?.writableLength ?? 0);
  };
  const sink = (): Sink => {
    const c = nc;
    if (c === undefined) throw new Error('not initialised');
    return { reliable: false, send: (body) => c.publish(NATS_SUBJECT, body), buffered };
  };
  // A request answered by the receiver proves the path (leaf connected, interest propagated).
  const probe = (): Promise<void> => retryFor(10_000, async () => void (await nc?.request(NATS_PROBE, payload(16, KIND_PROBE), { timeout: 1000 })));
  serve(
    {
      ...common,
      init: async (args) => {
        nc = await natsConnect({ servers: (args as { url: string }).url, name: 'bench-sender' });
        closers.push(() => nc?.close());
        await probe();
        return true;
      },
      probe: async () => {
        await probe();
        return true;
      },
      stats: () => Promise.resolve(nc?.stats()),
      ...senderHandlers(sink, () => ({})),
    },
    onSenderEvent,
  );
}

function natsReceiver(): void {
  let nc: NatsConnection | undefined;
  serve({
    ...common,
    init: async (args) => {
      nc = await natsConnect({ servers: (args as { url: string }).url, name: 'bench-receiver' });
      closers.push(() => nc?.close());
      nc.subscribe(NATS_SUBJECT, { callback: (_err, m) => recorder.onMessage(m.data) });
      nc.subscribe(NATS_PROBE, { callback: (_err, m) => m.respond(m.data) });
      await nc.flush();
      return true;
    },
    stats: () => Promise.resolve(nc?.stats()),
    ...receiverHandlers(),
  });
}

const MQTT_DATA = 'bench/in/data';
const MQTT_PROBE = 'bench/in/probe';
const MQTT_ACK = 'bench/out/ack';

function mqttConnect(url: string, clientId: string): Promise<MqttClient> {
  return mqtt.connectAsync(url, { clientId, clean: true, protocolVersion: 4, reconnectPeriod: 500, connectTimeout: 10_000 });
}

/** MQTT publisher at QoS 1 on the hub broker: a send is settled by the broker's PUBACK. */
function mqttSender(): void {
  let client: MqttClient | undefined;
  const acks = new Set<number>();
  const sink = (): Sink => {
    const c = client;
    if (c === undefined) throw new Error('not initialised');
    return {
      reliable: true,
      send: (body, settled) => {
        c.publish(MQTT_DATA, Buffer.from(body.buffer, body.byteOffset, body.byteLength), { qos: 1 }, (err) => settled(err === undefined || err === null));
      },
      buffered: () => c.stream.writableLength,
    };
  };
  // A probe that the receiver (on the leaf broker) answers through the bridge proves the path.
  let probeSeq = 0;
  const probe = async (): Promise<void> => {
    const stop = Date.now() + 10_000;
    for (;;) {
      const seq = ++probeSeq;
      await client?.publishAsync(MQTT_PROBE, Buffer.from(payload(16, KIND_PROBE, seq)), { qos: 1 });
      const waitUntil = Date.now() + 500;
      while (!acks.has(seq) && Date.now() < waitUntil) await new Promise((r) => setTimeout(r, 10));
      if (acks.has(seq)) return;
      if (Date.now() > stop) throw new Error('mqtt probe: no answer through the bridge within 10 s');
    }
  };
  serve(
    {
      ...common,
      init: async (args) => {
        client = await mqttConnect((args as { url: string }).url, `bench-sender-${process.pid}`);
        closers.push(() => client?.endAsync(true));
        client.on('message', (_topic, m: Buffer) => acks.add(m.readUInt32LE(8)));
        await client.subscribeAsync(MQTT_ACK, { qos: 1 });
        await probe();
        return true;
      },
      probe: async () => {
        await probe();
        return true;
      },
      ...senderHandlers(sink, () => ({})),
    },
    onSenderEvent,
  );
}

/** MQTT subscriber at QoS 1 on the leaf broker (the client library sends each PUBACK). */
function mqttReceiver(): void {
  serve({
    ...common,
    init: async (args) => {
      const client = await mqttConnect((args as { url: string }).url, `bench-receiver-${process.pid}`);
      closers.push(() => client.endAsync(true));
      client.on('message', (topic, m: Buffer) => {
        if (topic === MQTT_PROBE) client.publish(MQTT_ACK, m, { qos: 1 });
        else recorder.onMessage(m);
      });
      await client.subscribeAsync('bench/in/#', { qos: 1 });
      return true;
    },
    ...receiverHandlers(),
  });
}

const roles: Record<string, () => void | Promise<void>> = {
  forwarder,
  'ws-sender': wsSender,
  'ws-receiver': wsReceiver,
  relay,
  gateway,
  'agent-sender': agentSender,
  'agent-receiver': agentReceiver,
  'fleet-sender': fleetSender,
  'fleet-receiver': fleetReceiver,
  'nats-hub': serverWrapper,
  'nats-leaf': serverWrapper,
  'nats-sender': natsSender,
  'nats-receiver': natsReceiver,
  'mosquitto-hub': serverWrapper,
  'mosquitto-leaf': serverWrapper,
  'mqtt-sender': mqttSender,
  'mqtt-receiver': mqttReceiver,
};

const start = roles[role];
if (start === undefined) {
  console.error(`bench child: unknown role "${role}"`);
  process.exit(2);
}
await start();
emit('ready', role);
