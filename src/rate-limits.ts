import { isIP } from 'node:net';
import type { Context, Middleware } from 'koa';
import { LRUCache } from 'lru-cache';
import type { Config } from './config.ts';
import type { Pages } from './pages.ts';

// Per-client-IP limits on the endpoints worth abusing: the sign-in pages (each asks tailscaled
// or plex.tv something) and the token endpoint (client secrets). A fixed one-minute window per
// IP, counted in a bounded cache, so a flood of addresses cannot grow memory either.

const WINDOW_MS = 60_000;

/**
 * The client's address: the TCP peer, or, only when the config says a proxy in front sets it
 * (Fly's Fly-Client-IP, say), that header. Never X-Forwarded-For, which anyone can send.
 */
export function clientIp(ctx: Context, header: string | undefined): string {
  if (header) {
    const value = ctx.get(header).split(',')[0]!.trim();
    if (isIP(value)) return value;
  }
  return ctx.req.socket.remoteAddress ?? 'unknown';
}

/** Hits per key in the current window; in memory, or in Redis when instances share state. */
export interface RateCounter {
  hit(key: string, windowMs: number): Promise<{ count: number; resetAt: number }>;
}

export function memoryRateCounter(max = 50_000): RateCounter {
  const counts = new LRUCache<string, { n: number; resetAt: number }>({ max });
  return {
    async hit(key, windowMs) {
      const now = Date.now();
      let entry = counts.get(key);
      if (!entry || entry.resetAt <= now) {
        entry = { n: 0, resetAt: now + windowMs };
        counts.set(key, entry, { ttl: windowMs });
      }
      entry.n++;
      return { count: entry.n, resetAt: entry.resetAt };
    },
  };
}

export function rateLimits(config: Config, pages: Pages, counter: RateCounter = memoryRateCounter()): Middleware {
  const { interaction, token } = config.rate_limits;

  /** True when this request is over the limit; sets the 429 answer. */
  async function over(ctx: Context, bucket: string, limit: number): Promise<boolean> {
    if (limit <= 0) return false;
    const now = Date.now();
    let entry: { count: number; resetAt: number };
    try {
      entry = await counter.hit(`${bucket} ${clientIp(ctx, config.client_ip_header)}`, WINDOW_MS);
    } catch {
      return false; // the shared store is down: the login itself will say so; do not add to it
    }
    if (entry.count <= limit) return false;
    const retryAfter = Math.max(1, Math.ceil((entry.resetAt - now) / 1000));
    ctx.status = 429;
    ctx.set('Retry-After', String(retryAfter));
    ctx.set('Cache-Control', 'no-store');
    return true;
  }

  return async (ctx, next) => {
    if (ctx.path === '/token' && ctx.method === 'POST') {
      if (await over(ctx, 'token', token)) {
        ctx.body = { error: 'temporarily_unavailable', error_description: 'too many token requests from this address; retry later' };
        return;
      }
    } else if (ctx.path.startsWith('/interaction/')) {
      if (await over(ctx, 'interaction', interaction)) {
        ctx.type = 'html';
        ctx.body = pages.render('message', 'Too many attempts', {
          heading: 'Too many sign-in attempts',
          message: `There have been too many sign-in attempts from your network. Wait ${ctx.response.get('Retry-After')} seconds and try again.`,
        });
        return;
      }
    }
    return next();
  };
}
