import type { Middleware } from 'koa';

// Set on every response before oidc-provider runs, so its own HTML (the form_post page) gets the
// same policy: it adds a hash of its one inline script to script-src itself. There is no
// form-action: the logout and form_post forms must be able to reach the relying party.
export function securityHeaders(issuer: string, connectTo: string[] = []): Middleware {
  const CSP = [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: https:",
    ["connect-src 'self'", ...connectTo].join(' '),
    "base-uri 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  const https = issuer.startsWith('https:');
  return async (ctx, next) => {
    ctx.set('Content-Security-Policy', CSP);
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('X-Frame-Options', 'DENY');
    // Authorization codes travel in URLs; never hand them to another site as a Referer.
    ctx.set('Referrer-Policy', 'no-referrer');
    // Not plain same-origin: the Plex page must keep a handle on the plex.tv popup it opens.
    ctx.set('Cross-Origin-Opener-Policy', 'same-origin-allow-popups');
    if (https) ctx.set('Strict-Transport-Security', 'max-age=31536000');
    return next();
  };
}
