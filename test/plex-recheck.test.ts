import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as client from 'openid-client';
import type { PlexFault } from './fakes/plex.ts';
import { Browser, redeem, startAuthorization, startTestEnv, testEnvs, type TestEnv, type TestEnvOptions } from './helpers.ts';
import { redisDuringTests, redisMissing, startOnRedis } from './redis-server.ts';
import { FRIENDS, signInWithPlex } from './plex-flow.ts';

// Access that follows the share: a Plex sign-in is verified with plex.tv again once it is older
// than plex.recheck_after, when an app would reuse it; the fake plex.tv can take a share away,
// revoke a person's tokens, move a friend into the Home, or fail.

const USER = '/api/v2/user';

/** A Plex sign-in as Alice to the app, in a browser that keeps its session; the app's tokens. */
async function signedIn(env: TestEnv, user = 'alice') {
  const browser = new Browser(env, null);
  const { p, done } = await signInWithPlex(env, user, FRIENDS, browser);
  assert.ok(done.redirectedTo?.searchParams.get('code'), `HTTP ${done.status}: ${JSON.stringify(env.logs.filter((l) => l.level === 'error'))}`);
  return { browser, tokens: await redeem(p, done.redirectedTo!) };
}

/** The app sends the same browser to sign in again: where it ends, and the app's tokens if it got a code. */
async function again(env: TestEnv, browser: Browser) {
  const auth = await startAuthorization(env, FRIENDS);
  const walk = await browser.walk(auth.url);
  const code = walk.redirectedTo?.searchParams.get('code');
  const tokens = code ? await client.authorizationCodeGrant(auth.config, walk.redirectedTo!, { pkceCodeVerifier: auth.verifier, expectedState: auth.state, expectedNonce: auth.nonce }) : undefined;
  return { walk, tokens };
}

const userinfo = async (env: TestEnv, accessToken: string) => (await fetch(`${env.server.url}/me`, { headers: { authorization: `Bearer ${accessToken}` } })).status;
const loginLines = (env: TestEnv, outcome: string) => env.logs.filter((l) => l.msg === 'login' && l.outcome === outcome);
/** Every Plex token the fake handed out, none of which may be in a log line. */
const plexTokens = (env: TestEnv) => [...env.plex.pins.values()].map((p) => p.authToken).filter((t): t is string => !!t);

/** Past recheck_after, `count` apps send the signed-in browser at once: all are let in, after one plex.tv check. */
async function appsAtOnce(env: TestEnv, count: number) {
  const { browser } = await signedIn(env);
  await new Promise((r) => setTimeout(r, 1100));
  const results = await Promise.all(Array.from({ length: count }, () => again(env, browser)));
  assert.ok(results.every((r) => r.tokens), results.map((r) => r.walk.status).join() + JSON.stringify(env.logs.filter((l) => l.level === 'error')));
  assert.equal(env.plex.callsFor('alice', USER), 2);
}

const withEnv = testEnvs({ clients: [FRIENDS] });

describe('Plex access follows the share', () => {
  test('while the share is there, a reused sign-in is let in again after one plex.tv check', withEnv({ plex: { recheck_after: 0 } }, async (env) => {
    const { browser } = await signedIn(env);
    assert.equal(env.plex.callsFor('alice', USER), 1);
    const { tokens } = await again(env, browser);
    assert.equal(tokens?.claims()?.sub, 'plex:13692262');
    assert.equal(env.plex.callsFor('alice', USER), 2);
  }));

  test('younger than recheck_after, it is not asked again', withEnv({ plex: { recheck_after: 3600 } }, async (env) => {
    const { browser } = await signedIn(env);
    for (let i = 0; i < 3; i++) assert.ok((await again(env, browser)).tokens);
    assert.equal(env.plex.callsFor('alice', USER), 1);
  }));

  test('when the share is gone: the "not on the guest list" page, userinfo 401, a revoked line, and no token in any log', withEnv({ plex: { recheck_after: 0 } }, async (env) => {
    const { browser, tokens } = await signedIn(env);
    assert.equal(await userinfo(env, tokens.access_token), 200);
    env.plex.unshare('alice');
    const { walk } = await again(env, browser);
    assert.equal(walk.redirectedTo, undefined);
    assert.equal(walk.status, 403);
    assert.match(walk.body, /not on the guest list/);
    assert.equal(await userinfo(env, tokens.access_token), 401);
    const revoked = loginLines(env, 'revoked');
    assert.equal(revoked.length, 1, JSON.stringify(env.logs));
    assert.equal(revoked[0]!.reason, 'not-allowed');
    assert.equal(revoked[0]!.sub, 'plex:13692262');
    const logged = JSON.stringify(env.logs);
    for (const token of plexTokens(env)) assert.ok(!logged.includes(token), 'a Plex token in the log');
    // Told once: the next sign-in in this browser starts afresh, at the Plex page.
    const next = await again(env, browser);
    assert.equal(next.walk.status, 200);
    assert.match(next.walk.body, /data-bind=/);
  }));

  test('shared again and signed in again at once, a person whose sign-ins were ended gets in, and nothing fails', withEnv({ plex: { recheck_after: 0 } }, async (env) => {
    const { browser, tokens } = await signedIn(env);
    env.plex.unshare('alice');
    assert.equal((await again(env, browser)).walk.status, 403);
    env.plex.share('alice');
    const fresh = await signedIn(env);
    assert.equal(await userinfo(env, fresh.tokens.access_token), 200);
    assert.equal(await userinfo(env, tokens.access_token), 401, 'what was ended stays ended');
    assert.deepEqual(env.logs.filter((l) => l.level === 'error'), []);
  }));

  test('when plex.tv refuses the token (signed out everywhere, a disabled account): the same', withEnv({ plex: { recheck_after: 0 } }, async (env) => {
    const { browser, tokens } = await signedIn(env);
    env.plex.revokeTokens('alice');
    const { walk } = await again(env, browser);
    assert.equal(walk.status, 403);
    assert.match(walk.body, /not on the guest list/);
    assert.equal(await userinfo(env, tokens.access_token), 401);
    assert.equal(loginLines(env, 'revoked')[0]?.reason, 'not-verified');
  }));

  test('a friend who moved into the Plex Home gets plex-home at the re-check', withEnv({ plex: { recheck_after: 0 } }, async (env) => {
    const { browser, tokens } = await signedIn(env);
    assert.ok((tokens.claims()!.groups as string[]).includes('plex-friend'));
    env.plex.joinHome('alice');
    const groups = (await again(env, browser)).tokens?.claims()?.groups as string[];
    assert.ok(groups.includes('plex-home'), groups.join());
    assert.ok(!groups.includes('plex-friend'), groups.join());
  }));

  test('many apps at once ask plex.tv once', withEnv({ plex: { recheck_after: 1 } }, (env) => appsAtOnce(env, 8)));
});

describe('plex.tv not answering at re-check time', () => {
  for (const fault of ['http-500', 'http-429', 'garbage', 'hang'] as PlexFault[]) {
    test(`${fault}: the last good verdict holds for grace_when_down, is logged, and then the sign-in fails closed; nothing is ended`, withEnv({ plex: { recheck_after: 0, grace_when_down: 2 }, plexTimeoutMs: 300 }, async (env) => {
      const { browser, tokens } = await signedIn(env);
      env.plex.faults.set(USER, fault);
      const within = await again(env, browser);
      assert.ok(within.tokens, `HTTP ${within.walk.status}`);
      const kept = loginLines(env, 'kept');
      assert.equal(kept.length, 1);
      assert.match(String(kept[0]!.detail), /holds until/);
      await new Promise((r) => setTimeout(r, 2100));
      const past = await again(env, browser);
      assert.equal(past.tokens, undefined, 'let in past the grace');
      assert.equal(past.walk.redirectedTo, undefined);
      assert.equal(loginLines(env, 'revoked').length, 0);
      assert.equal(await userinfo(env, tokens.access_token), 200, 'a token is not ended by an outage');
      const logged = JSON.stringify(env.logs);
      for (const token of plexTokens(env)) assert.ok(!logged.includes(token), 'a Plex token in the log');
      // plex.tv answers again: the same sign-in goes on.
      env.plex.faults.clear();
      assert.ok((await again(env, browser)).tokens);
    }));
  }
});

describe('on two instances sharing Redis', { skip: redisMissing() }, () => {
  const redis = redisDuringTests();
  const twoInstances = (options: TestEnvOptions, run: (env: TestEnv) => Promise<void>) => async () => {
    const env = await startOnRedis(redis.url, { clients: [FRIENDS], ...options });
    try {
      await run(env);
    } finally {
      await env.close();
    }
  };

  test('a revocation seen by one instance holds on the other', twoInstances({ plex: { recheck_after: 0 } }, async (env) => {
    const { browser, tokens } = await signedIn(env);
    env.plex.unshare('alice');
    assert.equal((await again(env, browser)).walk.status, 403);
    for (const s of env.servers!()) {
      assert.equal((await fetch(`${s.url}/me`, { headers: { authorization: `Bearer ${tokens.access_token}` } })).status, 401, s.url);
    }
  }));

  test('apps opened at once on both instances ask plex.tv once', twoInstances({ plex: { recheck_after: 1 } }, (env) => appsAtOnce(env, 6)));
});
