import type { Context, Middleware } from 'koa';
import type { ClientNetwork } from './client-network.ts';
import type { CoreConfig } from '../config/config.ts';
import { sharesOf } from '../network.ts';
import type { Pages } from '../html.ts';
import { routeOf } from './provider-routes.ts';
import type { RateCounter } from '../storage/store.ts';

// Per-network limits on the endpoints worth abusing: new authorization requests (each may make a
// pending sign-in), the sign-in and sign-out pages and the operator console (each asks tailscaled
// or plex.tv something, or touches a session) and the token endpoint (client secrets). Fixed one-minute windows, per
// network and per wider prefix (network.ts), counted by the store (in memory, or in Redis when
// instances share state). Routes are found by name (provider-routes.ts), so every spelling and
// method the provider's router takes for one of them counts against it.

const WINDOW_MS = 60_000;
// The operator console (console/admin.ts) and every spelling near it: like the sign-in pages, each
// request reads a session and may ask tailscaled who is there.
const CONSOLE = /^\/admin(\/|$)/i;

export function rateLimits(config: Pick<CoreConfig, 'rate_limits'>, pages: Pages, network: ClientNetwork, counter: RateCounter): Middleware {
  const { authorize, interaction, token } = config.rate_limits;

  /** True when this request is over the limit; sets the 429 answer. */
  async function over(ctx: Context, bucket: string, limit: number): Promise<boolean> {
    if (limit <= 0) return false;
    let hit: { over: boolean; resetAt: number };
    try {
      hit = await counter.hit(sharesOf(await network(ctx.req), limit, bucket), WINDOW_MS);
    } catch {
      return false; // the shared store is down: the login itself will say so; do not add to it
    }
    if (!hit.over) return false;
    ctx.status = 429;
    ctx.set('Retry-After', String(Math.max(1, Math.ceil((hit.resetAt - Date.now()) / 1000))));
    ctx.set('Cache-Control', 'no-store');
    return true;
  }

  const tooMany = (ctx: Context) => {
    ctx.type = 'html';
    ctx.body = pages.render('message', 'Too many attempts', {
      heading: 'Too many sign-in attempts',
      message: `There have been too many sign-in attempts from your network. Wait ${ctx.response.get('Retry-After')} seconds and try again.`,
    });
  };

  return async (ctx, next) => {
    const route = routeOf(ctx);
    if (route === 'token') {
      if (await over(ctx, 'token', token)) {
        ctx.body = { error: 'temporarily_unavailable', error_description: 'too many token requests from this network; retry later' };
        return;
      }
    } else if (route === 'authorization') {
      if (await over(ctx, 'authorize', authorize)) return tooMany(ctx);
    } else if (route === 'end_session' || route === 'end_session_confirm' || route === 'end_session_success' || ctx.path.startsWith('/interaction/') || CONSOLE.test(ctx.path)) {
      if (await over(ctx, 'interaction', interaction)) return tooMany(ctx);
    }
    return next();
  };
}
