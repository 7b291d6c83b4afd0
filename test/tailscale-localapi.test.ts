import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { join } from 'node:path';
import { status, TailscaledUnavailable, whois, whoisAddress } from '../src/sources/tailscale/localapi.ts';
import { ALICE, FakeTailscaled } from './fakes/tailscaled.ts';
import { Browser, login, startTestEnv, tempDir, type TestEnv } from './helpers.ts';

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

  test('status, for the console: the backend state and the tailnet, asked without the peer list', async () => {
    assert.deepEqual(await status(tailscaled.socketPath), { backendState: 'Running', tailnet: 'example.com', version: '1.90.6-t0123456789' });
    const asked = tailscaled.requests.at(-1)!;
    assert.equal(asked.url, '/localapi/v0/status?peers=false');
    assert.equal(asked.host, 'local-tailscaled.sock');
    await assert.rejects(status(join(await tempDir(), 'nothing.sock')), (err) => err instanceof TailscaledUnavailable && /no socket there/.test(err.message));
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
