import type { Middleware } from 'koa';
import type { Logger } from '../log.ts';
import { answerStorageDown, StorageUnavailable } from '../storage/store.ts';
import type { Pages } from './pages.ts';

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
