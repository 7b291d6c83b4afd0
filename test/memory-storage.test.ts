import { test } from 'node:test';
import assert from 'node:assert/strict';
import { registerHooks } from 'node:module';

// Without `storage:` in the config nothing changes, and no Redis client is even loaded.
test('the Redis client is never loaded when state is kept in memory', async () => {
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
    assert.deepEqual(resolved.filter((s) => s.includes('redis/client')), []);
  } finally {
    await env.close();
  }
});
