import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as client from 'openid-client';
import { ALICE } from '../fakes/tailscaled.ts';
import { Browser, CLOUDFLARE, discover, HEADSCALE, login, startTestEnv, type TestEnv } from '../helpers.ts';

// Attempts to be someone else, or to get a code somewhere it must not go. Each is refused.

describe('identity is never taken from the request', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv({ tailscale: { serve_headers: true } });
  });
  after(() => env.close());

  test('X-Forwarded-For and friends naming a tailnet address do not make a stranger that device', async () => {
    const stranger = new Browser(env, null);
    const walk = stranger.walk.bind(stranger);
    stranger.walk = (start) => walk(start, {
      'x-forwarded-for': ALICE.addresses[0]!, 'x-real-ip': ALICE.addresses[0]!, forwarded: `for=${ALICE.addresses[0]}`,
      'fly-client-ip': ALICE.addresses[0]!, 'cf-connecting-ip': ALICE.addresses[0]!,
    });
    const { walk: result, tokens } = await login(env, { browser: stranger });
    assert.equal(tokens, undefined);
    assert.equal(result.status, 403);
    // tailscaled was asked about the real TCP peer only.
    assert.ok(env.tailscaled.requests.every((r) => !r.url.includes(encodeURIComponent(ALICE.addresses[0]!))));
  });

  test('a Tailscale-User-Login header with a forged Funnel marker or empty value signs no one in', async () => {
    const attempts: Record<string, string>[] = [{ 'tailscale-user-login': '' }, { 'tailscale-user-login': 'alice@example.com', 'tailscale-funnel-request': '?1' }];
    for (const headers of attempts) {
      const b = new Browser(env, null);
      const walk = b.walk.bind(b);
      b.walk = (start) => walk(start, headers);
      assert.equal((await login(env, { browser: b })).tokens, undefined);
    }
  });
});

describe('codes go only where they belong', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv();
  });
  after(() => env.close());

  test('a code issued to one client cannot be redeemed by another', async () => {
    const config = await discover(env, HEADSCALE);
    const url = client.buildAuthorizationUrl(config, { redirect_uri: HEADSCALE.redirect_uris[0]!, scope: 'openid' });
    const code = (await new Browser(env, ALICE).walk(url)).redirectedTo!.searchParams.get('code')!;
    const res = await fetch(`${env.issuer}/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${CLOUDFLARE.client_id}:${CLOUDFLARE.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: HEADSCALE.redirect_uris[0]! }),
    });
    assert.equal(res.status, 400);
    assert.equal((await res.json() as { error: string }).error, 'invalid_grant');
  });

  test('a code cannot be redeemed with another redirect_uri than it was issued for', async () => {
    const two = { ...HEADSCALE, client_id: 'two', redirect_uris: ['https://a.example.test/cb', 'https://b.example.test/cb'] };
    const env2 = await startTestEnv({ clients: [two] });
    try {
      const config = await discover(env2, two);
      const url = client.buildAuthorizationUrl(config, { redirect_uri: two.redirect_uris[0]!, scope: 'openid' });
      const code = (await new Browser(env2, ALICE).walk(url)).redirectedTo!.searchParams.get('code')!;
      const res = await fetch(`${env2.issuer}/token`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`two:${two.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: two.redirect_uris[1]! }),
      });
      assert.equal(res.status, 400);
      assert.equal((await res.json() as { error: string }).error, 'invalid_grant');
    } finally {
      await env2.close();
    }
  });

  const registered = HEADSCALE.redirect_uris[0]!; // https://headscale.example.test/oidc/callback
  for (const [trick, uri] of [
    ['a longer path', `${registered}/../../evil`],
    ['a suffix', `${registered}x`],
    ['another case', registered.replace('headscale', 'HEADSCALE').replace('/oidc/', '/OIDC/')],
    ['a fragment', `${registered}#x`],
    ['an added query', `${registered}?next=https://evil.example.test/`],
    ['a trailing slash', `${registered}/`],
    ['an open redirect through another host', `https://evil.example.test/?${registered}`],
    ['userinfo in the authority', registered.replace('https://', 'https://headscale.example.test@evil.example.test/')],
    ['plain http', registered.replace('https:', 'http:')],
  ] as const) {
    test(`redirect_uri with ${trick} gets an error page and no redirect`, async () => {
      const url = new URL(`${env.issuer}/auth`);
      url.search = new URLSearchParams({ client_id: HEADSCALE.client_id, response_type: 'code', scope: 'openid', redirect_uri: uri, state: 's' }).toString();
      const walk = await new Browser(env, ALICE).walk(url);
      assert.equal(walk.redirectedTo, undefined, `redirected to ${walk.redirectedTo}`);
      assert.equal(walk.status, 400);
    });
  }
});
