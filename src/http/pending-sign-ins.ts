import { AsyncLocalStorage } from 'node:async_hooks';
import type { Context, Middleware } from 'koa';
import type { Adapter } from 'oidc-provider';
import { sharesOf } from '../network.ts';
import type { Quota } from '../storage/store.ts';
import type { ClientNetwork } from './client-network.ts';
import type { Pages } from '../html.ts';
import { routeOf } from './provider-routes.ts';

// An authorization request that needs a page makes a pending sign-in (oidc-provider's
// Interaction), kept until it finishes or expires; anyone can make one without signing in. So
// that a flood from one network cannot push out the sign-ins of everybody else, each network (and
// each of its wider prefixes) may hold only its share of them at once, and when the quota's
// maximum are pending in all, new ones are refused. Both fail closed: the flooder, or at worst a
// newcomer, is told to wait; a sign-in already under way is never lost.
//
// The count is taken where a pending sign-in is made, in the Interaction adapter, not by route:
// whatever spelling of /auth made it, it is counted, and a sign-in that needs no page (a tailnet
// device, signed in within /auth itself) is never refused because pages are full. It counts what
// is kept, not requests: a sign-in takes one place for every PLACE_BYTES it stores (an app's
// state and nonce are a few dozen bytes; an outsider's can be 14 KB), so that the places in all
// fit in what the store keeps of them, in bytes as in number.

/** What one place of a pending sign-in holds; typical ones take one place. */
export const PLACE_BYTES = 2048;

export interface PendingOptions {
  perNetwork: number;
  ttlMs: number;
  network: ClientNetwork;
  /** The store's places for pending sign-ins (shared by every instance when the store is). */
  quota: Quota;
}

/** A pending sign-in that could not be made; oidc-provider hands it to renderError (provider.ts), which answers with the page below. */
export class TooManySignIns extends Error {
  readonly statusCode: number;
  // oidc-provider's error handler: shown to the person, never a redirect to the app.
  readonly expose = true;
  readonly allow_redirect = false;
  readonly error = 'temporarily_unavailable';
  readonly error_description: string;
  constructor(network: boolean) {
    const message = network
      ? 'Your network has started many sign-ins that have not finished yet. Finish or close them, or wait a few minutes, and try again.'
      : 'guestlist has too many sign-ins in progress right now. Try again in a few minutes.';
    super(message);
    this.name = 'TooManySignIns';
    this.statusCode = network ? 429 : 503;
    this.error_description = network ? 'too many pending sign-ins from this network' : 'too many pending sign-ins';
  }
}

/** The page for a TooManySignIns. */
export function answerTooManySignIns(ctx: Context, err: TooManySignIns, pages: Pages): void {
  ctx.status = err.statusCode;
  ctx.set('Retry-After', '60');
  ctx.set('Cache-Control', 'no-store');
  ctx.type = 'html';
  ctx.body = pages.render('message', 'Too many sign-ins', { heading: 'Too many sign-ins in progress', message: err.message });
}

export interface PendingSignIns {
  /** Around every request, so that the adapter knows which request makes a pending sign-in. */
  middleware: Middleware;
  /** oidc-provider's Interaction adapter, counting each new pending sign-in against its network. */
  adapter(inner: Adapter): Adapter;
}

export function pendingSignIns(options: PendingOptions): PendingSignIns {
  const { perNetwork, ttlMs, network, quota } = options;
  const requests = new AsyncLocalStorage<Context>();
  return {
    middleware: (ctx, next) => (perNetwork > 0 ? requests.run(ctx, next) : next()),
    adapter(inner) {
      if (perNetwork <= 0) return inner;
      return {
        ...inner,
        async upsert(id, payload, expiresIn) {
          const ctx = requests.getStore();
          // Made by an authorization request (saved again later by the interaction's own steps).
          if (ctx && routeOf(ctx) === 'authorization') {
            const weight = Math.ceil((id.length + JSON.stringify(payload).length) / PLACE_BYTES);
            const taken = await quota.take(id, sharesOf(await network(ctx.req), perNetwork, 'pending'), Date.now() + ttlMs, weight);
            if (taken === 'network-full' || taken === 'full') throw new TooManySignIns(taken === 'network-full');
          }
          return inner.upsert(id, payload, expiresIn);
        },
        async destroy(id) {
          await inner.destroy(id);
          await quota.release(id);
        },
      };
    },
  };
}
