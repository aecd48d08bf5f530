// Hubs and presence across real firewalls (issue 10, item 8): acme's agents are homed on two hubs
// behind acme's gateway (the bridgehead) in the NAT LAN; globex's on a hub behind its gateway in
// the proxy-only LAN; outside agents on the relay. Senders outside know names only (name@acme):
// the gateway resolves them to the hub, and nothing about the hubs leaves it (hubs-world.ts).
// (1) resolution by name and replies, (2) a move between hubs under traffic, (3) presence seen
// from outside (refused, let, online, properties, offline, unreachable, back), (4) a second
// bridgehead while the first is killed -9, (5) every frame between the gateway and the relay
// decoded (taps) and searched for what the hubs told the gateway. Each prints one line.
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { FrameType, MsgFlag, type Frame, type MsgFrame } from '@postern/protocol';
import { LAB, decodeConnection, decodeWebSocket, frameName, frameTexts, tapConnections, type LabProc, type WireConnection } from '../src/index.js';
import { ACME_GATEWAYS, ACME_HUB_IPS, ACME_HUB_PORTS, GLOBEX_HUB, HubsWorld, Watcher, acmeHubUrl, joined, relayAgent, type RouterHealth, type Seen } from './hubs-world.js';
import { RELAY_URL, Stream, clean, formatVerdict, labSuite, received, seconds, sendOne, settle, sleep, startListen, waitMessage, type Verdict } from './world.js';

const TOOLS = ['ip', 'ss', 'tc', 'iptables', 'openssl', 'tinyproxy'] as const;

/** `postern chat --as NAME` at `url` in `site`; waits until it is connected. */
async function startChat(lab: HubsWorld['lab'], site: Parameters<HubsWorld['lab']['postern']>[0], url: string, name: string, extra: readonly string[] = []): Promise<LabProc> {
  const p = lab.postern(site, 'chat', '--connect', url, '--as', name, ...extra);
  await p.waitFor('stderr', /postern chat: connected as /, 20_000);
  return p;
}

/** Waits until chat `p` printed a message with this text; resolves with its sender. */
async function chatGot(p: LabProc, text: string, timeoutMs = 20_000): Promise<string> {
  const m = await p.waitFor('stdout', new RegExp(`^(\\S+): ${text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$`, 'm'), timeoutMs);
  return m[1]!;
}

const stat = (h: RouterHealth, k: string): number => h.stats[k] ?? 0;
const short = (node: string): string => `${node.slice(0, 8)}...`;

/** Stops feeding `streams` when the test ends, failed or not (their timers would keep the process alive). */
function haltAfter(t: TestContext, streams: readonly Stream[]): void {
  t.after(() => {
    for (const s of streams) s.stop(1).catch(() => undefined);
  });
}

/** `postern watch --json ADDRESS` as NAME on the relay (outside). */
async function watchFromOutside(lab: HubsWorld['lab'], name: string, address: string): Promise<LabProc> {
  return lab.postern('outside', 'watch', '--connect', RELAY_URL, '--as', name, ...(await relayAgent(lab, name)), '--json', address);
}

/** Runs `postern ARGS...` in `site` to its end (no exit code asserted). */
async function run(lab: HubsWorld['lab'], site: Parameters<HubsWorld['lab']['postern']>[0], ...args: string[]): Promise<LabProc> {
  const p = lab.postern(site, ...(args as [string, ...string[]]));
  await p.waitExit(30_000);
  return p;
}

/** States in order, a repeated one once ("online online offline" -> "online offline"). */
function states(seen: readonly Seen[]): string {
  return seen.map((s) => s.state).filter((s, i, a) => i === 0 || a[i - 1] !== s).join(' ');
}

/** Nothing lost, doubled or unexpected (order aside). */
function complete(v: Verdict): boolean {
  return v.lost === 0 && v.duplicated === 0 && v.unexpected === 0;
}

const B32_UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** The 32-byte public key inside a node id (`N…`: base32 of a prefix byte, the key and a CRC-16). */
function nodeKeyBytes(node: string): Buffer {
  let bits = 0;
  let acc = 0;
  const out: number[] = [];
  for (const c of node) {
    acc = ((acc << 5) | B32_UPPER.indexOf(c)) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((acc >> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  assert.equal(out.length, 35, `node id ${node}`);
  return Buffer.from(out.slice(1, 33));
}

/** One tapped WebSocket connection: its frames, and the unmasked payload bytes of both directions. */
interface Leg {
  conn: WireConnection;
  /** Every WebSocket message, both directions, unmasked: the frames' bytes as the routers wrote them. */
  payloads: Buffer[];
}

/** The connections a tap recorded (those from `from` only, when given). */
function legs(tap: LabProc, from?: string): Leg[] {
  return tapConnections(tap.stdout)
    .filter((c) => from === undefined || c.from.startsWith(`${from}:`))
    .map((c) => ({ conn: decodeConnection(c), payloads: [...decodeWebSocket(c.up).messages, ...decodeWebSocket(c.down).messages].map((m) => Buffer.from(m)) }));
}

/** Every text of a frame: frameTexts(), and the keys and values of its properties (PRESENCE, PROPS). */
function textsOf(f: Frame): string[] {
  const props = f.type === FrameType.PRESENCE || f.type === FrameType.PROPS ? f.props.flatMap((p) => [p.key, p.value]) : [];
  return [...frameTexts(f), ...props];
}

const upFrames = (ls: readonly Leg[]): Frame[] => ls.flatMap((l) => l.conn.upFrames);
const downFrames = (ls: readonly Leg[]): Frame[] => ls.flatMap((l) => l.conn.downFrames);
const allFrames = (ls: readonly Leg[]): Frame[] => [...upFrames(ls), ...downFrames(ls)];
const isMsg = (f: Frame): f is MsgFrame => f.type === FrameType.MSG;
const bodyText = (f: MsgFrame): string => new TextDecoder().decode(f.body);

/**
 * Looks for each secret in every text of every frame (textsOf)
 * and in the HTTP upgrade heads, for each port as a whole number in those texts, and for the
 * secrets and the `raw` byte strings in the bytes of every WebSocket message (unmasked) and in
 * the bytes from the target as they crossed.
 */
function scan(ls: readonly Leg[], secrets: ReadonlyArray<[string, string]>, ports: readonly number[], raw: ReadonlyArray<[string, Buffer]>): { found: string[]; frames: number; bytes: number; texts: number } {
  const found = new Set<string>();
  let frames = 0;
  let bytes = 0;
  let texts = 0;
  const check = (list: readonly string[], where: string): void => {
    for (const t of list) {
      texts++;
      for (const [what, s] of secrets) if (t.includes(s)) found.add(`${what} "${s}" in ${where}: ${JSON.stringify(t.slice(0, 120))}`);
      for (const p of ports) if (new RegExp(`(^|\\D)${p}(\\D|$)`).test(t)) found.add(`port ${p} in ${where}: ${JSON.stringify(t.slice(0, 120))}`);
    }
  };
  const bin: Array<[string, Buffer]> = [...secrets.map(([w, s]): [string, Buffer] => [w, Buffer.from(s)]), ...raw];
  for (const { conn, payloads } of ls) {
    check([conn.upHead, conn.downHead], `the HTTP upgrade of connection ${conn.n}`);
    for (const [dir, list] of [['up', conn.upFrames], ['down', conn.downFrames]] as const) {
      for (const f of list) {
        frames++;
        check(textsOf(f), `${frameName(f)} (${dir})`);
      }
    }
    for (const b of [...payloads, Buffer.from(conn.down)]) {
      bytes += b.length;
      for (const [what, s] of bin) if (b.includes(s)) found.add(`${what} in the bytes of connection ${conn.n}`);
    }
  }
  return { found: [...found], frames, bytes, texts };
}

labSuite('lab: hubs behind bridgeheads, and presence, across the firewalls', { lans: ['lan', 'strict'], tools: TOOLS }, (test) => {
  test('(1) an outside agent and globex (behind the proxy) reach alice@acme, homed on the second hub, by name only; her replies come back', 90_000, async (_t, lab) => {
    const w = await HubsWorld.create(lab, { globex: true });
    const [alice, bob] = await Promise.all([startChat(lab, 'lan', acmeHubUrl(1), 'alice'), startListen(lab, 'lan', acmeHubUrl(0), 'bob')]);
    const before = await Promise.all([w.gatewayHealth(), w.hubHealth(0), w.hubHealth(1)]);
    const t0 = Date.now();
    await sendOne(lab, 'outside', RELAY_URL, 'olga', 'alice@acme', 'hello alice', ['--receipt', '--timeout', '20000']);
    const receiptMs = Date.now() - t0;
    assert.equal(await chatGot(alice, 'hello alice'), 'olga@relay');
    const olga = await startListen(lab, 'outside', RELAY_URL, 'olga');
    alice.write('/reply\nhello olga, from inside\n');
    const back = await waitMessage(olga, 'hello olga, from inside');
    assert.equal(back.from, 'alice@acme', 'the reply names the domain, not the hub');

    const carol = await startChat(lab, 'strict', GLOBEX_HUB, 'carol', ['--to', 'alice@acme']);
    carol.write('hi alice, from globex\n');
    assert.equal(await chatGot(alice, 'hi alice, from globex'), 'carol@globex');
    alice.write('/reply\nhi carol\n');
    assert.equal(await chatGot(carol, 'hi carol'), 'alice@acme');
    const roundMs = Date.now() - t0;

    const after = await Promise.all([w.gatewayHealth(), w.hubHealth(0), w.hubHealth(1)]);
    const d = (i: number, k: string): number => stat(after[i]!, k) - stat(before[i]!, k);
    const line =
      `lab hubs (1): gateway acme (lan) with hubs 1 (${short(w.hubNodes[0]!)}, ${acmeHubUrl(0)}) and 2 (${short(w.hubNodes[1]!)}, ${acmeHubUrl(1)}), globex gateway + hub behind tinyproxy; ` +
      `olga@relay -> alice@acme --receipt: exit 0 after ${seconds(receiptMs)}, alice (hub 2) replied by /reply, olga got it from ${back.from}; carol@globex <-> alice@acme both ways; all in ${seconds(roundMs)}; ` +
      `resolution: gateway directory ${stat(after[0], 'directory')} entries, hubs linked ${stat(after[0], 'hubs')}, forwarded ${d(0, 'msgsForwarded')}; ` +
      `delivered to agents by hub 2 ${d(2, 'msgsDelivered')}, by hub 1 ${d(1, 'msgsDelivered')} (bob on hub 1 got ${bob.lines().length})`;
    console.log(line);
    assert.equal(d(2, 'msgsDelivered'), 2, `hub 2 should have delivered both messages to alice\n${line}`);
    assert.equal(d(1, 'msgsDelivered'), 0, `hub 1 delivered something\n${line}`);
    assert.equal(stat(after[0], 'hubs'), 2, line);
  });

  test('(2) alice moves from hub 1 to hub 2 while an outside sender and one on hub 1 stream to alice@acme: nothing lost, doubled or reordered', 120_000, async (t, lab) => {
    const w = await HubsWorld.create(lab);
    const alice1 = await startListen(lab, 'lan', acmeHubUrl(0), 'alice');
    // The gateway's view of her (a watcher of her own domain on it): when it says offline, the
    // name is free for another hub; before that a claim there is NAME_TAKEN, as it should be.
    const view = new Watcher('a watcher on the gateway', lab.postern('lan', 'watch', '--connect', ACME_GATEWAYS[0], '--json', 'alice@acme'));
    await view.next('alice online', (s) => s.state === 'online', 0);
    const streams = await Promise.all([
      Stream.open(lab, 'outside', RELAY_URL, 'olga', 'alice@acme'),
      Stream.open(lab, 'lan', acmeHubUrl(0), 'bob', 'alice@acme'),
    ]);
    haltAfter(t, streams);
    for (const s of streams) s.start(20);
    await sleep(3000);

    // Marked before she stops: the gateway may tell the watcher before kill() returns.
    const mark = view.seen.length;
    const tStop = Date.now();
    const stopped = await alice1.kill('SIGTERM');
    assert.equal(stopped?.code, 0, alice1.describe());
    await view.next('alice offline', (s) => s.state === 'offline', mark);
    const offlineMs = Date.now() - tStop;
    // Away a while: what is sent meanwhile waits at hub 1, her home.
    await sleep(1500);
    const heldAtHub1 = stat(await w.hubHealth(0), 'stored');
    const tStart = Date.now();
    const alice2 = await startListen(lab, 'lan', acmeHubUrl(1), 'alice');
    const claimMs = Date.now() - tStart;
    await view.next('alice online again', (s) => s.state === 'online', mark);
    await sleep(3000);
    await Promise.all(streams.map((s) => s.stop()));
    const both = joined(alice1, alice2);
    const pairs: Array<[Stream, LabProc, string]> = [
      [streams[0], both, 'olga@relay'],
      [streams[1], both, 'bob@acme'],
    ];
    const vs = await settle(pairs, 30_000);
    const [gw, h1, h2] = await Promise.all([w.gatewayHealth(), w.hubHealth(0), w.hubHealth(1)]);
    const onHub = (p: LabProc): number => received(p).length;
    const line =
      `lab hubs (2): alice listened on hub 1, stopped (SIGTERM) after ${seconds(tStop - alice1.startedAt)}, the gateway saw her offline ${seconds(offlineMs)} later; ` +
      `1.5 s away (hub 1 held ${heldAtHub1} for her), then on hub 2 (claimed in ${seconds(claimMs)}); moves: gateway ${stat(gw, 'moves')}, hub 1 ${stat(h1, 'moves')} (timed out ${stat(gw, 'movesTimedOut')}); ` +
      `received on hub 1 ${onHub(alice1)}, on hub 2 ${onHub(alice2)}; ${pairs.map(([s], i) => `${s.name}->${s.to} ${formatVerdict(vs[i]!)}`).join(', ')}; ` +
      `held at the end: gateway ${stat(gw, 'stored')}, hub 1 ${stat(h1, 'stored')}, hub 2 ${stat(h2, 'stored')}`;
    console.log(line);
    assert.ok(vs.every(clean), `${line}\n${w.describe()}`);
    assert.ok(streams.every((s) => s.sent >= 100), line);
    assert.ok(onHub(alice2) > 0 && onHub(alice1) > 0, line);
  });

  test('(3) presence across the firewall: a watcher outside is refused, then let by alice (hub 2); sees her online, her status, offline with last seen, online, unreachable when hub 2 is killed -9, and online after it restarts', 150_000, async (_t, lab) => {
    const w = await HubsWorld.create(lab);
    let alice = await startChat(lab, 'lan', acmeHubUrl(1), 'alice');
    // By default only acme may watch her: refused at her home, through the gateway and the relay.
    const refused = await watchFromOutside(lab, 'wendy', 'alice@acme');
    const refusedExit = await refused.waitExit(20_000);
    const refusal = /\[(ERR_[A-Z_]+)\] (.*)/.exec(refused.stderr);
    assert.equal(refusedExit.code, 1, refused.describe());
    assert.equal(refusal?.[1], 'ERR_FORBIDDEN', refused.describe());
    assert.deepEqual(refused.lines(), [], 'a refused watcher hears no state');

    alice.write('/allow wendy@relay\n');
    await alice.waitFor('stderr', /postern chat: watchers allowed/, 10_000);
    const t0 = Date.now();
    const wendy = new Watcher('wendy@relay', await watchFromOutside(lab, 'wendy', 'alice@acme'));
    const index = (s: Seen): number => wendy.seen.indexOf(s);
    const first = await wendy.next('alice online', (s) => s.state === 'online', 0);
    alice.write('/set status=busy\n');
    await alice.waitFor('stderr', /postern chat: properties set/, 10_000);
    const busy = await wendy.next('status=busy', (s) => s.properties['status'] === 'busy', index(first) + 1);
    // She leaves: offline, since when she was last seen, her status kept.
    const tQuit = Date.now();
    alice.write('/quit\n');
    assert.equal((await alice.waitExit(10_000)).code, 0, alice.describe());
    const off = await wendy.next('alice offline', (s) => s.state === 'offline', index(busy) + 1);
    await sleep(2000);
    const tBack = Date.now();
    alice = await startChat(lab, 'lan', acmeHubUrl(1), 'alice');
    const back = await wendy.next('alice online again', (s) => s.state === 'online', index(off) + 1);
    // Her hub is killed: unreachable (the gateway lost its link to it), not offline.
    const tKill = Date.now();
    await w.hubs[1]!.kill('SIGKILL');
    const lost = await wendy.next('alice unreachable', (s) => s.state === 'unreachable', index(back) + 1, 15_000);
    // Restarted on its --data: alice's chat dials it again by itself, and wendy hears of her.
    await sleep(1000);
    const tRestart = Date.now();
    await w.startHub(1);
    const again = await wendy.next('alice online after hub 2 restarted', (s) => s.state === 'online', index(lost) + 1, 30_000);
    await sleep(500);
    const seq = states(wendy.seen);
    const second = (ms: number): number => Math.floor(ms / 1000) * 1000;
    const line =
      `lab hubs (3): wendy@relay (outside) watched alice@acme (homed on hub 2 behind the NAT): first refused [${refusal?.[1] ?? '?'}] "${refusal?.[2] ?? ''}"; after alice's /allow wendy@relay she saw: ${wendy.format(t0)}; ` +
      `offline ${seconds(off.at - tQuit)} after alice quit at ${new Date(tQuit).toISOString().slice(11, 19)} (last seen ${off.since.slice(11, 19)}); online ${seconds(back.at - tBack)} after she came back; ` +
      `unreachable ${seconds(lost.at - tKill)} after SIGKILL of hub 2; online ${seconds(again.at - tRestart)} after hub 2 restarted (alice's chat redialed by itself; status=${again.properties['status'] ?? 'gone'} from hub 2's store)`;
    console.log(line);
    assert.equal(busy.state, 'online', line);
    assert.equal(off.properties['status'], 'busy', `properties outlive the session\n${line}`);
    assert.ok(Date.parse(off.since) >= second(tQuit) && Date.parse(off.since) <= off.at, `last seen should be when she quit\n${line}`);
    assert.ok(Date.parse(back.since) >= second(tBack), `online since she came back\n${line}`);
    assert.ok(Date.parse(lost.since) >= second(tKill), `unreachable since the kill\n${line}`);
    assert.equal(again.properties['status'], 'busy', `kept in hub 2's store\n${line}`);
    assert.match(seq, /^online offline online unreachable (offline )?online$/, `the states wendy saw\n${line}\n${w.describe()}`);
  });

  test('(4) two bridgeheads: gateway 1 (the relay\'s and the hubs\' choice) is killed -9 and restarted on its --data while olga (outside) streams to alice@acme and bob (hub 1) to oscar outside: nothing lost or doubled', 150_000, async (t, lab) => {
    const w = await HubsWorld.create(lab, { gateways: 2 });
    const [alice, oscar] = await Promise.all([startListen(lab, 'lan', acmeHubUrl(1), 'alice'), startListen(lab, 'outside', RELAY_URL, 'oscar')]);
    await w.waitHealth(() => w.gatewayHealth(1), 'gateway 2 to know alice', (h) => stat(h, 'directory') >= 2 && stat(h, 'hubs') === 2);
    const streams = await Promise.all([Stream.open(lab, 'outside', RELAY_URL, 'olga', 'alice@acme'), Stream.open(lab, 'lan', acmeHubUrl(0), 'bob', 'oscar@relay')]);
    haltAfter(t, streams);
    for (const s of streams) s.start(25);
    await sleep(3000);
    const before = await Promise.all([w.gatewayHealth(0), w.gatewayHealth(1)]);
    const marks = w.hubs.map((h) => h!.stderr.length);
    const tKill = Date.now();
    await w.gateways[0]!.kill('SIGKILL');
    const sentAtKill = streams.map((s) => s.sent);
    // New senders both ways, while gateway 1 is down: they have nothing pinned to it, so they go
    // through gateway 2 at once (a stream's flow with messages in flight to gateway 1 waits for
    // them until it is back, PROTOCOL 6.2).
    const t1 = Date.now();
    await sendOne(lab, 'outside', RELAY_URL, 'otto', 'alice@acme', 'while gateway 1 is down', ['--receipt', '--timeout', '15000']);
    const inMs = Date.now() - t1;
    const t2 = Date.now();
    await sendOne(lab, 'lan', acmeHubUrl(0), 'dave', 'oscar@relay', 'from inside while gateway 1 is down', ['--receipt', '--timeout', '15000']);
    const outMs = Date.now() - t2;
    await sleep(Math.max(0, tKill + 4000 - Date.now()));
    const during = await w.gatewayHealth(1);
    assert.ok(w.gateways[0]!.exit !== undefined, 'gateway 1 should still be down');
    const meanwhile = [received(alice).length, received(oscar).length];
    const tRestart = Date.now();
    await w.startGateway(0);
    for (const [i, h] of w.hubs.entries()) await w.bridgeheadUp(h!, w.hubGatewayUrls(i)[0]!, marks[i]);
    const relinkMs = Date.now() - tRestart;
    await sleep(3000);
    await Promise.all(streams.map((s) => s.stop()));
    const pairs: Array<[Stream, LabProc, string]> = [
      [streams[0], alice, 'olga@relay'],
      [streams[1], oscar, 'bob@acme'],
    ];
    const vs = await settle(pairs, 60_000);
    const after = await Promise.all([w.gatewayHealth(0), w.gatewayHealth(1)]);
    const carried = (h: RouterHealth): number => stat(h, 'msgsForwarded');
    const line =
      `lab hubs (4): acme gateways 1 (${short(w.gatewayKeys[0]!.publicKey)}) and 2 (${short(w.gatewayKeys[1]!.publicKey)}) both linked to the relay, both hubs to both; ` +
      `before the kill gateway 1 had forwarded ${carried(before[0])}, gateway 2 ${carried(before[1])}; gateway 1 SIGKILLed ${seconds(tKill - streams[0].proc.startedAt)} into the streams (sent by then ${sentAtKill.join('/')}); ` +
      `in the 4 s without it gateway 2 forwarded ${carried(during) - carried(before[1])}: otto->alice@acme --receipt delivered in ${seconds(inMs)}, dave (hub 1)->oscar@relay --receipt in ${seconds(outMs)}, streams meanwhile at alice ${meanwhile[0]}, at oscar ${meanwhile[1]}; ` +
      `gateway 1 restarted on its --data, both hubs relinked in ${seconds(relinkMs)}; ` +
      `${pairs.map(([s], i) => `${s.name}->${s.to} ${formatVerdict(vs[i]!)}`).join(', ')}; held at the end: gateway 1 ${stat(after[0], 'stored')}, gateway 2 ${stat(after[1], 'stored')} ` +
      `(order across two bridgeheads when one fails is not promised, PROTOCOL 15.8)`;
    console.log(line);
    assert.ok(vs.every(complete), `lost, doubled or unexpected messages\n${line}\n${w.describe()}`);
    assert.ok(streams.every((s) => s.sent >= 200), line);
    assert.ok(carried(before[0]) > 0, `gateway 1 carried nothing before it was killed\n${line}`);
    assert.ok(carried(during) > carried(before[1]), `gateway 2 did not take over\n${line}`);
    assert.equal(stat(after[0], 'stored') + stat(after[1], 'stored'), 0, line);
  });

  test('(5) nothing past the bridgehead names a hub: every frame between acme\'s gateway and the relay, decoded, holds no hub node id, address, port, handle, sealed id or its agents\' session ids', 150_000, async (_t, lab) => {
    const w = await HubsWorld.create(lab, { outerTap: true, hubTaps: true });
    const [alice, olga, oscar] = await Promise.all([
      startChat(lab, 'lan', acmeHubUrl(1), 'alice'),
      startListen(lab, 'outside', RELAY_URL, 'olga'),
      startListen(lab, 'outside', RELAY_URL, 'oscar'),
    ]);
    // By name, both ways (with a receipt: a report goes out). Outside, olga and oscar listen, otto sends.
    await sendOne(lab, 'outside', RELAY_URL, 'otto', 'alice@acme', 'hello alice', ['--receipt', '--timeout', '20000']);
    assert.equal(await chatGot(alice, 'hello alice'), 'otto@relay');
    alice.write('/to olga@relay\nhello olga\n');
    assert.equal((await waitMessage(olga, 'hello olga')).from, 'alice@acme');
    // By id: a sender on hub 1 without a name writes from its id; otto answers that id, and
    // hub 1 (its home) keeps the answer for it.
    const nameless = await run(lab, 'lan', 'send', '--connect', acmeHubUrl(0), '--to', 'olga@relay', 'from an id');
    assert.equal(nameless.exit?.code, 0, nameless.describe());
    const fromId = (await waitMessage(olga, 'from an id')).from;
    const byId = /^(_[a-z2-7]+)@acme$/.exec(fromId)?.[1];
    assert.ok(byId !== undefined, `a sender without a name writes from its id, not ${fromId}`);
    const held = stat(await w.hubHealth(0), 'stored');
    await sendOne(lab, 'outside', RELAY_URL, 'otto', fromId, 'hello id');
    await w.waitHealth(() => w.hubHealth(0), 'hub 1 to hold the answer to the id', (h) => stat(h, 'stored') > held);
    // Anonymous from hub 1 (a named agent, and one without a name); otto answers the handle.
    await sendOne(lab, 'lan', acmeHubUrl(0), 'dave', 'oscar@relay', 'who am I?', ['--anonymous', '--receipt', '--timeout', '20000']);
    const anon = await waitMessage(oscar, 'who am I?');
    const anonymous = await run(lab, 'lan', 'send', '--connect', acmeHubUrl(0), '--to', 'oscar@relay', '--anonymous', '--receipt', '--timeout', '20000', 'and who am I?');
    assert.equal(anonymous.exit?.code, 0, anonymous.describe());
    const dave = await startListen(lab, 'lan', acmeHubUrl(0), 'dave');
    await sendOne(lab, 'outside', RELAY_URL, 'otto', anon.from, 'whoever you are', ['--receipt', '--timeout', '20000']);
    assert.equal((await waitMessage(dave, 'whoever you are')).from, 'otto@relay');
    // Refused: an unknown name of acme from outside, an unknown name outside from hub 1.
    const unknownIn = await run(lab, 'outside', 'send', '--connect', RELAY_URL, '--as', 'otto', ...(await relayAgent(lab, 'otto')), '--to', 'nobody@acme', '--receipt', '--timeout', '20000', 'to nobody');
    const unknownOut = await run(lab, 'lan', 'send', '--connect', acmeHubUrl(0), '--as', 'bob', '--to', 'nobody@relay', '--receipt', '--timeout', '20000', 'to nobody outside');
    assert.notEqual(unknownIn.exit?.code, 0, unknownIn.describe());
    assert.match(unknownIn.stderr, /ERR_UNKNOWN_RECIPIENT/, unknownIn.describe());
    assert.notEqual(unknownOut.exit?.code, 0, unknownOut.describe());
    assert.match(unknownOut.stderr, /ERR_UNKNOWN_RECIPIENT/, unknownOut.describe());
    // Presence both ways: wendy (outside) watches alice; alice watches wendy, who lets acme.
    const wendySet = await run(lab, 'outside', 'set', '--connect', RELAY_URL, '--as', 'wendy', ...(await relayAgent(lab, 'wendy')), '--allow', '*@acme', 'status=outside');
    assert.equal(wendySet.exit?.code, 0, wendySet.describe());
    alice.write('/allow wendy@relay\n/set status=tapped\n/watch wendy@relay\n');
    await alice.waitFor('stdout', /^\* wendy@relay offline since \S+ status="outside"$/m, 20_000);
    const wendy = new Watcher('wendy@relay', await watchFromOutside(lab, 'wendy', 'alice@acme'));
    await wendy.next('alice online, status tapped', (s) => s.state === 'online' && s.properties['status'] === 'tapped', 0);
    await sleep(1500); // the last ACKs, RELEASEs and receipts

    const outer = legs(w.outerTap!, LAB.fwOutside);
    const inner = w.hubTaps.flat().flatMap((tap) => legs(tap));
    // What the hubs told the gateway: the truth to look for past it.
    const innerUp = upFrames(inner);
    const hellos = new Set(innerUp.flatMap((f) => (f.type === FrameType.HELLO ? [f.node] : [])));
    const homeIds = new Set(innerUp.flatMap((f) => (f.type === FrameType.HOME ? [f.id, f.local] : [])).filter((x) => x.startsWith('_')));
    const hubHandles = new Set(allFrames(inner).filter(isMsg).flatMap((f) => [f.from, f.to]).filter((a) => a.startsWith('~') && a.endsWith('@acme')).map((a) => a.slice(0, a.indexOf('@'))));
    const sealed = new Set(innerUp.filter(isMsg).filter((f) => (f.flags & MsgFlag.ANONYMOUS) !== 0).map((f) => f.id));
    // Ids the domain shows by design: an agent without a name is addressed by its id (_id@acme).
    const ids = [...homeIds].filter((id) => id !== byId);
    assert.deepEqual([...hellos].sort(), [...w.hubNodes].sort(), 'the taps inside should see both hubs link');
    assert.ok(hubHandles.size >= 2 && sealed.size >= 2 && ids.length >= 4, `the taps inside should see the hubs' handles, sealed ids and session ids: ${hubHandles.size}, ${sealed.size}, ${ids.length}`);
    const secrets: Array<[string, string]> = [
      ...w.hubNodes.map((n, i): [string, string] => [`hub ${i + 1}'s node id`, n]),
      ...ACME_HUB_IPS.map((ip, i): [string, string] => [`hub ${i + 1}'s address`, ip]),
      ['a LAN address', '10.77.1.'],
      ...ids.map((id): [string, string] => ['a session id on a hub', id]),
      ...[...hubHandles].map((h): [string, string] => ["a hub's reply handle", h]),
      ...[...sealed].map((id): [string, string] => ["a hub's sealed message id", id]),
    ];
    const ports = [...ACME_HUB_PORTS, ...w.hubTaps.flat().map((tap) => Number(/listening on \S+:(\d+)/.exec(tap.stdout)?.[1]))];
    const raw = w.hubNodes.map((n, i): [string, Buffer] => [`hub ${i + 1}'s public key (raw)`, nodeKeyBytes(n)]);
    const found = scan(outer, secrets, ports, raw);
    // The same scan on the hubs' own links must find them (it can fail).
    const control = scan(inner, secrets.slice(0, 2), [], raw);
    const controlHits = w.hubNodes.filter((_n, i) => control.found.some((f) => f.startsWith(`hub ${i + 1}'s node id "`))).length;
    // What crossed: the test must have seen the traffic it drove.
    const out = upFrames(outer);
    const inn = downFrames(outer);
    const outMsgs = out.filter(isMsg);
    const inMsgs = inn.filter(isMsg);
    const gwHandles = new Set(outMsgs.filter((f) => (f.flags & MsgFlag.ANONYMOUS) !== 0).map((f) => f.from));
    const count = (fs: readonly Frame[], type: number): number => fs.filter((f) => f.type === type).length;
    const seen = {
      byName: inMsgs.some((f) => f.to === 'alice@acme' && bodyText(f) === 'hello alice') && outMsgs.some((f) => f.from === 'alice@acme' && bodyText(f) === 'hello olga'),
      byId: outMsgs.some((f) => f.from === fromId && bodyText(f) === 'from an id') && inMsgs.some((f) => f.to === fromId && bodyText(f) === 'hello id'),
      anonymous: outMsgs.some((f) => bodyText(f) === 'who am I?' && /^~[a-z2-7]+@acme$/.test(f.from)) && inMsgs.some((f) => bodyText(f) === 'whoever you are' && /^~[a-z2-7]+@acme$/.test(f.to)),
      presence: out.some((f) => f.type === FrameType.PRESENCE && f.target === 'alice@acme' && f.props.some((p) => p.value === 'tapped')) && out.some((f) => f.type === FrameType.WATCH && f.watcher === 'alice@acme'),
      refusal: out.some((f) => f.type === FrameType.NACK && f.reason.includes('nobody')),
      reports: outMsgs.filter((f) => (f.flags & MsgFlag.REPORT) !== 0).length,
    };
    const line =
      `lab hubs (5): tapped between acme's gateway and the relay (TLS-inspecting, in the relay's host): ${outer.length} connection(s), ${found.frames} frames (${outMsgs.length} MSG out of them ${seen.reports} reports, ${inMsgs.length} MSG in, ` +
      `${count(out, FrameType.PRESENCE)} PRESENCE out, ${count(allFrames(outer), FrameType.WATCH)} WATCH, ${count(allFrames(outer), FrameType.NACK)} NACK), ${found.texts} texts, ${found.bytes} bytes; ` +
      `traffic seen there: by name both ways ${seen.byName}, by id both ways ${seen.byId}, anonymous from hub 1 and the reply to its handle ${seen.anonymous} (as the gateway's handles ${[...gwHandles].join(', ')}), presence both ways ${seen.presence}, unknown-name refusal ${seen.refusal}; ` +
      `looked for what the hubs told the gateway (taps on the hub links: ${control.frames} frames, where the same scan finds ${controlHits} of 2 hub node ids): 2 hub node ids and their raw keys, addresses 10.77.1.3/.4 and any 10.77.1.x, ports ${ports.join('/')}, ` +
      `${ids.length} session ids (not counting ${byId}, which wrote from its id), ${hubHandles.size} hub handles, ${sealed.size} sealed message ids: found past the gateway: ${found.found.length === 0 ? 'none' : found.found.join('; ')}`;
    console.log(line);
    if (process.env['POSTERN_LAB_VERBOSE'] === '1') {
      for (const l of outer) {
        for (const [dir, list] of [['>', l.conn.upFrames], ['<', l.conn.downFrames]] as const) {
          for (const f of list) if (f.type !== FrameType.PING && f.type !== FrameType.PONG) console.log(`gateway-relay #${l.conn.n} ${dir} ${frameName(f)} ${JSON.stringify(textsOf(f)).slice(0, 300)}`);
        }
      }
    }
    assert.ok(seen.byName && seen.byId && seen.anonymous && seen.presence && seen.refusal && seen.reports > 0, `the tap missed traffic\n${line}`);
    assert.equal(controlHits, 2, `the scan should find both hubs' node ids on their own links\n${line}`);
    assert.deepEqual(found.found, [], `traces of the hubs past the bridgehead\n${line}`);
  });
});
