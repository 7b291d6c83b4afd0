import assert from 'node:assert/strict';
import type * as client from 'openid-client';
import type { ClientConfig } from '../src/config/config.ts';
import { Browser, HEADSCALE, redeem, startAuthorization, type BrowserResult, type ConfidentialClient, type SignInPage, type TestEnv } from './helpers.ts';

// The Plex sign-in as static/plex.js drives it, step by step over HTTP: the page, a PIN made
// "in the browser" (with an Origin, as a page's fetch has), its binding to the login (id and
// code), Plex's approval, and the finish the page posts. Shared by the Plex test files.

/** An app that accepts Plex only. */
export const FRIENDS: ConfidentialClient = { ...HEADSCALE, client_id: 'friends', name: 'Friends App', redirect_uris: ['https://app.example.test/callback'], sources: ['plex'] };

export interface PlexPage extends SignInPage {
  /** The page's data-* attributes: api, app, client-id, product, bind, return. */
  data: Record<string, string>;
  finishUrl: string;
}

export interface Pin {
  id: number;
  code: string;
}

export async function openPlexPage(env: TestEnv, c: ClientConfig, browser = new Browser(env, null), scope?: string): Promise<PlexPage> {
  const { config, verifier, state, nonce, url } = await startAuthorization(env, c, scope);
  const page = await browser.walk(url);
  const data = Object.fromEntries([...page.body.matchAll(/data-([a-z-]+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!.replace(/&#38;/g, '&')]));
  const finishUrl = /<form id="plex-finish" method="post" action="([^"]+)"/.exec(page.body)?.[1] ?? '';
  return { browser, page, config, verifier, state, nonce, data, finishUrl };
}

/** What the page does first: create a PIN at plex.tv, from the browser, with our client identifier. */
export async function createPin(env: TestEnv, p: PlexPage): Promise<Pin> {
  const res = await fetch(`${p.data.api}/api/v2/pins?strong=true&X-Plex-Product=${encodeURIComponent(p.data.product!)}&X-Plex-Client-Identifier=${p.data['client-id']}`, {
    method: 'POST', headers: { Accept: 'application/json', Origin: env.issuer },
  });
  assert.equal(res.status, 201);
  return await res.json() as Pin;
}

export function bindPin(p: PlexPage, body: object, headers: Record<string, string> = {}): Promise<BrowserResult> {
  return p.browser.post(p.data.bind!, JSON.stringify(body), 'application/json', headers);
}

export function finishPlex(p: PlexPage): Promise<BrowserResult> {
  return p.browser.post(p.finishUrl, '', 'application/x-www-form-urlencoded');
}

/** A whole Plex sign-in to `c` as `user`: page, PIN, bind, approval, finish (in `browser`, which keeps its session). */
export async function signInWithPlex(env: TestEnv, user: string, c: ClientConfig = FRIENDS, browser?: Browser, scope?: string) {
  const p = await openPlexPage(env, c, browser, scope);
  assert.equal(p.page.status, 200, p.page.body.slice(0, 300));
  const pin = await createPin(env, p);
  const bind = await bindPin(p, pin);
  assert.equal(bind.status, 204, bind.body);
  env.plex.approve(pin.code, user);
  return { p, done: await finishPlex(p) };
}

/** The claims an app gets for `user` after a Plex sign-in. */
export async function plexClaims(env: TestEnv, user: string, c: ClientConfig = FRIENDS): Promise<client.IDToken> {
  const { p, done } = await signInWithPlex(env, user, c);
  assert.ok(done.redirectedTo, `HTTP ${done.status}: ${done.body.slice(0, 300)}`);
  return (await redeem(p, done.redirectedTo)).claims()!;
}

export { redeem };
