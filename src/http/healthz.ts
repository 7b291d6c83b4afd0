import type { Middleware } from 'koa';

/** For load balancers and Fly's checks: the process answers, and which version it is. */
export function healthz(version: string): Middleware {
  return async (ctx, next) => {
    if (ctx.path !== '/healthz') return next();
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { status: 'ok', version };
  };
}
