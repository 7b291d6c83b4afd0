import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../src/cli.ts';
import type { RunningServer } from '../src/server.ts';
import { freePort, tempDir } from './helpers.ts';

// Which guestlist is this? `guestlist --version`, the ready line and /healthz all say, and all
// say package.json's version, so a deploy can be checked from outside and from its logs.

const version = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

async function cli(args: string[], env: Record<string, string> = {}) {
  let out = '';
  let err = '';
  const logs: Record<string, unknown>[] = [];
  const result = await runCli(args, { out: (t) => (out += t), err: (t) => (err += t), env, log: (level, msg, fields) => logs.push({ level, msg, ...fields }) });
  return { result, out, err, logs };
}

describe('the version', () => {
  test('--version and -v print "guestlist <version>" and exit 0, without a config', async () => {
    assert.match(version, /^\d+\.\d+\.\d+/);
    for (const flag of ['--version', '-v']) {
      const { result, out, err } = await cli([flag], { GUESTLIST_CONFIG: '/nonexistent/guestlist.yaml' });
      assert.equal(result, 0, err);
      assert.equal(out, `guestlist ${version}\n`);
      assert.equal(err, '');
    }
  });

  test('help mentions --version', async () => {
    const { result, out } = await cli(['help']);
    assert.equal(result, 0);
    assert.match(out, /guestlist --version +print the version/);
  });

  test('the ready line and /healthz carry it', async () => {
    const port = await freePort();
    const dir = await tempDir();
    const yaml = `issuer: http://127.0.0.1:${port}\nlisten: 127.0.0.1:${port}\ndata_dir: ${join(dir, 'data')}\ntailscale: {socket: /nonexistent/tailscaled.sock}\n`
      + 'clients: [{client_id: app, client_secret: 0123456789abcdef0123, redirect_uris: ["https://app.example.com/cb"]}]\n';
    const { result, logs, err } = await cli(['serve'], { GUESTLIST_CONFIG_YAML: yaml });
    assert.notEqual(typeof result, 'number', err);
    const running = result as RunningServer;
    try {
      assert.equal(logs.find((l) => l.msg === 'guestlist ready')?.version, version, JSON.stringify(logs));
      const health = await fetch(`${running.url}/healthz`);
      assert.equal(health.status, 200);
      assert.deepEqual(await health.json(), { status: 'ok', version });
    } finally {
      await running.close();
    }
  });
});
