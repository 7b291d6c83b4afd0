import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ClientConfig } from '../src/config/config.ts';
import { ALICE, BOB_GITHUB } from './fakes/tailscaled.ts';
import { ADMINS_ONLY, Browser, CLOUDFLARE, HEADSCALE, testEnvs, type TestEnv } from './helpers.ts';
import { FRIENDS, signInWithPlex } from './plex-flow.ts';

// `/` for everyone: the sign-in when nobody is signed in in this browser; signed in, who they are,
// how to sign out, and a tile for each app they may use; operators, a link to the console.

const WITH_URL: ClientConfig = { ...HEADSCALE, url: 'https://headscale.example.test/', icon_url: 'https://cdn.example.test/headscale.png' };
const PLEX_ONLY: ClientConfig = { ...FRIENDS, url: 'https://friends.example.test/' };
const APPS = [WITH_URL, CLOUDFLARE, ADMINS_ONLY, PLEX_ONLY];

const withEnv = testEnvs({ clients: APPS, admin: { allowed_groups: ['admins'] } });

/** Sign in on the home page from `browser`; where it ends. */
async function signInAtHome(env: TestEnv, browser: Browser) {
  const home = await browser.walk(`${env.issuer}/`);
  assert.match(home.body, /<a class="button" href="\/sign-in">Sign in<\/a>/);
  return browser.walk(`${env.issuer}/sign-in`);
}

/** The tiles' names, in order. */
const tiles = (body: string) => [...body.matchAll(/<span class="name">([^<]*)<\/span>/g)].map((m) => m[1]);

describe('the home page', () => {
  test('nobody signed in: what this is and Sign in, nothing about anyone or the console', withEnv({}, async (env) => {
    const page = await new Browser(env, null).walk(`${env.issuer}/`);
    assert.equal(page.status, 200);
    assert.match(page.body, /Sign in to see the ones that are yours/);
    assert.doesNotMatch(page.body, /Your apps|Operator console|\/admin/);
    assert.equal(page.headers['cache-control'], 'no-store');
    const head = await new Browser(env, null).get(new URL(`${env.issuer}/`), {}, 'HEAD');
    assert.equal(head.status, 200);
  }));

  test('Sign in on the tailnet is zero-click, and back home: who, via what, Sign out, and each app they may use', withEnv({}, async (env) => {
    const walk = await signInAtHome(env, new Browser(env, ALICE));
    assert.equal(walk.status, 200);
    assert.deepEqual(walk.visited.map((u) => new URL(u).pathname), ['/sign-in', '/auth', '/signed-in', '/']);
    assert.match(walk.body, /Signed in as <strong>Alice Example<\/strong> · via Tailscale · <a href="\/session\/end\?client_id=guestlist&#38;post_logout_redirect_uri=/);
    // Alice is in admins (Grafana's allowed_groups); the Plex-only app is not for a Tailscale sign-in.
    assert.deepEqual(tiles(walk.body), ['Headscale', 'Cloudflare Access', 'Grafana']);
    assert.match(walk.body, /<a class="tile" href="https:\/\/headscale.example.test\/"><img src="https:\/\/cdn.example.test\/headscale.png" alt="">/);
    // Without clients[].url there is nowhere to send them: the tile says so instead of linking.
    assert.match(walk.body, /<span class="tile"><span class="initial" aria-hidden="true">C<\/span><span class="name">Cloudflare Access<\/span><span class="no-link">/);
    assert.match(walk.body, /<a href="\/admin">Operator console<\/a>/);
  }));

  test('someone outside admins sees only their apps, no console link, and their name escaped', withEnv({}, async (env) => {
    const walk = await signInAtHome(env, new Browser(env, BOB_GITHUB));
    assert.deepEqual(tiles(walk.body), ['Headscale', 'Cloudflare Access']);
    assert.doesNotMatch(walk.body, /Operator console|href="\/admin"/);
    // tailscaled's display name is the person's to set: "<b>Bob</b> <script>alert(1)</script>".
    assert.match(walk.body, /Signed in as <strong>&#60;b&#62;Bob&#60;\/b&#62; &#60;script&#62;alert\(1\)&#60;\/script&#62;<\/strong>/);
    assert.doesNotMatch(walk.body, /<script>alert/);
  }));

  test('a stranger to the tailnet gets the page with the Plex button, and signed in with Plex, the Plex app', withEnv({ plex: true }, async (env) => {
    const browser = new Browser(env, null);
    const page = await signInAtHome(env, browser);
    assert.equal(page.status, 200);
    assert.match(page.body, /class="button brand plex-button"/);
    // The same Plex sign-in as an app's, in this browser: it leaves the session the home page reads.
    const { done } = await signInWithPlex(env, 'alice', FRIENDS, browser);
    assert.ok(done.redirectedTo);
    const home = await browser.walk(`${env.issuer}/`);
    assert.match(home.body, /Signed in as <strong>Alice Liddell<\/strong> · via Plex/);
    // Her confirmed Plex email is in admins, as her tailnet login is: Grafana too.
    assert.deepEqual(tiles(home.body), ['Headscale', 'Cloudflare Access', 'Grafana', 'Friends App']);
  }));

  test('Sign out asks first, then the home page is the signed-out one again', withEnv({}, async (env) => {
    const browser = new Browser(env, ALICE);
    const home = await signInAtHome(env, browser);
    const href = /<a href="(\/session\/end\?[^"]+)">Sign out<\/a>/.exec(home.body)![1]!.replace(/&#38;/g, '&');
    const ask = await browser.walk(`${env.issuer}${href}`);
    assert.equal(ask.status, 200);
    assert.match(ask.body, /You will be signed out here, in this browser/);
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(ask.body)![1]!;
    const done = await browser.post('/session/end/confirm', new URLSearchParams({ xsrf, logout: 'yes' }).toString(), 'application/x-www-form-urlencoded');
    assert.deepEqual(done.visited.map((u) => new URL(u).pathname), ['/session/end/confirm', '/'], JSON.stringify(done.visited));
    assert.match(done.body, /Sign in to see the ones that are yours/);
  }));

  test('/sign-in and /signed-in answer GET and HEAD only; other paths near / are not the home page', withEnv({}, async (env) => {
    const browser = new Browser(env, null);
    assert.equal((await browser.get(new URL(`${env.issuer}/sign-in`), {}, 'HEAD')).status, 303);
    for (const path of ['/index.html', '/%2F', '/Sign-in']) {
      assert.equal((await browser.get(new URL(`${env.issuer}${path}`))).status, 404, path);
    }
    assert.notEqual((await browser.get(new URL(`${env.issuer}/`), {}, 'POST')).status, 200);
  }));
});
