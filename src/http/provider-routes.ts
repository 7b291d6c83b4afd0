import type { Context, Middleware } from 'koa';

// oidc-provider's router takes a path case-insensitively, with or without one trailing slash, and
// a HEAD wherever it takes a GET; guestlist's own checks (rate limits, the sign-out rule) look
// for a route by name. So before anything else sees a request, one step finds the route the
// router would take it for, by the router's own rules, names it (routeOf), and rewrites the path
// to the route's own spelling: every later check, and the provider, then agree on what it is.
// A path the router would not take (an encoded letter, two trailing slashes) stays as it is, and
// nobody serves it. test/security/route-variants.test.ts holds this to the real router.

export type RouteName =
  | 'authorization' | 'resume' | 'token' | 'userinfo' | 'jwks' | 'discovery'
  | 'end_session' | 'end_session_confirm' | 'end_session_success'
  /** A CORS preflight (cross-origin.ts decides what it may say). */
  | 'preflight';

interface Route {
  name: RouteName;
  path: string;
  methods: readonly string[];
}

/**
 * What oidc-provider serves with guestlist's configuration: its default paths, GET only where it
 * leaves POST off by default (enableHttpPostMethods), and every feature provider.ts turns off left out.
 */
export const PROVIDER_ROUTES: readonly Route[] = [
  { name: 'authorization', path: '/auth', methods: ['GET'] },
  { name: 'resume', path: '/auth/:uid', methods: ['GET'] },
  { name: 'token', path: '/token', methods: ['POST'] },
  { name: 'userinfo', path: '/me', methods: ['GET', 'POST'] },
  { name: 'jwks', path: '/jwks', methods: ['GET'] },
  { name: 'discovery', path: '/.well-known/openid-configuration', methods: ['GET'] },
  { name: 'discovery', path: '/.well-known/oauth-authorization-server', methods: ['GET'] },
  { name: 'end_session', path: '/session/end', methods: ['GET'] },
  { name: 'end_session_confirm', path: '/session/end/confirm', methods: ['POST'] },
  { name: 'end_session_success', path: '/session/end/success', methods: ['GET'] },
  ...['/token', '/me', '/jwks', '/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']
    .map((path): Route => ({ name: 'preflight', path, methods: ['OPTIONS'] })),
];

/** The method as the router sees it: a HEAD is a GET. */
export function routeMethod(method: string): string {
  return method === 'HEAD' ? 'GET' : method;
}

/** The router's case folding: ASCII letters only (it never folds a non-ASCII letter into ASCII). */
const sameSegment = (given: string, own: string) => /^[\x00-\x7f]*$/.test(given) && given.toLowerCase() === own;

function decode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value; // as the router does: a malformed escape is taken as it is
  }
}

/** The route the router takes `method path` for, with the path in the route's own spelling. */
export function matchRoute(method: string, path: string): { name: RouteName; path: string } | undefined {
  const verb = routeMethod(method);
  const lookup = (p: string): { name: RouteName; path: string } | undefined => {
    const parts = p.split('/');
    // Static routes first, then those with a parameter, as the router tries them.
    for (const dynamic of [false, true]) {
      for (const route of PROVIDER_ROUTES) {
        if (!route.methods.includes(verb) || route.path.includes('/:') !== dynamic) continue;
        const own = route.path.split('/');
        if (own.length !== parts.length) continue;
        let spelled = '';
        const ok = own.every((segment, i) => {
          const given = parts[i]!;
          if (segment.startsWith(':')) {
            if (!given) return false;
            spelled += `/${encodeURIComponent(decode(given))}`;
            return true;
          }
          if (i > 0) spelled += `/${segment}`;
          return sameSegment(given, segment);
        });
        if (ok) return { name: route.name, path: spelled };
      }
    }
    return undefined;
  };
  return lookup(path) ?? (path.length > 1 && path.endsWith('/') ? lookup(path.slice(0, -1)) : undefined);
}

const ROUTE = Symbol('route');

/** The provider route this request is for, if any (as canonicalRoutes found it). */
export function routeOf(ctx: Context): RouteName | undefined {
  return (ctx.state as { [ROUTE]?: RouteName })[ROUTE];
}

/** The methods the router takes for this path, if it takes any (for a 405's Allow). */
const allowedMethods = (path: string) => ['GET', 'HEAD', 'POST', 'OPTIONS'].filter((m) => matchRoute(m, path));

export function canonicalRoutes(): Middleware {
  return async (ctx, next) => {
    const match = matchRoute(ctx.method, ctx.path);
    if (!match) {
      // One of the provider's paths with a method it does not take (POST /jwks, DELETE /auth).
      const allowed = allowedMethods(ctx.path);
      if (allowed.length === 0) return next();
      ctx.status = 405;
      ctx.set('Allow', allowed.join(', '));
      ctx.set('Cache-Control', 'no-store');
      return;
    }
    (ctx.state as { [ROUTE]?: RouteName })[ROUTE] = match.name;
    if (ctx.path !== match.path) ctx.path = match.path;
    // A resume takes everything from the sign-in it resumes; oidc-provider's error handling
    // would read a client_id and redirect_uri from the query (and fail on them: a 500).
    if (match.name === 'resume' && ctx.querystring) ctx.querystring = '';
    return next();
  };
}
