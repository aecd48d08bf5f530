// `postern demo --web` as a user runs it: a real child process, whose printed URL is opened in the
// system's Chromium (playwright-core, no browser download). The page's visitor, a guest agent on
// the relay, writes to alice@acme behind the gateway and reads her answer; a second tab writes to
// the first and to all; markup in a message stays text; the dashboards beside the chat answer;
// nothing the page received carries a router secret, an admin token or a token other than its
// own guest token; the page runs under its CSP without a violation; a screenshot of the page is
// saved to docs/screenshots/demo-web.png; and the demo stops cleanly on SIGINT.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { after, describe, it } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { CHROMIUM_ARGS, findChromium, within } from '@postern/testing';
import { REPO_ROOT, killAll, run, start, type Proc } from './procs.js';

/** Every wait of this file ends by then. */
const STEP_MS = 15_000;
const SCREENSHOT = `${REPO_ROOT}docs/screenshots/demo-web.png`;

const chromiumFound = findChromium();
const skip = 'missing' in chromiumFound && process.env['CI'] === undefined ? chromiumFound.missing : false;
if (skip !== false) console.log(`# ${skip}`);

/** What the browser received: HTTP answers (bodies of text kinds) and WebSocket frames. */
interface Received {
  url: string;
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** The JWTs in `text`, decoded (payloads). */
function jwts(text: string): Array<Record<string, unknown>> {
  return [...text.matchAll(/eyJ[\w-]+\.(eyJ[\w-]+)\.[\w-]+/g)].map((m) => JSON.parse(Buffer.from(m[1]!, 'base64url').toString('utf8')) as Record<string, unknown>);
}

/**
 * Strings shaped like the demo's secrets (24 random bytes in base64url: 32 characters, mixed
 * case). Ids of the protocol are lowercase or hex, node keys are 43 characters long.
 */
function secretLike(text: string): string[] {
  const withoutJwts = text.replace(/eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+/g, '');
  return [...withoutJwts.matchAll(/(?<![\w-])[A-Za-z0-9_-]{32}(?![\w-])/g)].map((m) => m[0]).filter((s) => /[A-Z]/.test(s) && /[a-z]/.test(s));
}

describe('postern demo --web in Chromium', { skip, timeout: 120_000 }, () => {
  let browser: Browser | undefined;
  after(async () => {
    await browser?.close().catch(() => undefined);
    await killAll();
  });

  it('rejects a bad --web-listen, or one without --web, before starting anything', async () => {
    const p = await run(['demo', '--web', '--web-listen', 'nowhere']);
    assert.equal(p.exit?.code, 2, p.describe());
    assert.match(p.stderr, /--web-listen must be HOST:PORT/, p.describe());
    const alone = await run(['demo', '--web-listen', '127.0.0.1:0']);
    assert.equal(alone.exit?.code, 2, alone.describe());
    assert.match(alone.stderr, /--web-listen is for --web/, alone.describe());
  });

  it('stops cleanly on SIGTERM, the page server too', async () => {
    const demo = start('demo', '--web', '--seconds', '60', '--rate', '5');
    const url = (await demo.waitFor('stdout', /^web\s+(http:\/\/\S+)/m, STEP_MS))[1]!;
    assert.equal((await fetch(url)).status, 200);
    demo.child.kill('SIGTERM');
    const exit = await demo.waitExit(STEP_MS);
    assert.equal(exit.code, 0, demo.describe());
    assert.match(demo.stdout, /stopped: \d+ messages crossed inward/, demo.describe());
    await assert.rejects(fetch(url), 'the page server is closed');
  });

  it('a visitor chats with alice behind the gateway and with another tab, beside both dashboards', async () => {
    assert.ok('path' in chromiumFound, 'missing' in chromiumFound ? chromiumFound.missing : '');
    const demo: Proc = start('demo', '--web', '--seconds', '90', '--rate', '20');
    const url = (await demo.waitFor('stdout', /^web\s+(http:\/\/\S+)/m, STEP_MS))[1]!;
    const dash = await demo.waitFor('stdout', /dashboards: relay (\S+)\s+gateway (\S+)/, STEP_MS);
    const dashboards = { relay: dash[1]!, gateway: dash[2]! };
    console.log(`# page ${url}, dashboards ${dashboards.relay} ${dashboards.gateway}`);
    const origin = new URL(url).origin;

    // The token endpoint: another site's page gets none, nor does a rebound host name.
    const foreign = await fetch(`${origin}/token`, { method: 'POST', headers: { origin: 'http://evil.example' } });
    assert.equal(foreign.status, 403);
    const rebound = await new Promise<number | undefined>((resolve, reject) =>
      request(`${origin}/`, { headers: { host: 'evil.example' } }, (res) => {
        res.resume();
        resolve(res.statusCode);
      })
        .on('error', reject)
        .end(),
    );
    assert.equal(rebound, 421);

    const started = Date.now();
    browser = await within(chromium.launch({ executablePath: chromiumFound.path, headless: true, args: CHROMIUM_ARGS, timeout: STEP_MS }), 'Chromium to start');
    const context: BrowserContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    context.setDefaultTimeout(STEP_MS);
    const received: Received[] = [];
    const reading: Array<Promise<unknown>> = [];
    context.on('response', (r) => {
      const headers = r.headers();
      const type = headers['content-type'] ?? '';
      // A stream's body never ends; scripts are files read from disk at start (no secret can be in them).
      const body = /event-stream|javascript/.test(type) ? Promise.resolve('') : r.text().catch(() => '');
      reading.push(body.then((b) => received.push({ url: r.url(), status: r.status(), headers, body: b })));
    });
    const violations: string[] = [];
    const watchPage = (p: Page): void => {
      p.on('console', (m) => {
        if (/Content Security Policy|Refused to/i.test(m.text())) violations.push(m.text());
      });
      p.on('websocket', (ws) =>
        ws.on('framereceived', (f) => {
          received.push({ url: ws.url(), status: 101, headers: {}, body: typeof f.payload === 'string' ? f.payload : f.payload.toString('latin1') });
        }),
      );
    };

    const openTab = async (): Promise<{ page: Page; address: string }> => {
      const page = await context.newPage();
      watchPage(page);
      await page.goto(url);
      await page.waitForFunction(() => !(document.getElementById('send') as HTMLButtonElement).disabled);
      const address = (await page.textContent('#me')) ?? '';
      assert.match(address, /^guest-[0-9a-f]+@relay$/);
      return { page, address };
    };
    /** Waits for a line of the conversation from `from` whose text contains `text`. */
    const line = (page: Page, kind: string, from: string, text: string): Promise<unknown> =>
      page.waitForFunction(
        ([k, f, t]) => Array.from(document.querySelectorAll(`#log li.${k}`)).some((li) => (li as HTMLElement).dataset['from'] === f && (li.querySelector('.text')?.textContent ?? '').includes(t)),
        [kind, from, text] as const,
      );
    const say = async (page: Page, to: string, text: string): Promise<void> => {
      await page.selectOption('#to', to);
      await page.fill('#text', text);
      await page.click('#send');
    };

    const a = await openTab();
    console.log(`# first tab connected as ${a.address} ${Date.now() - started} ms after Chromium was asked to start`);
    await line(a.page, 'alice', 'alice@acme', `hello ${a.address}!`);
    await a.page.waitForFunction(() => document.getElementById('alice-state')?.textContent === 'online');

    let t0 = Date.now();
    await say(a.page, 'alice', 'hello alice, from outside');
    await line(a.page, 'alice', 'alice@acme', 'you said "hello alice, from outside"');
    console.log(`# page -> alice@acme -> page: ${Date.now() - t0} ms`);
    // Each line carries its message's id, for the dashboards' path view.
    await a.page.waitForFunction(() => {
      const titles = Array.from(document.querySelectorAll('#log li.mine, #log li.alice'), (li) => (li as HTMLElement).title);
      return titles.length >= 3 && titles.every((t) => /^message id \S+: /.test(t));
    });

    const b = await openTab();
    // Alice's list of who is online reaches the first tab: it may now write to the second.
    await a.page.waitForFunction((addr) => Array.from((document.getElementById('to') as HTMLSelectElement).options).some((o) => o.value === addr), b.address);
    await a.page.waitForFunction((addr) => (document.getElementById('online')?.textContent ?? '').includes(addr), b.address);
    t0 = Date.now();
    await say(a.page, b.address, 'hi, other tab');
    await line(b.page, 'other', a.address, 'hi, other tab');
    console.log(`# tab -> tab through the relay: ${Date.now() - t0} ms`);
    await say(b.page, 'all', 'hello everyone');
    await line(a.page, 'other', `${b.address} (to all)`, 'hello everyone');
    // Markup in a message is shown as text.
    const markup = '<img src=x id=injected><b>bold</b>';
    await say(b.page, a.address, markup);
    await line(a.page, 'other', b.address, markup);
    assert.equal(await a.page.$('#log img, #log b, #injected'), null, 'markup in a message stays text');

    // The dashboards beside the chat: the frames point at the routers' admin listeners, which answer.
    const frames = await a.page.$$eval('iframe', (fs) => fs.map((f) => f.src));
    assert.deepEqual(frames, [dashboards.relay, dashboards.gateway]);
    for (const src of frames) {
      const u = new URL(src);
      assert.equal(u.hostname, '127.0.0.1', 'the dashboards are on loopback');
      const metrics = await fetch(`${u.origin}/metrics`);
      assert.equal(metrics.status, 200, `${u.origin}/metrics`);
      // The dashboard's data (branch dash-api): the relay and the gateway, each with its link to the other.
      const overview = await fetch(`${u.origin}/api/overview`);
      if (overview.status !== 404) {
        assert.equal(overview.status, 200, `${u.origin}/api/overview`);
        const o = (await overview.json()) as { role: string; domain: string; counts: { agents: number; uplinks: number; downlinks: number } };
        console.log(`# ${u.origin}/api/overview: ${o.role} of "${o.domain}", ${JSON.stringify(o.counts)}`);
        assert.equal(o.role, src === dashboards.relay ? 'relay' : 'gateway');
        if (o.role === 'relay') assert.ok(o.counts.downlinks >= 1 && o.counts.agents >= 2, 'the gateway and the tabs at the relay');
        else assert.ok(o.counts.uplinks === 1 && o.counts.agents >= 1, 'the uplink and alice at the gateway');
      }
      const r = await fetch(src);
      console.log(`# ${src}: ${r.status} ${r.headers.get('content-type') ?? ''}`);
      if (r.status === 200) {
        // The dashboard lets the demo page (and no other) frame it.
        assert.match(r.headers.get('content-security-policy') ?? '', new RegExp(`frame-ancestors [^;]*${origin.replace(/[.]/g, '\\.')}`));
        // The dashboard page itself (branch dash-ui): it loads in its frame, which it allows.
        const frame = await within(
          (async () => {
            for (let i = 0; i < 100; i++) {
              const f = a.page.frames().find((x) => x.url() === src);
              if (f !== undefined && ((await f.textContent('body').catch(() => '')) ?? '').trim() !== '') return f;
              await new Promise((res) => setTimeout(res, 100));
            }
            throw new Error(`the frame of ${src} stayed empty`);
          })(),
          `the dashboard ${src} in its frame`,
        );
        console.log(`# frame ${src}: "${await frame.title()}"`);
      } else {
        assert.ok(r.status < 500, `${src} answered ${r.status}`);
      }
    }

    // The screenshot of the page, with a conversation in it.
    await say(a.page, 'alice', 'what does the relay see?');
    await line(a.page, 'alice', 'alice@acme', 'what does the relay see?');
    await new Promise((res) => setTimeout(res, 1500)); // charts of the dashboards draw a second or so
    mkdirSync(`${REPO_ROOT}docs/screenshots`, { recursive: true });
    const png = await a.page.screenshot({ type: 'png' });
    writeFileSync(SCREENSHOT, png);
    assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
    const [width, height] = [png.readUInt32BE(16), png.readUInt32BE(20)];
    console.log(`# screenshot ${SCREENSHOT}: ${width}x${height}, ${png.length} bytes`);
    assert.ok(width >= 1280 && height >= 800, `${width}x${height}`);

    // The second tab closes: alice sees it go (presence) and tells the first.
    await b.page.close();
    t0 = Date.now();
    await line(a.page, 'alice', 'alice@acme', `${b.address} left`);
    console.log(`# tab closed -> "left" in the other tab: ${Date.now() - t0} ms`);

    await within(Promise.all(reading), 'the answers to be read');
    assert.deepEqual(violations, [], 'no CSP violation on the page');
    const page = received.find((r) => r.url === url);
    assert.ok(page !== undefined);
    assert.doesNotMatch(page.headers['content-security-policy'] ?? '', /unsafe-inline|unsafe-eval/);
    assert.match(page.headers['content-security-policy'] ?? '', /script-src 'self'/);
    let tokens = 0;
    for (const r of received) {
      for (const claims of jwts(r.body)) {
        tokens++;
        // The page's own guest token only: a name of a guest, the relay's domain, an expiry; no router's token.
        assert.match(String(claims['name']), /^guest-[0-9a-f]+$/, `a token other than a guest's in ${r.url}`);
        assert.equal(claims['dom'], 'relay');
        assert.equal(typeof claims['exp'], 'number');
        assert.equal(claims['hub'] ?? claims['peer'], undefined);
      }
      assert.deepEqual(secretLike(r.body), [], `a secret-like string in ${r.url}`);
      assert.equal(r.headers['set-cookie'], undefined, `no cookie from ${r.url}`);
      if (r.url.startsWith(origin)) assert.doesNotMatch(r.body, /secret|admin.?token/i, `${r.url} talks of secrets`);
    }
    console.log(`# the browser received ${received.length} answers and frames; ${tokens} guest tokens in them, nothing else secret-shaped`);
    assert.ok(tokens >= 2, 'each tab got its guest token');

    await context.close();
    demo.child.kill('SIGINT');
    const exit = await demo.waitExit(STEP_MS);
    assert.equal(exit.code, 0, demo.describe());
    const stopped = /stopped: (\d+) messages crossed inward, (\d+) outward, (\d+) failed/.exec(demo.stdout);
    assert.ok(stopped, demo.describe());
    assert.match(demo.stdout, /web visitors \d+/, 'the live count goes on, with the visitors');
    console.log(`# demo stopped on SIGINT: ${stopped[0]}`);
    assert.equal(readFileSync(SCREENSHOT).length, png.length);
  });
});
