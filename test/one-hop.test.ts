import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as client from 'openid-client';
import type { ClientConfig } from '../src/config/config.ts';
import { ALICE, BOB_GITHUB, CI_RUNNER_TAGGED } from './fakes/tailscaled.ts';
import { ADMINS_ONLY, Browser, discover, HEADSCALE, login, startTestEnv, type TestEnv } from './helpers.ts';
import { FRIENDS } from './plex-flow.ts';

// A tailnet person's sign-in is one round trip: /auth asks tailscaled and answers with the code.
// And prompt=none works for them (apps renew sessions silently), while everyone else still gets
// login_required, and the interaction page still handles strangers, refusals and Plex.

const BOTH: ClientConfig = { ...HEADSCALE, client_id: 'both', name: 'Both App', redirect_uris: ['https://both.example.test/callback'] };

async function authorize(env: TestEnv, c: ClientConfig, browser: Browser, extra: Record<string, string> = {}) {
  const config = await discover(env, c);
  const state = client.randomState();
  const url = client.buildAuthorizationUrl(config, { redirect_uri: c.redirect_uris[0]!, scope: 'openid email profile', state, ...extra });
  return { config, state, walk: await browser.walk(url) };
}

describe('zero-click in one hop', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv({ plex: true, clients: [HEADSCALE, ADMINS_ONLY, FRIENDS, BOTH] });
  });
  after(() => env.close());

  test('prompt=none signs a tailnet person in silently, and the code redeems', async () => {
    const browser = new Browser(env, ALICE);
    const { config, state, walk } = await authorize(env, HEADSCALE, browser, { prompt: 'none' });
    assert.equal(walk.visited.length, 1);
    assert.ok(walk.redirectedTo?.searchParams.get('code'), walk.redirectedTo?.href ?? `HTTP ${walk.status}`);
    const tokens = await client.authorizationCodeGrant(config, walk.redirectedTo!, { expectedState: state });
    assert.equal(tokens.claims()?.sub, 'tailscale:9007199254740993');
  });

  test('prompt=none for a stranger, a tagged device, or a tailnet person the app refuses is login_required', async () => {
    for (const [c, device] of [[HEADSCALE, null], [HEADSCALE, CI_RUNNER_TAGGED], [ADMINS_ONLY, BOB_GITHUB]] as const) {
      const { walk } = await authorize(env, c, new Browser(env, device), { prompt: 'none' });
      assert.equal(walk.redirectedTo?.searchParams.get('error'), 'login_required', `${c.client_id} ${device?.hostname ?? 'stranger'}`);
    }
  });

  test('each sign-in asks tailscaled afresh: a device that left the tailnet is refused on its next one', async () => {
    const browser = new Browser(env, ALICE);
    assert.ok((await login(env, { browser })).tokens);
    const before = env.tailscaled.requests.length;
    env.tailscaled.fault = 'http-500';
    try {
      const { walk } = await authorize(env, HEADSCALE, browser);
      assert.equal(walk.redirectedTo, undefined);
      assert.match(walk.body, /Tailscale is not answering/);
    } finally {
      env.tailscaled.fault = 'none';
    }
    assert.ok(env.tailscaled.requests.length > before);
  });

  test('one login line per one-hop sign-in, and everyone else still gets the page they got before', async () => {
    const since = env.logs.length;
    assert.ok((await login(env, { client: BOTH })).tokens);
    assert.equal(env.logs.slice(since).filter((l) => l.msg === 'login').length, 1);
    // A stranger to an app that takes Plex: the Plex page, as before.
    const stranger = await authorize(env, BOTH, new Browser(env, null));
    assert.match(stranger.walk.body, /id="plex-sign-in"/);
    // A tailnet person the app refuses: the Plex page with a notice, as before.
    const refused = await authorize(env, ADMINS_ONLY, new Browser(env, BOB_GITHUB));
    assert.equal(refused.walk.redirectedTo, undefined);
    assert.match(refused.walk.body, /not allowed into Grafana\. You can sign in with Plex instead/);
  });

  test('a Plex-only app never signs anyone in through the tailnet, one hop or not', async () => {
    const { walk } = await authorize(env, FRIENDS, new Browser(env, ALICE));
    assert.equal(walk.redirectedTo, undefined);
    assert.match(walk.body, /id="plex-sign-in"/);
  });

  test('a session that existed before a one-hop sign-in gets a new id (no session fixation)', async () => {
    const browser = new Browser(env, ALICE);
    assert.ok((await login(env, { browser })).tokens);
    const first = browser.cookie('_session');
    assert.ok(first);
    assert.ok((await login(env, { browser })).tokens);
    const second = browser.cookie('_session');
    assert.ok(second);
    assert.notEqual(second, first);
  });

  test('a parameter named like the hook changes nothing', async () => {
    const { walk } = await authorize(env, HEADSCALE, new Browser(env, null), { guestlist_ambient: 'alice@example.com' });
    assert.equal(walk.redirectedTo, undefined);
    assert.match(walk.body, /id="plex-sign-in"/);
  });
});
