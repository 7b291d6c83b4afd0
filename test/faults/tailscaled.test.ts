import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { login, startTestEnv, type TestEnv } from '../helpers.ts';

describe('tailscaled slow, down or answering garbage fails closed', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv({ whoisTimeoutMs: 300 });
  });
  after(() => env.close());

  for (const fault of ['hang', 'http-500', 'garbage'] as const) {
    test(`tailscaled answering ${fault} gives a 503 page, not a login`, async () => {
      env.tailscaled.fault = fault;
      try {
        const { walk, tokens } = await login(env);
        assert.equal(tokens, undefined);
        assert.equal(walk.status, 503);
        assert.match(walk.body, /Tailscale is not answering/);
      } finally {
        env.tailscaled.fault = 'none';
      }
    });
  }

  test('tailscaled not running gives a 503 page', async () => {
    await env.tailscaled.stop();
    try {
      const { walk } = await login(env);
      assert.equal(walk.status, 503);
      assert.match(walk.body, /try again/i);
    } finally {
      await env.tailscaled.start();
    }
  });
});

