import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createLruStorage } from '../src/adapter.ts';

describe('the in-memory adapter', () => {
  test('each model is bounded by count, and a flood of one model leaves the others alone', async () => {
    const storage = createLruStorage({ Interaction: { max: 100, maxBytes: 1 << 20 }, Session: { max: 100, maxBytes: 1 << 20 } });
    const sessions = storage.adapterFor('Session');
    await sessions.upsert('s1', { uid: 'u1', accountId: 'tailscale:1' }, 3600);
    const interactions = storage.adapterFor('Interaction');
    for (let i = 0; i < 10_000; i++) await interactions.upsert(`i${i}`, { params: { client_id: 'x' } }, 600);
    assert.equal(storage.sizes().Interaction!.entries, 100);
    assert.equal((await sessions.findByUid('u1'))?.accountId, 'tailscale:1');
  });

  test('each model is bounded by bytes, whatever the size of its entries', async () => {
    const storage = createLruStorage({ Interaction: { max: 1_000_000, maxBytes: 64 * 1024 } });
    const interactions = storage.adapterFor('Interaction');
    for (let i = 0; i < 1_000; i++) await interactions.upsert(`i${i}`, { params: { junk: 'x'.repeat(2_000) } }, 600);
    assert.ok(storage.sizes().Interaction!.bytes <= 64 * 1024);
  });

  test('entries expire by their own TTL', async (t) => {
    t.mock.timers.enable({ apis: ['Date', 'setTimeout'], now: 1_000_000 });
    const storage = createLruStorage(undefined, { now: () => Date.now() });
    const codes = storage.adapterFor('AuthorizationCode');
    await codes.upsert('c1', { grantId: 'g1' }, 60);
    t.mock.timers.tick(60_000);
    assert.ok(await codes.find('c1'), 'still there within the tolerance');
    t.mock.timers.tick(16_000); // past the TTL plus oidc-provider's clock tolerance
    assert.equal(await codes.find('c1'), undefined);
  });

  test('consume marks an entry without extending it, and revokeByGrantId removes every token of the grant', async () => {
    const storage = createLruStorage();
    const codes = storage.adapterFor('AuthorizationCode');
    const tokens = storage.adapterFor('AccessToken');
    await codes.upsert('c1', { grantId: 'g1' }, 60);
    await tokens.upsert('t1', { grantId: 'g1' }, 3600);
    await tokens.upsert('t2', { grantId: 'g2' }, 3600);
    await codes.consume('c1');
    assert.equal(typeof (await codes.find('c1'))?.consumed, 'number');
    await codes.revokeByGrantId('g1');
    assert.equal(await codes.find('c1'), undefined);
    assert.equal(await tokens.find('t1'), undefined);
    assert.ok(await tokens.find('t2'));
  });

  test('stored payloads are copies: changing a found object does not change the store', async () => {
    const storage = createLruStorage();
    const sessions = storage.adapterFor('Session');
    await sessions.upsert('s1', { uid: 'u1', authorizations: { a: { sid: '1' } } }, 3600);
    const found = await sessions.find('s1');
    (found!.authorizations as Record<string, unknown>).b = { sid: '2' };
    assert.deepEqual((await sessions.find('s1'))!.authorizations, { a: { sid: '1' } });
  });
});
