import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { demoConfig } from '../src/demo/config.ts';
import { createSources } from '../src/sources/registry.ts';
import { createMemoryStore } from '../src/storage/memory.ts';

// Each source's session rule decides how long a sign-in from it holds and whether /auth asks the
// source again every time (sign-in/sign-in.ts): a tailnet person's must, in the demo as anywhere.

describe('the registry\'s session rules, by the source a sub names', () => {
  test('in the demo, a person the local tailscaled vouched for is asked again every time, as is the sample user', async () => {
    const store = createMemoryStore({ accountTtlSeconds: 60 });
    try {
      const sources = createSources(demoConfig({}), { issuer: 'http://localhost:8080', version: 'test', bindings: store.bindings, vault: store.vault, keepSeconds: 86400 });
      assert.equal(sources.rules.get('tailscale')?.verifyAgain, 'from-the-connection');
      assert.equal(sources.rules.get('demo')?.verifyAgain, 'from-the-connection');
      assert.equal(sources.rules.get('tailscale')?.holdsFor, 15 * 60);
      assert.equal(sources.rules.get('plex'), undefined);
    } finally {
      await store.close();
    }
  });
});
