import { afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { errors } from 'oidc-provider';
import { BINDS_PER_NETWORK, scopedBindings } from '../src/sources/sign-in-bindings.ts';
import type { Identity } from '../src/sources/source.ts';
import { createMemoryStore } from '../src/storage/memory.ts';
import { openRedisStore } from '../src/storage/redis.ts';
import type { Store, StoreOptions } from '../src/storage/store.ts';
import { redisDuringTests, redisMissing } from './redis-server.ts';

// One suite, run against every store (as Dex's storage/conformance): the memory store and Redis
// must keep the same rules, since a login behaves the same on one instance or several.

const GROUPS = { admins: ['alice@example.com'] };
const ALICE: Identity = { source: 'tailscale', id: '1', login: 'alice@example.com', email: 'alice@example.com', emailVerified: true };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Open = (options?: Partial<StoreOptions>) => Promise<Store>;

function conformance(open: Open) {
  const opened: Store[] = [];
  /** A store with the default rules, or with the options a test changes. */
  const store = async (options: Partial<StoreOptions> = {}) => {
    const s = await open(options);
    opened.push(s);
    return s;
  };
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
  });

  describe('oidc-provider models', () => {
    test('an entry is found as it was stored, and a found payload is a copy', async () => {
      const sessions = (await store()).adapterFor('Session');
      await sessions.upsert('s1', { uid: 'u1', authorizations: { a: { sid: '1' } } }, 3600);
      const found = await sessions.find('s1');
      (found!.authorizations as Record<string, unknown>).b = { sid: '2' };
      assert.deepEqual((await sessions.find('s1'))!.authorizations, { a: { sid: '1' } });
      assert.equal(await sessions.find('nobody'), undefined);
    });

    test('a code consumed twice: the second consume throws InvalidGrant', async () => {
      const codes = (await store()).adapterFor('AuthorizationCode');
      await codes.upsert('c1', { grantId: 'g1' }, 60);
      assert.equal((await codes.find('c1'))?.consumed, undefined);
      await codes.consume('c1');
      assert.equal(typeof (await codes.find('c1'))?.consumed, 'number');
      await assert.rejects(codes.consume('c1'), errors.InvalidGrant);
      await codes.consume('never-issued'); // nothing to consume: no error
    });

    test('revokeByGrantId removes every code and token of the grant, and only those', async () => {
      const s = await store();
      const codes = s.adapterFor('AuthorizationCode');
      const tokens = s.adapterFor('AccessToken');
      await codes.upsert('c1', { grantId: 'g1' }, 60);
      await codes.consume('c1');
      await tokens.upsert('t1', { grantId: 'g1' }, 3600);
      await tokens.upsert('t2', { grantId: 'g2' }, 3600);
      await codes.revokeByGrantId('g1');
      assert.equal(await codes.find('c1'), undefined);
      assert.equal(await tokens.find('t1'), undefined);
      assert.ok(await tokens.find('t2'));
    });

    test('a session is found by its uid; destroyed, it is found by neither', async () => {
      const sessions = (await store()).adapterFor('Session');
      await sessions.upsert('s1', { uid: 'u1', accountId: 'tailscale:1' }, 3600);
      assert.equal((await sessions.findByUid('u1'))?.accountId, 'tailscale:1');
      assert.equal(await sessions.findByUid('u2'), undefined);
      await sessions.destroy('s1');
      assert.equal(await sessions.find('s1'), undefined);
      assert.equal(await sessions.findByUid('u1'), undefined);
    });

    test('entries expire by their own TTL; consuming a code does not extend it', async () => {
      const s = await store({ clockToleranceMs: 0 });
      const sessions = s.adapterFor('Session');
      const codes = s.adapterFor('AuthorizationCode');
      await sessions.upsert('short', { uid: 'u-short' }, 1);
      await sessions.upsert('long', { uid: 'u-long' }, 3600);
      await sessions.upsert('for-good', { uid: 'u-for-good' });
      await codes.upsert('c1', { grantId: 'g1' }, 1);
      await codes.consume('c1');
      await sleep(1200);
      assert.equal(await sessions.find('short'), undefined);
      assert.equal(await sessions.findByUid('u-short'), undefined);
      assert.equal(await codes.find('c1'), undefined);
      assert.ok(await sessions.find('long'));
      assert.ok(await sessions.find('for-good'));
    });
  });

  describe('accounts', () => {
    test('an account is remembered with its groups, found by its id, and forgotten after its TTL', async () => {
      const { accounts } = await store({ accountTtlSeconds: 1 });
      const account = await accounts.remember(ALICE);
      assert.deepEqual(account, { accountId: 'tailscale:1', identity: ALICE, groups: ['admins'] });
      assert.deepEqual(await accounts.find('tailscale:1'), account);
      assert.equal(await accounts.find('tailscale:2'), undefined);
      await sleep(1200);
      assert.equal(await accounts.find('tailscale:1'), undefined);
    });
  });

  describe('sign-in bindings (Plex PINs, Jellyfin Quick Connect requests)', () => {
    const later = () => Date.now() + 60_000;

    test('a reference binds once; a full memory, for a network or for all, refuses new binds rather than forgetting old ones', async () => {
      const { bindings } = await store({ bindingLimits: { perNetwork: 2, max: 3 } });
      const expiresAt = later();
      assert.equal(await bindings.bind('a', { ref: '1', expiresAt }, 'net-1'), 'bound');
      assert.equal(await bindings.bind('b', { ref: '2', expiresAt }, 'net-1'), 'bound');
      assert.equal(await bindings.bind('c', { ref: '3', expiresAt }, 'net-1'), 'network-full');
      assert.equal(await bindings.bind('c', { ref: '3', expiresAt }, 'net-2'), 'bound');
      assert.equal(await bindings.bind('d', { ref: '4', expiresAt }, 'net-3'), 'full');
      assert.equal(await bindings.bind('e', { ref: '1', expiresAt }, 'net-4'), 'taken');
    });

    test('of two binds racing for one reference, one binds it and the other finds it taken', async () => {
      const { bindings } = await store();
      const binding = { ref: '7', expiresAt: later() };
      const results = await Promise.all([bindings.bind('a', binding, 'net-1'), bindings.bind('b', binding, 'net-2')]);
      assert.deepEqual(results.sort(), ['bound', 'taken']);
    });

    test(`by default one network may hold ${BINDS_PER_NETWORK} live bindings`, async () => {
      const { bindings } = await store();
      const expiresAt = later();
      for (let id = 1; id <= BINDS_PER_NETWORK; id++) assert.equal(await bindings.bind(`i${id}`, { ref: String(id), expiresAt }, 'net-1'), 'bound');
      assert.equal(await bindings.bind('one-more', { ref: '1000', expiresAt }, 'net-1'), 'network-full');
      assert.equal(await bindings.bind('one-more', { ref: '1000', expiresAt }, 'net-2'), 'bound');
    });

    test('one finish claims the binding; the others are told it is finishing until it is restored or settled', async () => {
      const { bindings } = await store();
      const binding = { ref: '1', expiresAt: later(), data: '{"code":"123456"}' };
      assert.equal(await bindings.claim('a'), undefined);
      assert.equal(await bindings.peek('a'), undefined);
      assert.equal(await bindings.bind('a', binding, 'net-1'), 'bound');
      assert.deepEqual(await bindings.peek('a'), binding);
      assert.deepEqual(await bindings.peek('a'), binding, 'peeking leaves it bound');
      assert.deepEqual(await bindings.claim('a'), binding);
      assert.equal(await bindings.claim('a'), 'finishing');
      assert.equal(await bindings.peek('a'), 'finishing');
      await bindings.restore('a', binding);
      assert.deepEqual(await bindings.claim('a'), binding);
      await bindings.settle('a');
      assert.equal(await bindings.claim('a'), undefined);
      assert.equal(await bindings.peek('a'), undefined);
      // Two finishes at once (a double click): one gets the binding.
      assert.equal(await bindings.bind('b', { ...binding, ref: '2' }, 'net-1'), 'bound');
      const claims = await Promise.all([bindings.claim('b'), bindings.claim('b')]);
      assert.deepEqual(claims.filter((c) => c === 'finishing'), ['finishing']);
    });

    test('a binding is forgotten once the upstream can no longer approve it', async () => {
      const { bindings } = await store({ bindingLimits: { perNetwork: 1, max: 10 } });
      assert.equal(await bindings.bind('a', { ref: '1', expiresAt: Date.now() + 1000 }, 'net'), 'bound');
      assert.equal(await bindings.bind('b', { ref: '2', expiresAt: later() }, 'net'), 'network-full');
      await sleep(1100);
      assert.equal(await bindings.bind('b', { ref: '2', expiresAt: later() }, 'net'), 'bound');
      assert.equal(await bindings.claim('a'), undefined);
    });

    test('a released binding gives its place back to its network and its reference is free again', async () => {
      const { bindings } = await store({ bindingLimits: { perNetwork: 1, max: 10 } });
      const expiresAt = later();
      assert.equal(await bindings.bind('a', { ref: 'r1', expiresAt }, 'net'), 'bound');
      assert.equal(await bindings.bind('b', { ref: 'r2', expiresAt }, 'net'), 'network-full');
      await bindings.release('a', 'r1');
      assert.equal(await bindings.peek('a'), undefined);
      assert.equal(await bindings.bind('b', { ref: 'r2', expiresAt }, 'net'), 'bound');
      // Releasing a reference that is not the sign-in's own leaves the sign-in's binding alone.
      await bindings.release('b', 'r-other');
      assert.deepEqual(await bindings.peek('b'), { ref: 'r2', expiresAt });
    });

    test('two sources never meet: the same sign-in and the same reference are apart in each', async () => {
      const { bindings } = await store();
      const plex = scopedBindings(bindings, 'plex');
      const jellyfin = scopedBindings(bindings, 'jellyfin');
      const expiresAt = later();
      assert.equal(await plex.bind('uid', { ref: '42', expiresAt }, 'net'), 'bound');
      assert.equal(await jellyfin.bind('uid', { ref: '42', expiresAt }, 'net'), 'bound');
      assert.deepEqual(await plex.claim('uid'), { ref: '42', expiresAt });
      assert.deepEqual(await jellyfin.peek('uid'), { ref: '42', expiresAt });
      assert.equal(await plex.bind('other', { ref: '42', expiresAt }, 'net'), 'taken');
    });
  });

  describe('rate counters', () => {
    test('hits count up within a window, per key, and start again after it', async () => {
      const { counter } = await store();
      const start = Date.now();
      const first = await counter.hit('token 192.0.2.1', 300);
      assert.equal(first.count, 1);
      assert.ok(first.resetAt > start && first.resetAt <= Date.now() + 300, `resetAt ${first.resetAt - start} ms away`);
      assert.equal((await counter.hit('token 192.0.2.1', 300)).count, 2);
      assert.equal((await counter.hit('token 192.0.2.2', 300)).count, 1);
      assert.equal((await counter.hit('token 192.0.2.1', 300)).count, 3);
      await sleep(400);
      assert.equal((await counter.hit('token 192.0.2.1', 300)).count, 1);
    });
  });
}

const defaults: StoreOptions = { groups: GROUPS, accountTtlSeconds: 3600 };

describe('the memory store', () => {
  conformance(async (options) => createMemoryStore({ ...defaults, ...options }));
});

describe('the Redis store', { skip: redisMissing() }, () => {
  const redis = redisDuringTests();
  // Each test starts from an empty Redis, as each memory store starts empty.
  afterEach(async () => {
    const { createClient } = await import('@redis/client');
    const client = createClient({ url: redis.url });
    await client.connect();
    await client.flushAll();
    await client.close();
  });
  conformance((options) => openRedisStore(redis.url, { ...defaults, ...options }, () => {}));
});
