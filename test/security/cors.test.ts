import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { HEADSCALE, login, startTestEnv, type TestEnv } from '../helpers.ts';

// Cross-origin reads: a page on another site must not be able to read what /token, /me or any
// other endpoint answers; only the public metadata (discovery, /jwks) is open, to every origin alike.

const EVIL = 'https://evil.example';

describe('CORS', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv();
  });
  after(() => env.close());

  const basic = `Basic ${Buffer.from(`${HEADSCALE.client_id}:${HEADSCALE.client_secret}`).toString('base64')}`;
  const form = 'application/x-www-form-urlencoded';

  function corsHeaders(res: Response): string[] {
    return [...res.headers.keys()].filter((k) => k.startsWith('access-control-')).map((k) => `${k}: ${res.headers.get(k)}`);
  }

  function preflight(path: string, method: string, headers = 'authorization, content-type') {
    return fetch(`${env.server.url}${path}`, {
      method: 'OPTIONS',
      headers: { origin: EVIL, 'access-control-request-method': method, 'access-control-request-headers': headers },
    });
  }

  test('/token sends no CORS headers to a page on another site, whatever it posts', async () => {
    const { callback } = await login(env);
    assert.ok(callback);
    const bodies: { headers: Record<string, string>; body: URLSearchParams }[] = [
      // a real code and the client's credentials
      { headers: { authorization: basic }, body: new URLSearchParams({ grant_type: 'authorization_code', code: callback.searchParams.get('code')!, redirect_uri: HEADSCALE.redirect_uris[0]! }) },
      // no client authentication at all (oidc-provider echoed the Origin on this error)
      { headers: {}, body: new URLSearchParams({ grant_type: 'authorization_code', code: 'x' }) },
      // client_secret_post, as a cross-site form post would send it
      { headers: {}, body: new URLSearchParams({ grant_type: 'authorization_code', code: 'x', client_id: HEADSCALE.client_id, client_secret: HEADSCALE.client_secret }) },
    ];
    for (const { headers, body } of bodies) {
      const res = await fetch(`${env.server.url}/token`, { method: 'POST', headers: { origin: EVIL, 'content-type': form, ...headers }, body });
      const text = await res.text();
      assert.deepEqual(corsHeaders(res), [], `${res.status} ${text}`);
      // A request from a browser page is refused outright, whatever it carries.
      assert.equal(res.status, 400, text);
      assert.doesNotMatch(text, /access_token/);
    }
    const pre = await preflight('/token', 'POST');
    assert.deepEqual(corsHeaders(pre), []);
  });

  test('/me, /session/end and the sign-in pages send no CORS headers either', async () => {
    const { tokens } = await login(env);
    const me = await fetch(`${env.server.url}/me`, { headers: { origin: EVIL, authorization: `Bearer ${tokens!.access_token}` } });
    assert.deepEqual(corsHeaders(me), []);
    const bad = await fetch(`${env.server.url}/me`, { headers: { origin: EVIL, authorization: 'Bearer nonsense' } });
    assert.equal(bad.status, 401);
    assert.deepEqual(corsHeaders(bad), []);
    assert.deepEqual(corsHeaders(await preflight('/me', 'GET')), []);
    for (const path of ['/session/end', '/auth', '/', '/healthz', '/static/guestlist.css']) {
      assert.deepEqual(corsHeaders(await fetch(`${env.server.url}${path}`, { headers: { origin: EVIL }, redirect: 'manual' })), [], path);
      assert.deepEqual(corsHeaders(await preflight(path, 'POST')), [], `OPTIONS ${path}`);
    }
    // The app's server, which sends no Origin, still reads userinfo as before.
    const server = await fetch(`${env.server.url}/me`, { headers: { authorization: `Bearer ${tokens!.access_token}` } });
    assert.equal(server.status, 200);
  });

  test('discovery and /jwks are open to every origin alike, and cacheable for 5 minutes', async () => {
    for (const path of ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server', '/jwks']) {
      for (const origin of [EVIL, undefined]) {
        const res = await fetch(`${env.server.url}${path}`, { headers: origin ? { origin } : {} });
        assert.equal(res.status, 200, path);
        assert.equal(res.headers.get('access-control-allow-origin'), '*', path);
        assert.equal(res.headers.get('cache-control'), 'public, max-age=300', path);
        assert.doesNotMatch(res.headers.get('vary') ?? '', /origin/i, path);
      }
      const pre = await preflight(path, 'GET', 'accept');
      assert.ok(pre.status >= 200 && pre.status < 300, `OPTIONS ${path}: ${pre.status}`);
      assert.equal(pre.headers.get('access-control-allow-origin'), '*', path);
    }
    // An error is not cached.
    const missing = await fetch(`${env.server.url}/.well-known/nothing`);
    assert.notEqual(missing.headers.get('cache-control'), 'public, max-age=300');
  });
});
