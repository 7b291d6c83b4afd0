import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ClientConfig } from '../src/config/config.ts';
import { SERVER_ID, type FakePlex } from './fakes/plex.ts';
import { ALICE } from './fakes/tailscaled.ts';
import { Browser, HEADSCALE, startTestEnv, type TestEnv } from './helpers.ts';
import { bindPin, createPin, FRIENDS, openPlexPage as openPage, redeem, type PlexPage } from './plex-flow.ts';

// The Plex sign-in as the page's script drives it, step by step over HTTP (test/plex-flow.ts),
// and the server's own check. The same flow in a real browser is in plex-browser.test.ts.

const TAILNET_ONLY: ClientConfig = { ...HEADSCALE, client_id: 'tailnet-only', name: 'Tailnet App', redirect_uris: ['https://ts.example.test/callback'], sources: ['tailscale'] };
const BOTH: ClientConfig = { ...HEADSCALE, client_id: 'both', name: 'Both App', redirect_uris: ['https://both.example.test/callback'] };

const openPlexPage = (env: TestEnv, c: ClientConfig = FRIENDS, browser?: Browser) => openPage(env, c, browser);

async function createAndBindPin(env: TestEnv, p: PlexPage) {
  const pin = await createPin(env, p);
  return { pin, bind: await bindPin(p, pin) };
}

describe('Plex sign-in', () => {
  let env: TestEnv;
  let plex: FakePlex;
  before(async () => {
    env = await startTestEnv({ plex: true, clients: [FRIENDS, BOTH, TAILNET_ONLY], groups: { family: ['alice@example.com'] }, plexTimeoutMs: 1000 });
    plex = env.plex;
  });
  after(() => env.close());

  test('the page names the app and offers Plex, with what the script needs and nothing secret', async () => {
    const p = await openPlexPage(env);
    assert.equal(p.page.status, 200);
    assert.match(p.page.body, /Sign in to Friends App/);
    assert.match(p.page.body, /id="plex-sign-in"/);
    assert.equal(p.data.api, plex.url);
    assert.equal(p.data.app, `${plex.url}/auth`);
    assert.match(p.data.return!, new RegExp(`^${env.issuer}/interaction/[^/]+/plex/return$`));
    // The page may talk to plex.tv, and only to it.
    assert.match(String(p.page.headers['content-security-policy']), new RegExp(`connect-src 'self' ${plex.url};`));
  });

  test('a friend with the server shared signs in; the server checked the PIN, account and share itself', async () => {
    const p = await openPlexPage(env);
    const { pin, bind } = await createAndBindPin(env, p);
    assert.equal(bind.status, 204);
    plex.approve(pin.code, 'alice');
    const before = plex.calls.length;
    const done = await p.browser.post(p.finishUrl, '', 'application/x-www-form-urlencoded');
    assert.ok(done.redirectedTo, `HTTP ${done.status}: ${done.body.slice(0, 300)}`);
    const serverCalls = plex.calls.slice(before).filter((c) => !c.fromBrowser).map((c) => c.path);
    assert.deepEqual(serverCalls, [`/api/v2/pins/${pin.id}`, '/api/v2/user', '/api/v2/resources']);

    const tokens = await redeem(p, done.redirectedTo);
    const claims = tokens.claims()!;
    assert.equal(claims.sub, 'plex:13692262');
    assert.equal(claims.preferred_username, 'alice');
    assert.equal(claims.name, 'Alice Liddell');
    assert.equal(claims.email, 'alice@example.com');
    assert.equal(claims.email_verified, true);
    assert.equal(claims.picture, 'https://plex.tv/users/dae343c1f45beb4f/avatar?c=1720981098');
    assert.deepEqual(claims.groups, ['family', 'plex', `plex:${SERVER_ID}`, 'plex-friend']);
    // The Plex token was used and dropped: it is nowhere in the logs.
    const plexToken = plex.calls.find((c) => c.token)!.token!;
    assert.ok(!JSON.stringify(env.logs).includes(plexToken));
  });

  test('the owner of the server always gets in', async () => {
    const p = await openPlexPage(env);
    const { pin } = await createAndBindPin(env, p);
    plex.approve(pin.code, 'owner');
    const done = await p.browser.post(p.finishUrl, '', 'application/x-www-form-urlencoded');
    const claims = (await redeem(p, done.redirectedTo!)).claims()!;
    assert.equal(claims.sub, 'plex:2639453');
    assert.ok((claims.groups as string[]).includes('plex-owner'));
  });

  test('someone without the share is refused with a 403 page, their name shown as text', async () => {
    const p = await openPlexPage(env);
    const { pin } = await createAndBindPin(env, p);
    plex.approve(pin.code, 'dave');
    const done = await p.browser.post(p.finishUrl, '', 'application/x-www-form-urlencoded');
    assert.equal(done.redirectedTo, undefined);
    assert.equal(done.status, 403);
    assert.match(done.body, /not on the guest list/);
    assert.match(done.body, /not shared with that account/);
    assert.doesNotMatch(done.body, /<img src=x/);
  });

  test('an expired PIN gives the Plex page again with a notice, not a login', async () => {
    const p = await openPlexPage(env);
    const { pin } = await createAndBindPin(env, p);
    plex.approve(pin.code, 'alice');
    plex.expire(pin.id);
    const done = await p.browser.post(p.finishUrl, '', 'application/x-www-form-urlencoded');
    assert.equal(done.redirectedTo, undefined);
    assert.equal(done.status, 400);
    assert.match(done.body, /expired before it was finished/);
    assert.match(done.body, /id="plex-sign-in"/);
  });

  test('finishing before Plex approved changes nothing, whatever the browser posts', async () => {
    const p = await openPlexPage(env);
    await createAndBindPin(env, p);
    const forged = new URLSearchParams({ authToken: 'forged-token', id: '2639453', allowed: 'true', username: 'ownerusername' }).toString();
    const done = await p.browser.post(p.finishUrl, forged, 'application/x-www-form-urlencoded');
    assert.equal(done.redirectedTo, undefined);
    assert.equal(done.status, 200);
    assert.match(done.body, /has not confirmed the sign-in yet/);
    assert.ok(!plex.calls.some((c) => c.token === 'forged-token'));
  });

  test('a PIN approved by someone else cannot be slipped into a login', async () => {
    const attackerPin = plex.approvedPinFor('alice', (await openPlexPage(env)).data['client-id']!);
    const victim = await openPlexPage(env);
    const bind = await victim.browser.post(victim.data.bind!, JSON.stringify({ id: attackerPin.id, code: attackerPin.code }), 'application/json');
    assert.equal(bind.status, 409);
    assert.match(bind.body, /already approved/);
    const done = await victim.browser.post(victim.finishUrl, '', 'application/x-www-form-urlencoded');
    assert.equal(done.redirectedTo, undefined);
  });

  test('a PIN already bound to one login cannot be bound to another', async () => {
    const first = await openPlexPage(env);
    const { pin } = await createAndBindPin(env, first);
    const second = await openPlexPage(env);
    const bind = await second.browser.post(second.data.bind!, JSON.stringify({ id: pin.id, code: pin.code }), 'application/json');
    assert.equal(bind.status, 409);
    assert.match(bind.body, /already used/);
  });

  test('without a popup, Plex forwards the same tab back and the login completes', async () => {
    const p = await openPlexPage(env);
    const { pin } = await createAndBindPin(env, p);
    plex.approve(pin.code, 'alice');
    const back = await p.browser.walk(p.data.return!);
    assert.ok(back.redirectedTo?.searchParams.get('code'), back.body.slice(0, 300));
    assert.equal((await redeem(p, back.redirectedTo!)).claims()!.sub, 'plex:13692262');
  });

  test('coming back from Plex without approving shows the page again', async () => {
    const p = await openPlexPage(env);
    await createAndBindPin(env, p);
    const back = await p.browser.walk(p.data.return!);
    assert.equal(back.status, 200);
    assert.match(back.body, /cancelled or has not finished/);
  });

  for (const fault of ['http-500', 'http-429', 'hang', 'garbage'] as const) {
    test(`plex.tv answering ${fault} fails closed with a 503 page that is not "not on the guest list"`, async () => {
      const p = await openPlexPage(env);
      const { pin } = await createAndBindPin(env, p);
      plex.approve(pin.code, 'alice');
      plex.faults.set('/api/v2/user', fault);
      try {
        const done = await p.browser.post(p.finishUrl, '', 'application/x-www-form-urlencoded');
        assert.equal(done.redirectedTo, undefined);
        assert.equal(done.status, 503);
        assert.match(done.body, /Plex is not answering/);
        assert.doesNotMatch(done.body, /guest list/);
      } finally {
        plex.faults.clear();
      }
    });
  }

  test('after plex.tv failed at the finish, the sign-in page is back with a notice naming Plex, and a new PIN finishes the same sign-in', async () => {
    const p = await openPlexPage(env);
    const first = await createAndBindPin(env, p);
    plex.approve(first.pin.code, 'alice');
    plex.faults.set('/api/v2/resources', 'http-500');
    let failed;
    try {
      failed = await p.browser.post(p.finishUrl, '', 'application/x-www-form-urlencoded');
    } finally {
      plex.faults.clear();
    }
    assert.equal(failed.status, 503);
    assert.match(failed.body, /Plex is not answering/);
    // The sign-in page itself, with its Plex panel, not a dead end with only a way back.
    assert.match(failed.body, /data-bind=/);
    assert.equal(failed.redirectedTo, undefined);
    // Plex answers again: the person presses the button once more, on this same sign-in.
    const second = await createAndBindPin(env, p);
    assert.equal(second.bind.status, 204);
    plex.approve(second.pin.code, 'alice');
    const done = await p.browser.post(p.finishUrl, '', 'application/x-www-form-urlencoded');
    assert.ok(done.redirectedTo?.searchParams.get('code'), `HTTP ${done.status}: ${done.body.slice(0, 300)}`);
    const tokens = await redeem(p, done.redirectedTo!);
    assert.match(String(tokens.claims()?.sub), /^plex:/);
  });

  // Plex's docs: 401 means the token is invalid; only other statuses mean Plex is in trouble.
  for (const path of ['/api/v2/user', '/api/v2/resources']) {
    test(`plex.tv refusing the person's token (401 at ${path}) is a 403 refusal, not "Plex is not answering"`, async () => {
      const p = await openPlexPage(env);
      const { pin } = await createAndBindPin(env, p);
      plex.approve(pin.code, 'alice');
      plex.faults.set(path, 'http-401');
      const logged = env.logs.length;
      try {
        const done = await p.browser.post(p.finishUrl, '', 'application/x-www-form-urlencoded');
        assert.equal(done.redirectedTo, undefined);
        assert.equal(done.status, 403);
        assert.match(done.body, /Plex did not confirm your sign-in/);
        assert.doesNotMatch(done.body, /Plex is not answering|guest list|HTTP 401/);
        const entry = env.logs.slice(logged).find((l) => l.msg === 'login');
        assert.equal(entry?.outcome, 'refused');
        assert.equal(entry?.reason, 'not-verified');
        assert.equal(entry?.source, 'plex');
        assert.match(String(entry?.detail), new RegExp(`${path}.*HTTP 401`));
      } finally {
        plex.faults.clear();
      }
    });
  }

  test('plex.tv down while binding the PIN is reported to the page, not a crash', async () => {
    const p = await openPlexPage(env);
    const res = await fetch(`${plex.url}/api/v2/pins?strong=true&X-Plex-Client-Identifier=${p.data['client-id']}`, { method: 'POST', headers: { Accept: 'application/json' } });
    const pin = await res.json() as { id: number; code: string };
    plex.faults.set('/api/v2/pins', 'http-500');
    try {
      const bind = await p.browser.post(p.data.bind!, JSON.stringify({ id: pin.id, code: pin.code }), 'application/json');
      assert.equal(bind.status, 503);
      assert.match(JSON.parse(bind.body).error, /could not check your Plex account/);
    } finally {
      plex.faults.clear();
    }
  });

  test('a Plex session does not carry anyone into an app that accepts only Tailscale', async () => {
    const p = await openPlexPage(env, FRIENDS, new Browser(env, null));
    const { pin } = await createAndBindPin(env, p);
    plex.approve(pin.code, 'alice');
    assert.ok((await p.browser.post(p.finishUrl, '', 'application/x-www-form-urlencoded')).redirectedTo);
    // Same browser, same guestlist session, an app that takes only tailnet devices.
    const ts = await openPlexPage(env, TAILNET_ONLY, p.browser);
    assert.equal(ts.page.redirectedTo, undefined);
    assert.equal(ts.page.status, 403);
    assert.match(ts.page.body, /not on the tailnet/);
  });

  describe('with Tailscale as well', () => {
    test('a person on the tailnet goes through with no page at all', async () => {
      const p = await openPlexPage(env, BOTH, new Browser(env, ALICE));
      assert.ok(p.page.redirectedTo?.searchParams.get('code'));
      assert.equal((await redeem(p, p.page.redirectedTo!)).claims()!.sub, 'tailscale:9007199254740993');
    });

    test('everyone else sees the Plex page, not a Tailscale refusal', async () => {
      const p = await openPlexPage(env, BOTH, new Browser(env, null));
      assert.equal(p.page.status, 200);
      assert.match(p.page.body, /id="plex-sign-in"/);
    });

    test('a client restricted to Plex shows the Plex page even to a tailnet device', async () => {
      const p = await openPlexPage(env, FRIENDS, new Browser(env, ALICE));
      assert.equal(p.page.redirectedTo, undefined);
      assert.match(p.page.body, /id="plex-sign-in"/);
    });
  });
});

