import type { Context, Middleware } from 'koa';
import type { ClientConfig } from '../config/config.ts';
import type { Pages } from '../html.ts';
import { routeOf } from './provider-routes.ts';

// A sign-in can be gone by the time the browser comes back to it (it expired, or guestlist
// restarted in the middle). The page that says so leads back to the app it started from.

const APP_COOKIE = 'guestlist_app';

/**
 * Remember, in the browser, which app a sign-in started from, so that when the sign-in itself
 * is gone (it expired, or guestlist restarted in the middle) the page can lead back to that app.
 * It names a configured client and nothing more; a forged one changes only a link.
 */
export function rememberApp(clients: ReadonlyMap<string, ClientConfig>): Middleware {
  return async (ctx, next) => {
    if (routeOf(ctx) === 'authorization') {
      const clientId = ctx.query.client_id;
      if (typeof clientId === 'string' && clients.has(clientId)) {
        ctx.cookies.set(APP_COOKIE, clientId, { httpOnly: true, sameSite: 'lax', maxAge: 3600_000, signed: false, secure: ctx.secure, overwrite: true });
      }
    }
    return next();
  };
}

/** The origin of an app's first redirect URI: as close to "the app" as a config knows. */
function appHome(client: ClientConfig): string | undefined {
  const url = URL.parse(client.redirect_uris[0] ?? '');
  return url && (url.protocol === 'https:' || url.protocol === 'http:') ? `${url.origin}/` : undefined;
}

export function expiredPage(ctx: Context, clients: ReadonlyMap<string, ClientConfig>, pages: Pages): void {
  const client = clients.get(ctx.cookies.get(APP_COOKIE, { signed: false }) ?? '');
  const home = client ? appHome(client) : undefined;
  ctx.status = 400;
  ctx.type = 'html';
  ctx.set('Cache-Control', 'no-store');
  ctx.body = pages.render(home ? 'expired-app' : 'message', 'Sign-in expired', {
    heading: 'This sign-in has expired',
    message: 'It was started too long ago, or in another browser, or guestlist restarted since. Go back to the app you were signing in to and start again.',
    client: client?.name,
    home,
  });
}
