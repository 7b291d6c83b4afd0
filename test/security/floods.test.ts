import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import type { ClientConfig } from '../../src/config/config.ts';
import { networkOf } from '../../src/network.ts';
import type { MemoryStore } from '../../src/storage/memory.ts';
import { redisDuringTests, redisMissing, startOnRedis } from '../redis-server.ts';
import { ALICE, BOB_GITHUB } from '../fakes/tailscaled.ts';
import { Browser, HEADSCALE, login, startTestEnv, type TestEnv, type TestEnvOptions } from '../helpers.ts';
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
    assert.equal(networkOf('2001:db8:1:2::1').name, '2001:db8:1:2::/64');
    assert.equal(networkOf('2001:0db8:0001:0002:ffff:0:0:9').name, '2001:db8:1:2::/64');
    assert.equal(networkOf('2001:db8::1:2:3:4').name, '2001:db8:0:0::/64');
    assert.equal(networkOf('::1').name, '0:0:0:0::/64');
    assert.equal(networkOf('fe80::1%eth0').name, 'fe80:0:0:0::/64');
    assert.deepEqual(networkOf('::ffff:203.0.113.9'), { name: '203.0.113.9', wider: [] });
    assert.deepEqual(networkOf('203.0.113.9'), { name: '203.0.113.9', wider: [] });
  });

  test('an IPv6 network lies in its /56 and its /48, which are counted too', () => {
    assert.deepEqual(networkOf('2001:db8:1:2ab::1'), { name: '2001:db8:1:2ab::/64', wider: ['2001:db8:1:200::/56', '2001:db8:1::/48'] });
    assert.deepEqual(networkOf('2001:db8:1:2ff:ffff::1').wider, ['2001:db8:1:200::/56', '2001:db8:1::/48']);
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

/** How many entries of an oidc-provider model the server keeps (in its memory, or in the Redis it shares). */
async function stored(env: TestEnv, model: string): Promise<number> {
  const redis = env.config.storage;
  if (!redis) return (env.server.store as MemoryStore).sizes()[model]?.entries ?? 0;
  const { createClient } = await import('@redis/client');
  const client = createClient({ url: redis });
  await client.connect();
  try {
    return (await client.keys(`guestlist:${model}:*`)).filter((k) => !k.endsWith(':consumed')).length;
  } finally {
    await client.close();
  }
}

/** One request from `ip` (as the proxy in front reports it); its status. */
async function from(env: TestEnv, ip: string, path: string, method = 'GET', headers: Record<string, string> = {}): Promise<number> {
  const target = new URL(env.server.url);
  return new Promise((resolve, reject) => {
    const req = request({ host: target.hostname, port: target.port, method, path, headers: { 'fly-client-ip': ip, ...headers } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Each of `count` addresses in turn (`address(i)`), `each` times; the statuses seen. */
async function fromMany(env: TestEnv, count: number, each: number, address: (i: number) => string, path: string, method = 'GET'): Promise<Map<number, number>> {
  const statuses = new Map<number, number>();
  const jobs = Array.from({ length: count * each }, (_, n) => address(n % count));
  const worker = async () => {
    for (let ip = jobs.shift(); ip !== undefined; ip = jobs.shift()) {
      const status = await from(env, ip, path, method);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return statuses;
}

for (const storage of ['memory', 'Redis'] as const) {
  describe(`what anonymous requests make guestlist store is bounded (${storage})`, { skip: storage === 'Redis' && redisMissing() }, () => {
    const redis = storage === 'Redis' ? redisDuringTests() : undefined;
    /** With Redis, two instances share it, and requests go to each in turn. */
    const start = (options: TestEnvOptions) => (redis ? startOnRedis(redis.url, options) : startTestEnv(options));

    test('one IPv6 subscriber holds at most twice a network\'s share of unfinished sign-ins in its /56, four times in its /48', async () => {
      const env = await start({ plex: true, clients: [FRIENDS], rate_limits: { pending: 5 }, client_ip_header: 'Fly-Client-IP' });
      try {
        // 80 /64s of one /56, each trying for its whole share.
        const subscriber = await fromMany(env, 80, 5, (i) => `2001:db8:77:1${i.toString(16).padStart(2, '0')}::1`, authorizeUrl(env));
        assert.equal(subscriber.get(303), 10, JSON.stringify([...subscriber]));
        // The rest of its /48: two /56s' worth in all.
        const site = await fromMany(env, 40, 5, (i) => `2001:db8:77:${(i + 2).toString(16)}00::1`, authorizeUrl(env));
        assert.equal(site.get(303), 10, JSON.stringify([...site]));
        assert.equal(await stored(env, 'Interaction'), 20);
        // Someone in another /48 is not held back.
        assert.equal(await from(env, '2001:db8:78::1', authorizeUrl(env)), 303);
      } finally {
        await env.close();
      }
    });

    test('sign-ins made large (a 14 KB state) take their size in places: nobody else\'s is pushed out', async () => {
      const env = await start({ plex: true, clients: [FRIENDS], rate_limits: { pending: 50 }, client_ip_header: 'Fly-Client-IP' });
      try {
        const victim = await openPlexPage(env, FRIENDS, new Browser(env, null, { 'fly-client-ip': '198.51.100.20' }));
        assert.equal(victim.page.status, 200);
        const big = `/auth?${new URLSearchParams({ client_id: FRIENDS.client_id, response_type: 'code', scope: 'openid', redirect_uri: FRIENDS.redirect_uris[0]!, state: 'x'.repeat(14_000) })}`;
        // 20 networks, 50 each: as many as their shares would hold of ordinary sign-ins.
        const flood = await fromMany(env, 20, 50, (i) => `203.0.113.${i}`, big);
        assert.ok((flood.get(303) ?? 0) <= 20 * 7, JSON.stringify([...flood]));
        if (!redis) assert.ok((env.server.store as MemoryStore).sizes().Interaction!.bytes < 3 * 2 ** 20);
        const pin = await createPin(env, victim);
        assert.equal((await bindPin(victim, pin)).status, 204);
        env.plex.approve(pin.code, 'alice');
        const done = await finishPlex(victim);
        assert.ok(done.redirectedTo?.searchParams.get('code'), `HTTP ${done.status}: ${done.body.slice(0, 200)}`);
      } finally {
        await env.close();
      }
    });

    test('a visitor with no session makes guestlist store none, however they ask to sign out', async () => {
      const env = await start({ client_ip_header: 'Fly-Client-IP' });
      try {
        const statuses = await fromMany(env, 50, 4, (i) => `198.51.100.${i}`, '/session/end');
        assert.deepEqual([...statuses], [[303, 200]]);
        for (const path of ['/SESSION/END/', `/session/end?client_id=${HEADSCALE.client_id}`]) assert.equal(await from(env, '198.51.100.99', path), 303);
        // A browser whose session cookie names a session that is gone, at /auth and at sign-out.
        const stale = { cookie: '_session=stale-session-id; _session.sig=not-a-signature' };
        for (const path of [authorizeUrl(env, HEADSCALE), '/session/end']) assert.notEqual(await from(env, '198.51.100.98', path, 'GET', stale), 500);
        assert.equal(await stored(env, 'Session'), 0);
      } finally {
        await env.close();
      }
    });
  });
}

describe('when guestlist holds all the unfinished sign-ins it will', () => {
  test('a newcomer who needs the sign-in page is told to wait, and a tailnet person who needs no page signs in', async () => {
    const env = await startTestEnv({ plex: true, clients: [FRIENDS, HEADSCALE], rate_limits: { pending: 50 }, client_ip_header: 'Fly-Client-IP' });
    try {
      // 80 networks, each with its whole share: 4,000, all guestlist keeps.
      const flood = await fromMany(env, 80, 50, (i) => `203.0.${113 + Math.floor(i / 250)}.${i % 250}`, authorizeUrl(env));
      assert.equal(flood.get(303), 4000, JSON.stringify([...flood]));
      assert.equal(await from(env, '198.51.100.200', authorizeUrl(env)), 503);
      // Alice, on the tailnet, is signed in within /auth itself: no pending sign-in needed.
      const alice = await login(env, { client: HEADSCALE, browser: new Browser(env, ALICE, { 'fly-client-ip': '198.51.100.201' }) });
      assert.ok(alice.tokens, `HTTP ${alice.walk.status}`);
    } finally {
      await env.close();
    }
  });
});
