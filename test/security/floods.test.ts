import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import type { ClientConfig } from '../../src/config.ts';
import { networkOf } from '../../src/http/client-network.ts';
import { ALICE, BOB_GITHUB } from '../fakes/tailscaled.ts';
import { Browser, login, startTestEnv, type TestEnv } from '../helpers.ts';
import { bindPin, createPin, finishPlex, FRIENDS, openPlexPage } from '../plex-flow.ts';

// What one network can do to everybody else's sign-ins: it is counted as one network however
// many addresses it rotates through, and it can hold only its share of pending sign-ins, so
// its flood of authorization requests never pushes out a sign-in from somewhere else.


function authorizeUrl(env: TestEnv, c: ClientConfig = FRIENDS): string {
  return `/auth?${new URLSearchParams({ client_id: c.client_id, response_type: 'code', scope: 'openid', redirect_uri: c.redirect_uris[0]!, state: 's' })}`;
}

/** `count` authorization requests from `ip`, `concurrency` at a time; the statuses seen. */
async function flood(env: TestEnv, ip: string, count: number, concurrency = 16): Promise<Map<number, number>> {
  const target = new URL(env.server.url);
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const statuses = new Map<number, number>();
  let sent = 0;
  const worker = async () => {
    while (sent < count) {
      sent++;
      const status = await new Promise<number>((resolve, reject) => {
        const req = request({ host: target.hostname, port: target.port, path: authorizeUrl(env), agent, headers: { 'fly-client-ip': ip } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
        req.end();
      });
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
  return statuses;
}

describe('networks, not addresses', () => {
  test('an IPv6 client is one /64; an IPv4 client one address', () => {
    assert.equal(networkOf('2001:db8:1:2::1'), '2001:db8:1:2::/64');
    assert.equal(networkOf('2001:0db8:0001:0002:ffff:0:0:9'), '2001:db8:1:2::/64');
    assert.equal(networkOf('2001:db8::1:2:3:4'), '2001:db8:0:0::/64');
    assert.equal(networkOf('::1'), '0:0:0:0::/64');
    assert.equal(networkOf('fe80::1%eth0'), 'fe80:0:0:0::/64');
    assert.equal(networkOf('::ffff:203.0.113.9'), '203.0.113.9');
    assert.equal(networkOf('203.0.113.9'), '203.0.113.9');
  });

  test('rotating addresses inside one IPv6 /64 gains nothing against the rate limit', async () => {
    const env = await startTestEnv({ rate_limits: { authorize: 3 }, client_ip_header: 'Fly-Client-IP' });
    try {
      const statuses = [];
      for (let i = 1; i <= 4; i++) statuses.push((await login(env, { browser: new Browser(env, ALICE, { 'fly-client-ip': `2001:db8:aa:bb::${i}` }) })).walk.status);
      assert.equal(statuses[3], 429, statuses.join(' '));
      // Another /64 is another network.
      assert.ok((await login(env, { browser: new Browser(env, ALICE, { 'fly-client-ip': '2001:db8:aa:cc::1' }) })).walk.redirectedTo);
    } finally {
      await env.close();
    }
  });

  test('behind tailscale serve (every peer is loopback), each tailnet person has their own limit', async () => {
    const env = await startTestEnv({ tailscale: { serve_headers: true }, rate_limits: { authorize: 2 } });
    try {
      const through = async (device: typeof ALICE) => {
        const url = await env.tailscaled.serveProxy(device, env.server.url);
        return login(env, { browser: new Browser({ ...env, server: { ...env.server, url } }, null) });
      };
      assert.ok((await through(ALICE)).tokens);
      assert.ok((await through(ALICE)).tokens);
      assert.equal((await through(ALICE)).walk.status, 429);
      // Bob comes through the same loopback proxy and is not held back by Alice.
      assert.ok((await through(BOB_GITHUB)).tokens);
    } finally {
      await env.close();
    }
  });

  test('behind userspace tailscaled, each proxied device has its own limit', async () => {
    const env = await startTestEnv({ rate_limits: { authorize: 1 } });
    try {
      const through = async (device: typeof ALICE) => {
        const url = await env.tailscaled.userspaceProxy(device, env.server.url);
        return login(env, { browser: new Browser({ ...env, server: { ...env.server, url } }, null) });
      };
      assert.ok((await through(ALICE)).tokens);
      assert.equal((await through(ALICE)).walk.status, 429);
      assert.ok((await through(BOB_GITHUB)).tokens);
    } finally {
      await env.close();
    }
  });
});

describe('a flood of authorization requests', () => {
  let env: TestEnv;
  before(async () => {
    // The shipped limits, as a deployment behind Fly's proxy has them.
    env = await startTestEnv({ plex: true, clients: [FRIENDS], rate_limits: { authorize: 60, interaction: 60, token: 300, pending: 50 }, client_ip_header: 'Fly-Client-IP' });
  });
  after(() => env.close());

  test('from one network, is cut off and never breaks a sign-in from another network', async () => {
    // The victim has the Plex page open: a pending sign-in.
    const victim = await openPlexPage(env, FRIENDS, new Browser(env, null, { 'fly-client-ip': '198.51.100.20' }));
    assert.equal(victim.page.status, 200);
    // More authorization requests than guestlist keeps pending sign-ins (5,000).
    const statuses = await flood(env, '203.0.113.50', 5_500);
    assert.ok((statuses.get(429) ?? 0) >= 5_400, JSON.stringify([...statuses]));
    // The victim's sign-in is still there and finishes.
    const pin = await createPin(env, victim);
    assert.equal((await bindPin(victim, pin)).status, 204);
    env.plex.approve(pin.code, 'alice');
    const done = await finishPlex(victim);
    assert.ok(done.redirectedTo?.searchParams.get('code'), `HTTP ${done.status}: ${done.body.slice(0, 200)}`);
  });

  test('one network holds at most its share of pending sign-ins, even under the rate limit', async () => {
    const local = await startTestEnv({ plex: true, clients: [FRIENDS], rate_limits: { pending: 5 }, client_ip_header: 'Fly-Client-IP' });
    try {
      const statuses = await flood(local, '203.0.113.51', 8, 1);
      assert.deepEqual([...statuses].sort(), [[303, 5], [429, 3]]); // 303: on to a pending sign-in
      // Resuming one's own sign-ins without their cookie fails, and frees no place.
      const target = new URL(local.server.url);
      for (let i = 0; i < 3; i++) {
        const started = await fetch(`${target.origin}${authorizeUrl(local)}`, { redirect: 'manual', headers: { 'fly-client-ip': '203.0.113.52' } });
        const uid = /\/interaction\/([^/?]+)/.exec(started.headers.get('location') ?? '')?.[1];
        assert.ok(uid, `authorization ${i + 1}: HTTP ${started.status}`);
        await fetch(`${target.origin}/auth/${uid}`, { redirect: 'manual', headers: { 'fly-client-ip': '203.0.113.52' } });
      }
      assert.deepEqual([...(await flood(local, '203.0.113.52', 3, 1))].sort(), [[303, 2], [429, 1]]);
      // Someone else is not affected, and a finished sign-in frees its place.
      assert.equal((await openPlexPage(local, FRIENDS, new Browser(local, null, { 'fly-client-ip': '198.51.100.21' }))).page.status, 200);
      const tailnet = await startTestEnv({ rate_limits: { pending: 1 }, client_ip_header: 'Fly-Client-IP' });
      try {
        for (let i = 0; i < 3; i++) {
          assert.ok((await login(tailnet, { browser: new Browser(tailnet, ALICE, { 'fly-client-ip': '198.51.100.22' }) })).tokens, `login ${i + 1}`);
        }
      } finally {
        await tailnet.close();
      }
    } finally {
      await local.close();
    }
  });
});
