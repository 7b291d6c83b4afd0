import type { Middleware } from 'koa';

/** The metadata anyone may read from any site: discovery (both names) and the public keys. */
const PUBLIC_METADATA = new Set(['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server', '/jwks']);

/**
 * CORS: oidc-provider answers /token and /me with the caller's own Origin in
 * Access-Control-Allow-Origin (on preflights and errors alike). guestlist's clients are all
 * confidential and call those from their servers, so no page on another site may read anything
 * but the public metadata, which is the same for every origin: `*`, not an echo of the caller's.
 */
export function crossOrigin(): Middleware {
  return async (ctx, next) => {
    const open = PUBLIC_METADATA.has(ctx.path);
    try {
      await next();
    } finally {
      for (const name of Object.keys(ctx.response.headers)) {
        if (name.startsWith('access-control-') && !open) ctx.remove(name);
      }
    }
    if (!open) return;
    if (ctx.response.get('Access-Control-Allow-Origin')) ctx.set('Access-Control-Allow-Origin', '*');
    if (String(ctx.response.get('Vary') ?? '').toLowerCase() === 'origin') ctx.remove('Vary');
    // A signing key stays published for 24 hours after it is replaced, so a copy of /jwks up to
    // 5 minutes old still verifies every token signed before the replacement (relying parties
    // fetch afresh when they meet a new key id), and discovery changes only with the config.
    if (ctx.status === 200) ctx.set('Cache-Control', 'public, max-age=300');
  };
}
