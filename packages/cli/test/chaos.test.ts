// Nothing lost (issue 3): three senders on the relay send sequence-numbered reliable messages
// through relay <- fault proxy <- gateway to two receivers on the gateway, while each scenario
// kills routers (SIGKILL, at random moments and at every crash point) or breaks the tunnel. The
// checker then classifies every message the relay accepted; lost, duplicated, reordered and
// unexpected must all be 0. One line of counts per scenario is printed.
//
// Replay a run: POSTERN_CHAOS_SEED=<the printed seed> node scripts/run-tests.mjs chaos
// (POSTERN_CHAOS_VERBOSE=1 prints what every process said, pass or fail.)
import assert from 'node:assert/strict';
import { afterEach, before, describe, it } from 'node:test';
import { CRASH_POINTS } from '@postern/core';
import { issueToken } from '@postern/router';
import { check, clean, formatCounts } from './chaos/checker.js';
import { createRng, runSeed, scenarioSeed, type Rng } from './chaos/rng.js';
import { DOMAIN, SENDERS, Topology, type Role } from './chaos/topology.js';
import { killAll } from './procs.js';

const SECRET = 'chaos-secret-0123456789abcdef';
/** Per sender: COUNT messages at RATE a second, so traffic lasts TRAFFIC_MS. */
const COUNT = 240;
const RATE = 80;
const TRAFFIC_MS = (COUNT / RATE) * 1000;
/** An armed router must reach its crash point within this time of the traffic starting. */
const CRASH_WAIT_MS = 8000;

const SEED = runSeed();
console.log(`chaos: seed ${SEED} (replay with POSTERN_CHAOS_SEED=${SEED})`);

/**
 * Which routers reach a crash point here. Traffic flows from agents on the relay to agents on
 * the gateway: both store and accept (each hop stores before it acks the previous one), only
 * the relay forwards to a next router, only the gateway delivers to recipient agents.
 */
function rolesFor(point: string): Role[] | undefined {
  if (point.startsWith('store.') || point.startsWith('accept.')) return ['relay', 'gateway'];
  if (point.startsWith('forward.')) return ['relay'];
  if (point.startsWith('deliver.')) return ['gateway'];
  return undefined;
}

let gatewayToken = '';
const senderTokens: Record<string, string> = {};
let world: Topology | undefined;

before(async () => {
  gatewayToken = await issueToken(SECRET, { domain: DOMAIN });
  for (const s of SENDERS) senderTokens[s] = await issueToken(SECRET, { domain: 'relay', name: s });
});

afterEach(async () => {
  await world?.close();
  world = undefined;
  await killAll();
});

type Faults = (t: Topology, rng: Rng) => Promise<void>;

/** Builds the world, runs `faults` during the traffic, heals everything, waits, checks. */
async function scenario(name: string, faults: Faults, crashAt?: { role: Role; spec: string }): Promise<void> {
  const rng = createRng(scenarioSeed(SEED, name));
  const crash = crashAt === undefined ? {} : { crashAt, crashRestartDelayMs: rng.int(0, 300) };
  const t = (world = await Topology.create({ secret: SECRET, gatewayToken, senderTokens, count: COUNT, rate: RATE, ...crash }));
  await t.startTraffic();
  await faults(t, rng);
  // Heal: whatever is still broken is repaired, so that everything accepted can arrive.
  t.proxy.setDelay(0);
  t.proxy.setSlice(0);
  t.proxy.restore();
  await t.ensureRunning();
  const { settled, ms } = await t.settle();
  const { counts, examples } = check(t.sent(), t.received());
  const line = formatCounts(name, counts);
  const { resets } = t.proxy.stats;
  console.log(
    `${line} settled=${settled ? `${ms}ms` : `no (gave up after ${ms}ms)`} ` +
      `restarts=relay:${t.restarts.relay},gateway:${t.restarts.gateway} proxy-resets=${resets}`,
  );
  const context = `${line}\nexamples: ${JSON.stringify(examples)}\nreplay: POSTERN_CHAOS_SEED=${SEED}\n${t.describe()}`;
  if (process.env['POSTERN_CHAOS_VERBOSE'] === '1') console.log(t.describe());
  assert.ok(counts.accepted > 0, `nothing was accepted: the run proves nothing\n${context}`);
  assert.ok(clean(counts), context);
  // Nothing may be stuck either: every send the agents made settled once the faults healed.
  assert.equal(counts.pending, 0, `sends never settled\n${context}`);
}

/** Kills `roles` together at a random moment and restarts them (in random order), twice. */
function killAndRestart(...roles: Role[]): Faults {
  return async (t, rng) => {
    for (let round = 0; round < 2; round++) {
      await t.pause(rng.int(300, 1200));
      await Promise.all(roles.map((r) => t.kill(r)));
      await t.pause(rng.int(0, 500));
      const order = rng.next() < 0.5 ? roles : [...roles].reverse();
      for (const r of order) await t.restart(r);
    }
  };
}

describe('chaos: nothing accepted is lost, duplicated or reordered', () => {
  it('relay-kill: SIGKILL the relay at random moments, restart it', () => scenario('relay-kill', killAndRestart('relay')));
  it('gateway-kill: SIGKILL the gateway at random moments, restart it', () => scenario('gateway-kill', killAndRestart('gateway')));
  it('both-kill: SIGKILL relay and gateway together, restart them', () => scenario('both-kill', killAndRestart('relay', 'gateway')));

  describe('crash points: an armed router dies there by itself, restarts unarmed', () => {
    for (const point of CRASH_POINTS) {
      const roles = rolesFor(point);
      if (roles === undefined) {
        it(`crash ${point}`, () => assert.fail(`crash point ${point}: say in rolesFor() which routers reach it`));
        continue;
      }
      for (const role of roles) {
        const name = `crash-${role}-${point}`;
        it(name, () => {
          // The n-th time: a random moment in the traffic. A commit holds several messages.
          const n = createRng(scenarioSeed(SEED, `${name}/n`)).int(1, point.startsWith('store.') ? 20 : 150);
          console.log(`chaos ${name}: the ${role} starts with POSTERN_CRASH_AT=${point}:${n}`);
          return scenario(name, (t) => t.crashed(CRASH_WAIT_MS), { role, spec: `${point}:${n}` });
        });
      }
    }
  });

  describe('tunnel faults through the proxy', () => {
    it('proxy-delay: 50 ms each way', () =>
      scenario('proxy-delay', async (t) => {
        t.proxy.setDelay(50);
        await t.pause(TRAFFIC_MS);
      }));
    it('proxy-slice: 3-byte writes', () =>
      scenario('proxy-slice', async (t) => {
        t.proxy.setSlice(3);
        await t.pause(TRAFFIC_MS);
      }));
    it('proxy-reset: RST the tunnel three times', () =>
      scenario('proxy-reset', async (t, rng) => {
        for (let i = 0; i < 3; i++) {
          await t.pause(rng.int(300, 1000));
          t.proxy.resetAll();
        }
      }));
    it('proxy-cut: refuse the tunnel for 2 s', () =>
      scenario('proxy-cut', async (t, rng) => {
        await t.pause(rng.int(300, 1000));
        t.proxy.cut();
        await t.pause(2000);
        t.proxy.restore();
      }));
    it('proxy-blackhole: swallow the tunnel for 2 s', () =>
      scenario('proxy-blackhole', async (t, rng) => {
        await t.pause(rng.int(300, 1000));
        t.proxy.blackhole();
        await t.pause(2000);
        t.proxy.restore();
      }));
  });
});
