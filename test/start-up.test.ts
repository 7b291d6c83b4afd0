import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { RunningServer } from '../src/server.ts';
import { cli, freePort, tempDir } from './helpers.ts';

// What `guestlist serve` says when it has started: the ready line, with the sources it signs
// people in with. (Its version is in version.test.ts; the warnings it logs before it, with the
// sections they are about: jellyfin-config.test.ts.)

const SECRET = '0123456789abcdef0123';
const SERVER_ID = 'f76e7b49cd981f44e37f3128b6e9fca2db32bca1';

async function yamlFor(extra: string, port?: number) {
  const dir = await tempDir();
  const text = `issuer: http://127.0.0.1:${port ?? 1}\n${port ? `listen: 127.0.0.1:${port}\n` : ''}data_dir: ${join(dir, 'data')}\n`
    + `clients: [{client_id: app, client_secret: ${SECRET}, redirect_uris: ["https://app.example.com/cb"]}]\n${extra}`;
  return { dir, text };
}

/** `guestlist serve` with these sources, stopped again once it is ready; what it logged. */
async function serve(sources: string) {
  const run = await cli(['serve'], { GUESTLIST_CONFIG_YAML: (await yamlFor(sources, await freePort())).text });
  assert.notEqual(typeof run.result, 'number', run.err);
  await (run.result as RunningServer).close();
  return run;
}

describe('the ready line', () => {
  test('names every configured source, Plex included', async () => {
    const port = await freePort();
    const { text } = await yamlFor(`tailscale: {socket: /nonexistent/tailscaled.sock}\nplex: {server_id: ${SERVER_ID}}\n`, port);
    const { result, logs, err } = await cli(['serve'], { GUESTLIST_CONFIG_YAML: text });
    assert.notEqual(typeof result, 'number', err);
    await (result as RunningServer).close();
    const ready = logs.find((l) => l.msg === 'guestlist ready');
    assert.ok(ready, JSON.stringify(logs));
    assert.deepEqual(ready.sources, ['tailscale', 'plex']);
  });

  test('with Plex alone, names Plex alone', async () => {
    const port = await freePort();
    const { text } = await yamlFor(`plex: {server_id: ${SERVER_ID}}\n`, port);
    const { result, logs, err } = await cli(['serve'], { GUESTLIST_CONFIG_YAML: text });
    assert.notEqual(typeof result, 'number', err);
    await (result as RunningServer).close();
    assert.deepEqual(logs.find((l) => l.msg === 'guestlist ready')?.sources, ['plex']);
  });

  test('with Jellyfin alone, names Jellyfin alone', async () => {
    const { logs } = await serve('jellyfin: {url: "https://jellyfin.example.com"}\n');
    assert.deepEqual(logs.find((l) => l.msg === 'guestlist ready')?.sources, ['jellyfin']);
  });

  test('with every source, names each', async () => {
    const { logs } = await serve(`tailscale: {socket: /nonexistent/tailscaled.sock}\nplex: {server_id: ${SERVER_ID}}\njellyfin: {url: "https://jellyfin.example.com"}\n`);
    assert.deepEqual(logs.find((l) => l.msg === 'guestlist ready')?.sources, ['tailscale', 'plex', 'jellyfin']);
  });
});
