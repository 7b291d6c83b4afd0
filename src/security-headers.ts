import type { Middleware } from 'koa';

// Set on every response before oidc-provider runs, so its own HTML (the form_post page) gets the
// same policy: it adds a hash of its one inline script to script-src itself. There is no
// form-action: the logout and form_post forms must be able to reach the relying party.
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: https:",
  "connect-src 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

export function securityHeaders(issuer: string): Middleware {
  const https = issuer.startsWith('https:');
  return async (ctx, next) => {
    ctx.set('Content-Security-Policy', CSP);
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('X-Frame-Options', 'DENY');
    // Authorization codes travel in URLs; never hand them to another site as a Referer.
    ctx.set('Referrer-Policy', 'no-referrer');
    ctx.set('Cross-Origin-Opener-Policy', 'same-origin');
    if (https) ctx.set('Strict-Transport-Security', 'max-age=31536000');
    return next();
  };
}
