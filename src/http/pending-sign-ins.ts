import type { Context, Middleware } from 'koa';
import { NetworkTally } from '../network-tally.ts';
import type { ClientNetwork } from './client-network.ts';
import type { Pages } from './pages.ts';
import { routeOf } from './provider-routes.ts';

// Every authorization request that needs a page starts a pending sign-in (oidc-provider's
// Interaction), kept until it finishes or expires; anyone can start one without signing in. So
// that a flood from one network cannot push out the sign-ins of everybody else, each network may
// hold at most `perNetwork` of them at once, and when guestlist holds `max` in all (below what
// the storage keeps, so nothing is ever evicted) new ones are refused. Both fail closed: the
// flooder, or at worst a newcomer, is told to wait; a sign-in already under way is never lost.

const STARTED = /\/interaction\/([A-Za-z0-9_-]{1,64})$/;
const RESUME = /^\/auth\/([A-Za-z0-9_-]{1,64})$/;  // as provider-routes.ts spells a resume

export interface PendingOptions {
  perNetwork: number;
  max: number;
  ttlMs: number;
  network: ClientNetwork;
  pages: Pages;
  /** Whether the store still holds this pending sign-in (a failed resume leaves it there). */
  stillPending(uid: string): Promise<boolean>;
}

export function pendingSignIns(options: PendingOptions): Middleware {
  const { perNetwork, max, ttlMs, network, pages, stillPending } = options;
  // By uid; one TTL for all, so insertion order is expiry order.
  const pending = new NetworkTally<string>();

  const refuse = (ctx: Context, status: number, message: string) => {
    ctx.status = status;
    ctx.set('Retry-After', '60');
    ctx.set('Cache-Control', 'no-store');
    ctx.type = 'html';
    ctx.body = pages.render('message', 'Too many sign-ins', { heading: 'Too many sign-ins in progress', message });
  };

  if (perNetwork <= 0) return (_ctx, next) => next();
  return async (ctx, next) => {
    const route = routeOf(ctx);
    const resume = route === 'resume' ? RESUME.exec(ctx.path) : null;
    const starting = route === 'authorization';
    if (!starting && !resume) return next();
    pending.prune(Date.now());
    let net: string | undefined;
    if (starting) {
      net = await network(ctx.req);
      if (pending.count(net) >= perNetwork) {
        return refuse(ctx, 429, 'Your network has started many sign-ins that have not finished yet. Finish or close them, or wait a few minutes, and try again.');
      }
      if (pending.size >= max) {
        return refuse(ctx, 503, 'guestlist has too many sign-ins in progress right now. Try again in a few minutes.');
      }
    }
    await next();
    // Forgotten only once it is really gone: a resume without the sign-in's cookie fails and leaves
    // it in the store, and must not free a place for another.
    if (resume && pending.has(resume[1]!) && !(await stillPending(resume[1]!))) pending.delete(resume[1]!);
    // oidc-provider sends the browser to /interaction/<uid> when it has made a pending sign-in.
    const uid = ctx.status >= 300 && ctx.status < 400 ? STARTED.exec(ctx.response.get('Location').split('?')[0]!)?.[1] : undefined;
    if (uid && !pending.has(uid)) pending.add(uid, net ?? await network(ctx.req), Date.now() + ttlMs);
  };
}
