import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { redisDuringTests, redisMissing } from './redis-server.ts';

// The login suites again, this time with every environment run as two instances sharing Debian's
// redis-server, each request going to the next instance in turn (see startTestEnv): every flow
// must pass with its steps split across instances.

const SUITES = ['test/tailscale-login.test.ts', 'test/oidc-protocol.test.ts', 'test/plex-login.test.ts', 'test/security/plex-pins.test.ts', 'test/jellyfin-login.test.ts'];

describe('the login suites on two instances sharing Redis', { skip: redisMissing() }, () => {
  const redis = redisDuringTests();

  for (const suite of SUITES) {
    test(suite, () => {
      const root = new URL('../', import.meta.url).pathname;
      const run = spawnSync(process.execPath, ['--test', '--test-reporter=dot', suite], {
        cwd: root, encoding: 'utf8', timeout: 240_000,
        env: { PATH: process.env.PATH, GUESTLIST_TEST_REDIS_URL: redis.url },
      });
      assert.equal(run.status, 0, `${suite} failed with two instances:\n${run.stdout.slice(-4000)}\n${run.stderr.slice(-2000)}`);
    });
  }
});
