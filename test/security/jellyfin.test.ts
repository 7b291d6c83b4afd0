import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { JELLYFIN_USERS, type FakeJellyfin } from '../fakes/jellyfin.ts';
import { Browser, startTestEnv, type TestEnv } from '../helpers.ts';
import { finishJellyfin, getCode, MEDIA, openJellyfinPage, redeem, waitFor, type JellyfinPage } from '../jellyfin-flow.ts';

// What an outsider can try against the Jellyfin sign-in. The Quick Connect secret is the key to
// a person's sign-in, so it must stay on the server; a code authorized in Jellyfin may finish the
// one sign-in it was made for, once; and one network cannot make guestlist fill Jellyfin (or
// guestlist's own memory) with requests.

/** A browser behind the deployment's proxy, which reports its address in Fly-Client-IP. */
const from = (env: TestEnv, ip: string) => new Browser(env, null, { 'fly-client-ip': ip });

const FORM = 'application/x-www-form-urlencoded';
const loginLines = (env: TestEnv, since: number) => env.logs.slice(since).filter((l) => l.msg === 'login');
const signedIn = (env: TestEnv, since: number) => loginLines(env, since).filter((l) => l.outcome === 'signed-in');
const callsTo = (fake: FakeJellyfin, path: string, since = 0) => fake.calls.slice(since).filter((c) => c.path === path);

/** One POST exactly as sent, its redirect not followed (as two racing requests from one page are). */
function postOnly(p: JellyfinPage, env: TestEnv, url: string) {
  return p.browser.get(new URL(url, env.issuer), { 'content-type': FORM, origin: new URL(env.issuer).origin }, 'POST', '');
}

async function codeFor(p: JellyfinPage): Promise<string> {
  const got = await getCode(p);
  assert.equal(got.status, 200, JSON.stringify(got.body));
  return got.body.code!;
}

describe('the Jellyfin sign-in against an outsider', () => {
  let env: TestEnv;
  let fake: FakeJellyfin;
  let ip = 0;
  /** Each sign-in from a network of its own, so the per-network cap is not what these tests meet. */
  const page = () => openJellyfinPage(env, MEDIA, from(env, `2001:db8:5ec:${(++ip).toString(16)}::1`));
  before(async () => {
    env = await startTestEnv({ jellyfin: true, clients: [MEDIA], client_ip_header: 'Fly-Client-IP' });
    fake = env.jellyfin;
  });
  after(() => env.close());

  test('the Quick Connect secret and Jellyfin\'s access token never reach the browser', async () => {
    const p = await page();
    const seen: { status: number; headers: IncomingHttpHeaders; body: string }[] = [];
    const get = p.browser.get.bind(p.browser);
    p.browser.get = async (...args) => {
      const res = await get(...args);
      seen.push(res);
      return res;
    };
    const reloaded = await p.browser.walk(new URL(p.page.visited.at(-1)!));
    assert.equal(reloaded.status, 200);
    // A first code left to expire, the wait that says so, and the new code the page then asks for.
    const stale = await codeFor(p);
    const staleSecret = fake.requests.get(stale)!.secret;
    fake.expire(stale);
    assert.equal((await waitFor(p)).body.state, 'expired');
    const code = await codeFor(p);
    assert.notEqual(code, stale);
    const secrets = [staleSecret, fake.requests.get(code)!.secret];
    fake.authorize(code, 'alice');
    assert.equal((await waitFor(p)).body.state, 'authorized');
    const done = await finishJellyfin(p);
    assert.ok(done.redirectedTo?.searchParams.get('code'), `HTTP ${done.status}: ${done.body.slice(0, 300)}`);
    assert.ok(seen.length >= 7, `only ${seen.length} responses seen`);
    const token = callsTo(fake, '/Sessions/Logout').at(-1)!.authorization!.Token!;
    assert.ok(token);
    for (const res of seen) {
      const text = `${JSON.stringify(res.headers)}\n${res.body}`.toLowerCase();
      for (const secret of secrets) assert.ok(!text.includes(secret.toLowerCase()), `a Quick Connect secret in a response: ${text.slice(0, 300)}`);
      assert.ok(!text.includes(token.toLowerCase()), 'the Jellyfin access token in a response');
    }
  });

  test('a sign-in that went through is not signed in again by a second finish, nor by a replay from elsewhere', async () => {
    const p = await page();
    const code = await codeFor(p);
    fake.authorize(code, 'alice');
    const logged = env.logs.length;
    const first = await postOnly(p, env, p.finishUrl);
    assert.equal(first.status, 303);
    const calls = fake.calls.length;

    // A replay of the POST by someone who saw the URL, without the browser's cookies, while the
    // sign-in is still on its way back to the app.
    const replay = await from(env, '203.0.113.77').post(p.finishUrl, '', FORM);
    assert.equal(replay.redirectedTo, undefined);
    assert.equal(replay.status, 400);
    assert.match(replay.body, /This sign-in has expired/);

    const done = await p.browser.walk(new URL(first.headers.location!, env.issuer));
    assert.ok(done.redirectedTo?.searchParams.get('code'));
    await redeem(p, done.redirectedTo!);
    // The same browser, the same form, again (the back button, a resubmitted form): the sign-in
    // itself is over, and all there is is a page that leads back to the app.
    const again = await finishJellyfin(p);
    assert.equal(again.redirectedTo, undefined, `a second code: ${again.redirectedTo}`);
    assert.equal(again.status, 400);
    assert.match(again.body, /This sign-in has expired/);

    assert.equal(signedIn(env, logged).length, 1);
    assert.deepEqual(callsTo(fake, '/Users/AuthenticateWithQuickConnect', calls), []);
    // Jellyfin would still exchange that secret (it does not consume it): it is guestlist that says no.
    const secret = fake.requests.get(code)!.secret;
    const direct = await fetch(`${fake.url}/Users/AuthenticateWithQuickConnect`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ Secret: secret }),
    });
    assert.equal(direct.status, 200);
  });

  test('two finishes at once (a double click) exchange the secret once, log one login, and lead to the same place', async () => {
    const p = await page();
    fake.authorize(await codeFor(p), 'bob');
    const calls = fake.calls.length;
    const logged = env.logs.length;
    const answers = await Promise.all([1, 2].map(() => postOnly(p, env, p.finishUrl)));
    assert.deepEqual(answers.map((a) => a.status), [303, 303]);
    assert.equal(answers[0]!.headers.location, answers[1]!.headers.location);
    assert.equal(callsTo(fake, '/Users/AuthenticateWithQuickConnect', calls).length, 1);
    assert.equal(signedIn(env, logged).length, 1);
    const done = await p.browser.walk(new URL(answers[1]!.headers.location!, env.issuer));
    assert.ok(done.redirectedTo);
    assert.equal((await redeem(p, done.redirectedTo)).claims()!.sub, `jellyfin:${JELLYFIN_USERS.bob!.id}`);
  });

  test('a wait racing a finish says authorized, and the finish the page then sends follows the first', async () => {
    const p = await page();
    fake.authorize(await codeFor(p), 'bob');
    const calls = fake.calls.length;
    const logged = env.logs.length;
    const [waited, finished] = await Promise.all([waitFor(p), postOnly(p, env, p.finishUrl)]);
    assert.equal(waited.status, 200);
    assert.equal(waited.body.state, 'authorized');
    assert.equal(finished.status, 303);
    // What static/jellyfin.js does on "authorized": submit the finish form.
    const second = await postOnly(p, env, p.finishUrl);
    assert.equal(second.status, 303);
    assert.equal(second.headers.location, finished.headers.location);
    assert.equal(callsTo(fake, '/Users/AuthenticateWithQuickConnect', calls).length, 1);
    assert.equal(signedIn(env, logged).length, 1);
  });

  test('a code authorized for one sign-in cannot finish another', async () => {
    const a = await page();
    const b = await page();
    const codeA = await codeFor(a);
    const codeB = await codeFor(b);
    assert.notEqual(codeA, codeB);
    const secretA = fake.requests.get(codeA)!.secret;
    const secretB = fake.requests.get(codeB)!.secret;
    fake.authorize(codeA, 'alice');
    const logged = env.logs.length;
    const calls = fake.calls.length;

    // B's finish asks Jellyfin about B's request only, and is told to wait.
    const finishB = await finishJellyfin(b);
    assert.equal(finishB.redirectedTo, undefined);
    assert.equal(finishB.status, 200);
    assert.match(finishB.body, /has not confirmed the code yet/);
    // B's wait keeps asking about B's request, until that one expires; never "authorized".
    const waiting = waitFor(b);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    fake.expire(codeB);
    const waitedB = await waiting;
    assert.equal(waitedB.body.state, 'expired');
    const asked = fake.calls.slice(calls).filter((c) => c.path === '/QuickConnect/Connect' || c.path === '/Users/AuthenticateWithQuickConnect');
    assert.ok(asked.filter((c) => c.path === '/QuickConnect/Connect' && c.query.includes(`secret=${secretB}`)).length >= 2, 'the wait did not keep asking about B\'s request');
    for (const c of asked) assert.ok(!`${c.query} ${c.body ?? ''}`.includes(secretA), `sign-in B asked Jellyfin with A's secret: ${c.path}`);
    assert.equal(loginLines(env, logged).filter((l) => l.outcome === 'signed-in').length, 0);

    // A, whose code it is, still signs in.
    const doneA = await finishJellyfin(a);
    assert.equal((await redeem(a, doneA.redirectedTo!)).claims()!.sub, `jellyfin:${JELLYFIN_USERS.alice!.id}`);
  });

  test('one sign-in\'s step URLs with another browser\'s cookies, or none, get nothing', async () => {
    const a = await page();
    const b = await page();
    const codeA = await codeFor(a);
    fake.authorize(codeA, 'alice');
    const calls = fake.calls.length;
    const logged = env.logs.length;
    const stranger = from(env, '203.0.113.78');
    for (const browser of [b.browser, stranger]) {
      for (const url of [a.codeUrl, a.waitUrl]) {
        const res = await browser.post(url, '', 'application/json', { accept: 'application/json' });
        assert.equal(res.status, 400, `${url}: HTTP ${res.status} ${res.body.slice(0, 200)}`);
        const body = JSON.parse(res.body) as { code?: string; state?: string; error?: string };
        assert.equal(body.code, undefined);
        assert.equal(body.state, undefined);
        assert.match(body.error!, /expired/);
      }
      const finish = await browser.post(a.finishUrl, '', FORM);
      assert.equal(finish.redirectedTo, undefined);
      assert.equal(finish.status, 400);
      assert.match(finish.body, /expired/);
    }
    assert.deepEqual(fake.calls.slice(calls), []);
    assert.deepEqual(loginLines(env, logged), []);
    // B's own sign-in was not touched: it had no code, and now gets one of its own.
    const codeB = await codeFor(b);
    assert.notEqual(codeB, codeA);
    assert.equal(callsTo(fake, '/QuickConnect/Initiate', calls).length, 1);
    // And A, the rightful owner, finishes.
    assert.ok((await finishJellyfin(a)).redirectedTo?.searchParams.get('code'));
  });

  test('an administrator authorizing a code for a disabled account does not get that account in', async () => {
    const p = await page();
    const code = await codeFor(p);
    // The administrator, signed in to Jellyfin, uses Quick Connect's Authorize on dora's behalf.
    const adminToken = 'a'.repeat(32);
    fake.tokens.set(adminToken, { userId: JELLYFIN_USERS.admin!.id, deviceId: 'admin-browser' });
    const authorized = await fetch(`${fake.url}/QuickConnect/Authorize?code=${code}&userId=${JELLYFIN_USERS.dora!.id}`, {
      method: 'POST', headers: { Authorization: `MediaBrowser Client="Jellyfin Web", Device="Firefox", DeviceId="admin-browser", Version="10.11.0", Token="${adminToken}"` },
    });
    assert.equal(authorized.status, 200);
    assert.equal((await waitFor(p)).body.state, 'authorized');
    const logged = env.logs.length;
    const done = await finishJellyfin(p);
    assert.equal(done.redirectedTo, undefined);
    assert.equal(done.status, 403);
    assert.match(done.body, /not on the guest list/);
    const lines = loginLines(env, logged);
    assert.deepEqual(lines.map((l) => [l.outcome, l.reason, l.source]), [['refused', 'not-allowed', 'jellyfin']]);
    // Pressing finish again does not turn the refusal into a login.
    const again = await finishJellyfin(p);
    assert.equal(again.redirectedTo, undefined);
    assert.deepEqual(signedIn(env, logged), []);
  });

  test('the page and the step answers carry a CSP that runs only guestlist\'s own script and talks only to guestlist', async () => {
    const p = await page();
    const code = await getCode(p);
    for (const [what, headers] of [['page', p.page.headers], ['code answer', code.headers]] as const) {
      const csp = String(headers['content-security-policy']);
      const directives = new Map(csp.split(';').map((d) => d.trim().split(/\s+/)).map(([name, ...values]) => [name!, values]));
      assert.deepEqual(directives.get('script-src'), ["'self'"], `${what}: ${csp}`);
      // The browser never talks to Jellyfin: nothing is added for it.
      assert.deepEqual(directives.get('connect-src'), ["'self'"], `${what}: ${csp}`);
      assert.deepEqual(directives.get('default-src'), ["'none'"], `${what}: ${csp}`);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
      assert.ok(!csp.includes(fake.url), `${what}: ${csp}`);
    }
    assert.doesNotMatch(p.page.body, /<script>|<script [^>]*>[^<]/, 'an inline script on the page');
    assert.match(String(code.headers['content-type']), /^application\/json/);
    assert.equal(code.headers['cache-control'], 'no-store');
  });
});

describe('the Jellyfin sign-in against a flood', () => {
  test('one network gets 20 codes at a time; the 21st is a 429 before Jellyfin is asked, and another network is not held back', async () => {
    // The per-network cap on live Quick Connect requests is not a rate limit: it applies with the shipped limits as they are.
    const env = await startTestEnv({ jellyfin: true, clients: [MEDIA], client_ip_header: 'Fly-Client-IP', rate_limits: { authorize: 60, interaction: 60, token: 300, pending: 50 } });
    try {
      const initiates = () => callsTo(env.jellyfin, '/QuickConnect/Initiate').length;
      const statuses: number[] = [];
      let last;
      for (let i = 0; i < 21; i++) {
        const p = await openJellyfinPage(env, MEDIA, from(env, '203.0.113.90'));
        assert.equal(p.page.status, 200, `sign-in ${i + 1}: HTTP ${p.page.status}`);
        last = await getCode(p);
        statuses.push(last.status);
      }
      assert.deepEqual(statuses, [...Array(20).fill(200), 429]);
      assert.match(String(last!.headers['retry-after']), /^[1-9]\d*$/);
      assert.match(last!.body.error!, /Too many Jellyfin sign-ins/);
      assert.equal(last!.body.code, undefined);
      assert.equal(initiates(), 20);
      const refused = env.logs.filter((l) => l.msg === 'login' && l.outcome === 'refused' && l.source === 'jellyfin');
      assert.equal(refused.length, 1);
      assert.match(String(refused[0]!.detail), /for this network/);
      // Someone on another network still gets a code.
      const other = await openJellyfinPage(env, MEDIA, from(env, '198.51.100.200'));
      const got = await getCode(other);
      assert.equal(got.status, 200);
      assert.match(got.body.code!, /^\d{6}$/);
      assert.equal(initiates(), 21);
    } finally {
      await env.close();
    }
  });

  test('a subscriber spreading over the /64s of its /56 gets twice a network\'s codes, and Jellyfin is asked no more', async () => {
    const env = await startTestEnv({ jellyfin: true, clients: [MEDIA], client_ip_header: 'Fly-Client-IP', rate_limits: { authorize: 60, interaction: 60, token: 300, pending: 50 } });
    try {
      const statuses = new Map<number, number>();
      // 60 /64s of one /56, one code each.
      for (let i = 0; i < 60; i++) {
        const p = await openJellyfinPage(env, MEDIA, from(env, `2001:db8:5:3${i.toString(16).padStart(2, '0')}::1`));
        assert.equal(p.page.status, 200, `sign-in ${i + 1}: HTTP ${p.page.status}`);
        const got = await getCode(p);
        statuses.set(got.status, (statuses.get(got.status) ?? 0) + 1);
      }
      assert.deepEqual([...statuses], [[200, 40], [429, 20]]);
      assert.equal(callsTo(env.jellyfin, '/QuickConnect/Initiate').length, 40);
    } finally {
      await env.close();
    }
  });

  test('past the interaction rate limit, the code and wait steps answer 429 and Jellyfin is not asked', async () => {
    const env = await startTestEnv({ jellyfin: true, clients: [MEDIA], client_ip_header: 'Fly-Client-IP', rate_limits: { interaction: 3 } });
    try {
      const p = await openJellyfinPage(env, MEDIA, from(env, '203.0.113.91')); // 1
      const code = await getCode(p); // 2
      assert.equal(code.status, 200);
      env.jellyfin.authorize(code.body.code!, 'alice');
      assert.equal((await waitFor(p)).body.state, 'authorized'); // 3
      const calls = env.jellyfin.calls.length;
      for (const step of [getCode, waitFor]) {
        const res = await step(p);
        assert.equal(res.status, 429);
        assert.match(String(res.headers['retry-after']), /^[1-9]\d*$/);
      }
      assert.equal((await finishJellyfin(p)).status, 429);
      assert.equal(env.jellyfin.calls.length, calls);
      // Another network is not held back.
      const other = await openJellyfinPage(env, MEDIA, from(env, '198.51.100.201'));
      assert.equal((await getCode(other)).status, 200);
    } finally {
      await env.close();
    }
  });
});

describe('a Jellyfin name that is markup', () => {
  const HOSTILE = { id: 'bad0c0debad0c0debad0c0debad0c0de', name: '<img src=x onerror=alert(1)>"\'&', isAdministrator: false, isDisabled: false };
  let env: TestEnv;
  before(async () => {
    // An administrator may name an account anything; JELLYFIN_USERS is the fake's live user list.
    JELLYFIN_USERS.hostile = HOSTILE;
    env = await startTestEnv({ jellyfin: { allowed_users: [JELLYFIN_USERS.alice!.id] }, clients: [MEDIA] });
  });
  after(async () => {
    delete JELLYFIN_USERS.hostile;
    await env.close();
  });

  for (const [username, raw, escaped] of [
    ['hostile', '<img src=x', '&#60;img src=x onerror=alert(1)&#62;&#34;&#39;&#38;'],
    ['obrien', "O'Brien", 'Seán O&#39;Brien'],
  ] as const) {
    test(`is shown as text on the refusal page that names it (${username})`, async () => {
      const p = await openJellyfinPage(env, MEDIA);
      env.jellyfin.authorize(await codeFor(p), username);
      const done = await finishJellyfin(p);
      assert.equal(done.status, 403);
      assert.match(done.body, /not on the guest list/);
      assert.ok(done.body.includes(`You signed in to Jellyfin as ${escaped}`), done.body);
      assert.ok(!done.body.includes(raw), `the raw name is on the page: ${raw}`);
    });
  }
});
