import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request, type IncomingHttpHeaders } from 'node:http';
import * as client from 'openid-client';
import { Browser, HEADSCALE, startTestEnv, type TestEnv } from './helpers.ts';

// guestlist on Fly.io or behind Caddy: TLS ends at the proxy, which talks plain http to us on an
// internal address. Our URLs, cookies and headers must still be those of the https issuer.

describe('behind a TLS-terminating proxy', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv({ issuer: 'https://auth.example.test' });
  });
  after(() => env.close());

  function get(path: string, headers: Record<string, string> = {}) {
    const target = new URL(env.server.url);
    return new Promise<{ status: number; headers: IncomingHttpHeaders; body: string }>((resolve, reject) => {
      const req = request({ host: target.hostname, port: target.port, path, headers: { host: 'auth.example.test', ...headers } }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  test('discovery names the https issuer and https endpoints, whatever Host and X-Forwarded-* say', async () => {
    const res = await get('/.well-known/openid-configuration', { host: 'internal:8080', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'http' });
    const meta = JSON.parse(res.body) as Record<string, string>;
    assert.equal(meta.issuer, 'https://auth.example.test');
    for (const k of ['authorization_endpoint', 'token_endpoint', 'jwks_uri', 'userinfo_endpoint', 'end_session_endpoint']) {
      assert.ok(meta[k]!.startsWith('https://auth.example.test/'), `${k} = ${meta[k]}`);
    }
  });

  test('cookies are Secure and HttpOnly, and HSTS is sent', async () => {
    const config = new client.Configuration({ issuer: 'https://auth.example.test', authorization_endpoint: 'https://auth.example.test/auth' }, HEADSCALE.client_id, HEADSCALE.client_secret);
    const url = client.buildAuthorizationUrl(config, { redirect_uri: HEADSCALE.redirect_uris[0]!, scope: 'openid', state: 's', nonce: 'n' });
    const res = await new Browser(env).get(url);
    assert.equal(res.status, 303);
    const cookies = res.headers['set-cookie'] ?? [];
    assert.ok(cookies.length > 0);
    for (const c of cookies) {
      assert.match(c, /; secure/i, c);
      assert.match(c, /; httponly/i, c);
      assert.match(c, /; samesite=lax/i, c);
    }
    assert.match(String(res.headers['strict-transport-security']), /max-age=\d+/);
    // The whole login still completes: the browser walks on over "https".
    const walk = await new Browser(env).walk(url);
    assert.ok(walk.redirectedTo?.searchParams.get('code'), walk.body.slice(0, 300));
    assert.equal(walk.redirectedTo?.searchParams.get('iss'), 'https://auth.example.test');
  });

  test('pages carry a strict CSP and no framing; /healthz answers', async () => {
    const home = await get('/');
    assert.equal(home.status, 200);
    const csp = String(home.headers['content-security-policy']);
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    assert.equal(home.headers['x-frame-options'], 'DENY');
    assert.equal(home.headers['referrer-policy'], 'no-referrer');
    const health = await get('/healthz');
    assert.equal(health.status, 200);
    assert.equal(JSON.parse(health.body).status, 'ok');
    const css = await get('/static/guestlist.css');
    assert.equal(css.status, 200);
    assert.match(String(css.headers['content-type']), /text\/css/);
    assert.equal((await get('/static/../package.json')).status, 404);
  });
});
