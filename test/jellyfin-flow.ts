import type { ClientConfig } from '../src/config/config.ts';
import { Browser, HEADSCALE, redeem, startAuthorization, type BrowserResult, type ConfidentialClient, type SignInPage, type TestEnv } from './helpers.ts';

// The Jellyfin sign-in as static/jellyfin.js drives it, step by step over HTTP: the page, the
// code it asks for, the wait, Jellyfin's authorization (what a person does in Jellyfin's own
// UI, done on the fake) and the finish the page posts. Shared by the Jellyfin test files.

/** An app that accepts Jellyfin only. */
export const MEDIA: ConfidentialClient = { ...HEADSCALE, client_id: 'media', name: 'Media Requests', redirect_uris: ['https://media.example.test/callback'], sources: ['jellyfin'] };

export interface JellyfinPage extends SignInPage {
  /** The page's action URLs: code, wait, finish. */
  codeUrl: string;
  waitUrl: string;
  finishUrl: string;
}

export interface StepAnswer {
  status: number;
  body: { state?: string; code?: string; expiresAt?: number; error?: string };
  headers: BrowserResult['headers'];
}

export async function openJellyfinPage(env: TestEnv, c: ClientConfig = MEDIA, browser = new Browser(env, null), scope?: string): Promise<JellyfinPage> {
  const { config, verifier, state, nonce, url } = await startAuthorization(env, c, scope);
  const page = await browser.walk(url);
  const attr = (name: string) => new RegExp(`id="jellyfin"[^>]*data-${name}="([^"]*)"`).exec(page.body)?.[1] ?? '';
  const finishUrl = /<form id="jellyfin-finish" method="post" action="([^"]+)"/.exec(page.body)?.[1] ?? '';
  return { browser, page, config, verifier, state, nonce, codeUrl: attr('code'), waitUrl: attr('wait'), finishUrl };
}

async function step(p: JellyfinPage, url: string): Promise<StepAnswer> {
  const res = await p.browser.post(url, '', 'application/json');
  let body: StepAnswer['body'] = {};
  try {
    body = JSON.parse(res.body) as StepAnswer['body'];
  } catch { /* not JSON: left empty, the status tells */ }
  return { status: res.status, body, headers: res.headers };
}

/** What the page does when the button is pressed: ask guestlist for a Quick Connect code. */
export const getCode = (p: JellyfinPage) => step(p, p.codeUrl);
/** What the page does while it waits: ask whether Jellyfin has seen the code authorized. */
export const waitFor = (p: JellyfinPage) => step(p, p.waitUrl);

export function finishJellyfin(p: JellyfinPage): Promise<BrowserResult> {
  return p.browser.post(p.finishUrl, '', 'application/x-www-form-urlencoded');
}

export { redeem };
