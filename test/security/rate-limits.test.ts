import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ALICE } from '../fakes/tailscaled.ts';
import { Browser, HEADSCALE, login, startTestEnv, type TestEnv } from '../helpers.ts';

describe('per-client-IP rate limits', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv({ rate_limits: { authorize: 3, token: 0 }, client_ip_header: 'Fly-Client-IP' });
  });
  after(() => env.close());

  test('authorization requests answer 429 with Retry-After past the limit, per client IP', async () => {
    const from = (ip: string) => {
      const b = new Browser(env, ALICE);
      const walk = b.walk.bind(b);
      b.walk = (start) => walk(start, { 'fly-client-ip': ip });
      return b;
    };
    for (let i = 0; i < 3; i++) assert.ok((await login(env, { browser: from('203.0.113.1') })).walk.redirectedTo, `login ${i + 1}`);
    const limited = await login(env, { browser: from('203.0.113.1') });
    assert.equal(limited.walk.status, 429);
    assert.match(String(limited.walk.headers['retry-after']), /^\d+$/);
    assert.match(limited.walk.body, /Too many sign-in attempts/);
    // Another client, behind the same proxy, is not held back.
    assert.ok((await login(env, { browser: from('198.51.100.7') })).walk.redirectedTo);
  });

  test('the sign-in pages (where a stranger lands) answer 429 past their own limit', async () => {
    const pagesEnv = await startTestEnv({ rate_limits: { interaction: 2 }, client_ip_header: 'Fly-Client-IP' });
    try {
      const stranger = () => login(pagesEnv, { browser: new Browser(pagesEnv, null, { 'fly-client-ip': '203.0.113.2' }) });
      assert.equal((await stranger()).walk.status, 403);
      assert.equal((await stranger()).walk.status, 403);
      const limited = await stranger();
      assert.equal(limited.walk.status, 429);
      assert.match(limited.walk.body, /Too many sign-in attempts/);
    } finally {
      await pagesEnv.close();
    }
  });

  test('the token endpoint answers 429 with Retry-After past the limit', async () => {
    const tokenEnv = await startTestEnv({ rate_limits: { interaction: 0, token: 2 }, client_ip_header: 'Fly-Client-IP' });
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${tokenEnv.issuer}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'fly-client-ip': '192.0.2.50' },
        body: new URLSearchParams({ grant_type: 'authorization_code', code: 'x', client_id: HEADSCALE.client_id, client_secret: HEADSCALE.client_secret, redirect_uri: HEADSCALE.redirect_uris[0]! }),
      });
      statuses.push(res.status);
      if (res.status === 429) {
        assert.ok(Number(res.headers.get('retry-after')) > 0);
        assert.equal((await res.json() as { error: string }).error, 'temporarily_unavailable');
      }
    }
    await tokenEnv.close();
    assert.deepEqual(statuses, [400, 400, 429]);
  });

  test('without client_ip_header, a spoofed Fly-Client-IP does not dodge the limit', async () => {
    const plain = await startTestEnv({ rate_limits: { authorize: 1, token: 0 } });
    try {
      const spoof = (ip: string) => {
        const b = new Browser(plain, ALICE);
        const walk = b.walk.bind(b);
        b.walk = (start) => walk(start, { 'fly-client-ip': ip, 'x-forwarded-for': ip });
        return b;
      };
      assert.ok((await login(plain, { browser: spoof('203.0.113.9') })).walk.redirectedTo);
      assert.equal((await login(plain, { browser: spoof('203.0.113.10') })).walk.status, 429);
    } finally {
      await plain.close();
    }
  });
});
