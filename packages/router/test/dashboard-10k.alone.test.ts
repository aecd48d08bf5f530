// The dashboard with 10,000 connected agents (issue 14 item 6), in the system's Chromium: the
// router runs in a child process (one process may not hold 20,000 sockets), the agents connect
// from this one; the page must show one page of rows, search and page on the server, and draw
// live ticks. Times to first render, search, page change and tick are printed, not asserted.
// `.alone`: run-tests runs it after the other files, by itself (10,000 handshakes take both
// cores for seconds, which would starve the timing of the lab's keepalive tests beside it).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { connect, type Client } from '@postern/client';
import { CHROMIUM_ARGS, findChromium, freePort, waitFor } from '@postern/testing';

const root = fileURLToPath(new URL('../../../../', import.meta.url));
const shots = `${root}docs/screenshots/`;
const chromiumFound = findChromium();
const skip = 'missing' in chromiumFound && process.env['CI'] === undefined ? chromiumFound.missing : false;
if (skip !== false) console.log(`# ${skip}`);

describe('the dashboard with 10,000 connected agents', { skip }, () => {
  const N = 10_000;
  let child: ChildProcess | undefined;
  const clients: Client[] = [];

  let browser: Browser | undefined;
  after(async () => {
    await browser?.close();
    // Closing 10k clients one by one is slow; the router going away ends them all.
    child?.kill('SIGKILL');
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  });

  it('stays usable: paged table, server-side search and live ticks (times printed)', async () => {
    assert.ok('path' in chromiumFound, 'missing' in chromiumFound ? chromiumFound.missing : '');
    browser = await chromium.launch({ executablePath: chromiumFound.path, headless: true, args: CHROMIUM_ARGS, timeout: 15_000 });
    mkdirSync(shots, { recursive: true });
    const [port, adminPort] = [await freePort(), await freePort()];
    const bin = `${root}packages/cli/dist/src/bin.js`;
    // prettier-ignore
    child = spawn(process.execPath, [bin, 'relay', '--memory', '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${adminPort}`,
      '--max-connections', String(N + 100), '--max-connections-per-address', String(N + 100), '--connect-rate', '100000', '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    const admin = `http://127.0.0.1:${adminPort}`;
    await waitFor(async () => (await fetch(`${admin}/healthz`).catch(() => undefined))?.ok || undefined, `the relay child to start: ${stderr}`, 15_000);
    const t0 = performance.now();
    const BATCH = 250;
    for (let i = 0; i < N; i += BATCH) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(BATCH, N - i) }, (_, j) => connect({ url: `ws://127.0.0.1:${port}`, name: `agent-${String(i + j).padStart(5, '0')}`, transport: 'ws', reconnect: false })),
      );
      clients.push(...batch);
    }
    const connectS = (performance.now() - t0) / 1000;
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.setDefaultTimeout(15_000);
    const t1 = performance.now();
    await page.goto(`${admin}/dashboard/`);
    await page.waitForFunction(() => document.getElementById('agents-range')?.textContent === '1-50 of 10,000', undefined, { timeout: 30_000 });
    const firstRender = performance.now() - t1;
    assert.equal(await page.locator('#agents tbody tr').count(), 50, 'one page of rows, not 10,000');
    assert.match(await page.locator('#agents').innerText(), /agent-00000@relay/);
    const t2 = performance.now();
    await page.fill('#agents-q', 'agent-0999');
    await page.waitForFunction(() => document.getElementById('agents-range')?.textContent === '1-10 of 10');
    const search = performance.now() - t2 - 200; // less the page's 200 ms typing debounce
    await page.fill('#agents-q', '');
    await page.waitForFunction(() => document.getElementById('agents-range')?.textContent === '1-50 of 10,000');
    const t3 = performance.now();
    await page.click('#agents-next');
    await page.waitForFunction(() => document.getElementById('agents-range')?.textContent === '51-100 of 10,000');
    const pageChange = performance.now() - t3;
    // A live tick: from the router's timestamp to the chart drawn (both clocks are this machine's).
    const tick = await page.evaluate(
      () =>
        new Promise<number>((resolve) => {
          const seen = document.body.dataset['tick'];
          const poll = (): void => {
            const t = document.body.dataset['tick'];
            if (t !== undefined && t !== seen) resolve(Date.now() - Number(t));
            else requestAnimationFrame(poll);
          };
          poll();
        }),
    );
    const heap = await page.evaluate(() => (performance as unknown as { memory?: { usedJSHeapSize: number } }).memory?.usedJSHeapSize ?? 0);
    const api = performance.now();
    const r = await fetch(`${admin}/api/agents?q=agent-05&offset=0&limit=50`);
    const apiMs = performance.now() - api;
    assert.equal(((await r.json()) as { matched: number }).matched, 1000);
    await page.screenshot({ path: `${shots}dashboard-10k.png` });
    console.log(
      `# dashboard with ${N} agents: connected in ${connectS.toFixed(1)} s; first render of the agents table ${firstRender.toFixed(0)} ms (page load included); ` +
        `search ${search.toFixed(0)} ms; next page ${pageChange.toFixed(0)} ms; live tick drawn ${tick} ms after the router stamped it; /api/agents?q= ${apiMs.toFixed(1)} ms; page JS heap ${(heap / 1e6).toFixed(1)} MB`,
    );
  });
});
