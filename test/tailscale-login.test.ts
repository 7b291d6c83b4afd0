import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import * as client from 'openid-client';
import { ALICE, BOB_GITHUB, CI_RUNNER_TAGGED } from './fakes/tailscaled.ts';
import { ADMINS_ONLY, Browser, HEADSCALE, login, startTestEnv, type TestEnv } from './helpers.ts';

describe('zero-click Tailscale sign-in', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv();
  });
  after(() => env.close());

  test('a tailnet user signs in to Headscale with no page, and the ID token verifies against JWKS', async () => {
    const { walk, tokens, config } = await login(env, { scope: 'openid email profile' });
    assert.ok(tokens, `expected a redirect back to the app, got HTTP ${walk.status}: ${walk.body.slice(0, 200)}`);
    // One hop: /auth itself answers with the redirect back to the app, code and all.
    assert.equal(walk.visited.length, 1, walk.visited.join(' -> '));
    assert.equal(walk.redirectedTo!.origin + walk.redirectedTo!.pathname, HEADSCALE.redirect_uris[0]);

    const jwks = createRemoteJWKSet(new URL(config.serverMetadata().jwks_uri!));
    const { payload, protectedHeader } = await jwtVerify(tokens.id_token!, jwks, { issuer: env.issuer, audience: HEADSCALE.client_id });
    assert.equal(protectedHeader.alg, 'RS256');
    assert.ok(protectedHeader.kid);
    // The user id is above 2^53 and must arrive digit for digit.
    assert.equal(payload.sub, 'tailscale:9007199254740993');
    assert.equal(payload.email, 'alice@example.com');
    assert.equal(payload.email_verified, true);
    assert.equal(payload.name, 'Alice Example');
    assert.equal(payload.preferred_username, 'alice@example.com');
    assert.equal(payload.picture, ALICE.user.profilePic);
    assert.deepEqual(payload.groups, ['admins']);
    assert.ok(typeof payload.nonce === 'string' && payload.nonce.length > 0);

    const userinfo = await client.fetchUserInfo(config, tokens.access_token, payload.sub as string);
    assert.equal(userinfo.email, 'alice@example.com');
    assert.deepEqual(userinfo.groups, ['admins']);
  });

  test('a stranger tailscaled does not know gets a 403 page that says so', async () => {
    const { walk, tokens } = await login(env, { device: null });
    assert.equal(tokens, undefined);
    assert.equal(walk.status, 403);
    assert.match(walk.body, /not on the tailnet/);
    assert.match(String(walk.headers['content-security-policy']), /default-src 'none'/);
  });

  test('a tagged device is refused with a 403 page', async () => {
    const { walk, tokens } = await login(env, { device: CI_RUNNER_TAGGED });
    assert.equal(tokens, undefined);
    assert.equal(walk.status, 403);
    assert.match(walk.body, /tagged/);
  });

  test('a person outside a client\'s allowed_groups is refused, and can go back to the app', async () => {
    const { walk } = await login(env, { client: ADMINS_ONLY, device: BOB_GITHUB });
    assert.equal(walk.status, 403);
    assert.match(walk.body, /not on the guest list/);
    // Markup in a Tailscale display name or login is shown as text, never run.
    assert.doesNotMatch(walk.body, /<script>alert/);
    const back = /href="([^"]+\/abort)"/.exec(walk.body)?.[1];
    assert.ok(back);
    const abort = await new Browser(env, BOB_GITHUB).walk(new URL(back, env.issuer));
    // A fresh browser has no interaction cookie: the abort link is tied to the one that started.
    assert.equal(abort.status, 400);
  });

  test('the back link on a refusal returns access_denied to the app', async () => {
    const browser = new Browser(env, BOB_GITHUB);
    const { walk } = await login(env, { client: ADMINS_ONLY, device: BOB_GITHUB, browser });
    const back = /href="([^"]+\/abort)"/.exec(walk.body)![1]!;
    const abort = await browser.walk(new URL(back, env.issuer));
    assert.equal(abort.redirectedTo?.searchParams.get('error'), 'access_denied');
  });

  test('an SSO session does not carry someone into a client they are not allowed into', async () => {
    const browser = new Browser(env, BOB_GITHUB);
    const first = await login(env, { client: HEADSCALE, device: BOB_GITHUB, browser });
    assert.ok(first.tokens);
    const second = await login(env, { client: ADMINS_ONLY, device: BOB_GITHUB, browser });
    assert.equal(second.tokens, undefined);
    assert.equal(second.walk.status, 403);
  });

  test('a GitHub login is not presented as an email address', async () => {
    const { tokens } = await login(env, { device: BOB_GITHUB, scope: 'openid email profile groups' });
    const claims = tokens!.claims()!;
    assert.equal(claims.email, undefined);
    assert.equal(claims.preferred_username, 'bob@github');
    assert.deepEqual(claims.groups, ['family']);
  });

  test('a zero-click session is kept only 15 minutes: the next authorization re-checks anyway', async () => {
    const browser = new Browser(env);
    assert.ok((await login(env, { browser })).tokens);
    const session = await env.server.store.adapterFor('Session').find(browser.cookie('_session')!);
    assert.ok(session, 'the session is stored under its cookie value');
    assert.ok((session.exp as number) - (session.iat as number) <= 15 * 60, `lifetime ${(session.exp as number) - (session.iat as number)} s`);
  });

  test('each login outcome is logged once, with no code, token or secret', async () => {
    const before = env.logs.length;
    const { tokens } = await login(env);
    const lines = env.logs.slice(before);
    assert.equal(lines.filter((l) => l.msg === 'login').length, 1);
    const text = JSON.stringify(lines);
    assert.ok(!text.includes(tokens!.access_token));
    assert.ok(!text.includes(tokens!.id_token!));
    assert.ok(!text.includes(HEADSCALE.client_secret));
  });
});

describe('tagged devices when the config allows them', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv({ tailscale: { allow_tagged: true }, groups: { ci: ['tag:ci'] } });
  });
  after(() => env.close());

  test('a tagged device signs in as itself, never as the shared tagged-devices user', async () => {
    const { tokens } = await login(env, { device: CI_RUNNER_TAGGED, scope: 'openid email profile groups' });
    const claims = tokens!.claims()!;
    assert.equal(claims.sub, 'tailscale:node:n123456CNTRL');
    assert.equal(claims.preferred_username, 'ci-runner-3');
    assert.equal(claims.email, undefined);
    assert.deepEqual(claims.groups, ['ci']);
  });
});
