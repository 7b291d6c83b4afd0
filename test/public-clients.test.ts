import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as client from 'openid-client';
import type { ClientConfig } from '../src/config/config.ts';
import { parseConfig } from '../src/config/load.ts';
import { sameButPort } from '../src/oidc/provider.ts';
import { ALICE } from './fakes/tailscaled.ts';
import { Browser, cli, discover, fetchFrom, HEADSCALE, testEnvs, type TestEnv } from './helpers.ts';

// Public clients (clients[].public): a CLI or a native app, which cannot keep a secret, signs in
// with PKCE alone (token_endpoint_auth_method none) and may come back on a loopback redirect on
// any port (RFC 8252 §7.3: the IP literals only) or to its own private-use scheme (§7.1).

const CLI: ClientConfig = {
  client_id: 'incus-cli', public: true, name: 'Incus', require_pkce: true, refresh_tokens: true,
  redirect_uris: ['http://127.0.0.1/callback', 'http://[::1]/callback', 'http://localhost:4242', 'app.immich:///oauth-callback'],
  post_logout_redirect_uris: [],
};
const withEnv = testEnvs({ clients: [HEADSCALE, CLI] });

/** What the native app does: an authorization with fresh PKCE to `redirect`, walked from Alice's device; where it lands. */
async function authorize(env: TestEnv, redirect: string, extra: Record<string, string> = {}) {
  const config = await discover(env, CLI);
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirect, scope: 'openid profile offline_access', state,
    code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', ...extra,
  });
  const walk = await new Browser(env, ALICE).walk(url);
  return { config, verifier, state, walk };
}

/** The code exchange as the app makes it, from the same device over the tailnet. */
function exchange(env: TestEnv, a: Awaited<ReturnType<typeof authorize>>) {
  a.config[client.customFetch] = fetchFrom(env.tailscaled, ALICE) as never;
  return client.authorizationCodeGrant(a.config, a.walk.redirectedTo!, { pkceCodeVerifier: a.verifier, expectedState: a.state });
}

/** A raw token request, to try what openid-client would not send. */
async function tokenRequest(env: TestEnv, form: Record<string, string>, headers: Record<string, string> = {}) {
  const res = await fetch(`${env.server.url}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: new URLSearchParams(form) });
  return { status: res.status, body: await res.json() as { error?: string } };
}

describe('public clients', () => {
  test('a loopback redirect on a random port: the code comes back there, and PKCE alone redeems it, with a refresh token', withEnv({}, async (env) => {
    const port = 49152 + Math.floor(Math.random() * 10000);
    const a = await authorize(env, `http://127.0.0.1:${port}/callback`);
    assert.equal(a.walk.redirectedTo?.origin, `http://127.0.0.1:${port}`, a.walk.body.slice(0, 300));
    const tokens = await exchange(env, a);
    assert.equal(tokens.claims()?.sub, 'tailscale:9007199254740993');
    assert.ok(tokens.refresh_token);
    // A public client's refresh token rotates, as any here.
    const next = await client.refreshTokenGrant(a.config, tokens.refresh_token);
    assert.notEqual(next.refresh_token, tokens.refresh_token);
    // IPv6 loopback too.
    const v6 = await authorize(env, `http://[::1]:${port}/callback`);
    assert.equal(v6.walk.redirectedTo?.host, `[::1]:${port}`);
  }));

  test('a private-use scheme comes back to the app', withEnv({}, async (env) => {
    const a = await authorize(env, 'app.immich:///oauth-callback');
    assert.equal(a.walk.redirectedTo?.protocol, 'app.immich:');
    assert.ok(a.walk.redirectedTo?.searchParams.get('code'));
    assert.ok((await exchange(env, a)).access_token);
  }));

  test('refused: another loopback path, localhost on another port, an unregistered scheme, no PKCE', withEnv({}, async (env) => {
    for (const redirect of ['http://127.0.0.1:5000/other', 'http://127.0.0.1:5000/callback/', 'http://localhost:4243', 'http://localhost:4242/x', 'app.evil:///oauth-callback', 'http://127.0.0.2:5000/callback']) {
      const a = await authorize(env, redirect);
      assert.equal(a.walk.redirectedTo, undefined, `${redirect} was followed`);
      assert.equal(a.walk.status, 400, redirect);
      assert.match(a.walk.body, /redirect_uri/, redirect);
    }
    // oidc-agent registers http://localhost:PORT and comes back on exactly that.
    assert.equal((await authorize(env, 'http://localhost:4242')).walk.redirectedTo?.host, 'localhost:4242');
    // Without PKCE: the app is told, at its own redirect.
    const config = await discover(env, CLI);
    const url = client.buildAuthorizationUrl(config, { redirect_uri: 'http://127.0.0.1:5000/callback', scope: 'openid', state: 's' });
    const walk = await new Browser(env, ALICE).walk(url);
    assert.equal(walk.redirectedTo?.searchParams.get('error'), 'invalid_request');
  }));

  test('at the token endpoint: a public client that sends a secret, and a confidential one that sends none, are invalid_client', withEnv({}, async (env) => {
    const a = await authorize(env, 'http://127.0.0.1:5001/callback');
    const code = a.walk.redirectedTo!.searchParams.get('code')!;
    const form = { grant_type: 'authorization_code', code, redirect_uri: 'http://127.0.0.1:5001/callback', code_verifier: a.verifier };
    assert.equal((await tokenRequest(env, { ...form, client_id: CLI.client_id, client_secret: 'guessed-0123456789' })).body.error, 'invalid_client');
    assert.equal((await tokenRequest(env, form, { authorization: `Basic ${Buffer.from(`${CLI.client_id}:`).toString('base64')}` })).body.error, 'invalid_request');
    assert.equal((await tokenRequest(env, { ...form, client_id: HEADSCALE.client_id })).body.error, 'invalid_client');
    // None of that spent the code.
    const ok = await tokenRequest(env, { ...form, client_id: CLI.client_id });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
  }));

  test('the loopback rule matches IP literals only, scheme to query exactly but for the port', () => {
    assert.ok(sameButPort('http://127.0.0.1/cb', 'http://127.0.0.1:8080/cb'));
    assert.ok(sameButPort('http://127.0.0.1:1/cb?x=1', 'http://127.0.0.1:65535/cb?x=1'));
    assert.ok(sameButPort('http://[::1]/cb', 'http://[::1]:9/cb'));
    for (const asked of ['http://127.0.0.1:80/cb2', 'http://127.0.0.1:80/cb?x', 'https://127.0.0.1:80/cb', 'http://127.0.0.1:80@evil.example/cb', 'http://127.0.0.1.evil.example/cb', 'http://[::1]:80/cb']) {
      assert.equal(sameButPort('http://127.0.0.1/cb', asked), false, asked);
    }
    assert.equal(sameButPort('http://localhost/cb', 'http://localhost:80/cb'), false);
  });
});

describe('public clients in the config', () => {
  const base = 'issuer: https://auth.example.com\ntailscale: {}\nclients:\n';
  const problems = (clients: string) => {
    try {
      parseConfig(`${base}${clients}`, {});
      return [];
    } catch (err) {
      return (err as { problems: string[] }).problems;
    }
  };

  test('public: no secret, PKCE always; a confidential client needs its secret and no native scheme', () => {
    const config = parseConfig(`${base}  - {client_id: cli, public: true, refresh_tokens: true, redirect_uris: ["http://127.0.0.1/callback", "com.example.app:/oauth2redirect"]}\n`, {});
    assert.deepEqual({ ...config.clients[0] }, { client_id: 'cli', public: true, refresh_tokens: true, redirect_uris: ['http://127.0.0.1/callback', 'com.example.app:/oauth2redirect'], post_logout_redirect_uris: [], name: 'cli', require_pkce: true });
    assert.match(problems('  - {client_id: cli, public: true, client_secret: 0123456789abcdef0123, redirect_uris: ["http://127.0.0.1/cb"]}\n').join('\n'), /clients\[0\]\.client_secret: a public client \(public: true\) has no secret/);
    assert.match(problems('  - {client_id: web, redirect_uris: ["https://a.example.com/cb"]}\n').join('\n'), /clients\[0\]\.client_secret: missing \(or set public: true/);
    assert.match(problems('  - {client_id: web, client_secret: 0123456789abcdef0123, redirect_uris: ["app.immich:///oauth-callback"]}\n').join('\n'), /clients\[0\]\.redirect_uris: "app\.immich:\/\/\/oauth-callback" uses the scheme "app\.immich:", which only a native app uses/);
    assert.match(problems('  - {client_id: cli, public: true, require_pkce: false, redirect_uris: ["http://127.0.0.1/cb"]}\n').join('\n'), /clients\[0\]\.require_pkce: a public client always needs PKCE/);
    for (const scheme of ['javascript:alert(1)', 'data:text/html,x', 'file:///etc/passwd', 'myapp:/cb']) {
      assert.match(problems(`  - {client_id: cli, public: true, redirect_uris: ["${scheme}"]}\n`).join('\n'), /a native app's own scheme is a reverse domain name/, scheme);
    }
    assert.match(problems('  - {client_id: cli, public: true, redirect_uris: ["http://192.168.1.5/cb"]}\n').join('\n'), /uses plain http/);
  });

  test('guestlist client add --public prints a client with no secret, for PKCE', async () => {
    const { code, out } = await cli(['client', 'add', 'incus', '--public', '--redirect-uri', 'http://127.0.0.1/callback', '--issuer', 'https://auth.example.com'], {});
    assert.equal(code, 0);
    assert.match(out, /  - client_id: incus\n    public: true\n    redirect_uris: \[http:\/\/127\.0\.0\.1\/callback\]/);
    assert.doesNotMatch(out, /client_secret/);
    assert.match(out, /PKCE \(S256\)/);
  });
});
