import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Middleware } from 'koa';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { LRUCache } from 'lru-cache';
import type { CoreConfig } from '../config/config.ts';
import { escapeHtml, Html, type Pages } from '../html.ts';

// The demo's built-in relying party at `/` (config.ts says when there is one), so a newcomer can
// watch a whole OpenID Connect login happen and read the ID token it produced. It is written the
// way an app would do it: state, nonce and PKCE, a code exchange with the client secret, and the
// ID token verified against the published JWKS.

interface PendingLogin {
  nonce: string;
  verifier: string;
}

export function demoApp(config: Pick<CoreConfig, 'issuer' | 'clients'>, pages: Pages): Middleware {
  const client = config.clients[0]!;
  const redirectUri = client.redirect_uris[0]!;
  const pending = new LRUCache<string, PendingLogin>({ max: 1000, ttl: 10 * 60_000 });
  const jwks = createRemoteJWKSet(new URL(`${config.issuer}/jwks`));

  return async (ctx, next) => {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next();
    if (ctx.path === '/') {
      ctx.type = 'html';
      ctx.body = pages.render('demo', 'guestlist demo', { issuer: config.issuer, client_id: client.client_id });
      return;
    }
    if (ctx.path === '/demo/start') {
      const state = randomBytes(16).toString('base64url');
      const login = { nonce: randomBytes(16).toString('base64url'), verifier: randomBytes(32).toString('base64url') };
      pending.set(state, login);
      ctx.cookies.set('demo_state', state, { httpOnly: true, sameSite: 'lax', path: '/demo', signed: false });
      const auth = new URL(`${config.issuer}/auth`);
      auth.search = new URLSearchParams({
        client_id: client.client_id,
        response_type: 'code',
        scope: 'openid email profile groups',
        redirect_uri: redirectUri,
        state,
        nonce: login.nonce,
        code_challenge: createHash('sha256').update(login.verifier).digest('base64url'),
        code_challenge_method: 'S256',
      }).toString();
      ctx.status = 303;
      ctx.redirect(auth.href);
      return;
    }
    if (ctx.path !== '/demo/callback') return next();

    ctx.set('Cache-Control', 'no-store');
    const state = String(ctx.query.state ?? '');
    const cookie = ctx.cookies.get('demo_state', { signed: false }) ?? '';
    const login = pending.get(state);
    const fail = (status: number, message: string) => {
      ctx.status = status;
      ctx.type = 'html';
      ctx.body = pages.render('message', 'Demo sign-in failed', { heading: 'The demo app could not sign you in', message });
    };
    if (!login || state.length !== cookie.length || !timingSafeEqual(Buffer.from(state), Buffer.from(cookie))) {
      return fail(400, 'This callback does not match a sign-in started in this browser. Start again from the demo page.');
    }
    pending.delete(state);
    if (ctx.query.error) {
      return fail(400, `guestlist answered: ${String(ctx.query.error)}${ctx.query.error_description ? ` (${String(ctx.query.error_description)})` : ''}.`);
    }
    const tokenResponse = await fetch(`${config.issuer}/token`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ grant_type: 'authorization_code', code: String(ctx.query.code ?? ''), redirect_uri: redirectUri, code_verifier: login.verifier }),
    });
    const tokens = await tokenResponse.json() as { id_token?: string; error?: string; error_description?: string };
    if (!tokenResponse.ok || !tokens.id_token) {
      return fail(502, `The code exchange failed: ${tokens.error ?? tokenResponse.status}${tokens.error_description ? ` (${tokens.error_description})` : ''}.`);
    }
    const { payload } = await jwtVerify(tokens.id_token, jwks, { issuer: config.issuer, audience: client.client_id });
    if (payload.nonce !== login.nonce) return fail(502, 'The ID token carries the wrong nonce.');
    const header = decodeProtectedHeader(tokens.id_token);
    const rows = Object.entries(payload)
      .map(([k, v]) => `<tr><th scope="row">${escapeHtml(k)}</th><td><code>${escapeHtml(JSON.stringify(v))}</code></td></tr>`)
      .join('');
    ctx.type = 'html';
    ctx.body = pages.render('demo-result', 'Signed in: guestlist demo', {
      name: String(payload.name ?? payload.sub),
      alg: String(header.alg),
      kid: String(header.kid),
      claims: new Html(rows),
      issuer: config.issuer,
    });
  };
}
