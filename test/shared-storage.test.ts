import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import * as client from 'openid-client';
import { DEFAULT_BRANDING } from '../src/config/config.ts';
import { type Config } from '../src/config/load.ts';
import { loadOrCreateKeys } from '../src/keys/keys.ts';
import { startServer, type RunningServer } from '../src/server.ts';
import { FakePlex, SERVER_ID } from './fakes/plex.ts';
import { ALICE, FakeTailscaled } from './fakes/tailscaled.ts';
import { Browser, discover, freePort, HEADSCALE, tempDir, type TestEnv } from './helpers.ts';
import { RedisServer, redisMissing } from './redis-server.ts';

// Two guestlist instances sharing Debian's redis-server on loopback, behind a round-robin: each
// request of a login may land on either one, as with two Fly machines or a rolling deploy.

describe('two instances sharing Redis', { skip: redisMissing() }, () => {
  let redis: RedisServer;
  let tailscaled: FakeTailscaled;
  let plex: FakePlex;
  let servers: RunningServer[];
  let config: Config;
  let env: TestEnv;
  const logs: Record<string, unknown>[] = [];
  const PLEXAPP = { ...HEADSCALE, client_id: 'plexapp', name: 'Plex App', redirect_uris: ['https://plexapp.example.test/cb'], sources: ['plex' as const] };

  before(async () => {
    const dir = await tempDir();
    redis = new RedisServer(await freePort(), dir);
    await redis.start();
    tailscaled = await new FakeTailscaled(join(dir, 'tailscaled.sock')).start();
    plex = await new FakePlex().start();
    // Keys made once and copied to both instances' data_dir, as a seeded volume would be.
    await loadOrCreateKeys(join(dir, 'seed'));
    const [portA, portB] = [await freePort(), await freePort()];
    // Both answer for one issuer (A's address); the round-robin sends each request to either.
    const issuer = `http://127.0.0.1:${portA}`;
    const base: Config = {
      issuer, listen: { host: '127.0.0.1', port: portA }, data_dir: '', clients: [HEADSCALE, PLEXAPP],
      groups: {}, tailscale: { socket: tailscaled.socketPath, allow_tagged: false, serve_headers: false },
      plex: { server_ids: [SERVER_ID], product: 'guestlist tests', api_url: plex.url, app_url: `${plex.url}/auth`, recheck_after: 900, grace_when_down: 3600 },
      branding: { ...DEFAULT_BRANDING }, rate_limits: { authorize: 100, interaction: 100, token: 100, pending: 100 }, storage: redis.url, demo: false, admin: { allowed_groups: [], tailnet_only: true },
    };
    servers = [];
    for (const [i, port] of [portA, portB].entries()) {
      const dataDir = join(dir, `instance-${i}`);
      await mkdir(dataDir);
      await cp(join(dir, 'seed'), dataDir, { recursive: true });
      servers.push(await startServer({ ...base, data_dir: dataDir, listen: { host: '127.0.0.1', port } }, {
        log: (level, msg, fields) => logs.push({ level, msg, ...fields }), sourceTimeoutsMs: { tailscale: 1000, plex: 1000 }, env: {},
      }));
    }
    config = base;
    // The round-robin: every new connection goes to the next instance.
    let next = 0;
    const roundRobin = { get url() { return servers[next++ % servers.length]!.url; } };
    env = { issuer: servers[0]!.url, server: roundRobin, tailscaled, plex } as unknown as TestEnv;
  });

  after(async () => {
    for (const s of servers ?? []) await s.close().catch(() => {});
    await tailscaled?.stop();
    await plex?.stop();
    await redis?.stop();
    // A Redis connection leaked by a failed start keeps retrying forever, and this file would
    // never finish: fail it instead.
    setTimeout(() => {
      console.error('a Redis connection is still open after every server closed');
      process.exit(1);
    }, 10_000).unref();
  });

  /** openid-client for an RP whose token and userinfo calls also alternate between instances. */
  async function rp() {
    const c = await discover({ issuer: servers[0]!.url }, HEADSCALE);
    let n = 0;
    c[client.customFetch] = (url, options) => {
      const target = new URL(url);
      const server = new URL(servers[n++ % 2]!.url);
      target.host = server.host;
      return fetch(target, options as RequestInit);
    };
    return c;
  }

  test('a zero-click login succeeds with its steps split across the instances', async () => {
    for (let i = 0; i < 4; i++) {
      const config = await rp();
      const verifier = client.randomPKCECodeVerifier();
      const nonce = client.randomNonce();
      const url = client.buildAuthorizationUrl(config, {
        redirect_uri: HEADSCALE.redirect_uris[0]!, scope: 'openid email profile', nonce,
        code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
      });
      // The issuer in this setup is instance A's URL, so discovery is A's; the browser walks both.
      const walk = await new Browser(env, ALICE).walk(url);
      assert.ok(walk.redirectedTo?.searchParams.get('code'), `HTTP ${walk.status}: ${walk.body.slice(0, 200)}`);
      const tokens = await client.authorizationCodeGrant(config, walk.redirectedTo!, { pkceCodeVerifier: verifier, expectedNonce: nonce });
      assert.equal(tokens.claims()!.sub, 'tailscale:9007199254740993');
      const info = await client.fetchUserInfo(config, tokens.access_token, 'tailscale:9007199254740993');
      assert.equal(info.email, 'alice@example.com');
    }
    const served = new Set(logs.filter((l) => l.msg === 'login').map((l) => l.client_id));
    assert.ok(served.size > 0);
  });

  test('a Plex login binds its PIN on one instance and finishes on the other', async () => {
    const c = await discover({ issuer: servers[0]!.url }, PLEXAPP);
    const url = client.buildAuthorizationUrl(c, { redirect_uri: PLEXAPP.redirect_uris[0]!, scope: 'openid' });
    const browser = new Browser(env, null);
    const page = await browser.walk(url);
    assert.equal(page.status, 200, page.body.slice(0, 200));
    const data = Object.fromEntries([...page.body.matchAll(/data-([a-z-]+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
    const pin = await (await fetch(`${plex.url}/api/v2/pins?strong=true&X-Plex-Client-Identifier=${data['client-id']}`, { method: 'POST', headers: { Accept: 'application/json', Origin: 'http://x' } })).json() as { id: number; code: string };
    assert.equal((await browser.post(data.bind!, JSON.stringify({ id: pin.id, code: pin.code }), 'application/json')).status, 204);
    plex.approve(pin.code, 'alice');
    const finish = /action="([^"]+\/plex\/finish)"/.exec(page.body)![1]!;
    const done = await browser.post(finish, '', 'application/x-www-form-urlencoded');
    assert.ok(done.redirectedTo?.searchParams.get('code'), `HTTP ${done.status}: ${done.body.slice(0, 200)}`);
    // The same PIN cannot be bound again, whichever instance is asked.
    const again = new Browser(env, null);
    const page2 = await again.walk(url);
    const bind2 = /data-bind="([^"]+)"/.exec(page2.body)![1]!;
    assert.equal((await again.post(bind2, JSON.stringify({ id: pin.id, code: pin.code }), 'application/json')).status, 409);
  });

  test('one code redeemed at the same instant on both instances yields exactly one token', async () => {
    const c = await rp();
    const url = client.buildAuthorizationUrl(c, { redirect_uri: HEADSCALE.redirect_uris[0]!, scope: 'openid' });
    const code = (await new Browser(env, ALICE).walk(url)).redirectedTo!.searchParams.get('code')!;
    const redeem = (server: RunningServer) => fetch(`${server.url}/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${HEADSCALE.client_id}:${HEADSCALE.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: HEADSCALE.redirect_uris[0]! }),
    }).then((r) => r.status);
    const statuses = await Promise.all([redeem(servers[0]!), redeem(servers[1]!), redeem(servers[0]!), redeem(servers[1]!)]);
    assert.deepEqual(statuses.sort(), [200, 400, 400, 400]);
  });

  test('Redis lost mid-flight: a clear 503 page, no crash, and logins recover by themselves', async () => {
    await redis.stop();
    const c = await rp();
    const url = client.buildAuthorizationUrl(c, { redirect_uri: HEADSCALE.redirect_uris[0]!, scope: 'openid' });
    const down = await new Browser(env, ALICE).walk(url);
    assert.equal(down.status, 503);
    assert.match(down.body, /cannot reach the storage/);
    assert.doesNotMatch(down.body, /at .*\.js:\d+/);
    await redis.start();
    for (let i = 0; ; i++) {
      const walk = await new Browser(env, ALICE).walk(url);
      if (walk.redirectedTo?.searchParams.get('code')) break;
      assert.ok(i < 100, `no recovery: HTTP ${walk.status}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    // Both instances are still the same processes, serving.
    for (const s of servers) assert.equal((await fetch(`${s.url}/healthz`)).status, 200);
  });

  test('Redis stalled (up but not answering): a 503 page within seconds, and recovery after', async () => {
    const c = await rp();
    const url = client.buildAuthorizationUrl(c, { redirect_uri: HEADSCALE.redirect_uris[0]!, scope: 'openid' });
    redis.proc!.kill('SIGSTOP');
    try {
      const stalled = await new Browser(env, ALICE).walk(url);
      assert.equal(stalled.status, 503);
      assert.match(stalled.body, /cannot reach the storage/);
    } finally {
      redis.proc!.kill('SIGCONT');
    }
    for (let i = 0; ; i++) {
      const walk = await new Browser(env, ALICE).walk(url);
      if (walk.redirectedTo?.searchParams.get('code')) break;
      assert.ok(i < 100, `no recovery: HTTP ${walk.status}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  test('Redis unreachable at start-up is a clear error, not a hang', async () => {
    const port = await freePort();
    await assert.rejects(
      startServer({ ...config, data_dir: join(redis.dir, 'instance-0'), listen: { host: '127.0.0.1', port }, storage: `redis://127.0.0.1:${await freePort()}` }, { log: () => {}, env: {} }),
      /cannot reach Redis at redis:\/\/127\.0\.0\.1:\d+/,
    );
  });

  test('with shared storage, an instance without the shared keys refuses to start', async () => {
    const empty = await tempDir();
    await assert.rejects(
      startServer({ ...config, data_dir: empty, listen: { host: '127.0.0.1', port: await freePort() } }, { log: () => {}, env: {} }),
      /with shared storage every instance must sign with the same keys/,
    );
  });

  test('keys may come from the environment instead of files', async () => {
    const seeded = join(redis.dir, 'instance-1');
    const { readFile } = await import('node:fs/promises');
    const server = await startServer({ ...config, data_dir: await tempDir(), listen: { host: '127.0.0.1', port: await freePort() } }, {
      log: () => {},
      env: { GUESTLIST_SIGNING_KEYS: await readFile(join(seeded, 'signing-keys.json'), 'utf8'), GUESTLIST_COOKIE_SECRETS: await readFile(join(seeded, 'cookie-secrets.json'), 'utf8') },
    });
    try {
      const a = await (await fetch(`${servers[0]!.url}/jwks`)).json();
      const b = await (await fetch(`${server.url}/jwks`)).json();
      assert.deepEqual(b, a);
    } finally {
      await server.close();
    }
  });

  /** How many connections Redis has, other than the one asking; `until` waits for a count. */
  async function redisConnections(until?: number): Promise<number> {
    const { createClient } = await import('@redis/client');
    const monitor = createClient({ url: redis.url });
    await monitor.connect();
    try {
      for (let i = 0; ; i++) {
        const count = (await monitor.clientList()).length - 1;
        if (until === undefined || count === until || i >= 100) return count;
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      await monitor.close();
    }
  }

  test('a start that fails after connecting to Redis closes its connection, whatever failed', async () => {
    const seeded = join(redis.dir, 'instance-0');
    const before = await redisConnections();
    // oidc-provider refuses this client in checkClients, after the connection is made (a config
    // file could not say this: parseConfig refuses fragments first).
    const broken = { ...HEADSCALE, redirect_uris: ['https://headscale.example.test/cb#fragment'] };
    await assert.rejects(startServer({ ...config, data_dir: seeded, clients: [broken], listen: { host: '127.0.0.1', port: await freePort() } }, { log: () => {}, env: {} }),
      /invalid_redirect_uri/);
    assert.equal(await redisConnections(before), before);
    // The port is taken: listen fails, last of all.
    const taken = servers[0]!.server.address() as { port: number };
    await assert.rejects(startServer({ ...config, data_dir: seeded, listen: { host: '127.0.0.1', port: taken.port } }, { log: () => {}, env: {} }),
      { code: 'EADDRINUSE' });
    assert.equal(await redisConnections(before), before);
  });
});

