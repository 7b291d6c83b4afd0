import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { join } from 'node:path';
import { tailscaleSource } from '../src/sources/tailscale/tailscale.ts';
import { Refusal } from '../src/sources/source.ts';
import { ALICE, FakeTailscaled } from './fakes/tailscaled.ts';
import { Browser, HEADSCALE, login, startTestEnv, tempDir, type TestEnv } from './helpers.ts';

// The identity headers `tailscale serve` adds: trusted only from loopback, only with
// serve_headers on, and only for a connection tailscaled itself does not know (see also
// test/security/serve-headers.test.ts for the forgeries).

describe('tailscale serve identity headers', () => {
  const headers = {
    'tailscale-user-login': 'carol@example.com',
    'tailscale-user-name': '=?utf-8?q?Carol_J=C3=B6rgensen?=',
    'tailscale-user-profile-pic': 'https://example.com/carol.png',
  };

  test('are ignored when the TCP peer is not loopback, even with serve_headers on', async () => {
    const tailscaled = await new FakeTailscaled(join(await tempDir(), 'tailscaled.sock')).start();
    try {
      const source = tailscaleSource({ socket: tailscaled.socketPath, allow_tagged: false, serve_headers: true });
      // A peer on the LAN forging the headers: whois decides, and it does not know this address.
      await assert.rejects(source.identify({ address: '192.0.2.7', port: 40000, headers }), (e: Refusal) => e.reason === 'not-on-tailnet');
      // A real tailnet peer forging someone else's headers is still itself.
      const who = await source.identify({ address: '100.101.102.103', port: 40000, headers });
      assert.equal(who.login, 'alice@example.com');
    } finally {
      await tailscaled.stop();
    }
  });

  describe('through the server', () => {
    let on: TestEnv;
    let off: TestEnv;
    before(async () => {
      on = await startTestEnv({ tailscale: { serve_headers: true } });
      off = await startTestEnv();
    });
    after(async () => {
      await on.close();
      await off.close();
    });

    test('from loopback with serve_headers on, they sign the person in, decoded', async () => {
      const { walk, tokens } = await login(on, { device: null, client: HEADSCALE });
      assert.equal(tokens, undefined); // without the headers, a loopback stranger is nobody
      assert.equal(walk.status, 403);
      const withHeaders = await loginWithHeaders(on, headers);
      assert.equal(withHeaders?.sub, 'tailscale:carol@example.com');
      assert.equal(withHeaders?.name, 'Carol Jörgensen');
      assert.equal(withHeaders?.email, 'carol@example.com');
    });

    test('with serve_headers off, the same headers are ignored and whois decides', async () => {
      const claims = await loginWithHeaders(off, headers, ALICE);
      assert.equal(claims?.sub, 'tailscale:9007199254740993');
    });

    test('Funnel traffic carries no identity', async () => {
      const claims = await loginWithHeaders(on, { ...headers, 'tailscale-funnel-request': '?1' });
      assert.equal(claims, undefined);
    });
  });
});

async function loginWithHeaders(env: TestEnv, headers: Record<string, string>, device: typeof ALICE | null = null) {
  const browser = new Browser(env, device);
  const original = browser.walk.bind(browser);
  browser.walk = (start) => original(start, headers);
  const { tokens } = await login(env, { browser, scope: 'openid email profile' });
  return tokens?.claims();
}
