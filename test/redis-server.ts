import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import { after, before } from 'node:test';
import { freePort, startTestEnv, tempDir, type TestEnv, type TestEnvOptions } from './helpers.ts';

// Debian's redis-server on a loopback port, for the tests of Redis as guestlist's store.
// .ci/run installs it; elsewhere the tests that need it are skipped, saying why.

const REDIS = '/usr/bin/redis-server';

/** Why the Redis tests cannot run here, or false; in CI a missing redis-server is an error. */
export function redisMissing(): string | false {
  if (existsSync(REDIS)) return false;
  if (process.env.CI) throw new Error(`${REDIS} is missing: .ci/run should have installed redis-server`);
  return 'no redis-server (apt-get install redis-server to run this test)';
}

export class RedisServer {
  proc: ChildProcess | undefined;
  readonly port: number;
  readonly dir: string;
  constructor(port: number, dir: string) {
    this.port = port;
    this.dir = dir;
  }
  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }
  async start(): Promise<void> {
    this.proc = spawn(REDIS, ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir], { stdio: 'ignore' });
    for (let i = 0; i < 200; i++) {
      if (await new Promise<boolean>((resolve) => {
        const s = createConnection(this.port, '127.0.0.1', () => { s.end(); resolve(true); });
        s.on('error', () => resolve(false));
      })) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error('redis-server did not start');
  }
  async stop(): Promise<void> {
    if (!this.proc || this.proc.exitCode !== null) return;
    const exited = new Promise((r) => this.proc!.once('exit', r));
    this.proc.kill('SIGKILL');
    await exited;
  }
}

/** A redis-server started before the tests of the enclosing describe, and stopped after them. */
export function redisDuringTests(): { readonly url: string } {
  let redis: RedisServer | undefined;
  before(async () => {
    redis = new RedisServer(await freePort(), await tempDir());
    await redis.start();
  });
  after(() => redis?.stop());
  return { get url() { return redis!.url; } };
}

/**
 * startTestEnv as two instances sharing this Redis, each request to the next in turn; the Redis
 * emptied first, as each memory store starts empty.
 */
export async function startOnRedis(url: string, options: TestEnvOptions): Promise<TestEnv> {
  const { createClient } = await import('@redis/client');
  const client = createClient({ url });
  await client.connect();
  await client.flushAll();
  await client.close();
  process.env.GUESTLIST_TEST_REDIS_URL = url;
  try {
    return await startTestEnv(options);
  } finally {
    delete process.env.GUESTLIST_TEST_REDIS_URL;
  }
}
