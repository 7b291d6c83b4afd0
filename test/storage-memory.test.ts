import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { registerHooks } from 'node:module';
import { createMemoryStore, type MemoryStoreOptions } from '../src/storage/memory.ts';

// What only the memory store has to promise: bounds on what it holds, the default expiry
// tolerance, and that keeping state in memory never loads Redis. The rules both stores keep are
// in storage-conformance.test.ts.

const options = (more: Partial<MemoryStoreOptions> = {}): MemoryStoreOptions => ({ accountTtlSeconds: 3600, ...more });

describe('the memory store', () => {
  test('each model is bounded by count, and a flood of one model leaves the others alone', async () => {
    const store = createMemoryStore(options({ bounds: { Interaction: { max: 100, maxBytes: 1 << 20 }, Session: { max: 100, maxBytes: 1 << 20 } } }));
    const sessions = store.adapterFor('Session');
    await sessions.upsert('s1', { uid: 'u1', accountId: 'tailscale:1' }, 3600);
    const interactions = store.adapterFor('Interaction');
    for (let i = 0; i < 10_000; i++) await interactions.upsert(`i${i}`, { params: { client_id: 'x' } }, 600);
    assert.equal(store.sizes().Interaction!.entries, 100);
    assert.equal((await sessions.findByUid('u1'))?.accountId, 'tailscale:1');
    await store.close();
  });

  test('each model is bounded by bytes, whatever the size of its entries', async () => {
    const store = createMemoryStore(options({ bounds: { Interaction: { max: 1_000_000, maxBytes: 64 * 1024 } } }));
    const interactions = store.adapterFor('Interaction');
    for (let i = 0; i < 1_000; i++) await interactions.upsert(`i${i}`, { params: { junk: 'x'.repeat(2_000) } }, 600);
    assert.ok(store.sizes().Interaction!.bytes <= 64 * 1024);
    await store.close();
  });

  test('entries are kept for oidc-provider\'s clock tolerance past their TTL, and no longer', async (t) => {
    t.mock.timers.enable({ apis: ['Date', 'setTimeout'], now: 1_000_000 });
    const store = createMemoryStore(options({ clock: { now: () => Date.now() } }));
    const codes = store.adapterFor('AuthorizationCode');
    await codes.upsert('c1', { grantId: 'g1' }, 60);
    t.mock.timers.tick(60_000);
    assert.ok(await codes.find('c1'), 'still there within the tolerance');
    t.mock.timers.tick(16_000); // past the TTL plus oidc-provider's clock tolerance
    assert.equal(await codes.find('c1'), undefined);
    await store.close();
  });

  // Without `storage:` in the config nothing changes, and no Redis client is even loaded.
  test('neither the Redis store nor its client is loaded when state is kept in memory', async () => {
    const resolved: string[] = [];
    registerHooks({
      resolve(specifier, context, next) {
        resolved.push(specifier);
        return next(specifier, context);
      },
    });
    const { login, startTestEnv } = await import('./helpers.ts');
    const env = await startTestEnv();
    try {
      assert.ok((await login(env)).tokens);
      assert.ok(resolved.some((s) => s.endsWith('server.ts')), 'the hook sees the app being loaded');
      assert.deepEqual(resolved.filter((s) => s.includes('redis/client') || s.endsWith('/redis.ts')), []);
    } finally {
      await env.close();
    }
  });
});
