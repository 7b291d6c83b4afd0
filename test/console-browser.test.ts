import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, Page } from 'playwright-core';
import type { ClientConfig } from '../src/config/config.ts';
import { chromiumMissing, launchChromium } from './chromium.ts';
import { ALICE, BOB_GITHUB, type FakeDevice } from './fakes/tailscaled.ts';
import { ADMINS_ONLY, deviceAgent, HEADSCALE, login, startTestEnv, type TestEnv } from './helpers.ts';
import { FRIENDS, signInWithPlex } from './plex-flow.ts';

// The home page and the operator console in Chromium, at desktop and phone width, as Alice sees
// them from her laptop on the tailnet: Chromium goes through a proxy whose every connection the
// fake tailscaled knows as Alice's device (userspace networking hands guestlist such connections).
// Screenshots go to test-results/; static/screenshots/ holds the README's copies.

const SCREENSHOTS = new URL('../test-results/', import.meta.url).pathname;
const APPS: ClientConfig[] = [
  { ...HEADSCALE, url: 'https://headscale.example.com/' },
  { ...ADMINS_ONLY, url: 'https://grafana.example.com/' },
  { ...HEADSCALE, client_id: 'jellyseerr', client_secret: 'jellyseerr-secret-0123456789', name: 'Jellyseerr', url: 'https://requests.example.com/', redirect_uris: ['https://requests.example.com/callback'] },
  { ...HEADSCALE, client_id: 'paperless', client_secret: 'paperless-secret-0123456789', name: 'Paperless', url: 'https://paperless.example.com/', redirect_uris: ['https://paperless.example.com/callback'] },
  FRIENDS,
];
const SIZES = { desktop: { width: 1280, height: 900 }, phone: { width: 390, height: 844 } } as const;

describe('the home page and the console in a browser', { skip: chromiumMissing() }, () => {
  let env: TestEnv;
  let browser: Browser;
  let proxy: Server;
  let device: FakeDevice | null = ALICE;

  before(async () => {
    env = await startTestEnv({ clients: APPS, plex: true, jellyfin: true, admin: { allowed_groups: ['admins'] }, issuerHost: 'localhost' });
    // A forward proxy: each request Chromium sends leaves on a connection tailscaled knows as `device`.
    proxy = createServer((req, res) => {
      const target = new URL(req.url!);
      const out = request({ host: target.hostname, port: target.port, path: `${target.pathname}${target.search}`, method: req.method, headers: req.headers, agent: deviceAgent(env.tailscaled, device) }, (answer) => {
        res.writeHead(answer.statusCode!, answer.rawHeaders);
        answer.pipe(res);
      });
      out.on('error', () => res.destroy());
      req.pipe(out);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    browser = await launchChromium({ proxy: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` });
    await mkdir(SCREENSHOTS, { recursive: true });

    // Some history for the console: sign-ins on the tailnet and with Plex, and a refusal.
    await login(env, { device: BOB_GITHUB });
    await login(env, { device: BOB_GITHUB, client: ADMINS_ONLY });
    await login(env, { device: ALICE, client: ADMINS_ONLY });
    const { done } = await signInWithPlex(env, 'hannah');
    assert.ok(done.redirectedTo);
  });
  after(async () => {
    await browser?.close();
    proxy?.close();
    await env?.close();
  });

  /** A page that collects console errors and CSP violations. */
  async function openPage(size: keyof typeof SIZES) {
    const context = await browser.newContext({ viewport: SIZES[size], ...(size === 'phone' ? { isMobile: true, hasTouch: true } : {}) });
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
    page.on('pageerror', (e) => problems.push(e.message));
    return { context, page, problems };
  }

  /** Nothing wider than the screen: a phone scrolls down, never sideways (tables scroll in their own box). */
  async function assertFitsTheWidth(page: Page) {
    const width = page.viewportSize()!.width;
    // The outermost elements that reach past the right edge, to say what is too wide; what a box
    // of its own scrolls sideways (a wide table) is fine.
    const over = await page.evaluate((w) => {
      const past = (e: Element | null) => !!e && e.getBoundingClientRect().right > w + 1;
      const scrolled = (e: Element) => { for (let p = e.parentElement; p; p = p.parentElement) if (getComputedStyle(p).overflowX !== 'visible') return true; return false; };
      return [...document.querySelectorAll('body *')].filter((e) => past(e) && !past(e.parentElement) && !scrolled(e))
        .map((e) => `${e.tagName.toLowerCase()}.${e.className}: ${Math.round(e.getBoundingClientRect().right)}px`)
        .concat(document.documentElement.scrollWidth > w ? [`the page scrolls sideways to ${document.documentElement.scrollWidth}px`] : []);
    }, width);
    assert.deepEqual(over, [], `wider than the ${width}px screen`);
  }

  for (const size of ['desktop', 'phone'] as const) {
    test(`${size}: Sign in on the home page, see your apps, open the console, sign someone out everywhere`, async () => {
      const { context, page, problems } = await openPage(size);
      await page.goto(`${env.issuer}/`);
      assert.match(await page.textContent('h1') ?? '', /guestlist/);
      await page.screenshot({ path: `${SCREENSHOTS}home-signed-out-${size}.png`, fullPage: true });

      // Zero-click on the tailnet: Sign in comes straight back signed in.
      await page.click('a.button[href="/sign-in"]');
      await page.waitForSelector('.who');
      assert.equal(page.url(), `${env.issuer}/`);
      assert.match(await page.textContent('.who') ?? '', /Signed in as Alice Example · via Tailscale · Sign out/);
      assert.deepEqual(await page.$$eval('.tile .name', (names) => names.map((n) => n.textContent)), ['Headscale', 'Grafana', 'Jellyseerr', 'Paperless']);
      await assertFitsTheWidth(page);
      await page.screenshot({ path: `${SCREENSHOTS}home-${size}.png`, fullPage: true });

      await page.click('a[href="/admin"]');
      await page.waitForURL(`${env.issuer}/admin`);
      assert.equal(await page.locator('#health .state.bad').count(), 0, await page.textContent('#health') ?? '');
      assert.ok(await page.locator('#sign-ins svg rect.bar.signed-in').count() > 0);
      assert.ok(await page.locator('#sign-ins svg rect.bar.refused').count() > 0);
      await assertFitsTheWidth(page);
      await page.screenshot({ path: `${SCREENSHOTS}console-${size}.png`, fullPage: true });

      // Try it, then Sign out everywhere for Bob (a form post with its CSRF token, no script).
      await page.selectOption('select[name="try"]', 'grafana');
      await page.click('#try button');
      await page.waitForURL(/\/admin\?try=grafana#try/);
      assert.match(await page.textContent('#try') ?? '', /"admins"/);
      const bob = page.locator('#people tr', { hasText: '2915887766550002' });
      if (await bob.count()) {
        await bob.locator('button', { hasText: 'Sign out everywhere' }).click();
        await page.waitForURL(/\/admin\?done=signed-out#people/);
        assert.match(await page.textContent('.notice') ?? '', /Done: everything that person was given has ended/);
        assert.equal(await page.locator('#people tr', { hasText: '2915887766550002' }).count(), 0);
      } else {
        // The desktop run signed Bob out already.
        assert.equal(size, 'phone');
      }
      assert.deepEqual(problems, []);
      await context.close();
    });
  }

  test('someone not in admins, from their own device, gets the 403 page', async () => {
    device = BOB_GITHUB;
    try {
      const { context, page, problems } = await openPage('phone');
      await page.goto(`${env.issuer}/sign-in`);
      await page.waitForSelector('.who');
      assert.equal(await page.locator('text=Operator console').count(), 0);
      const res = await page.goto(`${env.issuer}/admin`);
      assert.equal(res?.status(), 403);
      assert.match(await page.textContent('h1') ?? '', /This page is not for you/);
      assert.deepEqual(problems, ['Failed to load resource: the server responded with a status of 403 (Forbidden)']);
      await context.close();
    } finally {
      device = ALICE;
    }
  });
});
