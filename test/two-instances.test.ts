import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import { freePort, tempDir } from './helpers.ts';

// The login suites again, this time with every environment run as two instances sharing Debian's
// redis-server, each request going to the next instance in turn (see startTestEnv): every flow
// must pass with its steps split across instances.

const REDIS = '/usr/bin/redis-server';
const SUITES = ['test/tailscale-login.test.ts', 'test/plex-login.test.ts', 'test/security/plex-pins.test.ts'];

function redisMissing(): string | false {
  if (existsSync(REDIS)) return false;
  if (process.env.CI) throw new Error(`${REDIS} is missing: .ci/run should have installed redis-server`);
  return 'no redis-server (apt-get install redis-server to run this test)';
}

describe('the login suites on two instances sharing Redis', { skip: redisMissing() }, () => {
  let redis: ChildProcess;
  let url: string;
  before(async () => {
    const port = await freePort();
    url = `redis://127.0.0.1:${port}`;
    redis = spawn(REDIS, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', await tempDir()], { stdio: 'ignore' });
    for (let up = false; !up;) {
      up = await new Promise<boolean>((resolve) => {
        const s = createConnection(port, '127.0.0.1', () => { s.end(); resolve(true); });
        s.on('error', () => resolve(false));
      });
      if (!up) await new Promise((r) => setTimeout(r, 25));
    }
  });
  after(() => {
    redis?.kill('SIGKILL');
  });

  for (const suite of SUITES) {
    test(suite, () => {
      const root = new URL('../', import.meta.url).pathname;
      const run = spawnSync(process.execPath, ['--test', '--test-reporter=dot', suite], {
        cwd: root, encoding: 'utf8', timeout: 240_000,
        env: { PATH: process.env.PATH, GUESTLIST_TEST_REDIS_URL: url },
      });
      assert.equal(run.status, 0, `${suite} failed with two instances:\n${run.stdout.slice(-4000)}\n${run.stderr.slice(-2000)}`);
    });
  }
});
