import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ClientConfig } from '../src/config/config.ts';
import { ConfigError } from '../src/config/config.ts';
import { parseConfig } from '../src/config/load.ts';
import { SERVER_ID } from './fakes/plex.ts';
import { startTestEnv, type TestEnv } from './helpers.ts';
import { FRIENDS, plexClaims, signInWithPlex } from './plex-flow.ts';

// How a person has the Plex server, as groups an app can allow with no list kept by hand: its
// owner (plex-owner), a member of the owner's Plex Home (plex-home: managed users and guests
// too), or a friend it is shared with (plex-friend). plex.tv says which, on the account and on
// the server's resource (shared/reference/plex-api.md §7b); the fake answers as it does.

const HOME_ONLY: ClientConfig = { ...FRIENDS, client_id: 'home-only', name: 'Family Photos', redirect_uris: ['https://photos.example.test/callback'], allowed_groups: ['plex-owner', 'plex-home'] };
const tiers = (groups: unknown) => (groups as string[]).filter((g) => /^plex-(owner|home|friend)$/.test(g));

describe('Plex tiers as groups', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv({ plex: true, clients: [FRIENDS, HOME_ONLY] });
  });
  after(() => env.close());

  for (const [user, tier] of [['owner', 'plex-owner'], ['hannah', 'plex-home'], ['kid', 'plex-home'], ['alice', 'plex-friend']] as const) {
    test(`${user} is ${tier}, and nothing else of the three`, async () => {
      const claims = await plexClaims(env, user);
      assert.deepEqual(tiers(claims.groups), [tier]);
      assert.ok((claims.groups as string[]).includes('plex'));
    });
  }

  test('an app that allows plex-owner and plex-home lets the Home in and tells a friend they are not on the guest list', async () => {
    for (const user of ['owner', 'hannah', 'kid']) {
      const { done } = await signInWithPlex(env, user, HOME_ONLY);
      assert.ok(done.redirectedTo?.searchParams.get('code'), `${user}: HTTP ${done.status}`);
    }
    const friend = await signInWithPlex(env, 'alice', HOME_ONLY);
    assert.equal(friend.done.redirectedTo, undefined);
    assert.equal(friend.done.status, 403);
    assert.match(friend.done.body, /not on the guest list/);
  });
});

describe('the groups a source vouches for, in allowed_groups', () => {
  const config = (groups: string, sources = `plex: {server_id: ${SERVER_ID}}\n`) => `issuer: https://auth.example.com\n${sources}`
    + `clients: [{client_id: a, client_secret: 0123456789abcdef0123, redirect_uris: ["https://a.example.com/cb"], allowed_groups: ${groups}}]\n`;

  test('need no definition under groups while their source is configured', () => {
    const loaded = parseConfig(config(`[plex-home, plex-owner, plex-friend, plex, "plex:${SERVER_ID}"]`), {});
    assert.deepEqual(loaded.clients[0]!.allowed_groups, ['plex-home', 'plex-owner', 'plex-friend', 'plex', `plex:${SERVER_ID}`]);
    assert.deepEqual(parseConfig(config('[jellyfin-admin]', 'jellyfin: {url: "https://jellyfin.example.com"}\n'), {}).clients[0]!.allowed_groups, ['jellyfin-admin']);
  });

  test('a name no source vouches for, or one whose source is not configured, is still named as undefined', () => {
    const problems = (text: string) => {
      try {
        parseConfig(text, {});
      } catch (err) {
        if (err instanceof ConfigError) return err.problems;
        throw err;
      }
      return [];
    };
    assert.ok(problems(config('[plex-hom]')).some((p) => p.startsWith('clients[0].allowed_groups: group "plex-hom" is not defined under groups, nor one a configured source vouches for (plex, plex-owner, plex-home, plex-friend')));
    assert.ok(problems(config('[plex-home]', 'tailscale: {}\n')).includes('clients[0].allowed_groups: group "plex-home" is not defined under groups'));
    assert.ok(problems(config('["plex:0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d"]')).some((p) => p.includes('"plex:0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d" is not defined')));
  });
});
