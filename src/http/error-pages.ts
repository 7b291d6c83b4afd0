import type { Context, Middleware } from 'koa';
import type { Logger } from '../log.ts';
import { StorageUnavailable } from '../storage/store.ts';
import type { Pages } from '../html.ts';

/** Our routes' unexpected failures become a plain page; the details go to the log only. */
export function errorPages(log: Logger, pages: Pages): Middleware {
  return async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      if (err instanceof StorageUnavailable) {
        log('error', 'storage unavailable', { path: ctx.path, err: err.message });
        return answerStorageDown(ctx, pages);
      }
      log('error', 'unhandled error', { path: ctx.path, err: (err as Error).message, stack: (err as Error).stack });
      ctx.status = 500;
      ctx.type = 'html';
      ctx.body = pages.render('message', 'Something went wrong', {
        heading: 'Something went wrong',
        message: 'guestlist hit an unexpected problem and could not finish. Try again; if it keeps happening, tell whoever runs this site.',
      });
    }
  };
}

/** What a person is told while the shared store is away. */
const storageDownMessage = {
  heading: 'Sign-in is unavailable for a moment',
  message: 'guestlist cannot reach the storage it shares with its other instances, so it cannot sign anyone in right now. It recovers by itself when the storage is back: try again in a minute.',
};

/** The one page for it, wherever a request meets it: 503, and it recovers by itself. */
export function answerStorageDown(ctx: Context, pages: Pages): void {
  ctx.status = 503;
  ctx.type = 'html';
  ctx.body = pages.render('message', 'Try again shortly', storageDownMessage);
}
