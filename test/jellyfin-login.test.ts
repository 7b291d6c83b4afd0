import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as client from 'openid-client';
import type { ClientConfig } from '../src/config/config.ts';
import { JELLYFIN_USERS, type FakeJellyfin } from './fakes/jellyfin.ts';
import { Browser, HEADSCALE, startTestEnv, type TestEnv } from './helpers.ts';
import { finishJellyfin, getCode, MEDIA, openJellyfinPage, redeem, waitFor, type JellyfinPage } from './jellyfin-flow.ts';

// The Jellyfin sign-in as the page's script drives it, step by step over HTTP
// (test/jellyfin-flow.ts), with a real relying party (openid-client) at both ends: what the app
// is told about the person, who is let in, and what guestlist leaves behind at Jellyfin.

const ALICE = JELLYFIN_USERS.alice!;
const MALLORY = JELLYFIN_USERS.mallory!;

/** A second app that takes Jellyfin accounts: the same person, signed in once, goes straight in. */
const REQUESTS: ClientConfig = { ...HEADSCALE, client_id: 'requests', name: 'Request Board', redirect_uris: ['https://requests.example.test/callback'], sources: ['jellyfin'] };
const PLEX_ONLY: ClientConfig = { ...HEADSCALE, client_id: 'plex-only', name: 'Plex Friends', redirect_uris: ['https://plexfriends.example.test/callback'], sources: ['plex'] };
const PLEX_AND_JELLYFIN: ClientConfig = { ...HEADSCALE, client_id: 'media-both', name: 'Media Hub', redirect_uris: ['https://hub.example.test/callback'], sources: ['plex', 'jellyfin'] };

// Every code binds a Quick Connect request to its network for as long as Jellyfin keeps it,
// finished or not, and a network may hold 20 (sign-in-bindings.ts). So each sign-in here comes
// from a /64 of its own, behind a proxy that says so, and these tests never meet that cap, even
// when the two-instance run shares one Redis with the other suites.
let networks = 0;
const stranger = (env: TestEnv) => new Browser(env, null, { 'fly-client-ip': `2001:db8:1f:${(++networks).toString(16)}::1` });
const open = (env: TestEnv, c: ClientConfig = MEDIA, browser = stranger(env)) => openJellyfinPage(env, c, browser);

const initiates = (fake: FakeJellyfin) => fake.calls.filter((c) => c.path === '/QuickConnect/Initiate');
const loginLines = (env: TestEnv, since = 0) => env.logs.slice(since).filter((l) => l.msg === 'login');

/** Everything up to Jellyfin's say-so: the page, its code, the person authorizing it in Jellyfin, and the wait that sees it. */
async function authorizedPage(env: TestEnv, username: string, c: ClientConfig = MEDIA, browser = stranger(env)): Promise<JellyfinPage & { code: string }> {
  const p = await open(env, c, browser);
  assert.equal(p.page.status, 200, p.page.body.slice(0, 300));
  const got = await getCode(p);
  assert.equal(got.status, 200, JSON.stringify(got.body));
  const code = got.body.code!;
  env.jellyfin.authorize(code, username);
  // Authorized first, so the long-polling wait answers at once.
  const waited = await waitFor(p);
  assert.deepEqual(waited.body, { state: 'authorized' });
  return { ...p, code };
}

async function signIn(env: TestEnv, username: string, c: ClientConfig = MEDIA) {
  const p = await authorizedPage(env, username, c);
  const done = await finishJellyfin(p);
  assert.ok(done.redirectedTo?.searchParams.get('code'), `HTTP ${done.status}: ${done.body.slice(0, 300)}`);
  const tokens = await redeem(p, done.redirectedTo!);
  return { p, done, tokens, claims: tokens.claims()! };
}

describe('Jellyfin sign-in', () => {
  let env: TestEnv;
  let fake: FakeJellyfin;
  before(async () => {
    env = await startTestEnv({
      jellyfin: true,
      plex: true,
      clients: [MEDIA, REQUESTS, PLEX_ONLY, PLEX_AND_JELLYFIN],
      client_ip_header: 'Fly-Client-IP',
      // Only the sub may put a Jellyfin account in a group: a name is whatever an administrator typed.
      groups: { friends: [`jellyfin:${ALICE.id}`], by_name: ['alice'], by_address: ['alice@example.com'] },
    });
    fake = env.jellyfin;
  });
  after(() => env.close());

  test('the page offers Jellyfin, names the server, and hands the script only guestlist\'s own step URLs', async () => {
    const asked = fake.calls.length;
    const p = await open(env);
    assert.equal(p.page.status, 200);
    assert.match(p.page.body, /Sign in to Media Requests/);
    assert.match(p.page.body, /Sign in with your Jellyfin account/);
    assert.match(p.page.body, /id="jellyfin-sign-in"/);
    assert.match(p.page.body, /Test Jellyfin/);
    const uid = /\/interaction\/([^/]+)\/jellyfin\/code$/.exec(p.codeUrl)?.[1];
    assert.ok(uid, p.codeUrl);
    assert.equal(p.waitUrl, `/interaction/${uid}/jellyfin/wait`);
    assert.equal(p.finishUrl, `/interaction/${uid}/jellyfin/finish`);
    // The browser never talks to Jellyfin; and an address guestlist reaches over plain http is
    // not one to send people to, so the page has no "open it" link to it either.
    assert.ok(!p.page.body.includes(fake.url), 'the page carries the Jellyfin server address');
    // Nothing is asked of Jellyfin until the person presses the button.
    assert.equal(fake.calls.length, asked);
  });

  test('a full login: code, authorized in Jellyfin, finish, and the app gets who the person is', async () => {
    const { done, tokens, claims, p } = await signIn(env, 'alice');
    assert.equal(done.redirectedTo!.origin + done.redirectedTo!.pathname, MEDIA.redirect_uris[0]);
    assert.equal(done.redirectedTo!.searchParams.get('state'), p.state);
    assert.equal(claims.sub, `jellyfin:${ALICE.id}`);
    assert.match(String(claims.sub), /^jellyfin:[0-9a-f]{32}$/);
    assert.equal(claims.preferred_username, 'alice');
    assert.equal(claims.name, 'alice');
    assert.deepEqual(claims.groups, ['friends', 'jellyfin']);
    // Jellyfin keeps no verified address: no email claim at all, not even email_verified=false.
    assert.ok(!('email' in claims), JSON.stringify(claims));
    assert.ok(!('email_verified' in claims), JSON.stringify(claims));

    const info = await client.fetchUserInfo(p.config, tokens.access_token, String(claims.sub));
    assert.equal(info.sub, `jellyfin:${ALICE.id}`);
    assert.equal(info.preferred_username, 'alice');
    assert.equal(info.name, 'alice');
    assert.deepEqual(info.groups, ['friends', 'jellyfin']);
    assert.ok(!('email' in info) && !('email_verified' in info), JSON.stringify(info));
  });

  test('a name Headscale would drop becomes a valid username; the display name is kept as it is', async () => {
    const { claims, tokens, p } = await signIn(env, 'erik');
    assert.equal(claims.sub, `jellyfin:${JELLYFIN_USERS.erik!.id}`);
    assert.equal(claims.name, 'Erik Östberg');
    assert.match(String(claims.preferred_username), /^[A-Za-z][A-Za-z0-9._@-]+$/);
    assert.match(String(claims.preferred_username), /^Erik.Ostberg$/);
    const info = await client.fetchUserInfo(p.config, tokens.access_token, String(claims.sub));
    assert.equal(info.preferred_username, claims.preferred_username);
    assert.equal(info.name, 'Erik Östberg');
  });

  test('an administrator is in jellyfin-admin as well', async () => {
    const { claims } = await signIn(env, 'admin');
    assert.equal(claims.sub, `jellyfin:${JELLYFIN_USERS.admin!.id}`);
    assert.equal(claims.name, 'Jelly Admin');
    assert.match(String(claims.preferred_username), /^[A-Za-z][A-Za-z0-9._@-]+$/);
    assert.deepEqual(claims.groups, ['jellyfin', 'jellyfin-admin']);
  });

  test('a config group never matches a Jellyfin name, even one that reads like a listed address', async () => {
    // mallory's Jellyfin name is "alice@example.com", which the by_address group lists.
    const { claims } = await signIn(env, 'mallory');
    assert.equal(claims.sub, `jellyfin:${MALLORY.id}`);
    assert.equal(claims.name, 'alice@example.com');
    assert.deepEqual(claims.groups, ['jellyfin']);
    assert.ok(!('email' in claims));
  });

  test('a disabled account is refused with the guest-list page, even though Jellyfin let the code through', async () => {
    const p = await authorizedPage(env, 'dora');
    const logged = env.logs.length;
    const done = await finishJellyfin(p);
    assert.equal(done.redirectedTo, undefined);
    assert.equal(done.status, 403);
    assert.match(done.body, /not on the guest list/);
    assert.match(done.body, /disabled/);
    const lines = loginLines(env, logged);
    assert.equal(lines.length, 1, JSON.stringify(lines));
    assert.equal(lines[0]!.outcome, 'refused');
    assert.equal(lines[0]!.source, 'jellyfin');
    assert.equal(lines[0]!.reason, 'not-allowed');
    assert.match(String(lines[0]!.detail), new RegExp(JELLYFIN_USERS.dora!.id));
  });

  test('a login is logged once, as signed in with Jellyfin, without the code, secret or any token', async () => {
    const logged = env.logs.length;
    const p = await authorizedPage(env, 'bob');
    const tokens = await redeem(p, (await finishJellyfin(p)).redirectedTo!);
    const lines = loginLines(env, logged);
    assert.equal(lines.length, 1, JSON.stringify(lines));
    assert.equal(lines[0]!.outcome, 'signed-in');
    assert.equal(lines[0]!.source, 'jellyfin');
    assert.equal(lines[0]!.client_id, MEDIA.client_id);
    assert.equal(lines[0]!.sub, `jellyfin:${JELLYFIN_USERS.bob!.id}`);
    const text = JSON.stringify(env.logs.slice(logged));
    const request = fake.requests.get(p.code)!;
    assert.ok(!text.includes(request.secret) && !text.includes(request.secret.toLowerCase()), 'the Quick Connect secret is in the logs');
    assert.ok(!text.includes(tokens.access_token));
    const jellyfinTokens = fake.calls.filter((c) => c.authorization?.DeviceId === request.deviceId && c.authorization.Token).map((c) => c.authorization!.Token!);
    assert.ok(jellyfinTokens.length > 0);
    for (const t of jellyfinTokens) assert.ok(!text.includes(t), 'the Jellyfin access token is in the logs');
  });

  test('the access token Jellyfin hands over is revoked once the person is signed in', async () => {
    const p = await authorizedPage(env, 'alice');
    const deviceId = fake.requests.get(p.code)!.deviceId;
    // Authorizing the code made a device (an access token) for alice under this sign-in's DeviceId.
    const minted = [...fake.tokens].filter(([, d]) => d.deviceId === deviceId);
    assert.equal(minted.length, 1);
    const [token, device] = minted[0]!;
    assert.equal(device.userId, ALICE.id);
    const done = await finishJellyfin(p);
    assert.ok(done.redirectedTo?.searchParams.get('code'));
    assert.equal(fake.tokens.has(token), false, 'the Jellyfin token is still live');
    const logout = fake.calls.filter((c) => c.path === '/Sessions/Logout' && c.authorization?.Token === token);
    assert.equal(logout.length, 1);
    assert.equal(logout[0]!.method, 'POST');
  });

  test('every call to Jellyfin carries the MediaBrowser header it requires, with a DeviceId of that sign-in\'s own', async () => {
    const before = fake.calls.length;
    await signIn(env, 'alice');
    const firstCalls = fake.calls.slice(before);
    const middle = fake.calls.length;
    await signIn(env, 'bob');
    const secondCalls = fake.calls.slice(middle);
    assert.deepEqual(firstCalls.map((c) => `${c.method} ${c.path}`), [
      'POST /QuickConnect/Initiate', 'GET /QuickConnect/Connect', 'POST /Users/AuthenticateWithQuickConnect', 'POST /Sessions/Logout',
    ]);
    for (const c of [...firstCalls, ...secondCalls]) {
      const auth = c.authorization;
      assert.ok(auth, `${c.method} ${c.path} without a MediaBrowser Authorization header`);
      for (const key of ['Client', 'Device', 'DeviceId', 'Version']) {
        assert.ok(auth[key]?.trim(), `${c.method} ${c.path}: no ${key} in ${JSON.stringify(auth)}`);
      }
      assert.equal(auth.Client, 'guestlist');
      // The device Jellyfin's dashboard lists is named for this guestlist.
      assert.ok(auth.Device!.includes(new URL(env.issuer).host), auth.Device);
    }
    const deviceIds = (calls: typeof firstCalls) => new Set(calls.map((c) => c.authorization!.DeviceId));
    assert.equal(deviceIds(firstCalls).size, 1);
    assert.equal(deviceIds(secondCalls).size, 1);
    assert.notEqual([...deviceIds(firstCalls)][0], [...deviceIds(secondCalls)][0]);
  });

  test('pressing the button again, or reloading the page, gives the same code without asking Jellyfin again', async () => {
    const p = await open(env);
    const before = initiates(fake).length;
    const first = await getCode(p);
    const second = await getCode(p);
    assert.equal(first.status, 200);
    assert.match(first.body.code!, /^\d{6}$/);
    assert.equal(second.body.code, first.body.code);
    assert.equal(second.body.expiresAt, first.body.expiresAt);
    // A reload: the same sign-in's page again, and its button.
    const reloaded = await p.browser.walk(new URL(p.page.visited.at(-1)!));
    assert.equal(reloaded.status, 200);
    assert.match(reloaded.body, /id="jellyfin-sign-in"/);
    const third = await getCode(p);
    assert.equal(third.body.code, first.body.code);
    assert.equal(initiates(fake).length - before, 1);
    // And that one code still signs this person in.
    env.jellyfin.authorize(first.body.code!, 'bob');
    assert.equal((await waitFor(p)).body.state, 'authorized');
    const done = await finishJellyfin(p);
    assert.equal((await redeem(p, done.redirectedTo!)).claims()!.sub, `jellyfin:${JELLYFIN_USERS.bob!.id}`);
  });

  test('an app that takes Plex and Jellyfin gets one page with both buttons', async () => {
    const p = await open(env, PLEX_AND_JELLYFIN);
    assert.equal(p.page.status, 200);
    assert.match(p.page.body, /Sign in with your Plex or Jellyfin account/);
    assert.match(p.page.body, /id="plex-sign-in"/);
    assert.match(p.page.body, /id="jellyfin-sign-in"/);
    assert.equal((p.page.body.match(/<h1>/g) ?? []).length, 1);
    // The Jellyfin panel on that page is a working one.
    const got = await getCode(p);
    assert.equal(got.status, 200);
    env.jellyfin.authorize(got.body.code!, 'alice');
    assert.equal((await waitFor(p)).body.state, 'authorized');
    const done = await finishJellyfin(p);
    assert.equal((await redeem(p, done.redirectedTo!)).claims()!.sub, `jellyfin:${ALICE.id}`);
  });

  test('an app that takes only Plex never shows the Jellyfin panel, and its Jellyfin steps do not exist', async () => {
    const p = await open(env, PLEX_ONLY);
    assert.equal(p.page.status, 200);
    assert.match(p.page.body, /id="plex-sign-in"/);
    assert.doesNotMatch(p.page.body, /jellyfin/i);
    const uid = /\/interaction\/([^/?]+)$/.exec(p.page.visited.at(-1)!)?.[1];
    assert.ok(uid, p.page.visited.join(' '));
    const before = fake.calls.length;
    for (const action of ['code', 'wait', 'finish']) {
      const res = await p.browser.post(`/interaction/${uid}/jellyfin/${action}`, '', 'application/json');
      assert.equal(res.status, 404, `${action}: HTTP ${res.status}`);
    }
    assert.equal(fake.calls.length, before);
  });

  test('signed in once, the person goes into a second Jellyfin app with no new code', async () => {
    const browser = stranger(env);
    const first = await authorizedPage(env, 'alice', MEDIA, browser);
    const done = await finishJellyfin(first);
    assert.ok(done.redirectedTo?.searchParams.get('code'));
    await redeem(first, done.redirectedTo!);
    const calls = fake.calls.length;
    const logged = env.logs.length;
    const second = await open(env, REQUESTS, browser);
    assert.ok(second.page.redirectedTo?.searchParams.get('code'), `HTTP ${second.page.status}: ${second.page.body.slice(0, 300)}`);
    assert.equal(second.page.redirectedTo!.origin, new URL(REQUESTS.redirect_uris[0]!).origin);
    const claims = (await redeem(second, second.page.redirectedTo!)).claims()!;
    assert.equal(claims.sub, `jellyfin:${ALICE.id}`);
    assert.deepEqual(claims.groups, ['friends', 'jellyfin']);
    assert.equal(fake.calls.length, calls, 'Jellyfin was asked again');
    assert.equal(loginLines(env, logged).filter((l) => l.outcome === 'signed-in').length, 0);
  });

  test('a Jellyfin session does not carry anyone into an app that takes only Plex', async () => {
    const browser = stranger(env);
    const first = await authorizedPage(env, 'alice', MEDIA, browser);
    assert.ok((await finishJellyfin(first)).redirectedTo?.searchParams.get('code'));
    const plexOnly = await open(env, PLEX_ONLY, browser);
    assert.equal(plexOnly.page.redirectedTo, undefined);
    assert.equal(plexOnly.page.status, 200);
    assert.match(plexOnly.page.body, /id="plex-sign-in"/);
  });
});

describe('Jellyfin sign-in with allowed_users', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv({ jellyfin: { allowed_users: [ALICE.id, JELLYFIN_USERS.erik!.id] }, clients: [MEDIA], client_ip_header: 'Fly-Client-IP' });
  });
  after(() => env.close());

  test('a listed account signs in', async () => {
    const { claims } = await signIn(env, 'alice');
    assert.equal(claims.sub, `jellyfin:${ALICE.id}`);
  });

  test('any other account gets the guest-list page and no code, and the refusal is logged', async () => {
    const p = await authorizedPage(env, 'bob');
    const logged = env.logs.length;
    const done = await finishJellyfin(p);
    assert.equal(done.redirectedTo, undefined);
    assert.equal(done.status, 403);
    assert.match(done.body, /not on the guest list/);
    assert.match(done.body, /You signed in to Jellyfin as bob/);
    assert.ok(!done.visited.some((u) => /[?&]code=/.test(u)));
    const lines = loginLines(env, logged);
    assert.deepEqual(lines.map((l) => [l.outcome, l.source, l.reason]), [['refused', 'jellyfin', 'not-allowed']]);
    // Refused, the Jellyfin token still goes.
    const deviceId = env.jellyfin.requests.get(p.code)!.deviceId;
    assert.equal([...env.jellyfin.tokens.values()].filter((d) => d.deviceId === deviceId).length, 0);
  });

  test('an administrator not listed is refused too: allowed_users is the whole list', async () => {
    const p = await authorizedPage(env, 'admin');
    const done = await finishJellyfin(p);
    assert.equal(done.redirectedTo, undefined);
    assert.equal(done.status, 403);
    assert.match(done.body, /not on the guest list/);
  });
});
