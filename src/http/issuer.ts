import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Middleware } from 'koa';

/**
 * Our own URLs (discovery, redirects, cookie `Secure`) come from the configured issuer, never
 * from what a client or proxy put in Host or X-Forwarded-*: behind Fly.io or Cloudflare the
 * request arrives as plain http on an internal address, and the issuer is the public truth.
 */
export function pinToIssuer(issuer: string): Middleware {
  const url = new URL(issuer);
  const proto = url.protocol.slice(0, -1);
  return async (ctx, next) => {
    ctx.req.headers['x-forwarded-proto'] = proto;
    ctx.req.headers['x-forwarded-host'] = url.host;
    delete ctx.req.headers['x-forwarded-port'];
    delete ctx.req.headers.forwarded;
    return next();
  };
}

/**
 * A request line may name a whole URL (absolute-form, `GET http://evil.example/auth HTTP/1.1`,
 * meant for proxies); koa would take that URL as the request's href, and oidc-provider builds
 * discovery, redirects and form actions from the href. So before koa sees a request, its target
 * becomes the path and query alone (the issuer supplies the rest, see pinToIssuer above); a target
 * that is neither (`*`, `host:port`, another scheme) is refused.
 */
export function originFormOnly(app: (req: IncomingMessage, res: ServerResponse) => unknown) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const target = req.url ?? '';
    const absolute = /^https?:\/\/[^/?#]*/i.exec(target);
    if (absolute) {
      const rest = target.slice(absolute[0].length);
      req.url = rest.startsWith('/') ? rest : `/${rest}`;
    } else if (!target.startsWith('/')) {
      res.writeHead(400, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store', Connection: 'close' });
      res.end('Bad Request: the request target must be a path\n');
      return;
    }
    void app(req, res);
  };
}
