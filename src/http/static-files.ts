import { createHash } from 'node:crypto';
import { extname } from 'node:path';
import type { Middleware } from 'koa';
import { listAssets, readAsset } from '../assets.ts';

// static/ is a handful of small hand-written files: read them once at start-up and serve them
// from memory, with no path ever touching the filesystem at request time.

const TYPES: Record<string, string> = {
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.html': 'text/html; charset=utf-8',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

interface StaticFile {
  body: Buffer;
  type: string;
  etag: string;
}

export function staticFiles(): Middleware {
  const files = new Map<string, StaticFile>();
  for (const name of listAssets('static')) {
    const type = TYPES[extname(name)];
    if (!type) continue;
    const body = readAsset(`static/${name}`);
    files.set(`/static/${name}`, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 16)}"` });
  }
  return async (ctx, next) => {
    if (!ctx.path.startsWith('/static/')) return next();
    const file = files.get(ctx.path);
    if (!file || (ctx.method !== 'GET' && ctx.method !== 'HEAD')) {
      ctx.status = 404;
      ctx.body = 'Not Found';
      return;
    }
    ctx.set('ETag', file.etag);
    ctx.set('Cache-Control', 'public, max-age=3600');
    if (ctx.get('If-None-Match') === file.etag) {
      ctx.status = 304;
      return;
    }
    ctx.type = file.type;
    ctx.body = file.body;
  };
}
