import { describe, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import * as client from 'openid-client';
import { ALICE, BOB_GITHUB } from './fakes/tailscaled.ts';
import { ADMINS_ONLY, Browser, discover, fetchFrom, HEADSCALE, login, testEnvs, type ConfidentialClient, type TestEnv } from './helpers.ts';
import { MEDIA, openJellyfinPage, getCode, finishJellyfin, redeem as redeemJellyfin } from './jellyfin-flow.ts';
import { FRIENDS, signInWithPlex } from './plex-flow.ts';
import { redisDuringTests, redisMissing, startOnRedis } from './redis-server.ts';

// Refresh tokens, per client (clients[].refresh_tokens), through openid-client as an app uses
// them: rotated at every use, a reused one ends the grant, and no refresh outlives what the
// person's source allows (a tailnet device refreshing over the tailnet; a Plex share re-checked;
// otherwise the session rule's lifetime after the sign-in).

const { allowed_groups: _adminsOnly, ...ANYONE } = ADMINS_ONLY;
const GRAFANA: ConfidentialClient = { ...ANYONE, refresh_tokens: true };
const PLEX_APP: ConfidentialClient = { ...FRIENDS, refresh_tokens: true };
const JELLYFIN_APP: ConfidentialClient = { ...MEDIA, refresh_tokens: true };
const APPS = [HEADSCALE, GRAFANA, PLEX_APP, JELLYFIN_APP];
const withEnv = testEnvs({ clients: APPS, admin: { allowed_groups: ['admins'] } });

/** A zero-click login to `c` from `device`, asking for offline_access; its tokens and the app's openid-client configuration. */
async function signedIn(env: TestEnv, c: ConfidentialClient = GRAFANA, device = ALICE, scope = 'openid profile offline_access') {
  const { tokens, config } = await login(env, { client: c, device, scope });
  assert.ok(tokens, 'no tokens');
  return { tokens, config };
}

/** A refresh by the app's server, which is not on the tailnet; or from `device` over the tailnet. */
function refresh(env: TestEnv, config: client.Configuration, token: string, device?: typeof ALICE) {
  if (device) config[client.customFetch] = fetchFrom(env.tailscaled, device) as never;
  return client.refreshTokenGrant(config, token);
}

const refusedWith = async (attempt: Promise<unknown>, error = 'invalid_grant') => {
  await assert.rejects(attempt, (err: Error & { error?: string }) => err.error === error || (err as { cause?: { error?: string } }).cause?.error === error || (assert.fail(`${err.message}`), false));
};
const userinfo = async (env: TestEnv, accessToken: string) => (await fetch(`${env.server.url}/me`, { headers: { authorization: `Bearer ${accessToken}` } })).status;

describe('refresh tokens', () => {
  test('a client with refresh_tokens asking for offline_access gets one, without prompt=consent; discovery lists the grant', withEnv({}, async (env) => {
    const discovery = await (await fetch(`${env.issuer}/.well-known/openid-configuration`)).json() as { grant_types_supported: string[]; scopes_supported: string[] };
    assert.ok(discovery.grant_types_supported.includes('refresh_token'));
    assert.ok(discovery.scopes_supported.includes('offline_access'));
    const { tokens, config } = await signedIn(env);
    assert.ok(tokens.refresh_token);
    assert.match(tokens.scope ?? '', /offline_access/);
    const again = await refresh(env, config, tokens.refresh_token);
    assert.equal(again.claims()?.sub, 'tailscale:9007199254740993');
    assert.ok(again.refresh_token);
    assert.notEqual(again.refresh_token, tokens.refresh_token, 'a refresh gives a new refresh token');
    assert.equal(await userinfo(env, again.access_token), 200);
  }));

  test('no refresh token without offline_access, nor for a client without refresh_tokens (Headscale\'s config stays as it is)', withEnv({}, async (env) => {
    assert.equal((await signedIn(env, GRAFANA, ALICE, 'openid profile')).tokens.refresh_token, undefined);
    const headscale = await signedIn(env, HEADSCALE, ALICE, 'openid profile offline_access');
    assert.equal(headscale.tokens.refresh_token, undefined);
    assert.doesNotMatch(headscale.tokens.scope ?? '', /offline_access/);
  }));

  test('a refresh token used twice ends the whole grant: the newest one stops too, and the app\'s access token', withEnv({}, async (env) => {
    const { tokens, config } = await signedIn(env, GRAFANA, ALICE);
    const second = await refresh(env, config, tokens.refresh_token!, ALICE);
    await refusedWith(refresh(env, config, tokens.refresh_token!, ALICE));
    await refusedWith(refresh(env, config, second.refresh_token!, ALICE));
    assert.equal(await userinfo(env, second.access_token), 401);
  }));

  test('a refresh token is only good for the client it was given to', withEnv({}, async (env) => {
    const { tokens } = await signedIn(env);
    const other: ConfidentialClient = { ...JELLYFIN_APP };
    await refusedWith(client.refreshTokenGrant(await discover(env, other), tokens.refresh_token!));
    // The refused attempt did not spend it.
    const { config } = await signedIn(env);
    assert.ok((await refresh(env, config, tokens.refresh_token!)).refresh_token);
  }));

  test('Tailscale: over the tailnet from the person\'s own device a refresh holds for days; from anywhere else, 15 minutes after the sign-in', withEnv({}, async (env) => {
    const { tokens, config } = await signedIn(env, GRAFANA, ALICE);
    const { tokens: bobs, config: bobConfig } = await signedIn(env, GRAFANA, BOB_GITHUB);
    const start = Date.now();
    mock.timers.enable({ apis: ['Date'], now: start + 20 * 60_000 });
    try {
      // Twenty minutes on: Alice's laptop refreshes over the tailnet; the app's server (not on
      // the tailnet) and another person's device cannot.
      const fromLaptop = await refresh(env, config, tokens.refresh_token!, ALICE);
      assert.equal(fromLaptop.claims()?.sub, 'tailscale:9007199254740993');
      await refusedWith(refresh(env, bobConfig, bobs.refresh_token!, ALICE));
      await refusedWith(refresh(env, await discover(env, GRAFANA), bobs.refresh_token!));
      // Twenty days on, still from the laptop.
      mock.timers.setTime(start + 20 * 24 * 3600_000);
      assert.ok((await refresh(env, config, fromLaptop.refresh_token!, ALICE)).refresh_token);
    } finally {
      mock.timers.reset();
    }
    // Within the 15 minutes, the app's server may.
    const fresh = await signedIn(env, GRAFANA, BOB_GITHUB);
    assert.ok((await refresh(env, fresh.config, fresh.tokens.refresh_token!)).refresh_token);
  }));

  test('Jellyfin: refreshes hold for the session rule\'s 24 hours after the sign-in, then invalid_grant', withEnv({ jellyfin: true }, async (env) => {
    const p = await openJellyfinPage(env, JELLYFIN_APP, new Browser(env, null), 'openid profile offline_access');
    const code = await getCode(p);
    env.jellyfin.authorize(code.body.code!, 'alice');
    const done = await finishJellyfin(p);
    const tokens = await redeemJellyfin(p, done.redirectedTo!);
    assert.ok(tokens.refresh_token);
    const next = await client.refreshTokenGrant(p.config, tokens.refresh_token);
    mock.timers.enable({ apis: ['Date'], now: Date.now() + 25 * 3600_000 });
    try {
      await refusedWith(client.refreshTokenGrant(p.config, next.refresh_token!));
    } finally {
      mock.timers.reset();
    }
  }));

  test('signed out everywhere from the console: the next refresh is invalid_grant', withEnv({}, async (env) => {
    const { tokens: first, config } = await signedIn(env, GRAFANA, BOB_GITHUB);
    const tokens = await refresh(env, config, first.refresh_token!, BOB_GITHUB);
    const alice = new Browser(env, ALICE);
    await alice.walk(`${env.issuer}/sign-in`);
    const page = await alice.walk(`${env.issuer}/admin`);
    const csrf = /name="sub" value="tailscale:2915887766550002"><input type="hidden" name="csrf" value="([^"]+)"/.exec(page.body)![1]!;
    await alice.post('/admin/sign-out', new URLSearchParams({ sub: 'tailscale:2915887766550002', csrf }).toString(), 'application/x-www-form-urlencoded');
    await refusedWith(refresh(env, config, tokens.refresh_token!, BOB_GITHUB));
  }));

  test('Plex: each refresh past recheck_after asks plex.tv; once the share is gone, invalid_grant', withEnv({ plex: { recheck_after: 0 } }, async (env) => {
    const { p, done } = await signInWithPlex(env, 'alice', PLEX_APP, undefined, 'openid profile offline_access');
    const tokens = await client.authorizationCodeGrant(p.config, done.redirectedTo!, { pkceCodeVerifier: p.verifier, expectedState: p.state, expectedNonce: p.nonce });
    assert.ok(tokens.refresh_token);
    const calls = env.plex.callsFor('alice', '/api/v2/user');
    const next = await client.refreshTokenGrant(p.config, tokens.refresh_token);
    assert.equal(env.plex.callsFor('alice', '/api/v2/user'), calls + 1);
    env.plex.unshare('alice');
    await refusedWith(client.refreshTokenGrant(p.config, next.refresh_token!));
    assert.ok(env.logs.some((l) => l.msg === 'login' && l.outcome === 'revoked' && l.sub === 'plex:13692262'));
  }));
});

describe('refresh tokens on shared storage', { skip: redisMissing() }, () => {
  const redis = redisDuringTests();

  test('rotation and reuse detection hold across two instances', async () => {
    const env = await startOnRedis(redis.url, { clients: APPS });
    try {
      // discover() sends each token call to the next instance in turn.
      const { tokens, config } = await signedIn(env, GRAFANA, ALICE);
      const second = await refresh(env, config, tokens.refresh_token!);
      const third = await refresh(env, config, second.refresh_token!);
      assert.ok(third.refresh_token);
      await refusedWith(refresh(env, config, second.refresh_token!));
      await refusedWith(refresh(env, config, third.refresh_token!));
    } finally {
      await env.close();
    }
  });
});
