// Routers of different operators across real firewalls (issue 9, item 6): organisation acme
// behind the NAT (lan) dials relay r1, organisation globex in the proxy-only LAN (strict,
// tinyproxy with credentials) dials relay r2; r1 and r2 peer across the outside network, r3
// peers with r2 (a line r1 - r2 - r3; in (2) also with r1). Every relay link is wss:// with the
// lab CA; relays know each other only by their node keys, gateways by their domain owners'
// grants (mesh-world.ts). Each test prints one line of what it showed.
import assert from 'node:assert/strict';
import { createKeyPair, issueGrant } from '@postern/router';
import { FrameType, MsgFlag, type MsgFrame } from '@postern/protocol';
import { LAB, decodeConnection, frameName, frameTexts, tapConnections, type LabProc, type WireConnection } from '../src/index.js';
import { Mesh, ORG_LAN, relayUrl, type Org, type RelayName } from './mesh-world.js';
import { PING_MS, Stream, clean, formatVerdict, gatewayUrl, labSuite, received, registerRelay, seconds, sendOne, settle, sleep, startListen, verdict, waitMessage } from './world.js';

const TOOLS = ['ip', 'ss', 'tc', 'iptables', 'openssl', 'tinyproxy'] as const;
/** How long (2) keeps the r1 - r2 link cut. */
const CUT_MS = 15_000;

const gw = (org: Org): string => gatewayUrl(ORG_LAN[org]);

/** Stream pairs and what each should read as its sender. */
type Pair = [Stream, LabProc, string];

function verdicts(pairs: readonly Pair[], vs: readonly string[]): string {
  return pairs.map(([s], i) => `${s.name}->${s.to} ${vs[i]!}`).join(', ');
}

labSuite('lab: mesh of relays across two organisations', { lans: ['lan', 'strict'], outsideHosts: 3, tools: TOOLS }, (test) => {
  test('(1) acme behind NAT and globex behind the proxy, via peered relays r1 - r2 (- r3): both ways, with receipts, exactly once, in order', 120_000, async (_t, lab) => {
    const mesh = await Mesh.create(lab);
    await Promise.all([mesh.startRelay('r1', { peers: ['r2'] }), mesh.startRelay('r2', { peers: ['r3'] }), mesh.startRelay('r3')]);
    await Promise.all([mesh.startGateway('acme', ['r1']), mesh.startGateway('globex', ['r2'])]);
    await mesh.peered('r1', 'r2');
    await mesh.peered('r2', 'r3');
    const [a1, b1, c1] = await Promise.all([
      startListen(lab, 'lan', gw('acme'), 'a1'),
      startListen(lab, 'strict', gw('globex'), 'b1'),
      startListen(lab, 'outside3', relayUrl('r3'), 'c1'),
    ]);
    const before = await Promise.all((['r1', 'r2', 'r3'] as const).map((r) => mesh.health(r)));
    const receipt = ['--receipt'];
    const streams = await Promise.all([
      Stream.open(lab, 'lan', gw('acme'), 'alice', 'b1@globex', receipt),
      Stream.open(lab, 'strict', gw('globex'), 'bob', 'a1@acme', receipt),
      Stream.open(lab, 'lan', gw('acme'), 'alice3', 'c1@r3', receipt),
      Stream.open(lab, 'outside3', relayUrl('r3'), 'carol', 'a1@acme', receipt),
    ]);
    const pairs: Pair[] = [
      [streams[0], b1, 'alice@acme'],
      [streams[1], a1, 'bob@globex'],
      [streams[2], c1, 'alice3@acme'],
      [streams[3], a1, 'carol@r3'],
    ];
    for (const s of streams) s.start(10);
    await sleep(5000);
    // stop(): every `send --receipt` exits 0 only once each of its messages reached its recipient.
    await Promise.all(streams.map((s) => s.stop()));
    const vs = await settle(pairs);
    const after = await Promise.all((['r1', 'r2', 'r3'] as const).map((r) => mesh.health(r)));
    const fwd = after.map((h, i) => h.stats.msgsForwarded - before[i]!.stats.msgsForwarded);
    const line =
      `lab mesh (1): acme (lan, NAT) -> r1 =peer= r2 <- globex (strict, tinyproxy), r2 =peer= r3; ` +
      `${verdicts(pairs, vs.map(formatVerdict))}; every send --receipt exited 0 (all delivered); ` +
      `forwarded by r1 ${fwd[0]}, r2 ${fwd[1]}, r3 ${fwd[2]}; peers r1 ${after[0]!.stats.peers}, r2 ${after[1]!.stats.peers}, r3 ${after[2]!.stats.peers}; ` +
      `routes refused r1 ${after[0]!.stats.routesRefused}, r2 ${after[1]!.stats.routesRefused}, r3 ${after[2]!.stats.routesRefused}`;
    console.log(line);
    assert.ok(vs.every(clean), `${line}\n${mesh.describe()}`);
    assert.ok(streams.every((s) => s.sent >= 40), line);
  });

  test(`(2) the r1 - r2 peer link cut ${CUT_MS / 1000} s by iptables mid-traffic, then restored: nothing lost or duplicated; r3 carries new senders meanwhile`, 180_000, async (_t, lab) => {
    const mesh = await Mesh.create(lab);
    // A triangle: r1 and r2 dial each other (one link stays), r2 - r3 and r3 - r1 peer too.
    await Promise.all([mesh.startRelay('r1', { peers: ['r2'] }), mesh.startRelay('r2', { peers: ['r1', 'r3'] }), mesh.startRelay('r3', { peers: ['r1'] })]);
    await Promise.all([mesh.startGateway('acme', ['r1']), mesh.startGateway('globex', ['r2'])]);
    await Promise.all([mesh.peered('r1', 'r2'), mesh.peered('r2', 'r3'), mesh.peered('r3', 'r1')]);
    await mesh.waitHealth('r1', 'two peer links', (h) => h.stats.peers === 2);
    await mesh.waitHealth('r2', 'two peer links', (h) => h.stats.peers === 2);
    const [a1, b1] = await Promise.all([startListen(lab, 'lan', gw('acme'), 'a1'), startListen(lab, 'strict', gw('globex'), 'b1')]);
    const sAB = await Stream.open(lab, 'lan', gw('acme'), 'alice', 'b1@globex');
    const sBA = await Stream.open(lab, 'strict', gw('globex'), 'bob', 'a1@acme');
    sAB.start(10);
    sBA.start(10);
    await sleep(4000);

    const r3Before = (await mesh.health('r3')).stats.msgsForwarded;
    const sentBefore = sAB.sent + sBA.sent;
    const arrived = (): number => verdict(sAB, b1, 'alice@acme').received + verdict(sBA, a1, 'bob@globex').received;
    const tCut = Date.now();
    await lab.cut('outside', 'outside2');
    const arrivedAtCut = arrived();
    // Both ends notice the dead link by their pings (each has r3 left).
    await Promise.all([
      mesh.waitHealth('r1', 'the link to r2 to go', (h) => h.stats.peers === 1, 20_000),
      mesh.waitHealth('r2', 'the link to r1 to go', (h) => h.stats.peers === 1, 20_000),
    ]);
    const detectMs = Date.now() - tCut;
    // New senders (flows with nothing pinned to the dead link) take the other way, through r3, with receipts.
    const [detourA, detourB] = await Promise.all([
      startListen(lab, 'lan', gw('acme'), 'a2'),
      startListen(lab, 'strict', gw('globex'), 'b2'),
    ]);
    const tDetour = Date.now();
    await Promise.all([
      sendOne(lab, 'lan', gw('acme'), 'detour-a', 'b2@globex', 'acme to globex while r1 - r2 is cut', ['--receipt', '--timeout', '20000']),
      sendOne(lab, 'strict', gw('globex'), 'detour-b', 'a2@acme', 'globex to acme while r1 - r2 is cut', ['--receipt', '--timeout', '20000']),
    ]);
    const detourMs = Date.now() - tDetour;
    assert.equal((await waitMessage(detourB, 'acme to globex while r1 - r2 is cut')).from, 'detour-a@acme');
    assert.equal((await waitMessage(detourA, 'globex to acme while r1 - r2 is cut')).from, 'detour-b@globex');
    const viaR3 = (await mesh.health('r3')).stats.msgsForwarded - r3Before;
    const pinned = await Promise.all([mesh.health('r1'), mesh.health('r2')]).then((hs) => hs.map((h) => h.stats.pinned));
    await sleep(Math.max(0, CUT_MS - (Date.now() - tCut)));
    const dropped = await lab.cutDrops('outside2');
    const sentDuring = sAB.sent + sBA.sent - sentBefore;
    const arrivedDuring = arrived() - arrivedAtCut;

    const tHeal = Date.now();
    await lab.heal();
    await Promise.all([
      mesh.waitHealth('r1', 'the link to r2 back', (h) => h.stats.peers === 2, 60_000),
      mesh.waitHealth('r2', 'the link to r1 back', (h) => h.stats.peers === 2, 60_000),
    ]);
    const relinkMs = Date.now() - tHeal;
    await sleep(4000);
    await Promise.all([sAB.stop(), sBA.stop()]);
    const pairs: Pair[] = [
      [sAB, b1, 'alice@acme'],
      [sBA, a1, 'bob@globex'],
    ];
    const vs = await settle(pairs);
    const line =
      `lab mesh (2): r1 - r2 cut ${seconds(tHeal - tCut)} (iptables in r2's host dropped ${dropped} packets) in a triangle with r3; ` +
      `both ends saw it after ${seconds(detectMs)} (ping ${PING_MS} ms), relinked ${seconds(relinkMs)} after the rules went; ` +
      `r3 offered the other path: 2 new senders crossed it with receipts in ${seconds(detourMs)} (r3 forwarded ${viaR3} messages meanwhile); ` +
      `the running streams waited for the link (messages pinned to it: r1 ${pinned[0]}, r2 ${pinned[1]}): ${sentDuring} sent during the cut, ${arrivedDuring} arrived before it healed; ` +
      `in the end ${verdicts(pairs, vs.map(formatVerdict))}`;
    console.log(line);
    assert.ok(dropped > 0, `the cut dropped nothing\n${line}`);
    assert.ok(viaR3 >= 2, `nothing went through r3 during the cut\n${line}\n${mesh.describe()}`);
    assert.ok(vs.every(clean), `${line}\n${mesh.describe()}`);
  });

  test('(3) gateway acme dials r1 and r3: with either one stopped, acme and globex (on r2) still reach each other both ways', 180_000, async (_t, lab) => {
    const mesh = await Mesh.create(lab);
    await Promise.all([mesh.startRelay('r1', { peers: ['r2'] }), mesh.startRelay('r2', { peers: ['r3'] }), mesh.startRelay('r3')]);
    const gwA = await mesh.startGateway('acme', ['r1', 'r3']);
    await mesh.startGateway('globex', ['r2']);
    await Promise.all([mesh.peered('r1', 'r2'), mesh.peered('r2', 'r3')]);
    const [a1, b1] = await Promise.all([startListen(lab, 'lan', gw('acme'), 'a1'), startListen(lab, 'strict', gw('globex'), 'b1')]);
    const sAB = await Stream.open(lab, 'lan', gw('acme'), 'alice', 'b1@globex');
    const sBA = await Stream.open(lab, 'strict', gw('globex'), 'bob', 'a1@acme');
    sAB.start(10);
    sBA.start(10);
    await sleep(3000);

    const phases: string[] = [];
    for (const down of ['r1', 'r3'] as const) {
      const other: RelayName = down === 'r1' ? 'r3' : 'r1';
      const at = gwA.stderr.length;
      const tStop = Date.now();
      await mesh.stopRelay(down);
      await gwA.waitFor('stderr', new RegExp(`uplink down url="${relayUrl(down).replace(/[.]/g, '\\.')}"`), 15_000, at);
      // r2 must have given up its route to acme through the stopped relay (or never had it).
      await mesh.waitHealth('r2', `the link to ${down} to go`, (h) => h.stats.peers === 1, 20_000);
      // Fresh senders both ways, with receipts, while one of acme's relays is down.
      const [x, y] = await Promise.all([startListen(lab, 'lan', gw('acme'), `x-${down}`), startListen(lab, 'strict', gw('globex'), `y-${down}`)]);
      const t0 = Date.now();
      await Promise.all([
        sendOne(lab, 'lan', gw('acme'), `from-acme-${down}`, `y-${down}@globex`, `${down} is down`, ['--receipt', '--timeout', '20000']),
        sendOne(lab, 'strict', gw('globex'), `from-globex-${down}`, `x-${down}@acme`, `${down} is down`, ['--receipt', '--timeout', '20000']),
      ]);
      const crossMs = Date.now() - t0;
      assert.equal((await waitMessage(y, `${down} is down`)).from, `from-acme-${down}@acme`);
      assert.equal((await waitMessage(x, `${down} is down`)).from, `from-globex-${down}@globex`);
      await sleep(2000);
      // Back up (same node key and data), before the other one goes.
      const t1 = Date.now();
      await mesh.startRelay(down, down === 'r1' ? { peers: ['r2'] } : {});
      await mesh.uplinkUp('acme', down, at, 45_000);
      await mesh.waitHealth('r2', `the link to ${down} back`, (h) => h.stats.peers === 2, 45_000);
      phases.push(`${down} stopped ${seconds(t1 - tStop)}: both ways with receipts via ${other} in ${seconds(crossMs)}, back in ${seconds(Date.now() - t1)}`);
    }
    await sleep(3000);
    await Promise.all([sAB.stop(), sBA.stop()]);
    const pairs: Pair[] = [
      [sAB, b1, 'alice@acme'],
      [sBA, a1, 'bob@globex'],
    ];
    const vs = await settle(pairs);
    const downs = (gwA.stderr.match(/uplink down/g) ?? []).length;
    const detail = pairs.map(([s, p, from]) => `${s.name} ${disorder(s, p, from)}`).join(', ');
    const line =
      `lab mesh (3): gateway acme --relay r1 --relay r3, globex on r2 (line r1 - r2 - r3); ${phases.join('; ')}; acme's uplink down events ${downs}; ` +
      `streams throughout: ${verdicts(pairs, vs.map(formatVerdict))} (${detail})`;
    console.log(line);
    if (process.env['POSTERN_LAB_VERBOSE'] === '1') console.log(mesh.describe(400));
    // Nothing lost, nothing twice, nothing out of order: a relay stopped while it holds messages
    // it took from another relay answered HELD, not ACK, so their flow stayed pinned to it and
    // later messages did not take the other relay past them (PROTOCOL.md section 6.7).
    assert.ok(vs.every((v) => v.lost === 0 && v.duplicated === 0 && v.reordered === 0 && v.unexpected === 0), `${line}\n${mesh.describe()}`);
  });

  test('(4) a forged announcement of acme through a peer trusted for its own domain only is refused and logged; acme stays routed to the real one; a `from` outside the peer\'s entitlement is ERR_FORBIDDEN', 120_000, async (_t, lab) => {
    const mesh = await Mesh.create(lab);
    // The rogue: a relay on outside3 whose operator r2 trusts for domain "rogue" only. Its own
    // trust is "misconfigured" on purpose: it accepts a fake acme gateway whose grant comes from
    // a key that only the rogue trusts, and announces acme to r2 with that grant as proof.
    const rogue = createKeyPair('node');
    const fakeOwner = createKeyPair('domain');
    const fakeGw = createKeyPair('node');
    const rogueKey = await mesh.writeKey('rogue', rogue);
    const fakeGwKey = await mesh.writeKey('fake-acme', fakeGw);
    const rogueSecret = 'rogue-secret-0123456789';
    const rogueUrl = relayUrl('r3');
    registerRelay(rogueUrl, rogueSecret, 'rogue');
    await Promise.all([mesh.startRelay('r1', { peers: ['r2'] }), mesh.startRelay('r2', { trust: [`${rogue.publicKey}=rogue`] })]);
    await Promise.all([mesh.startGateway('acme', ['r1']), mesh.startGateway('globex', ['r2'])]);
    await mesh.peered('r1', 'r2');
    const cert = lab.certFor('outside3');
    const rogueRelay = lab.postern(
      'outside3', 'relay', '--listen', `${LAB.outsideAddress('outside3')}:${LAB.relayPort}`, '--domain', 'rogue', '--memory', '--node-key', rogueKey,
      '--secret', rogueSecret, '--tls-cert', cert.certPath, '--tls-key', cert.keyPath, '--ping-interval', String(PING_MS),
      '--trust', `${mesh.nodes.r2.publicKey}=r2,globex`, '--trust', `${fakeOwner.publicKey}=acme`, '--peer', relayUrl('r2'), '--ca', lab.tls.caPath,
    );
    await rogueRelay.waitFor('stderr', /peer connected/, 20_000);
    const fakeAcme = `ws://${LAB.outsideAddress('outside3')}:${LAB.gatewayPort}`;
    const fakeGateway = lab.postern(
      'outside3', 'gateway', '--relay', rogueUrl, '--domain', 'acme', '--token', issueGrant(fakeOwner, { subject: fakeGw.publicKey, domains: ['acme'] }),
      '--node-key', fakeGwKey, '--listen', `${LAB.outsideAddress('outside3')}:${LAB.gatewayPort}`, '--memory', '--ca', lab.tls.caPath,
    );
    await fakeGateway.waitFor('stdout', /postern gateway: uplink to .* is up/, 20_000);
    const r2 = mesh.relays.get('r2')!;
    const refused = await r2.waitFor('stderr', new RegExp(`WARN .*route refused domain="acme" via="${rogue.publicKey}" kind="peer" reason="([^"]*)"`), 20_000);

    // acme still goes to the real acme (behind r1), not to the rogue's, which has an a1 as well.
    const [a1, fakeA1, b1] = await Promise.all([
      startListen(lab, 'lan', gw('acme'), 'a1'),
      startListen(lab, 'outside3', fakeAcme, 'a1'),
      startListen(lab, 'strict', gw('globex'), 'b1'),
    ]);
    await sendOne(lab, 'strict', gw('globex'), 'bob', 'a1@acme', 'to the real acme', ['--receipt', '--timeout', '20000']);
    assert.equal((await waitMessage(a1, 'to the real acme')).from, 'bob@globex');

    // A message from the fake acme: the rogue may send from "rogue" only, so r2 refuses it.
    const forged = lab.postern('outside3', 'send', '--connect', fakeAcme, '--as', 'mallory', '--to', 'b1@globex', '--receipt', '--timeout', '20000', 'forged from acme');
    const forgedExit = await forged.waitExit(30_000);
    const forgedError = forged.stderr.trim().split('\n').find((l) => l.includes('failed')) ?? forged.stderr.trim();
    // Control: from the rogue's own domain it is fine.
    await sendOne(lab, 'outside3', rogueUrl, 'eve', 'b1@globex', 'from the rogue\'s own domain', ['--receipt', '--timeout', '20000']);
    assert.equal((await waitMessage(b1, 'from the rogue\'s own domain')).from, 'eve@rogue');
    await sleep(1000);
    const h2 = await mesh.health('r2');
    const line =
      `lab mesh (4): rogue relay (trusted by r2 for "rogue" only) peered with r2 and announced acme from a fake gateway, proof a grant from a key r2 does not trust: ` +
      `r2 logged route refused (${refused[1]}), kept the link (peers ${h2.stats.peers}, routes refused ${h2.stats.routesRefused}); globex -> a1@acme reached the real acme (fake a1 got ${received(fakeA1).length}); ` +
      `mallory@acme via the rogue -> b1@globex: send exited ${String(forgedExit.code)}: "${forgedError}" (r2 forbidden ${h2.stats.forbidden}); eve@rogue -> b1@globex delivered`;
    console.log(line);
    assert.equal(received(fakeA1).length, 0, `the fake acme got messages\n${line}`);
    assert.equal(h2.stats.peers, 2, `r2 should keep both peer links\n${line}`);
    assert.notEqual(forgedExit.code, 0, `the forged sender got through\n${forged.describe()}`);
    assert.match(forged.stderr, /ERR_FORBIDDEN/, forged.describe());
    assert.ok(!received(b1).some((m) => m.from.endsWith('@acme')), `b1 got a message from acme\n${line}`);
    assert.ok(h2.stats.forbidden >= 1, line);
  });

  test('(5) anonymous across the firewalls: no frame past the first router names the sender; past r1 not even acme; the reply to the handle arrives', 120_000, async (_t, lab) => {
    const mesh = await Mesh.create(lab);
    // Taps: the agent dials gateway acme through a plain one (what it really sends: the truth to
    // look for); TLS-inspecting ones sit transparently in front of r1 (everything from fw, i.e.
    // gateway acme through the NAT) and of r2 (everything from r1's host: the peer link r1 dials).
    const lanTap = await lab.tap('lan', { port: LAB.gatewayPort + 1, target: { host: LAB.host('lan'), port: LAB.gatewayPort } });
    const r1Tap = await lab.tap('outside', { port: LAB.relayPort + 1, target: { host: LAB.outside, port: LAB.relayPort }, tls: lab.certFor('outside'), redirectFrom: LAB.fwOutside });
    const r2Tap = await lab.tap('outside2', { port: LAB.relayPort + 1, target: { host: LAB.outsideAddress('outside2'), port: LAB.relayPort }, tls: lab.certFor('outside2'), redirectFrom: LAB.outside });
    await Promise.all([mesh.startRelay('r1', { peers: ['r2'] }), mesh.startRelay('r2')]);
    await Promise.all([mesh.startGateway('acme', ['r1']), mesh.startGateway('globex', ['r2'])]);
    await mesh.peered('r1', 'r2');
    const viaTap = `ws://${LAB.host('lan')}:${LAB.gatewayPort + 1}`;

    const bob = await startListen(lab, 'strict', gw('globex'), 'bob', ['--count', '1']);
    await sendOne(lab, 'lan', viaTap, 'alice', 'bob@globex', 'who am I?', ['--anonymous', '--receipt', '--timeout', '20000']);
    const got = await waitMessage(bob, 'who am I?');
    await bob.waitExit(10_000);
    const handle = got.from;
    assert.match(handle, /^~[a-z2-7]{26}@r1$/, 'bob should see a reply handle of r1');
    // bob answers the handle with a receipt; alice, away meanwhile, comes back 2 s later and
    // reads it: only then does bob's receipt come, and his send exit 0.
    const answering = sendOne(lab, 'strict', gw('globex'), 'bob', handle, 'you are anonymous to me', ['--receipt', '--timeout', '25000']);
    await sleep(2000);
    const alice = await startListen(lab, 'lan', viaTap, 'alice', ['--count', '1']);
    const reply = await waitMessage(alice, 'you are anonymous to me');
    assert.equal(reply.from, 'bob@globex');
    await Promise.all([answering, alice.waitExit(10_000)]);
    await sleep(1500); // the last receipts and RELEASEs

    // What alice really is, from her own frames.
    const mine = tapConnections(lanTap.stdout).map(decodeConnection);
    const hers = mine.filter((c) => c.upFrames.some((f) => f.type === FrameType.HELLO && f.name === 'alice'));
    const anon = hers.flatMap((c) => c.upFrames).find((f): f is MsgFrame => f.type === FrameType.MSG && (f.flags & MsgFlag.ANONYMOUS) !== 0);
    assert.ok(anon !== undefined, `no anonymous MSG from alice on the LAN tap (${mine.length} connections)`);
    const ids = hers.flatMap((c) => c.downFrames).flatMap((f) => (f.type === FrameType.WELCOME ? [f.id] : []));
    const prefix = anon.id.slice(0, anon.id.indexOf('.'));
    assert.ok(prefix.length >= 4 && ids.length === hers.length, `alice's id prefix "${prefix}", ids ${ids.join(', ')}`);
    const ports = hers.flatMap((c) => [c.from, c.via]).map((a) => a.slice(a.lastIndexOf(':') + 1));
    const secrets: Array<[string, string]> = [
      ['name', 'alice'],
      ...ids.map((id): [string, string] => ['router-assigned id', id]),
      ['message id', anon.id],
      ['id prefix', prefix],
      ['LAN IP', LAB.host('lan')],
    ];

    const leg1 = tapConnections(r1Tap.stdout).map(decodeConnection).filter((c) => c.from.startsWith(`${LAB.fwOutside}:`));
    const leg2 = tapConnections(r2Tap.stdout).map(decodeConnection).filter((c) => c.from.startsWith(`${LAB.outside}:`));
    const f1 = leak(leg1, secrets, ports, false);
    const f2 = leak(leg2, secrets, ports, true);
    const anon1 = leg1.flatMap((c) => c.upFrames).find((f): f is MsgFrame => f.type === FrameType.MSG && (f.flags & MsgFlag.ANONYMOUS) !== 0 && bodyOf(f) === 'who am I?');
    const anon2 = leg2.flatMap((c) => c.upFrames).find((f): f is MsgFrame => f.type === FrameType.MSG && (f.flags & MsgFlag.ANONYMOUS) !== 0 && bodyOf(f) === 'who am I?');
    const line =
      `lab mesh (5): alice (acme, ${LAB.host('lan')}, ports ${ports.join('/')}, id ${ids[0]!}, message id prefix ${prefix}) sent --anonymous --receipt to bob@globex; ` +
      `gateway -> r1 (wss, tapped in r1's host: ${f1.frames} frames, ${f1.msgs} MSG): sender ${anon1?.from ?? 'none'}, id ${short(anon1?.id)}, hops ${anon1?.hops ?? '?'}, traces: ${f1.found.length === 0 ? 'none' : f1.found.join('; ')}; ` +
      `r1 -> r2 peer link (wss, tapped in r2's host: ${f2.frames} frames, ${f2.msgs} MSG): sender ${anon2?.from ?? 'none'}, id ${short(anon2?.id)}, hops ${anon2?.hops ?? '?'}, traces of alice or acme: ${f2.found.length === 0 ? 'none' : f2.found.join('; ')} ` +
      `(acme only in ${f2.routes} ROUTE frames, r1's announcements); bob replied to ${handle} with --receipt while alice was away, she came back 2 s later and got it from ${reply.from}, bob his receipt`;
    console.log(line);
    if (process.env['POSTERN_LAB_VERBOSE'] === '1') {
      for (const [leg, conns] of [['gateway acme <-> r1', leg1], ['r1 <-> r2', leg2]] as const) {
        for (const c of conns) {
          for (const [dir, list] of [['>', c.upFrames], ['<', c.downFrames]] as const) {
            for (const f of list) if (f.type !== FrameType.PING && f.type !== FrameType.PONG) console.log(`${leg} #${c.n} ${dir} ${frameName(f)} ${JSON.stringify(frameTexts(f)).slice(0, 300)}`);
          }
        }
      }
    }
    assert.ok(anon1 !== undefined && anon2 !== undefined, `the anonymous message was not seen on both legs\n${line}\n${mesh.describe()}`);
    assert.deepEqual(f1.found, [], `traces of the sender between gateway and r1\n${line}`);
    assert.deepEqual(f2.found, [], `traces of the sender or acme past r1\n${line}`);
  });
});

/** Where stream `s` arrived out of order or not at all at `p`: "n after m" for each n that came after a higher one, "missing n". */
function disorder(s: Stream, p: LabProc, from: string): string {
  const seen: number[] = [];
  for (const m of received(p)) {
    const match = /^(\S+) (\d+)$/.exec(m.body);
    if (match !== null && match[1] === s.name && m.from === from) seen.push(Number(match[2]));
  }
  const notes: string[] = [];
  let top = 0;
  for (const n of seen) {
    if (n < top) notes.push(`${n} after ${top}`);
    top = Math.max(top, n);
  }
  for (let n = 1; n <= s.sent; n++) if (!seen.includes(n)) notes.push(`missing ${n}`);
  return notes.length === 0 ? 'in order' : notes.join(' ');
}

function bodyOf(f: MsgFrame): string {
  return new TextDecoder().decode(f.body);
}

function short(s: string | undefined): string {
  return s === undefined ? '?' : s.length > 16 ? `${s.slice(0, 12)}...` : s;
}

/**
 * Looks for `secrets` in every frame of the connections (and in the HTTP upgrade heads), and for
 * the `ports` as whole numbers in every text field; with `domain`, for "acme" too in all but
 * ROUTE frames (a route announcement names the domain it routes, not a sender). Returns what it
 * found, where, and how many frames it read.
 */
function leak(conns: readonly WireConnection[], secrets: ReadonlyArray<[string, string]>, ports: readonly string[], domain: boolean): { found: string[]; frames: number; msgs: number; routes: number } {
  const found = new Set<string>();
  let frames = 0;
  let msgs = 0;
  let routes = 0;
  const check = (texts: readonly string[], where: string, withDomain: boolean): void => {
    for (const t of texts) {
      for (const [what, s] of secrets) if (t.includes(s)) found.add(`${what} "${s}" in ${where}: ${JSON.stringify(t.slice(0, 120))}`);
      for (const p of ports) if (new RegExp(`(^|\\D)${p}(\\D|$)`).test(t)) found.add(`port ${p} in ${where}: ${JSON.stringify(t.slice(0, 120))}`);
      if (withDomain && t.includes('acme')) found.add(`domain acme in ${where}: ${JSON.stringify(t.slice(0, 120))}`);
    }
  };
  for (const c of conns) {
    check([c.upHead, c.downHead], `the HTTP upgrade of connection ${c.n}`, domain);
    for (const [dir, list] of [['up', c.upFrames], ['down', c.downFrames]] as const) {
      for (const f of list) {
        frames++;
        if (f.type === FrameType.MSG) msgs++;
        const isRoute = f.type === FrameType.ROUTE;
        if (isRoute && f.domain === 'acme') routes++;
        check(frameTexts(f), `${frameName(f)} (${dir === 'up' ? 'to the relay' : 'from the relay'})`, domain && !isRoute);
      }
    }
  }
  return { found: [...found], frames, msgs, routes };
}
