import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as client from 'openid-client';
import { ALICE } from '../fakes/tailscaled.ts';
import { Browser, discover, HEADSCALE, startTestEnv, type TestEnv } from '../helpers.ts';

// guestlist keeps pending logins in memory, and Fly stops and starts machines at will. A person
// caught by a restart mid-login gets a page that says to start again and leads back to the app.

describe('a restart in the middle of a login', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv();
  });
  after(() => env.close());

  async function startLogin() {
    const config = await discover(env, HEADSCALE);
    // prompt=login: through the sign-in page even for a tailnet person, whom /auth would otherwise
    // sign in by itself in one hop, leaving no moment in between for a restart.
    const url = client.buildAuthorizationUrl(config, { redirect_uri: HEADSCALE.redirect_uris[0]!, scope: 'openid', state: 's', prompt: 'login' });
    const browser = new Browser(env, ALICE);
    const first = await browser.get(url);
    assert.equal(first.status, 303);
    return { browser, next: new URL(first.headers.location!, env.issuer) };
  }

  function assertExpiredPage(res: { status: number; body: string }) {
    assert.equal(res.status, 400);
    assert.match(res.body, /This sign-in has expired/);
    assert.match(res.body, /href="https:\/\/headscale\.example\.test\/"[^>]*>Back to Headscale</);
    assert.doesNotMatch(res.body, /invalid_request|SessionNotFound|at .*\.js/);
  }

  test('between authorize and the sign-in page', async () => {
    const { browser, next } = await startLogin();
    await env.restart();
    assertExpiredPage(await browser.walk(next));
  });

  test('between the sign-in and the return to authorize', async () => {
    const { browser, next } = await startLogin();
    const interaction = await browser.get(next);
    assert.equal(interaction.status, 303);
    await env.restart();
    assertExpiredPage(await browser.walk(new URL(interaction.headers.location!, env.issuer)));
  });

  test('after a login, its tokens still verify and a new login works', async () => {
    const { browser, next } = await startLogin();
    const done = await browser.walk(next);
    assert.ok(done.redirectedTo?.searchParams.get('code'));
    await env.restart();
    const again = await startLogin();
    assert.ok((await again.browser.walk(again.next)).redirectedTo?.searchParams.get('code'));
  });
});
