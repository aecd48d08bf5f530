// Postern where the only way out is a proxy (issue 4, lab tests b and c): the strict LAN reaches
// outside only through tinyproxy with Basic credentials (CONNECT, TLS to the relay inside the
// tunnel); the nows LAN only through a TLS-inspecting middlebox that refuses WebSocket. First
// each LAN is shown to be what it claims, then postern crosses it. The relay serves wss:// and
// https:// only. Each test prints one line of what it showed.
import assert from 'node:assert/strict';
import { issueToken } from '@postern/router';
import { LAB, type Lab, type LabProc } from '../src/index.js';
import {
  PING_MS,
  RELAY_URL,
  SECRET,
  Stream,
  clean,
  formatVerdict,
  gatewayUrl,
  labSuite,
  relayHealth,
  relayToken,
  relayTrust,
  seconds,
  sendOne,
  settle,
  sleep,
  startGateway,
  startListen,
  startRelay,
  waitMessage,
} from './world.js';

const PROXY = `${LAB.router('strict')}:${LAB.proxyPort}`;
const proxyUrl = (password: string): string => `http://${LAB.proxyUser}:${password}@${PROXY}`;
const RELAY_AT = `${LAB.outside}:${LAB.relayPort}`;
/** The nows gateway's --ws-probe-interval: short, so that (c) does not wait the 30 s default. */
const PROBE_MS = 4000;

/** Both routers' and agents' output, for failure messages. */
function context(...procs: LabProc[]): string {
  return procs.map((p) => p.describe(15)).join('\n');
}

/** Relay agent <-> agent behind a gateway in `lan`, both ways; `n` reliable messages each way. */
async function bothWays(lab: Lab, lan: 'strict' | 'nows', domain: string, n: number): Promise<string> {
  const inward = await startListen(lab, lan, gatewayUrl(lan), 'r1');
  const outward = await startListen(lab, 'outside', RELAY_URL, 'o1');
  const sIn = await Stream.open(lab, 'outside', RELAY_URL, 'ext', `r1@${domain}`);
  const sOut = await Stream.open(lab, lan, gatewayUrl(lan), 'int', 'o1@relay');
  sIn.start(50);
  sOut.start(50);
  await sleep((n / 50) * 1000);
  await Promise.all([sIn.stop(), sOut.stop()]);
  const [vIn, vOut] = await settle([
    [sIn, inward, 'ext@relay'],
    [sOut, outward, `int@${domain}`],
  ]);
  assert.ok(clean(vIn!) && clean(vOut!), `relay->${lan} ${formatVerdict(vIn!)}, ${lan}->relay ${formatVerdict(vOut!)}\n${context(inward, outward)}`);
  return `relay->${lan} ${formatVerdict(vIn!)}, ${lan}->relay ${formatVerdict(vOut!)}`;
}

/** The output of a command that should fail, checked to be one clear error naming the proxy. */
function assertProxyError(p: LabProc, what: string): string {
  const text = `${p.stdout}${p.stderr}`;
  assert.match(text, new RegExp(PROXY.replace(/\./g, '\\.')), `${what}: the error should name the proxy ${PROXY}\n${p.describe()}`);
  assert.match(text, /proxy/i, `${what}: the error should say it is the proxy's\n${p.describe()}`);
  assert.match(text, /40[17]|credential|authenticat/i, `${what}: the error should say the proxy refused the credentials\n${p.describe()}`);
  assert.doesNotMatch(text, /:wrong@/, `${what}: the error must not print the proxy password\n${p.describe()}`);
  assert.doesNotMatch(text, /^\s+at /m, `${what}: a stack trace is not a clear error\n${p.describe()}`);
  // (The start log names the listener's own long-poll endpoint; what must not appear is a dial.)
  assert.doesNotMatch(text, /long-poll (failed|session)/, `${what}: a proxy refusal stops long-poll as well; it should not be tried\n${p.describe()}`);
  return p.stderr.trim().split('\n').filter((l) => /40[17]|credential|authenticat/i.test(l))[0] ?? text.trim().split('\n')[0]!;
}

labSuite('lab: proxies', { lans: ['strict', 'nows'], tools: ['ip', 'ss', 'tc', 'iptables', 'openssl', 'tinyproxy'] }, (test) => {
  test('strict LAN: no way out but tinyproxy, which wants Basic credentials', 30_000, async (_t, lab) => {
    await startRelay(lab);
    const cred = `${LAB.proxyUser}:${LAB.proxyPassword}`;
    const [direct, good, none, wrong, otherPort] = await Promise.all([
      lab.probe('strict', 'tcp', LAB.outside, String(LAB.relayPort), '3000'),
      lab.probe('strict', 'connect', LAB.router('strict'), String(LAB.proxyPort), RELAY_AT, cred, '5000'),
      lab.probe('strict', 'connect', LAB.router('strict'), String(LAB.proxyPort), RELAY_AT, '-', '5000'),
      lab.probe('strict', 'connect', LAB.router('strict'), String(LAB.proxyPort), RELAY_AT, `${LAB.proxyUser}:wrong`, '5000'),
      lab.probe('strict', 'connect', LAB.router('strict'), String(LAB.proxyPort), `${LAB.outside}:22`, cred, '5000'),
    ]);
    console.log(
      `lab strict: direct to the relay ${direct}; CONNECT ${RELAY_AT} via ${PROXY}: with credentials ${good}, ` +
        `without ${none}, wrong ${wrong}; CONNECT to port 22 ${otherPort}`,
    );
    assert.equal(direct, 'timeout');
    assert.equal(good, 'status 200');
    assert.equal(none, 'status 407');
    // tinyproxy answers wrong credentials with 401 (missing ones with 407): a client must take both.
    assert.match(wrong, /^status 40[17]$/);
    assert.equal(otherPort, 'status 403');
  });

  test('(b) the strict LAN through the proxy with credentials; a clear error with wrong ones', 90_000, async (_t, lab) => {
    const relay = await startRelay(lab);
    const tunnels0 = (lab.proxyLog.match(/Established connection to host/g) ?? []).length;
    const gw = await startGateway(lab, 'strict', 'strict', ['--proxy', proxyUrl(LAB.proxyPassword)]);
    const traffic = await bothWays(lab, 'strict', 'strict', 50);

    // An agent in the strict LAN straight to the relay, through the proxy.
    const o2 = await startListen(lab, 'outside', RELAY_URL, 'o2');
    await sendOne(lab, 'strict', RELAY_URL, 'direct', 'o2@relay', 'through tinyproxy', ['--proxy', proxyUrl(LAB.proxyPassword)]);
    assert.equal((await waitMessage(o2, 'through tinyproxy')).from, 'direct@relay');
    // The same with the proxy from the environment (HTTPS_PROXY, for a wss:// router).
    const viaEnv = lab.posternWithEnv('strict', { HTTPS_PROXY: proxyUrl(LAB.proxyPassword) }, 'send', '--connect', RELAY_URL, '--to', 'o2@relay', '--as', 'env', '--token', await relayToken('env'), ...relayTrust(lab, 'strict'), 'via HTTPS_PROXY');
    assert.equal((await viaEnv.waitExit(30_000)).code, 0, viaEnv.describe());
    assert.equal((await waitMessage(o2, 'via HTTPS_PROXY')).from, 'env@relay');
    const tunnels = (lab.proxyLog.match(/Established connection to host/g) ?? []).length - tunnels0;

    // Wrong credentials: one clear error naming the proxy, from send and from a gateway.
    const bad = lab.postern('strict', 'send', '--connect', RELAY_URL, '--to', 'o2@relay', ...relayTrust(lab, 'strict'), '--proxy', proxyUrl('wrong'), 'never');
    const badExit = await bad.waitExit(30_000);
    assert.notEqual(badExit.code, 0, `send with wrong proxy credentials succeeded\n${bad.describe()}`);
    const sendError = assertProxyError(bad, 'send');
    const badGw = lab.postern('strict', 'gateway', '--relay', RELAY_URL, '--domain', 'strict2', '--token', await issueToken(SECRET, { domain: 'strict2' }), '--listen', `${LAB.host('strict')}:${LAB.gatewayPort + 1}`, '--memory', ...relayTrust(lab, 'strict'), '--proxy', proxyUrl('wrong'));
    const badGwExit = await badGw.waitExit(30_000);
    assert.equal(badGwExit.code, 1, `a gateway refused by its proxy at start should exit 1\n${badGw.describe()}`);
    const gatewayError = assertProxyError(badGw, 'gateway');

    console.log(
      `lab (b): gateway and agent in the strict LAN via ${PROXY} (Basic auth; ${tunnels} CONNECT tunnels): ${traffic}, ` +
        `strict agent -> relay agent delivered with --proxy and with HTTPS_PROXY (wss, --ca); wrong credentials: send exited ${String(badExit.code)}: "${sendError}"; gateway exited ${String(badGwExit.code)}: "${gatewayError}"`,
    );
    assert.ok(tunnels >= 3, `tinyproxy logged ${tunnels} tunnels\n${context(gw, relay)}`);
  });

  test('(b, idle) tinyproxy closes idle tunnels; pings keep the uplink through it up while nothing is sent', 60_000, async (_t, lab) => {
    const relay = await startRelay(lab);
    const idleS = LAB.proxyIdleTimeoutS;
    // A tunnel nobody speaks in: the proxy's idle timeout is real.
    const silent = lab.probe('strict', 'idle', LAB.router('strict'), String(LAB.proxyPort), RELAY_AT, `${LAB.proxyUser}:${LAB.proxyPassword}`, String(idleS * 3000));
    const gw = await startGateway(lab, 'strict', 'strict', ['--proxy', proxyUrl(LAB.proxyPassword)]);
    const tunnels0 = (lab.proxyLog.match(/Established connection to host/g) ?? []).length;
    await sleep(idleS * 3000);
    const probe = await silent;
    const tunnels = (lab.proxyLog.match(/Established connection to host/g) ?? []).length - tunnels0;
    const downs = gw.stderr.split('\n').filter((l) => /uplink (down|refused)/.test(l));
    const traffic = await bothWays(lab, 'strict', 'strict', 20);
    console.log(
      `lab (b, idle): tinyproxy Timeout ${idleS} s: a silent CONNECT tunnel ${probe}; the gateway's uplink through it, ` +
        `idle ${idleS * 3} s with pings every ${PING_MS} ms: ${downs.length} uplink down event(s), ${tunnels} new tunnel(s); then ${traffic}`,
    );
    const m = /^closed after (\d+) ms$/.exec(probe);
    assert.ok(m !== null && Number(m[1]) >= (idleS - 1) * 1000, `tinyproxy should close a silent tunnel after about ${idleS} s: ${probe}\n${lab.proxyLog.slice(-2000)}`);
    assert.deepEqual(downs, [], `the uplink went down while idle\n${context(gw, relay)}`);
    assert.equal(tunnels, 0, `the gateway opened new tunnels while idle\n${context(gw, relay)}`);
  });

  test('nows LAN: the middlebox inspects TLS, forwards HTTP to the relay and refuses WebSocket', 30_000, async (_t, lab) => {
    await startRelay(lab);
    const port = String(LAB.relayPort);
    const [ws, plain, labCaOnly, other, fromOutside] = await Promise.all([
      lab.probe('nows', 'tlsget', LAB.outside, port, '/', '5000', lab.tls.inspectionCaPath, 'websocket'),
      lab.probe('nows', 'tlsget', LAB.outside, port, '/', '5000', lab.tls.inspectionCaPath),
      lab.probe('nows', 'tlsget', LAB.outside, port, '/', '5000', lab.tls.caPath),
      lab.probe('nows', 'tcp', LAB.outside, '22', '3000'),
      lab.probe('outside', 'tlsget', LAB.outside, port, '/', '5000', lab.tls.caPath),
    ]);
    const log = lab.middleboxLog;
    console.log(
      `lab nows: to the relay's address over TLS trusting the inspection CA: WebSocket upgrade ${ws}, plain GET ${plain} ` +
        `(the relay's answer via the middlebox; outside, trusting the lab CA: ${fromOutside}); trusting only the lab CA: ${labCaOnly} ` +
        `(the middlebox's certificate, not the relay's); other ports ${other}`,
    );
    assert.equal(ws, 'status 403');
    assert.match(plain, /^status \d{3}$/);
    assert.equal(plain, fromOutside, 'the middlebox should pass on what the relay answers');
    assert.match(labCaOnly, /^error /, 'the nows LAN should not see the relay\'s own certificate');
    assert.equal(other, 'timeout');
    assert.ok(log.some((l) => l.startsWith('middlebox: refused websocket upgrade')), log.join('\n'));
    assert.ok(log.some((l) => l.startsWith('middlebox: forwarded GET /')), log.join('\n'));
  });

  test('(c) the WebSocket-blocking LAN: long-poll over https, one session for all agents, then back to WebSocket', 120_000, async (_t, lab) => {
    const log0 = lab.middleboxLog.length;
    const since = (from = log0): string[] => lab.middleboxLog.slice(from);
    const relay = await startRelay(lab);
    const gw = await startGateway(lab, 'nows', 'nows', ['--transport', 'auto', '--ws-probe-interval', String(PROBE_MS)], false);
    await gw.waitFor('stdout', /postern gateway: uplink to .* is up/, 40_000).catch((e: unknown) => {
      throw new Error(`${String(e)}\n${context(relay)}\nmiddlebox:\n${since().slice(-20).join('\n')}`);
    });
    // The gateway's long-poll link opened about now: its first WebSocket probe is due
    // PROBE_MS +-20% later and fails (the middlebox still refuses); the next one, twice as far
    // on, meets a middlebox that lets WebSocket through.
    const tLongPoll = Date.now();

    // Two agents behind the gateway, traffic both ways, all of it while the uplink is long-poll.
    const r1 = await startListen(lab, 'nows', gatewayUrl('nows'), 'r1');
    const r2 = await startListen(lab, 'nows', gatewayUrl('nows'), 'r2');
    const o1 = await startListen(lab, 'outside', RELAY_URL, 'o1');
    const s1 = await Stream.open(lab, 'outside', RELAY_URL, 'ext1', 'r1@nows');
    const s2 = await Stream.open(lab, 'outside', RELAY_URL, 'ext2', 'r2@nows');
    const sOut = await Stream.open(lab, 'nows', gatewayUrl('nows'), 'int', 'o1@relay');
    const streams = [s1, s2, sOut];
    for (const s of streams) s.start(10);
    await sleep(3000);
    const atGateway = (await lab.peers('nows', LAB.gatewayPort)).length;
    const h1 = await relayHealth(lab);
    const polled = since();
    const refused = polled.filter((l) => l.includes('refused websocket')).length;
    const opened = polled.filter((l) => /forwarded POST \/postern\/http\/sessions -> 201/.test(l)).length;
    const pollSessions = new Set(polled.map((l) => / \/postern\/http\/sessions\/([^/?\s]+)\/poll/.exec(l)?.[1]).filter((id) => id !== undefined));
    const polls = polled.filter((l) => / \/postern\/http\/sessions\/\S+\/poll/.test(l)).length;
    const onLongPoll = `while on long-poll: ${atGateway} agents at the gateway; the middlebox refused ${refused} upgrade(s), opened ${opened} session(s), forwarded ${polls} polls of ${pollSessions.size} session(s); the relay's /healthz: ${h1.stats.downlinks} downlink(s), ${h1.longPollSessions} long-poll session(s)`;
    const mid = `${onLongPoll}\n${context(gw, relay)}\nmiddlebox:\n${polled.slice(-20).join('\n')}`;
    assert.ok(refused >= 1, `the gateway never tried WebSocket: ${mid}`);
    assert.match(gw.stderr, /WARN .*uplink falls back to HTTP long-poll .*reason="WebSocket could not be opened: .*403/, `the gateway should log why it uses long-poll: ${mid}`);
    assert.ok(atGateway >= 3, `r1, r2 and int should be connected to the gateway: ${mid}`);
    assert.equal(opened, 1, `one long-poll session for every agent: ${mid}`);
    assert.equal(pollSessions.size, 1, mid);
    assert.equal(h1.longPollSessions, 1, mid);
    assert.equal(h1.stats.downlinks, 1, `the relay should see one link from the gateway: ${mid}`);

    // The middlebox starts letting WebSocket through: the gateway's next probe gets through and
    // it moves its uplink back to WebSocket, while the streams keep flowing.
    const allowAfter = Date.now() - tLongPoll;
    const logAllow = lab.middleboxLog.length;
    const errAt = gw.stderr.length;
    await lab.middleboxUpgrades(true);
    await gw.waitFor('stderr', /goes back to WebSocket/, 45_000, errAt);
    await gw.waitFor('stderr', /uplink connected/, 15_000, errAt);
    const upgradedAfter = Date.now() - tLongPoll;
    await sleep(3000);
    const h2 = await relayHealth(lab);
    for (const s of streams) await s.stop();
    const verdicts = await settle([
      [s1, r1, 'ext1@relay'],
      [s2, r2, 'ext2@relay'],
      [sOut, o1, 'int@nows'],
    ]);
    const tunnelled = since(logAllow).filter((l) => l.includes('tunnelled websocket upgrade')).length;
    const [v1, v2, vOut] = verdicts;
    const line =
      `lab (c): gateway in the nows LAN (--transport auto, wss through a TLS-inspecting middlebox, --ca its CA); ${onLongPoll}; ` +
      `upgrades allowed ${seconds(allowAfter)} after the fallback, back on WebSocket ${seconds(upgradedAfter)} after it ` +
      `(${tunnelled} upgrades tunnelled; /healthz then: ${h2.stats.downlinks} downlink(s), ${h2.longPollSessions} long-poll session(s)); ` +
      `relay->r1 ${formatVerdict(v1!)}, relay->r2 ${formatVerdict(v2!)}, nows->relay ${formatVerdict(vOut!)}`;
    console.log(line);
    const end = `${line}\n${context(gw, r1, r2, o1)}\nmiddlebox:\n${since(logAllow).slice(-20).join('\n')}`;
    assert.ok(tunnelled >= 1, end);
    assert.equal(h2.longPollSessions, 0, `the long-poll session should be gone after the upgrade: ${end}`);
    assert.equal(h2.stats.downlinks, 1, end);
    assert.ok(verdicts.every(clean), end);
  });

  test("(c) --transport ws cannot get through the middlebox", 60_000, async (_t, lab) => {
    await startRelay(lab);
    const ws = lab.postern('nows', 'send', '--connect', RELAY_URL, '--to', 'o1@relay', ...relayTrust(lab, 'nows'), '--transport', 'ws', '--timeout', '5000', 'never');
    const wsExit = await ws.waitExit(30_000);
    const error = ws.stderr.trim().split('\n')[0] ?? '';
    console.log(`lab (c, ws only): send --transport ws (wss, --ca the inspection CA) from the nows LAN exited ${String(wsExit.code)}: "${error}"`);
    assert.notEqual(wsExit.code, 0, `--transport ws got through the middlebox\n${ws.describe()}`);
    assert.match(error, /403/, `the error should be the middlebox's refusal\n${ws.describe()}`);
  });
});
