import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Middleware } from 'koa';
import type { BrandingConfig } from '../config/config.ts';

// The site's look, from the config: /branding.css carries the accent colour and background
// image as CSS variables over guestlist.css, and /custom.css is the owner's own stylesheet,
// loaded last so it can restyle anything. Both are built once at start-up. Values were checked
// by the config loader (a hex colour, an https URL with no quotes or brackets).

export function brandingStyles(branding: BrandingConfig): Middleware {
  const rules: string[] = [];
  if (branding.accent_color) rules.push(`:root { --accent: ${branding.accent_color}; --accent-text: ${readableOn(branding.accent_color)}; }`);
  if (branding.background_image) {
    rules.push(`body { background: var(--bg) url("${branding.background_image}") center / cover no-repeat fixed; }`);
  }
  const files = new Map<string, Buffer>([['/branding.css', Buffer.from(`${rules.join('\n')}\n`)]]);
  if (branding.stylesheet) files.set('/custom.css', readFileSync(branding.stylesheet));
  const etags = new Map([...files].map(([path, body]) => [path, `"${createHash('sha256').update(body).digest('base64url').slice(0, 16)}"`]));

  return async (ctx, next) => {
    const body = files.get(ctx.path);
    if (!body || (ctx.method !== 'GET' && ctx.method !== 'HEAD')) return next();
    ctx.set('ETag', etags.get(ctx.path)!);
    ctx.set('Cache-Control', 'public, max-age=300');
    ctx.type = 'text/css; charset=utf-8';
    ctx.body = body;
  };
}

/** Black or white text, whichever reads better on the accent colour. */
function readableOn(hex: string): string {
  const full = hex.length === 4 ? hex.replace(/[0-9a-f]/gi, (c) => c + c) : hex;
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(full.slice(i, i + 2), 16) / 255);
  const luminance = 0.2126 * r! + 0.7152 * g! + 0.0722 * b!;
  return luminance > 0.55 ? '#111111' : '#ffffff';
}
