import { afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { errors } from 'oidc-provider';
import { accountStore } from '../src/sign-in/accounts.ts';
import { networkOf, sharesOf, type Share } from '../src/network.ts';
import { BINDS_PER_NETWORK, scopedBindings } from '../src/sources/sign-in-bindings.ts';
import type { Identity } from '../src/sources/source.ts';
import { createMemoryStore } from '../src/storage/memory.ts';
import { openRedisStore } from '../src/storage/redis.ts';
import { EVENTS_KEPT, HOUR_MS } from '../src/storage/models.ts';
import type { Store, StoreOptions } from '../src/storage/store.ts';
import { redisDuringTests, redisMissing } from './redis-server.ts';

// One suite, run against every store (as Dex's storage/conformance): the memory store and Redis
// must keep the same rules, since a login behaves the same on one instance or several.

const GROUPS = { admins: ['alice@example.com'] };
const ALICE: Identity = { source: 'tailscale', id: '1', login: 'alice@example.com', email: 'alice@example.com', emailVerified: true };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** One network's own share, as the store is handed it. */
const net = (name: string, limit = 100): Share[] => [{ name, limit }];

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
      const accounts = accountStore((await store({ accountTtlSeconds: 1 })).accounts, GROUPS);
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
      const { bindings } = await store({ bindingsMax: 3 });
      const expiresAt = later();
      assert.equal(await bindings.bind('a', { ref: '1', expiresAt }, net('net-1', 2)), 'bound');
      assert.equal(await bindings.bind('b', { ref: '2', expiresAt }, net('net-1', 2)), 'bound');
      assert.equal(await bindings.bind('c', { ref: '3', expiresAt }, net('net-1', 2)), 'network-full');
      assert.equal(await bindings.bind('c', { ref: '3', expiresAt }, net('net-2', 2)), 'bound');
      assert.equal(await bindings.bind('d', { ref: '4', expiresAt }, net('net-3', 2)), 'full');
      assert.equal(await bindings.bind('e', { ref: '1', expiresAt }, net('net-4', 2)), 'taken');
    });

    test('of two binds racing for one reference, one binds it and the other finds it taken', async () => {
      const { bindings } = await store();
      const binding = { ref: '7', expiresAt: later() };
      const results = await Promise.all([bindings.bind('a', binding, net('net-1')), bindings.bind('b', binding, net('net-2'))]);
      assert.deepEqual(results.sort(), ['bound', 'taken']);
    });

    test(`a source's network may hold ${BINDS_PER_NETWORK} live bindings, its /56 twice and its /48 four times as many`, async () => {
      const plex = scopedBindings((await store()).bindings, 'plex');
      const expiresAt = later();
      let ref = 0;
      const bind = (address: string) => plex.bind(`i${++ref}`, { ref: String(ref), expiresAt }, networkOf(address));
      for (let i = 0; i < BINDS_PER_NETWORK; i++) assert.equal(await bind('2001:db8:1:100::1'), 'bound');
      assert.equal(await bind('2001:db8:1:100::2'), 'network-full');
      // Another /64 of the same /56 has the rest of the /56's share, and no more.
      for (let i = 0; i < BINDS_PER_NETWORK; i++) assert.equal(await bind('2001:db8:1:1ff::1'), 'bound');
      assert.equal(await bind('2001:db8:1:1aa::1'), 'network-full');
      // The /48's share: two /56s' worth.
      for (let i = 0; i < 2 * BINDS_PER_NETWORK; i++) assert.equal(await bind(`2001:db8:1:2${String(i % 10).padStart(2, '0')}::1`), 'bound');
      assert.equal(await bind('2001:db8:1:300::1'), 'network-full');
      assert.equal(await bind('2001:db8:2::1'), 'bound');
      assert.equal(await bind('192.0.2.1'), 'bound');
    });

    test('one finish claims the binding; the others are told it is finishing until it is restored or settled', async () => {
      const { bindings } = await store();
      const binding = { ref: '1', expiresAt: later(), data: '{"code":"123456"}' };
      assert.equal(await bindings.claim('a'), undefined);
      assert.equal(await bindings.peek('a'), undefined);
      assert.equal(await bindings.bind('a', binding, net('net-1')), 'bound');
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
      assert.equal(await bindings.bind('b', { ...binding, ref: '2' }, net('net-1')), 'bound');
      const claims = await Promise.all([bindings.claim('b'), bindings.claim('b')]);
      assert.deepEqual(claims.filter((c) => c === 'finishing'), ['finishing']);
    });

    test('a binding is forgotten once the upstream can no longer approve it', async () => {
      const { bindings } = await store();
      assert.equal(await bindings.bind('a', { ref: '1', expiresAt: Date.now() + 1000 }, net('net', 1)), 'bound');
      assert.equal(await bindings.bind('b', { ref: '2', expiresAt: later() }, net('net', 1)), 'network-full');
      await sleep(1100);
      assert.equal(await bindings.bind('b', { ref: '2', expiresAt: later() }, net('net', 1)), 'bound');
      assert.equal(await bindings.claim('a'), undefined);
    });

    test('a released binding gives its place back to its network and its reference is free again', async () => {
      const { bindings } = await store();
      const expiresAt = later();
      assert.equal(await bindings.bind('a', { ref: 'r1', expiresAt }, net('net', 1)), 'bound');
      assert.equal(await bindings.bind('b', { ref: 'r2', expiresAt }, net('net', 1)), 'network-full');
      await bindings.release('a', 'r1');
      assert.equal(await bindings.peek('a'), undefined);
      assert.equal(await bindings.bind('b', { ref: 'r2', expiresAt }, net('net', 1)), 'bound');
      // Releasing a reference that is not the sign-in's own leaves the sign-in's binding alone.
      await bindings.release('b', 'r-other');
      assert.deepEqual(await bindings.peek('b'), { ref: 'r2', expiresAt });
    });

    test('two sources never meet: the same sign-in and the same reference are apart in each', async () => {
      const { bindings } = await store();
      const plex = scopedBindings(bindings, 'plex');
      const jellyfin = scopedBindings(bindings, 'jellyfin');
      const expiresAt = later();
      const network = networkOf('192.0.2.9');
      assert.equal(await plex.bind('uid', { ref: '42', expiresAt }, network), 'bound');
      assert.equal(await jellyfin.bind('uid', { ref: '42', expiresAt }, network), 'bound');
      assert.deepEqual(await plex.claim('uid'), { ref: '42', expiresAt });
      assert.deepEqual(await jellyfin.peek('uid'), { ref: '42', expiresAt });
      assert.equal(await plex.bind('other', { ref: '42', expiresAt }, network), 'taken');
    });
  });

  describe('quotas (the places anonymous requests hold)', () => {
    const later = () => Date.now() + 60_000;

    test('a place is held against every share it is handed and the whole; a full one refuses, and nothing held is pushed out', async () => {
      const pending = (await store()).quota('pending', 4);
      const shares = (n: string) => [{ name: `${n}/64`, limit: 2 }, { name: 'p/56', limit: 3 }];
      assert.equal(await pending.take('a', shares('x'), later()), 'ok');
      assert.equal(await pending.take('a', shares('x'), later()), 'taken');
      assert.equal(await pending.take('b', shares('x'), later()), 'ok');
      assert.equal(await pending.take('c', shares('x'), later()), 'network-full');
      assert.equal(await pending.take('c', shares('y'), later()), 'ok');
      assert.equal(await pending.take('d', shares('z'), later()), 'network-full', 'the /56 is full');
      assert.equal(await pending.take('d', net('q'), later()), 'ok');
      assert.equal(await pending.take('e', net('r'), later()), 'full');
      await pending.release('a');
      assert.equal(await pending.take('e', net('r'), later()), 'ok');
      assert.equal(await pending.take('f', shares('w'), later()), 'full');
    });

    test('a key may weigh several places: it counts as many against its shares and the whole', async () => {
      const pending = (await store()).quota('pending', 6);
      assert.equal(await pending.take('big', net('n', 4), later(), 3), 'ok');
      assert.equal(await pending.take('more', net('n', 4), later(), 2), 'network-full');
      assert.equal(await pending.take('one', net('n', 4), later()), 'ok');
      assert.equal(await pending.take('other', net('m', 4), later(), 3), 'full');
      assert.equal(await pending.take('other', net('m', 4), later(), 2), 'ok');
      await pending.release('big');
      assert.equal(await pending.take('more', net('n', 4), later(), 3), 'ok');
      assert.equal(await pending.take('last', net('q', 4), later()), 'full');
    });

    test('quotas of different names are apart; a place frees itself when it expires', async () => {
      const s = await store();
      const one = s.quota('one', 1);
      const two = s.quota('two', 1);
      assert.equal(await one.take('a', net('n'), Date.now() + 300), 'ok');
      assert.equal(await two.take('a', net('n'), later()), 'ok');
      assert.equal(await one.take('b', net('m'), later()), 'full');
      await sleep(400);
      assert.equal(await one.take('b', net('m'), later()), 'ok');
      assert.equal(await one.take('a', net('n'), later()), 'full', 'an expired key is not held');
    });
  });

  describe('the vault (what a source keeps of a person, server-side only)', () => {
    test('a value is kept until its time is up, and can be deleted', async () => {
      const { vault } = await store();
      await vault.put('plex:1', '{"token":"secret-token"}', 300);
      assert.equal(await vault.get('plex:1'), '{"token":"secret-token"}');
      assert.equal(await vault.get('plex:2'), undefined);
      await vault.delete('plex:1');
      assert.equal(await vault.get('plex:1'), undefined);
      await vault.put('plex:3', 'x', 200);
      await sleep(300);
      assert.equal(await vault.get('plex:3'), undefined);
    });

    test('of callers claiming one key at once, one wins until it unclaims or its time is up', async () => {
      const { vault } = await store();
      const claims = await Promise.all([vault.claim('recheck:1', 300), vault.claim('recheck:1', 300)]);
      assert.deepEqual(claims.sort(), [false, true]);
      await vault.unclaim('recheck:1');
      assert.equal(await vault.claim('recheck:1', 200), true);
      await sleep(300);
      assert.equal(await vault.claim('recheck:1', 200), true);
    });
  });

  describe('activity (what the operator console shows)', () => {
    test('events are kept newest first, at most EVENTS_KEPT, the oldest going first', async () => {
      const { activity } = await store();
      const now = Date.now();
      for (let i = 0; i < EVENTS_KEPT + 5; i++) await activity.record({ at: now, outcome: i % 2 ? 'refused' : 'signed-in', sub: `plex:${i}` });
      const recent = await activity.recent();
      assert.equal(recent.length, EVENTS_KEPT);
      assert.equal(recent[0]!.sub, `plex:${EVENTS_KEPT + 4}`);
      assert.equal(recent.at(-1)!.sub, 'plex:5');
    });

    test('counts per hour and outcome, for the hours asked', async () => {
      const { activity } = await store();
      const now = Date.now();
      await activity.record({ at: now, outcome: 'signed-in' });
      await activity.record({ at: now, outcome: 'signed-in' });
      await activity.record({ at: now, outcome: 'refused' });
      await activity.record({ at: now - 3 * HOUR_MS, outcome: 'refused' });
      const hours = await activity.perHour(24);
      assert.equal(hours.length, 24);
      assert.deepEqual(hours.at(-1)!.counts, { 'signed-in': 2, refused: 1 });
      assert.deepEqual(hours.at(-4)!.counts, { refused: 1 });
      assert.deepEqual(hours.at(-2)!.counts, {});
      assert.equal(hours.at(-1)!.hour - hours[0]!.hour, 23);
    });

    test('a person signed in is listed with every app, from their first sign-in, until their sign-in ends or they are forgotten', async () => {
      const { activity } = await store();
      const person = { sub: 'plex:1', name: 'Alice', source: 'plex', groups: ['plex'] };
      await activity.seen(person, 'grafana', Date.now() + 60_000);
      await activity.seen({ ...person, groups: ['plex', 'plex-home'] }, 'photos', Date.now() + 60_000);
      await activity.seen({ sub: 'tailscale:2', name: 'Bob', source: 'tailscale', groups: [] }, 'grafana', Date.now() + 200);
      const [alice] = (await activity.people()).filter((p) => p.sub === 'plex:1');
      assert.deepEqual(alice!.apps, ['grafana', 'photos']);
      assert.deepEqual(alice!.groups, ['plex', 'plex-home']);
      assert.ok(alice!.since <= alice!.lastSeen);
      await sleep(300);
      assert.deepEqual((await activity.people()).map((p) => p.sub), ['plex:1']);
      await activity.forget('plex:1');
      assert.deepEqual(await activity.people(), []);
    });
  });

  describe('rate counters', () => {
    test('hits count per share within a window, and start again in the next', async () => {
      const { counter } = await store();
      const limit2 = (name: string) => [{ name, limit: 2 }];
      await sleep(310 - (Date.now() % 300)); // just after the start of a window (timers and Date.now() may differ by a millisecond)
      const start = Date.now();
      const first = await counter.hit(limit2('token 192.0.2.1'), 300);
      assert.equal(first.over, false);
      assert.ok(first.resetAt > start && first.resetAt <= start + 300, `resetAt ${first.resetAt - start} ms away`);
      assert.equal((await counter.hit(limit2('token 192.0.2.1'), 300)).over, false);
      assert.equal((await counter.hit(limit2('token 192.0.2.2'), 300)).over, false);
      assert.equal((await counter.hit(limit2('token 192.0.2.1'), 300)).over, true);
      await sleep(first.resetAt - Date.now() + 20);
      assert.equal((await counter.hit(limit2('token 192.0.2.1'), 300)).over, false);
    });

    test('a request refused for its own network does not use up its wider prefixes\' share', async () => {
      const { counter } = await store();
      const of = (address: string) => sharesOf(networkOf(address), 2, 'authorize');
      const hits = [];
      for (let i = 0; i < 5; i++) hits.push((await counter.hit(of('2001:db8:1:1::1'), 60_000)).over);
      assert.deepEqual(hits, [false, false, true, true, true]);
      // The /56 allows 4: two more from a sibling /64, then it is over for all of the /56.
      assert.equal((await counter.hit(of('2001:db8:1:2::1'), 60_000)).over, false);
      assert.equal((await counter.hit(of('2001:db8:1:2::1'), 60_000)).over, false);
      assert.equal((await counter.hit(of('2001:db8:1:3::1'), 60_000)).over, true);
      // Another /56 of the /48 is not held back.
      assert.equal((await counter.hit(of('2001:db8:1:100::1'), 60_000)).over, false);
    });

    test('a window holding as many shares as it may refuses new ones (fails closed) and keeps counting the others', async () => {
      const { counter } = await store({ rateSharesMax: 3 });
      for (const n of ['a', 'b', 'c']) assert.equal((await counter.hit(net(n, 10), 60_000)).over, false);
      assert.equal((await counter.hit(net('d', 10), 60_000)).over, true);
      assert.equal((await counter.hit(net('a', 10), 60_000)).over, false);
    });
  });
}

const defaults: StoreOptions = { accountTtlSeconds: 3600 };

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

describe('the Redis store\'s vault is sealed', { skip: redisMissing() }, () => {
  const redis = redisDuringTests();
  const SECRET = 'a-cookie-secret-of-at-least-32-characters';
  const ROTATED = 'the-next-cookie-secret-of-32-characters-or-more';

  test('what Redis holds is not the value; an instance with the same cookie secrets opens it, one with others does not, a rotation keeps it', async () => {
    const stores: Store[] = [];
    const open = async (secrets: string[]) => {
      const s = await openRedisStore(redis.url, { ...defaults, secrets }, () => {});
      stores.push(s);
      return s;
    };
    try {
      await (await open([SECRET])).vault.put('plex:1', '{"token":"plex-token-0123456789"}', 60_000);
      const { createClient } = await import('@redis/client');
      const client = createClient({ url: redis.url });
      await client.connect();
      const raw = [];
      for (const k of await client.keys('*')) raw.push(`${k}=${await client.get(k)}`);
      await client.close();
      assert.ok(raw.length > 0);
      assert.ok(raw.every((r) => !r.includes('plex-token-0123456789')), raw.join('\n'));
      assert.equal(await (await open([SECRET])).vault.get('plex:1'), '{"token":"plex-token-0123456789"}');
      assert.equal(await (await open([ROTATED, SECRET])).vault.get('plex:1'), '{"token":"plex-token-0123456789"}');
      assert.equal(await (await open([ROTATED])).vault.get('plex:1'), undefined);
    } finally {
      for (const s of stores) await s.close();
    }
  });
});
