import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../src/config/config.ts';
import { parseConfig } from '../src/config/load.ts';

// The `plex:` section of the config (src/sources/plex/config.ts) as an operator meets it.

describe('the plex section', () => {
  test('plex: server_ids, defaults, and what is wrong named', () => {
    const base = `issuer: https://a.example.com\nclients: [{client_id: a, client_secret: 0123456789abcdef0123, redirect_uris: ["https://a.example.com/cb"], sources: [plex]}]\n`;
    const config = parseConfig(`${base}plex: {server_ids: [f76e7b49cd981f44e37f3128b6e9fca2db32bca1, 0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d]}\n`, {});
    assert.deepEqual(config.plex, {
      server_ids: ['f76e7b49cd981f44e37f3128b6e9fca2db32bca1', '0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d'],
      product: 'guestlist', api_url: 'https://plex.tv', app_url: 'https://app.plex.tv/auth',
      recheck_after: 900, grace_when_down: 3600,
    });
    assert.deepEqual(config.clients[0]!.sources, ['plex']);
    assert.throws(() => parseConfig(`${base}plex: {product: x}\n`, {}), (err: ConfigError) => err.problems.some((p) => p.startsWith('plex.server_id: missing')));
    assert.throws(() => parseConfig(`${base}plex: {server_id: f76e7b49cd981f44e37f3128b6e9fca2db32bca1, api_url: "http://plex.example"}\n`, {}),
      (err: ConfigError) => err.problems.some((p) => p.startsWith('plex.api_url: "http://plex.example" must be an https URL')));
    assert.throws(() => parseConfig(base.replace('[plex]', '[tailscale]') + 'plex: {server_id: f76e7b49cd981f44e37f3128b6e9fca2db32bca1}\n', {}),
      (err: ConfigError) => err.problems.some((p) => p === 'clients[0].sources: "tailscale" is not configured: add a "tailscale:" section'));
  });

  test('recheck_after and grace_when_down: seconds or a length with a unit, 0 allowed, anything else named', () => {
    const base = `issuer: https://a.example.com\nclients: [{client_id: a, client_secret: 0123456789abcdef0123, redirect_uris: ["https://a.example.com/cb"]}]\n`;
    const plex = (extra: string) => parseConfig(`${base}plex: {server_id: f76e7b49cd981f44e37f3128b6e9fca2db32bca1${extra}}\n`, {}).plex!;
    assert.deepEqual([plex('').recheck_after, plex('').grace_when_down], [900, 3600]);
    assert.deepEqual([plex(', recheck_after: 0').recheck_after, plex(', recheck_after: "5m"').recheck_after, plex(', recheck_after: 90').recheck_after], [0, 300, 90]);
    assert.equal(plex(', grace_when_down: 2h').grace_when_down, 7200);
    for (const [key, value] of [['recheck_after', '"soon"'], ['recheck_after', '-1'], ['grace_when_down', '1.5'], ['grace_when_down', '"10 minutes"']]) {
      assert.throws(() => plex(`, ${key}: ${value}`), (err: ConfigError) => err.problems.some((p) => p.startsWith(`plex.${key}: `) && p.includes('is not a length of time')), `${key}: ${value}`);
    }
  });
});
