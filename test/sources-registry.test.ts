import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { demoConfig } from '../src/demo/config.ts';
import { createSources } from '../src/sources/registry.ts';
import { createMemoryStore } from '../src/storage/memory.ts';

// Which sign-ins count as ambient decides how long their session lives and whether /auth asks
// the source again every time (provider.ts): a tailnet person's must, in the demo as anywhere.

describe('the registry\'s one rule for "came from an ambient source"', () => {
  test('in the demo, a person the local tailscaled vouched for is ambient, as is the sample user', async () => {
    const store = createMemoryStore({ accountTtlSeconds: 60 });
    try {
      const sources = createSources(demoConfig({}), { issuer: 'http://localhost:8080', version: 'test', bindings: store.bindings });
      assert.equal(sources.isAmbient('tailscale:9007199254740993'), true);
      assert.equal(sources.isAmbient('demo:ada'), true);
      assert.equal(sources.isAmbient('plex:13692262'), false);
      assert.equal(sources.isAmbient(undefined), false);
    } finally {
      await store.close();
    }
  });
});
