import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import * as client from 'openid-client';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { ClientConfig } from '../src/config/config.ts';
import { chromiumMissing, launchChromium } from './chromium.ts';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { discover, HEADSCALE, startTestEnv, type TestEnv } from './helpers.ts';

// The Plex sign-in in Chromium, as a person does it: the app sends them to guestlist, they press
// "Sign in with Plex", approve in Plex's window, and land back on the app with a code, which the
// app (openid-client) redeems. The fake plex.tv plays both plex.tv and app.plex.tv.

const SCREENSHOTS = new URL('../test-results/', import.meta.url).pathname;
let APP: ClientConfig;

describe('Plex sign-in in a browser', { skip: chromiumMissing() }, () => {
  let env: TestEnv;
  let browser: Browser;
  let app: Server;
  before(async () => {
    // The app's callback: a page that only says "app", so the browser has somewhere to land.
    app = createServer((_req, res) => res.end('<!doctype html><title>app</title><h1>app</h1>'));
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    const appUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
    APP = { ...HEADSCALE, client_id: 'jellyfin', name: 'Jellyfin', redirect_uris: [`${appUrl}/callback`], sources: ['plex'] };
    // Every reuse of a sign-in is checked with plex.tv again (recheck_after 0): a share that ends shows at once.
    env = await startTestEnv({ plex: { recheck_after: 0 }, clients: [APP], branding: { title: 'Family Media', accent_color: '#e5a00d' } });
    browser = await launchChromium();
    await mkdir(SCREENSHOTS, { recursive: true });
  });
  after(async () => {
    await browser?.close();
    await env?.close();
    app?.close();
  });

  async function startLogin(context: BrowserContext) {
    const config = await discover(env, APP);
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: APP.redirect_uris[0]!, scope: 'openid email profile', state,
      code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    });
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
    page.on('pageerror', (e) => problems.push(e.message));
    await page.goto(url.href);
    return { page, problems, redeem: (callback: string) => client.authorizationCodeGrant(config, new URL(callback), { pkceCodeVerifier: verifier, expectedState: state }) };
  }

  async function approveIn(popup: Page, user: string) {
    await popup.waitForURL(/\/auth#\?/);
    await popup.click(`button[data-user="${user}"]`);
  }

  test('press the button, approve in the Plex popup, land back on the app with a code that redeems', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const { page, problems, redeem } = await startLogin(context);
    assert.match(await page.textContent('h1') ?? '', /Sign in with your Plex account/);
    await page.screenshot({ path: `${SCREENSHOTS}plex-desktop.png`, fullPage: true });
    const popupOpened = page.waitForEvent('popup');
    await page.click('#plex-sign-in');
    const popup = await popupOpened;
    await approveIn(popup, 'alice');
    await page.waitForURL(/\/callback\?/, { timeout: 15_000 });
    const tokens = await redeem(page.url());
    assert.equal(tokens.claims()!.sub, 'plex:13692262');
    // The PIN was made by the page (so Plex sees the person's own IP), not by the server.
    assert.ok([...env.plex.pins.values()].every((pin) => pin.createdByBrowser));
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('with popups blocked, the same tab goes to Plex and comes back signed in', async () => {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    await context.addInitScript(() => { window.open = () => null; });
    const { page, problems, redeem } = await startLogin(context);
    await page.screenshot({ path: `${SCREENSHOTS}plex-phone.png`, fullPage: true });
    await page.click('#plex-sign-in');
    await approveIn(page, 'owner');
    await page.waitForURL(/\/callback\?/, { timeout: 15_000 });
    assert.equal((await redeem(page.url())).claims()!.sub, 'plex:2639453');
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('someone the server is not shared with sees why, after approving in Plex', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: 'dark' });
    const { page } = await startLogin(context);
    await page.screenshot({ path: `${SCREENSHOTS}plex-desktop-dark.png`, fullPage: true });
    const popupOpened = page.waitForEvent('popup');
    await page.click('#plex-sign-in');
    await approveIn(await popupOpened, 'dave');
    await page.waitForURL(/\/plex\/finish$/);
    assert.match(await page.textContent('h1') ?? '', /not on the guest list/);
    await page.screenshot({ path: `${SCREENSHOTS}plex-refused-dark.png`, fullPage: true });
    await context.close();
  });

  test('an approval that lands after the Plex window is gone still signs the person in', async () => {
    const context = await browser.newContext();
    const { page, redeem } = await startLogin(context);
    const popupOpened = page.waitForEvent('popup');
    await page.click('#plex-sign-in');
    const popup = await popupOpened;
    await popup.waitForURL(/\/auth#\?/);
    const code = new URLSearchParams(new URL(popup.url()).hash.slice(2)).get('code')!;
    await popup.close();
    await page.waitForSelector('#plex-notice:has-text("closed before")', { timeout: 10_000 });
    env.plex.approve(code, 'alice');
    await page.waitForURL(/\/callback\?/, { timeout: 15_000 });
    assert.equal((await redeem(page.url())).claims()!.sub, 'plex:13692262');
    await context.close();
  });

  test('closing the Plex window without approving lets the person try again', async () => {
    const context = await browser.newContext();
    const { page } = await startLogin(context);
    const popupOpened = page.waitForEvent('popup');
    await page.click('#plex-sign-in');
    const popup = await popupOpened;
    await popup.waitForURL(/\/auth#\?/);
    // The cancel button closes its own window, sometimes before Playwright hears the click
    // finish: the window closing is what counts.
    await Promise.all([popup.waitForEvent('close'), popup.click('#cancel').catch(() => undefined)]);
    await page.waitForSelector('#plex-notice:has-text("closed before")', { timeout: 10_000 });
    assert.equal(await page.isEnabled('#plex-sign-in'), true);
    await context.close();
  });

  test('when plex.tv fails at the finish, the sign-in page says so, and pressing the button again signs in', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const { page, problems, redeem } = await startLogin(context);
    env.plex.faults.set('/api/v2/resources', 'http-500');
    try {
      const popupOpened = page.waitForEvent('popup');
      await page.click('#plex-sign-in');
      await approveIn(await popupOpened, 'alice');
      await page.waitForURL(/\/plex\/finish$/);
    } finally {
      env.plex.faults.clear();
    }
    assert.match(await page.textContent('#notice') ?? '', /Plex is not answering/);
    assert.equal(await page.isVisible('#notice'), true);
    await page.screenshot({ path: `${SCREENSHOTS}plex-not-answering.png`, fullPage: true });
    const popupOpened = page.waitForEvent('popup');
    await page.click('#plex-sign-in');
    await approveIn(await popupOpened, 'alice');
    await page.waitForURL(/\/callback\?/, { timeout: 15_000 });
    assert.equal((await redeem(page.url())).claims()!.sub, 'plex:13692262');
    // The page came with its status (503), which Chromium reports; nothing else went wrong in it.
    assert.deepEqual(problems.filter((p) => !/status of 503/.test(p)), []);
    await context.close();
  });

  test('when the share ends, the next sign-in to the app shows "not on the guest list", once', async () => {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    const first = await startLogin(context);
    const popupOpened = first.page.waitForEvent('popup');
    await first.page.click('#plex-sign-in');
    await approveIn(await popupOpened, 'frank');
    await first.page.waitForURL(/\/callback\?/, { timeout: 15_000 });
    env.plex.unshare('frank');
    try {
      const second = await startLogin(context);
      assert.match(await second.page.textContent('h1') ?? '', /not on the guest list/);
      await second.page.screenshot({ path: `${SCREENSHOTS}plex-share-ended-phone.png`, fullPage: true });
      // The page came with its status (403), which Chromium reports; nothing else went wrong in it.
      assert.deepEqual(second.problems.filter((p) => !/status of 403/.test(p)), []);
      // Once: the next one is the Plex sign-in page again.
      const third = await startLogin(context);
      assert.match(await third.page.textContent('h1') ?? '', /Sign in with your Plex account/);
    } finally {
      env.plex.share('frank');
      await context.close();
    }
  });
});
