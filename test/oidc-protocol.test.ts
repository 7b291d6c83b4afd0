import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import * as client from 'openid-client';
import { Browser, CLOUDFLARE, discover, HEADSCALE, login, startTestEnv, type TestEnv } from './helpers.ts';

// What any relying party sees of guestlist's OpenID Connect, whoever signs in: client
// authentication, PKCE, codes, redirect URIs, keys, sign-out. A tailnet device signs in here
// because it needs no page; the source does not matter to these.

describe('the authorization code flow, as apps use it', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv();
  });
  after(() => env.close());

  test('Cloudflare Access: PKCE required, client_secret_basic, every claim in the ID token', async () => {
    const { tokens } = await login(env, { client: CLOUDFLARE, auth: 'basic', scope: 'openid email profile' });
    assert.ok(tokens);
    const claims = tokens.claims()!;
    for (const claim of ['email', 'email_verified', 'name', 'preferred_username', 'picture', 'groups', 'nonce']) {
      assert.ok(claim in claims, `ID token lacks ${claim}`);
    }
  });

  test('client_secret_post works as well as Basic (x/oauth2 falls back to it)', async () => {
    const { tokens } = await login(env, { auth: 'post' });
    assert.equal(tokens?.claims()?.sub, 'tailscale:9007199254740993');
  });

  test('a client that requires PKCE refuses an authorization request without it', async () => {
    const { walk, tokens } = await login(env, { client: CLOUDFLARE, pkce: false });
    assert.equal(tokens, undefined);
    assert.equal(walk.redirectedTo?.searchParams.get('error'), 'invalid_request');
  });

  test('PKCE is accepted when a client does not require it, and checked when sent', async () => {
    const { walk, config } = await login(env, { client: HEADSCALE, pkce: true });
    assert.ok(walk.redirectedTo);
    // Redeem a fresh code with the wrong verifier.
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: HEADSCALE.redirect_uris[0]!, scope: 'openid', state,
      code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    });
    const second = await new Browser(env).walk(url);
    await assert.rejects(
      client.authorizationCodeGrant(config, second.redirectedTo!, { expectedState: state, pkceCodeVerifier: client.randomPKCECodeVerifier() }),
      (err: client.ResponseBodyError) => err.error === 'invalid_grant',
    );
  });

  test('a replayed code is refused and the tokens it produced are revoked', async () => {
    const { tokens, config, callback, verifier } = await login(env);
    assert.ok(tokens && callback);
    const replay = await tokenRequest(env, HEADSCALE, { code: callback.searchParams.get('code')!, code_verifier: verifier! });
    assert.equal(replay.status, 400);
    assert.equal(replay.json.error, 'invalid_grant');
    await assert.rejects(client.fetchUserInfo(config, tokens.access_token, client.skipSubjectCheck));
  });

  test('a wrong client secret gets invalid_client, and the code stays unredeemed', async () => {
    const config = await discover(env, HEADSCALE);
    const url = client.buildAuthorizationUrl(config, { redirect_uri: HEADSCALE.redirect_uris[0]!, scope: 'openid' });
    const walk = await new Browser(env).walk(url);
    const code = walk.redirectedTo!.searchParams.get('code')!;
    const wrong = await tokenRequest(env, { ...HEADSCALE, client_secret: 'not-the-secret-at-all' }, { code });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.json.error, 'invalid_client');
    const right = await tokenRequest(env, HEADSCALE, { code });
    assert.equal(right.status, 200);
  });

  test('an unregistered redirect_uri gets an error page and no redirect', async () => {
    const url = new URL(`${env.issuer}/auth`);
    url.search = new URLSearchParams({ client_id: HEADSCALE.client_id, response_type: 'code', scope: 'openid', redirect_uri: 'https://evil.example.test/oidc/callback', state: 's', nonce: 'n' }).toString();
    const walk = await new Browser(env).walk(url);
    assert.equal(walk.redirectedTo, undefined);
    assert.equal(walk.status, 400);
    assert.match(walk.body, /not registered/);
    assert.doesNotMatch(walk.body, /evil\.example\.test/);
    assert.doesNotMatch(walk.body, /at .*\.js:\d+/); // no stack trace
  });

  test('end session asks for confirmation on a guestlist page with oidc-provider\'s form', async () => {
    const browser = new Browser(env);
    const { tokens } = await login(env, { browser });
    const page = await browser.walk(`${env.issuer}/session/end?id_token_hint=${tokens!.id_token}`);
    assert.equal(page.status, 200);
    assert.match(page.body, /Sign out\?/);
    assert.match(page.body, /<form id="op\.logoutForm" method="post" action="[^"]*\/session\/end\/confirm">/);
    assert.match(page.body, /name="xsrf"/);
    assert.match(String(page.headers['content-security-policy']), /default-src 'none'/);
  });
});

describe('sign-out', () => {
  const GRAFANA = { ...HEADSCALE, client_id: 'grafana', name: 'Grafana', post_logout_redirect_uris: ['https://grafana.example.test/login'] };
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv({ clients: [GRAFANA] });
  });
  after(() => env.close());

  test('confirmed, it ends the session and goes back to the app with its state', async () => {
    const browser = new Browser(env);
    const { tokens } = await login(env, { browser, client: GRAFANA });
    const back = encodeURIComponent(GRAFANA.post_logout_redirect_uris[0]!);
    const page = await browser.walk(`${env.issuer}/session/end?id_token_hint=${tokens!.id_token}&post_logout_redirect_uri=${back}&state=s1`);
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(page.body)?.[1];
    assert.ok(xsrf, page.body);
    const done = await browser.post('/session/end/confirm', new URLSearchParams({ xsrf, logout: 'yes' }).toString(), 'application/x-www-form-urlencoded');
    assert.equal(done.redirectedTo?.href, 'https://grafana.example.test/login?state=s1');
    assert.equal(browser.cookie('_session'), undefined);
  });

  test('with nobody signed in, it goes straight back to the app (nothing to confirm, nothing stored)', async () => {
    const browser = new Browser(env, null);
    const back = encodeURIComponent(GRAFANA.post_logout_redirect_uris[0]!);
    const done = await browser.walk(`${env.issuer}/session/end?client_id=grafana&post_logout_redirect_uri=${back}&state=s2`);
    assert.equal(done.redirectedTo?.href, 'https://grafana.example.test/login?state=s2');
    assert.equal(browser.cookie('_session'), undefined);
    // Without an app to go back to, the signed-out page.
    const plain = await browser.walk(`${env.issuer}/session/end`);
    assert.equal(plain.status, 200);
    assert.match(plain.body, /You are signed out/);
    // An address the app did not register is refused, as with someone signed in.
    const elsewhere = await browser.walk(`${env.issuer}/session/end?client_id=grafana&post_logout_redirect_uri=${encodeURIComponent('https://evil.example.test/')}`);
    assert.equal(elsewhere.redirectedTo, undefined);
    assert.equal(elsewhere.status, 400);
  });
});

describe('keys survive a restart', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv();
  });
  after(() => env.close());

  test('an ID token issued before a restart still verifies against the JWKS after it', async () => {
    const { tokens } = await login(env);
    const kid = decodeProtectedHeader(tokens!.id_token!).kid;
    await env.restart();
    const jwks = createRemoteJWKSet(new URL(`${env.issuer}/jwks`));
    const { payload } = await jwtVerify(tokens!.id_token!, jwks, { issuer: env.issuer, audience: HEADSCALE.client_id });
    assert.equal(payload.sub, 'tailscale:9007199254740993');
    const after = await login(env);
    assert.equal(decodeProtectedHeader(after.tokens!.id_token!).kid, kid);
  });

  test('the JWKS publishes kid, alg and use, and no private parts', async () => {
    const res = await fetch(`${env.issuer}/jwks`);
    const { keys } = await res.json() as { keys: Record<string, string>[] };
    assert.equal(keys.length, 1);
    const [key] = keys;
    assert.equal(key!.alg, 'RS256');
    assert.equal(key!.use, 'sig');
    assert.ok(key!.kid);
    for (const secret of ['d', 'p', 'q', 'dp', 'dq', 'qi']) assert.equal(key![secret], undefined);
  });
});

async function tokenRequest(env: TestEnv, c: { client_id: string; client_secret: string; redirect_uris: string[] }, params: { code: string; code_verifier?: string }) {
  const res = await fetch(`${env.issuer}/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${c.client_id}:${c.client_secret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'authorization_code', redirect_uri: c.redirect_uris[0]!, ...params }),
  });
  return { status: res.status, json: await res.json() as Record<string, string> };
}

describe('one code, two redemptions at the same instant', () => {
  test('yield exactly one token', async () => {
    const env = await startTestEnv();
    try {
      const config = await discover(env, HEADSCALE);
      const url = client.buildAuthorizationUrl(config, { redirect_uri: HEADSCALE.redirect_uris[0]!, scope: 'openid' });
      const code = (await new Browser(env).walk(url)).redirectedTo!.searchParams.get('code')!;
      const results = await Promise.all(Array.from({ length: 5 }, () => tokenRequest(env, HEADSCALE, { code })));
      assert.deepEqual(results.map((r) => r.status).sort(), [200, 400, 400, 400, 400]);
    } finally {
      await env.close();
    }
  });
});
