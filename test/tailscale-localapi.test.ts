import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { join } from 'node:path';
import { tailscaleSource } from '../src/sources/tailscale/tailscale.ts';
import { Refusal } from '../src/sources/source.ts';
import { whois, whoisAddress } from '../src/sources/tailscale/localapi.ts';
import { ALICE, FakeTailscaled } from './fakes/tailscaled.ts';
import { Browser, HEADSCALE, login, startTestEnv, tempDir, type TestEnv } from './helpers.ts';

describe('the tailscaled LocalAPI client', () => {
  let tailscaled: FakeTailscaled;
  before(async () => {
    tailscaled = await new FakeTailscaled(join(await tempDir(), 'tailscaled.sock')).start();
  });
  after(() => tailscaled.stop());

  test('formats the peer address as tailscaled parses it', () => {
    assert.equal(whoisAddress('100.101.102.103', 51234), '100.101.102.103:51234');
    assert.equal(whoisAddress('::ffff:100.101.102.103', 51234), '100.101.102.103:51234');
    assert.equal(whoisAddress('fd7a:115c:a1e0::9f01:6667', 51234), '[fd7a:115c:a1e0::9f01:6667]:51234');
    assert.throws(() => whoisAddress('not-an-ip', 1));
  });

  test('finds a tailnet peer by IPv4, bracketed IPv6 and mapped IPv4, with ids exact beyond 2^53', async () => {
    for (const addr of ['100.101.102.103:41641', '[fd7a:115c:a1e0::9f01:6667]:41641', whoisAddress('::ffff:100.101.102.103', 7)]) {
      const who = await whois(tailscaled.socketPath, addr);
      assert.equal(who?.UserProfile.ID, '9007199254740993', addr);
      assert.equal(who?.UserProfile.LoginName, 'alice@example.com');
    }
    // Sent with the Host tailscaled insists on, or it would have answered 403.
    assert.ok(tailscaled.requests.every((r) => r.host === 'local-tailscaled.sock'));
  });

  test('an unknown peer is "not found", not an error', async () => {
    assert.equal(await whois(tailscaled.socketPath, '100.64.0.99:1234'), undefined);
  });

  test('the fake is as strict as tailscaled: wrong Host, Origin, and unbracketed IPv6', async () => {
    const get = (path: string, headers: Record<string, string>) => new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({ socketPath: tailscaled.socketPath, path, headers }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
      req.end();
    });
    assert.deepEqual(await get('/localapi/v0/whois?addr=100.101.102.103', { Host: 'localhost' }), { status: 403, body: 'invalid localapi request\n' });
    assert.equal((await get('/localapi/v0/whois?addr=100.101.102.103', { Host: 'local-tailscaled.sock', Origin: 'https://evil.example' })).status, 403);
    assert.deepEqual(await get('/localapi/v0/whois', { Host: 'local-tailscaled.sock' }), { status: 400, body: "missing 'addr' parameter\n" });
    assert.deepEqual(await get('/localapi/v0/whois?addr=100.1.2.3%3Anope', { Host: 'local-tailscaled.sock' }), { status: 400, body: "invalid 'addr' parameter\n" });
  });
});

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

describe('the peer address on a dual-stack listener', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv({ listenHost: '::' });
  });
  after(() => env.close());

  test('an IPv4 peer (seen as ::ffff:127.0.0.1) and an IPv6 peer ([::1]:port) are both found', async () => {
    const port = new URL(env.server.url).port;
    for (const host of ['127.0.0.1', '[::1]']) {
      const via = { ...env, server: { ...env.server, url: `http://${host}:${port}` } };
      const { tokens, walk } = await login(env, { browser: new Browser(via, ALICE) });
      assert.equal(tokens?.claims()?.sub, 'tailscale:9007199254740993', `${host}: HTTP ${walk.status}`);
    }
    const addrs = env.tailscaled.requests.map((r) => new URL(r.url, 'http://x').searchParams.get('addr')!);
    assert.ok(addrs.some((a) => /^127\.0\.0\.1:\d+$/.test(a)), addrs.join(' '));
    assert.ok(addrs.some((a) => /^\[::1\]:\d+$/.test(a)), addrs.join(' '));
  });
});
