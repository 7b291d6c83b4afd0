import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ALICE } from './fakes/tailscaled.ts';
import { cli, configYaml, login, testEnvs, type ConfidentialClient, type TestEnv } from './helpers.ts';
import { FRIENDS, plexClaims, signInWithPlex, redeem } from './plex-flow.ts';

// clients[].plex_token: an app that acts on Plex as the person (Overseerr, Tautulli) gets their
// Plex token in a `plex_token` claim, for Plex sign-ins only, and no other app does.

const { sources: _plexOnly, ...ANY_SOURCE } = FRIENDS;
const OVERSEERR: ConfidentialClient = { ...ANY_SOURCE, client_id: 'overseerr', name: 'Overseerr', redirect_uris: ['https://requests.example.test/callback'], plex_token: true };
const withEnv = testEnvs({ clients: [OVERSEERR, FRIENDS], plex: true });

/** Every Plex token the fake handed out. */
const plexTokens = (env: TestEnv) => [...env.plex.pins.values()].map((p) => p.authToken).filter((t): t is string => !!t);

describe('the Plex token claim', () => {
  test('an app with plex_token gets the person\'s own Plex token in its ID token and userinfo', withEnv({}, async (env) => {
    const { p, done } = await signInWithPlex(env, 'alice', OVERSEERR);
    const tokens = await redeem(p, done.redirectedTo!);
    const [token] = plexTokens(env);
    assert.ok(token);
    assert.equal(tokens.claims()?.plex_token, token);
    const me = await (await fetch(`${env.server.url}/me`, { headers: { authorization: `Bearer ${tokens.access_token}` } })).json() as { plex_token?: string };
    assert.equal(me.plex_token, token);
    // It is the token plex.tv gave guestlist for Alice, which works at Plex as her (and which she
    // can revoke in Plex's Authorized Devices).
    const asAlice = await fetch(`${env.plex.url}/api/v2/user`, { headers: { accept: 'application/json', 'x-plex-token': token, 'x-plex-client-identifier': 'overseerr' } });
    assert.equal((await asAlice.json() as { username?: string }).username, 'alice');
    // Never in a log line.
    assert.ok(!JSON.stringify(env.logs).includes(token));
  }));

  test('no other app gets it, and no other source has one', withEnv({}, async (env) => {
    assert.equal((await plexClaims(env, 'alice', FRIENDS)).plex_token, undefined);
    const { tokens } = await login(env, { client: OVERSEERR, device: ALICE });
    assert.equal(tokens?.claims()?.sub, 'tailscale:9007199254740993');
    assert.equal(tokens?.claims()?.plex_token, undefined);
  }));

  test('check names the key, says what it hands over, and refuses it without a Plex sign-in', async () => {
    const { text } = await configYaml('plex: {server_id: f76e7b49cd981f44e37f3128b6e9fca2db32bca1}\n', undefined,
      'clients: [{client_id: overseerr, client_secret: 0123456789abcdef0123, redirect_uris: ["https://requests.example.com/cb"], plex_token: true}]\n');
    const { code, err } = await cli(['check'], { GUESTLIST_CONFIG_YAML: text });
    assert.equal(code, 0, err);
    assert.match(err, /warning: clients\[0\]\.plex_token: overseerr receives each Plex user's own Plex token .* CF_Authorization cookie/);
    const without = await cli(['check'], { GUESTLIST_CONFIG_YAML: text.replace(/plex: .*\n/, 'tailscale: {}\n') });
    assert.equal(without.code, 1);
    assert.match(without.err, /clients\[0\]\.plex_token: there is no Plex sign-in to take a token from/);
  });
});
