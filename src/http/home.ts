import type { Middleware } from 'koa';
import type { Config } from '../config.ts';
import type { Pages } from './pages.ts';

/** `/`: what this is, and where its discovery document is. */
export function home(config: Config, pages: Pages): Middleware {
  // The same page for everyone, for the life of the process: made once, when first asked for.
  let page: string | undefined;
  return async (ctx, next) => {
    if (ctx.path !== '/' || (ctx.method !== 'GET' && ctx.method !== 'HEAD')) return next();
    ctx.type = 'html';
    ctx.body = page ??= pages.render('home', 'guestlist', {
      issuer: config.issuer,
      discovery: `${config.issuer}/.well-known/openid-configuration`,
    });
  };
}
