import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as client from 'openid-client';
import type { Browser, BrowserContext, BrowserContextOptions, Page } from 'playwright-core';
import type { ClientConfig } from '../src/config/config.ts';
import { chromiumMissing, launchChromium } from './chromium.ts';
import { JELLYFIN_USERS } from './fakes/jellyfin.ts';
import { startAuthorization, startTestEnv, type TestEnv } from './helpers.ts';
import { MEDIA } from './jellyfin-flow.ts';

// The Jellyfin Quick Connect sign-in in Chromium, as a person does it: the app sends them to
// guestlist, they press "Sign in with Jellyfin", read the six digits off the page, type them into
// Jellyfin (here: FakeJellyfin.authorize, which is what Jellyfin's own UI does), and the page
// carries on to the app by itself. The page must never talk to Jellyfin: only guestlist does.

// Screenshots go to /tmp so a person (or a reviewing session) can look at them; harmless in CI.
const SHOTS = '/tmp/shots/';
const DESKTOP: BrowserContextOptions = { viewport: { width: 1280, height: 800 } };
const PHONE: BrowserContextOptions = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
// guestlist's own accent: a brand button that fell back to it has lost its brand style.
const DEFAULT_ACCENT = 'rgb(79, 70, 229)';

let MEDIA_APP: ClientConfig;
let BOTH_APP: ClientConfig;

describe('Jellyfin sign-in in a browser', { skip: chromiumMissing() }, () => {
  let env: TestEnv;
  let browser: Browser;
  let app: Server;
  /** Every path the app's server was asked for: a refused person must never get there. */
  const appHits: string[] = [];

  before(async () => {
    // The app's callback: a page that only says "app", so the browser has somewhere to land.
    app = createServer((req, res) => {
      appHits.push(req.url ?? '');
      res.end('<!doctype html><title>app</title><h1>app</h1>');
    });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    const appUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
    MEDIA_APP = { ...MEDIA, redirect_uris: [`${appUrl}/callback`] };
    BOTH_APP = { ...MEDIA, client_id: 'both', name: 'Family Photos', redirect_uris: [`${appUrl}/both/callback`], sources: ['plex', 'jellyfin'] };
    env = await startTestEnv({ jellyfin: true, plex: true, clients: [MEDIA_APP, BOTH_APP], tailscale: null, issuerHost: 'localhost' });
    browser = await launchChromium();
    await mkdir(SHOTS, { recursive: true });
  });
  after(async () => {
    await browser?.close();
    await env?.close();
    app?.close();
  });

  async function startLogin(options: BrowserContextOptions, c: ClientConfig = MEDIA_APP) {
    const context = await browser.newContext(options);
    // A CSP violation is reported as a console error too, but only for some directives: the event
    // catches the rest (a blocked inline style, a blocked connect-src fetch, ...).
    await context.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) => {
        console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI}`);
      });
    });
    const { config, verifier, state, nonce, url } = await startAuthorization(env, c);
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
    page.on('pageerror', (e) => problems.push(e.message));
    // Everything the page fetched, and what guestlist's script-facing answers said (the secret
    // must stay on the server).
    const requested: string[] = [];
    const answers: string[] = [];
    context.on('request', (r) => requested.push(r.url()));
    context.on('response', (r) => {
      if (r.request().resourceType() === 'fetch') r.text().then((t) => answers.push(t), () => {});
    });
    await page.goto(url.href);
    const redeem = (callback: string) => client.authorizationCodeGrant(config, new URL(callback), { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce });
    return { context, page, problems, requested, answers, redeem };
  }

  /** The code as the person reads it off the page, without the gap between its two halves. */
  async function shownCode(page: Page): Promise<string> {
    await page.waitForFunction(() => /^\d{6}$/.test((document.getElementById('jellyfin-code')?.textContent ?? '').replace(/\s/g, '')));
    assert.equal(await page.isVisible('#jellyfin-code'), true, 'the code is in the page but not shown');
    return (await page.innerText('#jellyfin-code')).replace(/\s/g, '');
  }

  const callback = (c: ClientConfig) => new RegExp(`^${c.redirect_uris[0]!.replace(/[.?]/g, '\\$&')}\\?`);

  test('press the button, type the code into Jellyfin, and the page carries on to the app by itself', async () => {
    const { context, page, problems, requested, answers, redeem } = await startLogin(DESKTOP);
    await page.getByRole('button', { name: 'Sign in with Jellyfin' }).waitFor({ state: 'visible' });
    // Before the press nothing has been started at Jellyfin: a page view alone costs Jellyfin nothing.
    assert.equal(env.jellyfin.requests.size, 0);
    await page.click('#jellyfin-sign-in');
    const code = await shownCode(page);
    assert.match(code, /^\d{6}$/);
    // The digits are the ones Jellyfin handed out, not something made up on the way.
    const request = env.jellyfin.requests.get(code);
    assert.ok(request, `the page shows ${code}, which Jellyfin never issued`);
    // Read off a phone held at arm's length or across the room from a TV: large, not body text.
    const fontSize = await page.$eval('#jellyfin-code', (el) => parseFloat(getComputedStyle(el).fontSize));
    assert.ok(fontSize >= 32, `the code is ${fontSize}px, too small to read from a distance`);
    await page.screenshot({ path: `${SHOTS}jellyfin-code-desktop.png`, fullPage: true });

    env.jellyfin.authorize(code, 'alice');
    // No click from here on: the page notices by itself and finishes.
    await page.waitForURL(callback(MEDIA_APP), { timeout: 15_000 });
    const tokens = await redeem(page.url());
    assert.equal(tokens.claims()!.sub, `jellyfin:${JELLYFIN_USERS.alice!.id}`);

    // Only guestlist talks to Jellyfin: the browser may not even know where it is.
    const jellyfinOrigin = new URL(env.jellyfin.url).origin;
    assert.deepEqual(requested.filter((u) => u.startsWith(jellyfinOrigin)), []);
    assert.ok(answers.length > 0, 'no fetch answers were recorded, so the secret check below checks nothing');
    assert.ok(answers.every((a) => !a.toUpperCase().includes(request.secret)), 'the Quick Connect secret reached the browser');
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('at phone width the code fits on one line without sideways scrolling, and the login completes', async () => {
    const { context, page, problems, redeem } = await startLogin(PHONE);
    await page.click('#jellyfin-sign-in');
    const code = await shownCode(page);
    await page.screenshot({ path: `${SHOTS}jellyfin-code-phone.png`, fullPage: true });
    const layout = await page.evaluate(() => {
      const el = document.getElementById('jellyfin-code')!;
      const style = getComputedStyle(el);
      const fontSize = parseFloat(style.fontSize);
      const lineHeight = parseFloat(style.lineHeight) || fontSize * 1.2;
      const digits = [...el.children].map((span) => span.getBoundingClientRect());
      return {
        // Not innerWidth: a mobile browser widens that to fit content that overflows, so it would never be exceeded.
        scrollWidth: document.documentElement.scrollWidth, width: document.documentElement.clientWidth,
        height: el.getBoundingClientRect().height, lineHeight, fontSize,
        left: Math.min(...digits.map((r) => r.left)), right: Math.max(...digits.map((r) => r.right)),
        tops: digits.map((r) => Math.round(r.top)),
      };
    });
    // Someone copying digits off a phone must not have to pan sideways to find the last ones.
    assert.equal(layout.width, PHONE.viewport!.width);
    assert.ok(layout.scrollWidth <= layout.width, `the page scrolls sideways: ${layout.scrollWidth}px wide in a ${layout.width}px viewport`);
    assert.ok(layout.left >= 0 && layout.right <= layout.width, `the code runs off the screen: ${layout.left}..${layout.right} of ${layout.width}px`);
    // "123 / 456" on two lines reads as two codes.
    assert.ok(layout.height < 2 * layout.lineHeight, `the code is ${layout.height}px tall for a ${layout.lineHeight}px line: it wrapped`);
    assert.equal(new Set(layout.tops).size, 1, `the two halves of the code are not on one line: tops ${layout.tops.join(', ')}`);
    assert.ok(layout.fontSize >= 32, `the code is ${layout.fontSize}px on a phone`);

    env.jellyfin.authorize(code, 'bob');
    await page.waitForURL(callback(MEDIA_APP), { timeout: 15_000 });
    assert.equal((await redeem(page.url())).claims()!.sub, `jellyfin:${JELLYFIN_USERS.bob!.id}`);
    assert.deepEqual(problems, []);
    await context.close();
  });

  // Double-click on a desktop, long-press on a phone: either selects a "word", and the code must be
  // one word to be copied whole, though it is shown as two halves.
  test('selecting the code by double-click takes all six digits, ready to paste into Jellyfin', async () => {
    const { context, page } = await startLogin(DESKTOP);
    await page.click('#jellyfin-sign-in');
    const code = await shownCode(page);
    await page.dblclick('#jellyfin-code span');
    assert.equal(await page.evaluate(() => getSelection()!.toString().trim()), code);
    await context.close();
  });

  test('a code that expires before anyone types it offers a new one, and the new one signs in', async () => {
    const { context, page, problems, redeem } = await startLogin(DESKTOP);
    await page.click('#jellyfin-sign-in');
    const first = await shownCode(page);
    // As if ten minutes had passed in Jellyfin.
    env.jellyfin.expire(first);
    await page.waitForSelector('#jellyfin-expired', { state: 'visible', timeout: 10_000 });
    // A code that no longer works must not stay on screen for someone to type.
    assert.equal(await page.isVisible('#jellyfin-code'), false, 'the expired code is still shown');
    const renew = page.getByRole('button', { name: 'Get a new code' });
    assert.equal(await renew.isVisible(), true);
    await renew.click();
    await page.waitForFunction((old) => {
      const shown = (document.getElementById('jellyfin-code')?.textContent ?? '').replace(/\s/g, '');
      return /^\d{6}$/.test(shown) && shown !== old;
    }, first, { timeout: 10_000 });
    const second = await shownCode(page);
    assert.notEqual(second, first);
    assert.equal(await page.isVisible('#jellyfin-expired'), false, 'the expired notice stays up next to a fresh code');

    env.jellyfin.authorize(second, 'alice');
    await page.waitForURL(callback(MEDIA_APP), { timeout: 15_000 });
    assert.equal((await redeem(page.url())).claims()!.sub, `jellyfin:${JELLYFIN_USERS.alice!.id}`);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('a disabled Jellyfin user whose code an administrator authorized is told they are not on the guest list', async () => {
    const { context, page } = await startLogin(DESKTOP);
    const hitsBefore = appHits.length;
    await page.click('#jellyfin-sign-in');
    const code = await shownCode(page);
    // Jellyfin itself lets this through (it does not check IsDisabled when authorizing): guestlist must not.
    env.jellyfin.authorize(code, 'dora');
    await page.waitForURL(/\/jellyfin\/finish$/, { timeout: 15_000 });
    assert.match(await page.textContent('h1') ?? '', /not on the guest list/);
    assert.deepEqual(appHits.slice(hitsBefore), [], 'a disabled user reached the app');
    await context.close();
  });

  test('an app that takes Plex and Jellyfin offers both buttons on one page, each in its brand\'s style', async () => {
    for (const [name, options] of [['desktop', DESKTOP], ['phone', PHONE]] as const) {
      const { context, page, problems } = await startLogin(options, BOTH_APP);
      const plex = page.getByRole('button', { name: 'Sign in with Plex' });
      const jellyfin = page.getByRole('button', { name: 'Sign in with Jellyfin' });
      await plex.waitFor({ state: 'visible' });
      await jellyfin.waitFor({ state: 'visible' });
      const background = (selector: string) => page.$eval(selector, (el) => {
        const s = getComputedStyle(el);
        return { color: s.backgroundColor, image: s.backgroundImage };
      });
      const plexBg = await background('#plex-sign-in');
      const jellyfinBg = await background('#jellyfin-sign-in');
      // Side by side, the two must be told apart at a glance, as each brand's own button looks.
      assert.notDeepEqual(plexBg, jellyfinBg);
      for (const bg of [plexBg, jellyfinBg]) {
        assert.ok(bg.color !== DEFAULT_ACCENT || bg.image !== 'none', `a source button has guestlist's plain accent, not its brand: ${JSON.stringify(bg)}`);
      }
      // Buttons squeezed over each other would make one of them unpressable.
      const [a, b] = [(await plex.boundingBox())!, (await jellyfin.boundingBox())!];
      assert.ok(a.y + a.height <= b.y || b.y + b.height <= a.y || a.x + a.width <= b.x || b.x + b.width <= a.x, 'the two buttons overlap');
      await page.screenshot({ path: `${SHOTS}both-${name}.png`, fullPage: true });
      const widths = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
      assert.ok(widths[0]! <= widths[1]!, `the two-source page scrolls sideways at ${name} width: ${widths.join(' > ')}px`);
      assert.deepEqual(problems, []);
      await context.close();
    }
  });
});
