import type { Middleware } from 'koa';
import type { CoreConfig } from '../config/config.ts';
import type { Pages } from '../html.ts';

/** `/`: what this is, and where its discovery document is. */
export function home(config: Pick<CoreConfig, 'issuer'>, pages: Pages): Middleware {
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
