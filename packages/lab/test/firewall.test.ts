// Postern through a real NAT firewall (issue 4, lab tests a, d, e): the relay outside, a gateway
// in a LAN behind fw (MASQUERADE out, nothing new in), faults made by iptables and tc in fw.
// Every link to the relay is wss:// (the lab CA via --ca; in (a) the gateway pins the relay's
// certificate with --fingerprint instead). Each test prints one line of what it showed.
import assert from 'node:assert/strict';
import { LAB } from '../src/index.js';
import { PING_MS, RELAY_URL, Stream, clean, formatVerdict, gatewayUrl, labSuite, seconds, sendOne, settle, sleep, startGateway, startListen, startRelay, waitMessage } from './world.js';

/** How long test (d) keeps the tunnel dropped. */
const OUTAGE_MS = 30_000;

labSuite('lab: NAT firewall', { lans: ['lan'] }, (test) => {
  test('(a) NAT + inbound drop: nothing gets in, yet messages cross both ways over one uplink', 60_000, async (_t, lab) => {
    await startRelay(lab);
    await startGateway(lab, 'lan', 'acme', ['--fingerprint', lab.tls.relayFingerprint]);

    // The firewall is real: a SYN from outside is dropped (a timeout), not refused.
    const drops0 = await lab.inboundDrops();
    const t0 = Date.now();
    const [toGateway, toFw, fromInside] = await Promise.all([
      lab.probe('outside', 'tcp', LAB.host('lan'), String(LAB.gatewayPort), '3000'),
      lab.probe('outside', 'tcp', LAB.fwOutside, String(LAB.gatewayPort), '3000'),
      lab.probe('lan', 'tcp', LAB.host('lan'), String(LAB.gatewayPort), '3000'),
    ]);
    const probeMs = Date.now() - t0;
    const drops = (await lab.inboundDrops()) - drops0;
    assert.equal(fromInside, 'connected', 'control: the gateway listens on its LAN address');
    assert.equal(toGateway, 'timeout', `outside -> gateway ${LAB.host('lan')}:${LAB.gatewayPort} must time out`);
    assert.equal(toFw, 'timeout', `outside -> fw ${LAB.fwOutside}:${LAB.gatewayPort} must time out`);
    assert.ok(drops >= 1, `fw's INBOUND chain counted no dropped packet (${drops})`);

    // Messages cross both ways: relay agent -> agent in the LAN, LAN agent -> relay agent.
    const r1 = await startListen(lab, 'lan', gatewayUrl('lan'), 'r1');
    const r2 = await startListen(lab, 'lan', gatewayUrl('lan'), 'r2');
    const o1 = await startListen(lab, 'outside', RELAY_URL, 'o1');
    await sendOne(lab, 'outside', RELAY_URL, 'ext', 'r1@acme', 'in through the NAT');
    await sendOne(lab, 'outside', RELAY_URL, 'ext', 'r2@acme', 'in through the NAT, too');
    await sendOne(lab, 'lan', gatewayUrl('lan'), 'int', 'o1@relay', 'out through the NAT');
    const [m1, m2, m3] = await Promise.all([
      waitMessage(r1, 'in through the NAT'),
      waitMessage(r2, 'in through the NAT, too'),
      waitMessage(o1, 'out through the NAT'),
    ]);
    assert.equal(m1.from, 'ext@relay');
    assert.equal(m2.from, 'ext@relay');
    assert.equal(m3.from, 'int@acme');

    // One uplink: the relay sees a single connection from the LAN, and from fw's address (NAT),
    // while two agents are connected to the gateway inside.
    const atRelay = await lab.peers('outside', LAB.relayPort);
    const fromLan = atRelay.filter((a) => a === LAB.fwOutside).length;
    const atGateway = (await lab.peers('lan', LAB.gatewayPort)).length;
    assert.equal(fromLan, 1, `the relay should see one connection from ${LAB.fwOutside}: ${atRelay.join(', ')}`);
    assert.ok(!atRelay.includes(LAB.host('lan')), 'the relay saw a LAN address: no NAT');
    assert.ok(atGateway >= 2, `agents at the gateway: ${atGateway}`);

    console.log(
      `lab (a): outside -> gateway ${LAB.host('lan')}:${LAB.gatewayPort}: ${toGateway}, outside -> fw: ${toFw} ` +
        `(${drops} SYNs dropped by fw, ${probeMs} ms), inside -> gateway: ${fromInside}; ` +
        `relay -> r1/r2@acme and lan -> o1@relay delivered (wss; the gateway pins the relay's certificate); the relay sees ${fromLan} connection from the LAN, ` +
        `from ${LAB.fwOutside} (NAT), carrying ${atGateway} LAN agents`,
    );
  });

  test('(d) the tunnel dropped 30 s by iptables: detected, reconnected, nothing lost', 150_000, async (_t, lab) => {
    await startRelay(lab);
    const gw = await startGateway(lab, 'lan', 'acme');
    const inward = await startListen(lab, 'lan', gatewayUrl('lan'), 'r1');
    const outward = await startListen(lab, 'outside', RELAY_URL, 'o1');
    const sIn = await Stream.open(lab, 'outside', RELAY_URL, 'ext', 'r1@acme');
    const sOut = await Stream.open(lab, 'lan', gatewayUrl('lan'), 'int', 'o1@relay');
    const RATE = 5;
    sIn.start(RATE);
    sOut.start(RATE);
    await sleep(4000);

    // Outage: every packet between the LAN and outside dropped; senders keep sending.
    const before = { in: sIn.sent, out: sOut.sent };
    const logAt = gw.stderr.length;
    const tDown = Date.now();
    await lab.outage('lan');
    await gw.waitFor('stderr', /uplink down/, 15_000, logAt);
    const detectMs = Date.now() - tDown;
    await sleep(Math.max(0, OUTAGE_MS - (Date.now() - tDown)));
    const upAt = gw.stderr.length;
    const tHeal = Date.now();
    await lab.heal();
    await gw.waitFor('stderr', /uplink connected/, 45_000, upAt);
    const reconnectMs = Date.now() - tHeal;
    const during = { in: sIn.sent - before.in, out: sOut.sent - before.out };
    await sleep(4000);

    await Promise.all([sIn.stop(), sOut.stop()]);
    const [vIn, vOut] = await settle([
      [sIn, inward, 'ext@relay'],
      [sOut, outward, 'int@acme'],
    ]);
    const downs = [...gw.stderr.matchAll(/uplink down .* code="([A-Z_]+)"/g)].map((m) => m[1]).join(', ');
    const line =
      `lab (d): wss tunnel dropped ${seconds(tHeal - tDown)}; the gateway saw it down after ${seconds(detectMs)} ` +
      `(ping ${PING_MS} ms), up ${seconds(reconnectMs)} after the rule went; ` +
      `relay->lan ${formatVerdict(vIn!)}, lan->relay ${formatVerdict(vOut!)}; ` +
      `sent during the outage ${during.in}+${during.out}; uplink down events: ${downs}`;
    console.log(line);
    if (process.env['POSTERN_LAB_VERBOSE'] === '1') console.log(gw.describe(60));
    assert.ok(detectMs <= 2 * PING_MS + 3000, `dead link noticed after ${detectMs} ms`);
    assert.ok(during.in > 0 && during.out > 0, 'senders kept sending during the outage');
    assert.ok(clean(vIn!) && clean(vOut!), `${line}\n${inward.describe(5)}\n${outward.describe(5)}\n${gw.describe()}`);
  });

  test('(e) 10% loss both ways: every reliable message arrives exactly once', 120_000, async (_t, lab) => {
    await startRelay(lab);
    const gw = await startGateway(lab, 'lan', 'acme');
    const inward = await startListen(lab, 'lan', gatewayUrl('lan'), 'r1');
    const outward = await startListen(lab, 'outside', RELAY_URL, 'o1');
    const sIn = await Stream.open(lab, 'outside', RELAY_URL, 'ext', 'r1@acme');
    const sOut = await Stream.open(lab, 'lan', gatewayUrl('lan'), 'int', 'o1@relay');
    await lab.loss(0.1, 'lan');
    await lab.shape('4mbit', 'lan');
    const t0 = Date.now();
    const RATE = 30;
    const PER_STREAM = 150;
    sIn.start(RATE);
    sOut.start(RATE);
    await sleep((PER_STREAM / RATE) * 1000);
    await Promise.all([sIn.stop(), sOut.stop()]);
    const [vIn, vOut] = await settle([
      [sIn, inward, 'ext@relay'],
      [sOut, outward, 'int@acme'],
    ]);
    const ms = Date.now() - t0;
    const dropped = await lab.faultDrops();
    await lab.heal();
    const downs = (gw.stderr.match(/uplink down/g) ?? []).length;
    const line =
      `lab (e): wss with 10% loss each way + 4 Mbit/s tbf: fw dropped ${dropped} packets; ` +
      `relay->lan ${formatVerdict(vIn!)}, lan->relay ${formatVerdict(vOut!)} in ${seconds(ms)}; uplink down ${downs}x`;
    console.log(line);
    assert.ok(sIn.sent + sOut.sent >= 280, `only ${sIn.sent + sOut.sent} messages were sent`);
    assert.ok(dropped > 0, 'the loss rules dropped nothing');
    assert.ok(clean(vIn!) && clean(vOut!), `${line}\n${inward.describe(5)}\n${outward.describe(5)}\n${gw.describe()}`);
  });
});
