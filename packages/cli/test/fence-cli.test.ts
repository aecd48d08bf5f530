// One domain, two gateways (issue 11 item 4), from the command line: the second `postern
// gateway` of acme at a relay is fenced, and says so on standard error, as the relay does;
// messages for acme reach the first; when the first stops, the second takes acme. Real processes
// on loopback.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { killAll, listeningOn, run, start, startGateway, startListen, startRelay } from './procs.js';

afterEach(killAll);

describe('postern gateway: a second gateway for one domain', () => {
  it('is fenced with ERR_DOMAIN_TAKEN in both logs, and takes the domain once the first gateway stops', async () => {
    const relay = await startRelay('--secret', 'rs');
    const token = (await run(['token', '--secret', 'rs', '--domain', 'acme'])).stdout.trim();
    const a = await startGateway(relay.url, 'acme', token);
    const aNode = (await a.proc.waitFor('stdout', /postern gateway: node (\S+)/))[1]!;
    const b = start('gateway', '--relay', relay.url, '--domain', 'acme', '--token', token, '--listen', '127.0.0.1:0');
    const bUrl = (await listeningOn(b)).url;
    const bNode = (await b.waitFor('stdout', /postern gateway: node (\S+)/))[1]!;
    await b.waitFor('stderr', /ERROR +gateway: this router is fenced: .*code="ERR_DOMAIN_TAKEN"/);
    assert.match(b.stderr, new RegExp(`already served by node ${aNode} at this router`));
    await relay.proc.waitFor('stderr', new RegExp(`ERROR +relay: two routers claim domain "acme": node ${aNode} serves it alone here, so node ${bNode} is fenced \\(DOMAIN_TAKEN\\)`));

    // acme is A's: bob there gets what an outsider sends, with a delivery receipt.
    const bob = await startListen('--connect', a.url, '--as', 'bob', '--count', '1');
    const sent = await run(['send', '--connect', relay.url, '--to', 'bob@acme', '--receipt', 'hello bob']);
    assert.equal(sent.exit?.code, 0, sent.describe());
    assert.equal((await bob.waitExit(10_000)).code, 0, bob.describe());
    assert.match(bob.stdout, /hello bob/);
    assert.equal(b.stderr.match(/ERROR/g)?.length, 1, `the fence is logged once, not at every retry:\n${b.stderr}`);

    // A stops: B takes acme within seconds, and carol there is reachable.
    await a.proc.kill('SIGTERM');
    await b.waitFor('stderr', /the fence is lifted/, 15_000);
    const carol = await startListen('--connect', bUrl, '--as', 'carol', '--count', '1');
    const again = await run(['send', '--connect', relay.url, '--to', 'carol@acme', '--receipt', 'hello carol']);
    assert.equal(again.exit?.code, 0, again.describe());
    assert.equal((await carol.waitExit(10_000)).code, 0, carol.describe());
  });
});
