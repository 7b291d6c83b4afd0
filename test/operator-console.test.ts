import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ALICE, BOB_GITHUB } from './fakes/tailscaled.ts';
import { ADMINS_ONLY, Browser, CLOUDFLARE, HEADSCALE, login, startTestEnv, testEnvs, type BrowserResult, type TestEnv } from './helpers.ts';
import { redisDuringTests, redisMissing, startOnRedis } from './redis-server.ts';
import { FRIENDS, signInWithPlex } from './plex-flow.ts';

// /admin, end to end over HTTP: who may open it (members of admin.allowed_groups, and with
// Tailscale and admin.tailnet_only only from their own tailnet device), what it shows, and its one
// action, Sign out everywhere, attacked the ways an outsider would.

const APPS = [HEADSCALE, CLOUDFLARE, ADMINS_ONLY, FRIENDS];

const withEnv = testEnvs({ clients: APPS, admin: { allowed_groups: ['admins'] } });

/** A browser signed in to guestlist's home page from `device` (zero-click on the tailnet). */
async function signedInAtHome(env: TestEnv, device: typeof ALICE) {
  const browser = new Browser(env, device);
  const home = await browser.walk(`${env.issuer}/sign-in`);
  assert.match(home.body, /Signed in as/);
  return browser;
}

const open = (browser: Browser, env: TestEnv, path = '/admin') => browser.walk(`${env.issuer}${path}`);
const formOf = (page: BrowserResult, sub: string) => {
  const form = new RegExp(`<form method="post" action="/admin/sign-out"><input type="hidden" name="sub" value="${sub.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"><input type="hidden" name="csrf" value="([^"]+)">`).exec(page.body);
  assert.ok(form, `no sign-out form for ${sub}`);
  return { sub, csrf: form[1]! };
};
const signOut = (browser: Browser, fields: Record<string, string>, headers: Record<string, string> = {}) =>
  browser.post('/admin/sign-out', new URLSearchParams(fields).toString(), 'application/x-www-form-urlencoded', headers);
const userinfo = async (env: TestEnv, accessToken: string) => (await fetch(`${env.server.url}/me`, { headers: { authorization: `Bearer ${accessToken}` } })).status;
/** Nothing of the console in a page: its sections, its people, its settings. */
const NOTHING_OF_THE_CONSOLE = /Health|Sign out everywhere|client_id|Redirect URIs|tailscale:|csrf/;

const ALICE_SUB = 'tailscale:9007199254740993';
const BOB_SUB = 'tailscale:2915887766550002';

describe('the operator console', () => {
  test('anonymous: GET and HEAD go to the sign-in; a POST is refused; nothing of the console shows', withEnv({}, async (env) => {
    const browser = new Browser(env, null);
    for (const method of ['GET', 'HEAD']) {
      const res = await browser.get(new URL(`${env.issuer}/admin`), {}, method);
      assert.equal(res.status, 303, method);
      assert.equal(res.headers.location, '/sign-in');
    }
    const post = await signOut(browser, { sub: ALICE_SUB, csrf: 'x' });
    assert.equal(post.status, 403);
    assert.doesNotMatch(post.body, NOTHING_OF_THE_CONSOLE);
  }));

  test('signed in but not in admin.allowed_groups: a 403 that says nothing of the console', withEnv({}, async (env) => {
    const bob = await signedInAtHome(env, BOB_GITHUB);
    for (const path of ['/admin', '/admin?try=headscale', '/admin/']) {
      const page = await open(bob, env, path);
      assert.equal(page.status, 403, path);
      assert.match(page.body, /This page is not for you/);
      assert.doesNotMatch(page.body, NOTHING_OF_THE_CONSOLE);
    }
  }));

  test('an admin on their own tailnet device: health, sign-ins, people, apps and Try it; no secret in the page', withEnv({ jellyfin: true, plex: true }, async (env) => {
    // Bob signs in to Headscale first, and is refused by Grafana: both are in the console.
    await login(env, { device: BOB_GITHUB });
    await login(env, { device: BOB_GITHUB, client: ADMINS_ONLY });
    const alice = await signedInAtHome(env, ALICE);
    const page = await open(alice, env);
    assert.equal(page.status, 200, page.body.slice(0, 400));
    assert.equal(page.headers['cache-control'], 'no-store');
    const body = page.body;

    // Health: each source's upstream, the store, the signing key.
    assert.match(body, /<th scope="row">Tailscale<\/th><td><span class="state ok">OK<\/span><\/td><td>tailscaled at [^<]+: running, tailnet example.com<\/td>/);
    assert.match(body, /<th scope="row">Plex<\/th><td><span class="state ok">OK<\/span><\/td><td>http:\/\/127.0.0.1:\d+ answers<\/td>/);
    assert.match(body, /<th scope="row">Plex server [0-9a-f]+<\/th><td><span class="state ok">OK<\/span><\/td><td>its name shows here once someone/);
    assert.match(body, /<th scope="row">Jellyfin<\/th><td><span class="state ok">OK<\/span><\/td><td>http:\/\/127.0.0.1:\d+: &#34;Family Media&#34;, Jellyfin 10.11.8; Quick Connect is on<\/td>/);
    assert.match(body, /<th scope="row">Memory: Session<\/th><td><span class="state ok">OK<\/span><\/td><td>\d+ entries, [\d.]+ (B|KB) \(at most 10000 entries, 8.0 MB\)/);
    assert.match(body, /<th scope="row">Signing key [\w-]{16}<\/th><td><span class="state ok">OK<\/span><\/td><td>signs every token; made less than a minute ago<\/td>/);

    // Sign-ins: the chart, and the events with what the person was told.
    assert.match(body, /<svg viewBox="0 0 720 180" role="img" aria-label="Sign-in attempts per hour over the last 24 hours: [3-9] in all">/);
    assert.match(body, /<td>Headscale<\/td><td><span class="outcome signed-in">signed-in<\/span>/);
    assert.match(body, /<code>tailscale:2915887766550002<\/code><\/td><td>tailscale<\/td><td>Grafana<\/td><td><span class="outcome refused">refused<\/span><br><span class="detail">not-allowed<\/span><\/td><td>[^<]*Grafana[^<]*<\/td>/);
    // tailscaled's display name for Bob is "<b>Bob</b> <script>alert(1)</script>": escaped everywhere.
    assert.doesNotMatch(body, /<script>alert|<b>Bob/);
    assert.match(body, /&#60;b&#62;Bob&#60;\/b&#62;/);

    // People: Bob and Alice, each with Sign out everywhere.
    formOf(page, BOB_SUB);
    formOf(page, ALICE_SUB);

    // Apps: the settings to paste, never a secret.
    assert.match(body, /client_id: headscale\n  client_secret: &#60;its secret, from guestlist&#39;s config&#62;/);
    for (const app of APPS) assert.ok(!body.includes(app.client_secret!), `${app.client_id}'s secret is in the page`);
    for (const cookie of ['_session', '_interaction', '_session.sig']) {
      const value = alice.cookie(cookie);
      if (value) assert.ok(!body.includes(value), `cookie ${cookie} is in the page`);
    }

    // Try it: what Grafana would receive for Alice; Friends App (Plex only) receives nothing for her.
    const tried = await open(alice, env, '/admin?try=grafana');
    assert.match(tried.body, /<th scope="row">sub<\/th><td><code>&#34;tailscale:9007199254740993&#34;<\/code>/);
    assert.match(tried.body, /<th scope="row">groups<\/th><td><code>\[&#34;admins&#34;\]<\/code>/);
    assert.match((await open(alice, env, '/admin?try=friends')).body, /You may not sign in to Friends App: it receives nothing for you/);

    // Filter by outcome; one that is not an outcome shows everything, and no injected markup.
    const refused = await open(alice, env, '/admin?outcome=refused');
    assert.doesNotMatch(refused.body, /<span class="outcome signed-in">/);
    assert.match(refused.body, /<span class="outcome refused">/);
    const odd = await open(alice, env, '/admin?outcome=%3Cscript%3E&try=%3Cimg%20src%3Dx%3E');
    assert.equal(odd.status, 200);
    assert.doesNotMatch(odd.body, /<script>|<img src=x>/);
  }));

  test('"why can\'t Dave sign in?": a Plex account the server is not shared with is named, with what it was told', withEnv({ plex: true }, async (env) => {
    const { done } = await signInWithPlex(env, 'dave');
    assert.equal(done.status, 403);
    const page = await open(await signedInAtHome(env, ALICE), env, '/admin?outcome=refused');
    // Dave's Plex name is "<img src=x onerror=alert(1)>Dave": his to set, so escaped.
    assert.match(page.body, /<td>&#60;img src=x onerror=alert\(1\)&#62;Dave<br><code>plex:55500012<\/code><\/td><td>plex<\/td><td>Friends App<\/td><td><span class="outcome refused">refused<\/span><br><span class="detail">not-allowed<\/span><\/td><td>You signed in to Plex as dave, but the Plex server this site is for is not shared with that account\./);
    assert.doesNotMatch(page.body, /<img src=x/);
  }));

  test('a Plex server\'s name appears once someone it is shared with has signed in', withEnv({ plex: true }, async (env) => {
    const { done } = await signInWithPlex(env, 'alice');
    assert.ok(done.redirectedTo);
    const page = await open(await signedInAtHome(env, ALICE), env);
    assert.match(page.body, /<th scope="row">Plex server [0-9a-f]+<\/th><td><span class="state ok">OK<\/span><\/td><td>&#34;[^<]+&#34;, as plex.tv listed it/);
  }));

  test('upstreams that are down are Not OK lines, not a broken page', withEnv({ jellyfin: true, plex: true, whoisTimeoutMs: 300, plexTimeoutMs: 300, jellyfinTimeoutMs: 300, admin: { allowed_groups: ['admins'], tailnet_only: false } }, async (env) => {
    // Signed in first; then everything fails (tailnet_only is off, so tailscaled is not needed to open it).
    const alice = await signedInAtHome(env, ALICE);
    env.tailscaled.fault = 'http-500';
    env.plex.faults.set('/api/v2/user', 'http-500');
    env.jellyfin.quickConnectEnabled = false;
    const page = await open(alice, env);
    assert.equal(page.status, 200);
    assert.match(page.body, /<th scope="row">Tailscale<\/th><td><span class="state bad">Not OK<\/span><\/td><td>tailscaled answered status with HTTP 500/);
    assert.match(page.body, /<th scope="row">Plex<\/th><td><span class="state bad">Not OK<\/span><\/td><td>http:\/\/127.0.0.1:\d+ answered HTTP 500/);
    assert.match(page.body, /<th scope="row">Jellyfin<\/th><td><span class="state bad">Not OK<\/span><\/td><td>[^<]*Quick Connect is off/);
    await env.jellyfin.stop();
    assert.match((await open(alice, env)).body, /<th scope="row">Jellyfin<\/th><td><span class="state bad">Not OK<\/span>/);
  }));

  test('with tailnet_only, an admin signed in elsewhere (Plex) is refused; without it, let in', async () => {
    for (const tailnetOnly of [true, false]) {
      const env = await startTestEnv({ clients: APPS, plex: true, admin: { allowed_groups: ['plex-owner'], tailnet_only: tailnetOnly } });
      try {
        const browser = new Browser(env, null);
        const { done } = await signInWithPlex(env, 'owner', FRIENDS, browser);
        assert.ok(done.redirectedTo);
        const page = await open(browser, env);
        assert.equal(page.status, tailnetOnly ? 403 : 200, `tailnet_only ${tailnetOnly}`);
        if (tailnetOnly) {
          assert.match(page.body, /opens only from your own device on the tailnet/);
          assert.doesNotMatch(page.body, NOTHING_OF_THE_CONSOLE);
        }
      } finally {
        await env.close();
      }
    }
  });

  test('an admin\'s stolen cookies are worth nothing from another device, tailnet or not', withEnv({}, async (env) => {
    const alice = await signedInAtHome(env, ALICE);
    assert.equal((await open(alice, env)).status, 200);
    for (const device of [BOB_GITHUB, null]) {
      const thief = new Browser(env, device).stealCookiesOf(alice);
      const page = await open(thief, env);
      assert.equal(page.status, 403, `from ${device?.hostname ?? 'outside the tailnet'}`);
      assert.doesNotMatch(page.body, NOTHING_OF_THE_CONSOLE);
    }
  }));

  test('Sign out everywhere: the person\'s tokens stop at once (userinfo 401), their home page signs them in again, and the log says who did it', withEnv({}, async (env) => {
    const bobBrowser = await signedInAtHome(env, BOB_GITHUB);
    const { tokens } = await login(env, { device: BOB_GITHUB, browser: bobBrowser });
    assert.ok(tokens);
    assert.equal(await userinfo(env, tokens.access_token), 200);

    const alice = await signedInAtHome(env, ALICE);
    const page = await open(alice, env);
    const done = await signOut(alice, formOf(page, BOB_SUB));
    assert.deepEqual(done.visited.map((u) => new URL(u).pathname), ['/admin/sign-out', '/admin']);
    assert.match(done.body, /Done: everything that person was given has ended/);
    assert.doesNotMatch(done.body, new RegExp(`name="sub" value="${BOB_SUB}"`));

    assert.equal(await userinfo(env, tokens.access_token), 401);
    assert.match((await bobBrowser.walk(`${env.issuer}/`)).body, /Sign in to see the ones that are yours/);
    assert.ok(env.logs.some((l) => l.msg === 'login' && l.outcome === 'revoked' && l.sub === BOB_SUB && l.by === ALICE_SUB && l.reason === 'signed-out-by-operator'));
    // On the tailnet, Bob is signed in again with a click, as before.
    assert.match((await bobBrowser.walk(`${env.issuer}/sign-in`)).body, /Signed in as/);
  }));

  test('the sign-out form is refused without its token, with another session\'s, from another origin, or as anything but a form', withEnv({}, async (env) => {
    const { tokens } = await login(env, { device: BOB_GITHUB });
    const alice = await signedInAtHome(env, ALICE);
    const aliceAgain = await signedInAtHome(env, ALICE); // Alice's other browser: another session
    const theirs = formOf(await open(aliceAgain, env), BOB_SUB);
    const mine = formOf(await open(alice, env), BOB_SUB);
    const attempts: [string, Promise<BrowserResult>][] = [
      ['no token', signOut(alice, { sub: BOB_SUB })],
      ['a wrong token', signOut(alice, { sub: BOB_SUB, csrf: `${mine.csrf.slice(0, -2)}AA` })],
      ['another session\'s token', signOut(alice, theirs)],
      ['another origin', signOut(alice, mine, { origin: 'https://evil.example' })],
      ['another site, as the browser says', signOut(alice, mine, { origin: 'null', 'sec-fetch-site': 'cross-site' })],
      ['JSON', alice.post('/admin/sign-out', JSON.stringify(mine), 'application/json')],
      ['a GET', alice.walk(`${env.issuer}/admin/sign-out?${new URLSearchParams(mine)}`)],
    ];
    for (const [what, attempt] of attempts) {
      const res = await attempt;
      assert.ok(res.status === 403 || res.status === 405, `${what}: HTTP ${res.status}`);
    }
    assert.equal(await userinfo(env, tokens!.access_token), 200);
    // A body far over what a form needs is not read to its end.
    const big = await signOut(alice, { ...mine, pad: 'x'.repeat(20_000) });
    assert.equal(big.status, 403);
    assert.equal(await userinfo(env, tokens!.access_token), 200);
  }));

  test('/admin by other spellings: no console, and rate limited like the sign-in pages', withEnv({ rate_limits: { interaction: 4 } }, async (env) => {
    const alice = await signedInAtHome(env, ALICE);
    assert.equal((await open(alice, env, '/admin/')).visited.map((u) => new URL(u).pathname).join(), '/admin/,/admin');
    for (const path of ['/ADMIN', '/%61dmin', '/admin/nothing']) {
      const res = await alice.get(new URL(`${env.issuer}${path}`));
      assert.equal(res.status, 404, path);
      assert.doesNotMatch(res.body, NOTHING_OF_THE_CONSOLE);
    }
    // Four in the window were used above: /admin/ and /admin, and /ADMIN and /admin/nothing, which
    // count though nothing answers them (the encoded spelling reaches no route at all).
    const limited = await alice.get(new URL(`${env.issuer}/admin`));
    assert.equal(limited.status, 429);
    assert.ok(Number(limited.headers['retry-after']) > 0);
  }));
});

describe('the operator console on shared storage', { skip: redisMissing() }, () => {
  const redis = redisDuringTests();

  test('every instance shows the same sign-ins and people; someone taken out of the group loses it at the next request', async () => {
    const env = await startOnRedis(redis.url, { clients: APPS, admin: { allowed_groups: ['admins'] } });
    try {
      await login(env, { device: BOB_GITHUB });
      const alice = await signedInAtHome(env, ALICE);
      // Each request goes to the next instance in turn: both show Bob's sign-in and him signed in.
      for (let i = 0; i < 2; i++) {
        const page = await open(alice, env);
        assert.equal(page.status, 200);
        assert.match(page.body, /<td>Headscale<\/td><td><span class="outcome signed-in">/);
        formOf(page, BOB_SUB);
      }
      // Alice is taken out of admins and guestlist restarted; her session is kept in Redis.
      env.config.groups.admins = ['someone-else@example.com'];
      await env.restart();
      const page = await open(alice, env);
      assert.equal(page.status, 403);
      assert.match((await alice.walk(`${env.issuer}/`)).body, /Signed in as/);
    } finally {
      await env.close();
    }
  });
});
