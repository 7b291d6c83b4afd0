import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Middleware } from 'koa';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { LRUCache } from 'lru-cache';
import { DEFAULT_BRANDING, DEFAULT_DATA_DIR, DEFAULT_RATE_LIMITS, type Config } from '../../config.ts';
import { DEFAULT_TAILSCALE_SOCKET } from '../tailscale/config.ts';
import { escapeHtml, Html, type Pages } from '../../http/pages.ts';

// `npm start` with no config: guestlist on localhost with a built-in relying party at `/`, so a
// newcomer can watch a whole OpenID Connect login happen and read the ID token it produced.
// The relying party half is written the way an app would do it: state, nonce and PKCE, a code
// exchange with the client secret, and the ID token verified against the published JWKS.

const DEMO_CLIENT_ID = 'demo';
const DEMO_CLIENT_SECRET = 'demo-secret-for-localhost-only';

export function demoConfig(env: Record<string, string | undefined> = process.env): Config {
  const port = env.PORT && /^\d+$/.test(env.PORT) ? Number(env.PORT) : 8080;
  const issuer = `http://localhost:${port}`;
  return {
    issuer,
    listen: { host: '127.0.0.1', port },
    data_dir: DEFAULT_DATA_DIR,
    clients: [{
      client_id: DEMO_CLIENT_ID,
      client_secret: DEMO_CLIENT_SECRET,
      redirect_uris: [`${issuer}/demo/callback`],
      post_logout_redirect_uris: [`${issuer}/`],
      name: 'the guestlist demo app',
      require_pkce: true,
    }],
    groups: { demo: ['ada@example.com'] },
    tailscale: { socket: env.TAILSCALE_SOCKET || DEFAULT_TAILSCALE_SOCKET, allow_tagged: false, serve_headers: false },
    branding: { ...DEFAULT_BRANDING },
    rate_limits: { ...DEFAULT_RATE_LIMITS },
    demo: true,
  };
}

interface PendingLogin {
  nonce: string;
  verifier: string;
}

export function demoRoutes(config: Config, pages: Pages): Middleware {
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
