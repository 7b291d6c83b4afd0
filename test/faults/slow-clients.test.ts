import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { login, startTestEnv, type TestEnv } from '../helpers.ts';

describe('slow and oversized clients', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv({ headersTimeoutMs: 1000 });
  });
  after(() => env.close());

  test('a client that never finishes its headers is cut off, and others are served meanwhile', async () => {
    const { port } = new URL(env.server.url);
    const slow = connect(Number(port), '127.0.0.1');
    slow.write('GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    const closed = new Promise<string>((resolve) => {
      let answer = '';
      slow.on('data', (c) => (answer += c));
      slow.on('close', () => resolve(answer));
    });
    assert.ok((await login(env)).tokens, 'a login completes while the slow client hangs');
    const answer = await closed;
    assert.match(answer, /^HTTP\/1\.1 408/);
  });

  test('oversized headers get 431, not a crash', async () => {
    const res = await fetch(`${env.issuer}/healthz`, { headers: { 'x-big': 'a'.repeat(20_000) } });
    assert.equal(res.status, 431);
    assert.equal((await fetch(`${env.issuer}/healthz`)).status, 200);
  });
});
