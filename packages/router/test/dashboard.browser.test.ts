// The dashboard in a real browser (issue 14 items 3, 4, 6, 7): the system's Chromium driven by
// playwright-core opens the admin listener of real routers. Login with the admin token (never
// sent back to the page, the session cookie out of the page's reach), live links, agents,
// a queue growing and draining, a test message's receipt and its path across two routers,
// markup shown as text under a CSP without 'unsafe-inline'. 10,000 agents: dashboard-10k.alone.test.ts.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { issueToken, type RouterServer } from '@postern/router';
import { CHROMIUM_ARGS, findChromium, waitFor } from '@postern/testing';
import { agent, next, onCleanup, router } from './live.js';

const root = fileURLToPath(new URL('../../../../', import.meta.url));
const shots = `${root}docs/screenshots/`;
const secret = 'dashboard browser test secret';
const relayToken = 'relay-admin-token-browser-0123456789';
const STEP_MS = 15_000;

const chromiumFound = findChromium();
const skip = 'missing' in chromiumFound && process.env['CI'] === undefined ? chromiumFound.missing : false;
if (skip !== false) console.log(`# ${skip}`);

let browser: Browser | undefined;
/** Every response body the pages got from the admin listeners (the stream excepted): the token must be in none. */
const bodies: string[] = [];
/** CSP violations any page reported. */
const violations: string[] = [];

async function newPage(): Promise<Page> {
  assert.ok(browser !== undefined);
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.setDefaultTimeout(STEP_MS);
  page.on('response', (r) => {
    if ((r.headers()['content-type'] ?? '').startsWith('text/event-stream')) return;
    r.text().then(
      (t) => bodies.push(t),
      () => undefined,
    );
  });
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      const w = window as unknown as { __csp?: string[] };
      (w.__csp ??= []).push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  onCleanup(() => page.close());
  return page;
}

async function cspViolations(page: Page): Promise<string[]> {
  return page.evaluate(() => (window as unknown as { __csp?: string[] }).__csp ?? []);
}

const text = (page: Page, sel: string): Promise<string> => page.locator(sel).innerText();

describe('the dashboard in Chromium', { skip }, () => {
  let relay: RouterServer;
  let gateway: RouterServer;
  let relayPage: Page;
  let gatewayPage: Page;

  before(async () => {
    assert.ok('path' in chromiumFound, 'missing' in chromiumFound ? chromiumFound.missing : '');
    browser = await chromium.launch({ executablePath: chromiumFound.path, headless: true, args: CHROMIUM_ARGS, timeout: STEP_MS });
    onCleanup(async () => browser?.close());
    mkdirSync(shots, { recursive: true });
    relay = await router({ domain: 'relay', secret, adminListen: '127.0.0.1:0', adminToken: relayToken, pingIntervalMs: 500 });
  });

  after(async () => {
    for (const p of [relayPage, gatewayPage]) if (p !== undefined) violations.push(...(await cspViolations(p).catch(() => [])));
  });

  it('asks for the admin token: a wrong one is refused, the right one opens the dashboard; the page never sees the token or the session', async () => {
    relayPage = await newPage();
    await relayPage.goto(`${relay.adminUrl!}/dashboard/`);
    assert.match(relayPage.url(), /\/dashboard\/login$/);
    await relayPage.fill('#token', 'not-the-admin-token-at-all');
    await relayPage.click('button[type=submit]');
    await relayPage.waitForURL(/failed=1/);
    assert.equal(await relayPage.locator('#failed').isVisible(), true);
    await relayPage.fill('#token', relayToken);
    await relayPage.click('button[type=submit]');
    await relayPage.waitForURL(/\/dashboard\/$/);
    await relayPage.waitForSelector('body[data-ready="1"]');
    assert.equal(await text(relayPage, '#id-name'), 'relay');
    assert.equal(await text(relayPage, '#id-role'), 'relay');
    assert.equal(await relayPage.locator('#logout').isVisible(), true);
    assert.equal(await relayPage.evaluate(() => document.cookie), '', 'the session cookie is HttpOnly');
    await relayPage.waitForFunction(() => document.getElementById('live')?.textContent === 'live');
  });

  it('shows a gateway link appear live, and the gateway dashboard its agents', async () => {
    assert.doesNotMatch(await text(relayPage, '#links'), /acme/);
    gateway = await router({
      domain: 'acme',
      adminListen: '127.0.0.1:0',
      pingIntervalMs: 500,
      uplinks: [{ url: relay.url, token: await issueToken(secret, { domain: 'acme' }), transport: 'ws' }],
      dashboardPeers: [{ url: relay.adminUrl!, token: relayToken }],
    });
    // No reload: the stream's `links` event (or the 2 s refresh) draws it.
    await relayPage.waitForFunction(() => /downlink[\s\S]*acme[\s\S]*up[\s\S]*WebSocket/.test(document.querySelector('#links')?.textContent ?? ''));
    gatewayPage = await newPage();
    await gatewayPage.goto(`${gateway.adminUrl!}/dashboard/`);
    await gatewayPage.waitForSelector('body[data-ready="1"]');
    assert.equal(await gatewayPage.locator('#logout').isVisible(), false, 'a loopback admin listener without a token asks for no login');
    assert.match(await text(gatewayPage, '#links'), /uplink[\s\S]*up[\s\S]*WebSocket/);
    await agent(gateway.url, 'alice');
    await agent(gateway.url, 'carol');
    await gatewayPage.waitForFunction(() => /alice@acme[\s\S]*carol@acme/.test(document.querySelector('#agents')?.textContent ?? ''));
    assert.equal(await text(gatewayPage, '#agents-range'), '1-2 of 2');
    await gatewayPage.fill('#agents-q', 'car');
    await gatewayPage.waitForFunction(() => document.getElementById('agents-range')?.textContent === '1-1 of 1');
    assert.doesNotMatch(await text(gatewayPage, '#agents'), /alice/);
    await gatewayPage.fill('#agents-q', '');
    await gatewayPage.waitForFunction(() => document.getElementById('agents-range')?.textContent === '1-2 of 2');
  });

  it('shows a queue grow while its agent is away and drain when it returns; a test message gets its receipt; the path view shows both routers', async () => {
    const bob = await agent(relay.url, 'bob', await issueToken(secret, { domain: 'relay', name: 'bob' }));
    let dave = await agent(gateway.url, 'dave');
    await dave.close();
    await waitFor(() => !gateway.router.links().some((l) => l.name === 'dave') || undefined, 'dave away');
    for (let i = 0; i < 7; i++) await bob.send('dave@acme', `held ${i}`);
    await gatewayPage.waitForFunction(() => /agent\s*dave\s*7/.test(document.querySelector('#queues')?.textContent ?? ''));
    await gatewayPage.waitForFunction(() => document.querySelector('[data-card="held"] .v')?.textContent === '7');
    await gatewayPage.screenshot({ path: `${shots}dashboard.png` });
    dave = await agent(gateway.url, 'dave');
    for (let i = 0; i < 7; i++) assert.equal((await next(dave)).text(), `held ${i}`);
    await gatewayPage.waitForFunction(() => /nothing held/.test(document.querySelector('#queues')?.textContent ?? ''));

    // A test message from the gateway's dashboard to dave, who reads it: receipt OK.
    const reading = next(dave);
    await gatewayPage.fill('#send-to', 'dave@acme');
    await gatewayPage.fill('#send-text', 'from the dashboard');
    await gatewayPage.click('#send button[type=submit]');
    assert.equal((await reading).text(), 'from the dashboard');
    await gatewayPage.waitForSelector('#send-result [data-code="OK"]');
    assert.match(await text(gatewayPage, '#send-result'), /postern-dashboard@acme → dave@acme in \d+ ms/);
    await gatewayPage.click('#send-result a.trace');
    await gatewayPage.waitForFunction(() => /delivered/.test(document.querySelector('#trace-result')?.textContent ?? ''));

    // A message across the firewall: bob@relay -> dave@acme. The gateway's dashboard asks the
    // relay's for its part (dashboardPeers): two hops, the relay's first.
    const reading2 = next(dave);
    const { id } = await bob.send('dave@acme', 'traced', { receipt: 'delivered' });
    await reading2;
    await gatewayPage.fill('#trace-id', id);
    await gatewayPage.click('#trace button[type=submit]');
    await gatewayPage.waitForFunction(() => document.querySelectorAll('#trace-result .hop').length === 2 && /delivered/.test(document.querySelector('#trace-result')?.textContent ?? ''));
    const hops = await gatewayPage.locator('#trace-result .hop').evaluateAll((hs) => hs.map((h) => (h as HTMLElement).dataset['router']));
    assert.deepEqual(hops, ['relay', 'acme']);
    assert.match(await text(gatewayPage, '#trace-result'), /received[\s\S]*forwarded[\s\S]*received[\s\S]*delivered/);
    await gatewayPage.screenshot({ path: `${shots}dashboard-path.png`, fullPage: true });
  });

  it('shows markup from requests as text: no element made, no script run (CSP without unsafe-inline, no violation in normal use)', async () => {
    const markup = '<img src=x id=pwned onerror="window.__pwned=1"><script>window.__pwned=2</script>';
    await gatewayPage.fill('#trace-id', markup);
    await gatewayPage.click('#trace button[type=submit]');
    await gatewayPage.waitForFunction(() => /no router this dashboard can see|ERR_/.test(document.querySelector('#trace-result')?.textContent ?? ''));
    assert.ok((await text(gatewayPage, '#trace-result')).includes('<img src=x'), 'shown as text');
    // Refused addresses: the answer (an error, or a receipt with its code) echoes them as text.
    for (const to of [markup, 'x@no-such-domain-<b>bold</b>']) {
      await gatewayPage.fill('#send-to', to);
      await gatewayPage.click('#send button[type=submit]');
      await gatewayPage.waitForFunction(() => !/^sending|^$/.test(document.querySelector('#send-result')?.textContent ?? ''));
      console.log(`# sent to ${to}: the page says ${await text(gatewayPage, '#send-result')}`);
    }
    assert.equal(await gatewayPage.locator('#pwned, #send-result img, #trace-result img, #reports img, b').count(), 0);
    assert.equal(await gatewayPage.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined);
    const csp = (await relayPage.goto(`${relay.adminUrl!}/dashboard/`))?.headers()['content-security-policy'] ?? '';
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    await relayPage.waitForSelector('body[data-ready="1"]');
    assert.deepEqual(await cspViolations(gatewayPage), []);
    assert.deepEqual(await cspViolations(relayPage), []);
  });

  it('keeps the session of each router on one host: logging in to a second dashboard does not log out the first', async () => {
    const otherToken = 'other-admin-token-browser-0123456789';
    const other = await router({ domain: 'other', adminListen: '127.0.0.1:0', adminToken: otherToken });
    const page = await newPage();
    await page.goto(`${other.adminUrl!}/dashboard/`);
    await page.fill('#token', otherToken);
    await page.click('button[type=submit]');
    await page.waitForSelector('body[data-ready="1"]');
    await relayPage.reload();
    await relayPage.waitForSelector('body[data-ready="1"]');
    assert.match(relayPage.url(), /\/dashboard\/$/, 'the relay session survived');
  });

  it('never sent the admin token to a page', () => {
    assert.ok(bodies.length > 20, `bodies seen: ${bodies.length}`);
    assert.deepEqual(
      bodies.filter((b) => b.includes(relayToken) || b.includes('other-admin-token-browser')),
      [],
    );
  });
});
