import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { configYaml, freePort, serveOnce } from './helpers.ts';

// What `guestlist serve` says when it has started: the ready line, with the sources it signs
// people in with. (Its version is in version.test.ts; the warnings it logs before it, with the
// sections they are about: jellyfin-config.test.ts.)

const SERVER_ID = 'f76e7b49cd981f44e37f3128b6e9fca2db32bca1';

/** `guestlist serve` with these sources, stopped again once it is ready; what it logged. */
const serve = async (sources: string) => serveOnce((await configYaml(sources, await freePort())).text);

describe('the ready line', () => {
  test('names every configured source, Plex included', async () => {
    const { logs } = await serve(`tailscale: {socket: /nonexistent/tailscaled.sock}\nplex: {server_id: ${SERVER_ID}}\n`);
    const ready = logs.find((l) => l.msg === 'guestlist ready');
    assert.ok(ready, JSON.stringify(logs));
    assert.deepEqual(ready.sources, ['tailscale', 'plex']);
  });

  test('with Plex alone, names Plex alone', async () => {
    const { logs } = await serve(`plex: {server_id: ${SERVER_ID}}\n`);
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
