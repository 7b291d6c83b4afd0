import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Middleware } from 'koa';
import { readAsset } from './assets.ts';
import { clientNetwork } from './client-network.ts';
import { ConfigError, type Config } from './config.ts';
import { createSources, sourceProblems, sourceRoutes } from './sources/registry.ts';
import { interactionRoutes, rememberApp } from './interactions.ts';
import { loadOrCreateKeys } from './keys.ts';
import { createLogger, type Logger } from './log.ts';
import { brandingStyles } from './branding.ts';
import { createPages, preloadViews, type Pages } from './pages.ts';
import { pendingSignIns } from './pending-sign-ins.ts';
import { checkClients, createProvider, TTL } from './provider.ts';
import { rateLimits } from './rate-limits.ts';
import { securityHeaders } from './security-headers.ts';
import { staticFiles } from './static-files.ts';
import { MODEL_BOUNDS } from './storage/memory.ts';
import { openStore, StorageUnavailable, storageDownMessage, type Store } from './storage/store.ts';

export interface ServerOptions {
  log?: Logger;
  /** How long to wait for tailscaled before failing closed. */
  whoisTimeoutMs?: number;
  /** How long to wait for each plex.tv call before failing closed. */
  plexTimeoutMs?: number;
  /** How long a client may take to send its request headers (tests shorten it). */
  headersTimeoutMs?: number;
  /** Where GUESTLIST_SIGNING_KEYS / GUESTLIST_COOKIE_SECRETS are read from (process.env). */
  env?: Record<string, string | undefined>;
}

export const VERSION = (JSON.parse(readAsset('package.json').toString('utf8')) as { version: string }).version;

export interface RunningServer {
  /** Where the server actually listens (differs from the issuer behind a proxy). */
  url: string;
  issuer: string;
  server: Server;
  store: Store;
  close(): Promise<void>;
}

export async function startServer(config: Config, options: ServerOptions = {}): Promise<RunningServer> {
  // Whatever a start has acquired (the Redis connection) is released again, newest first, when a
  // later step fails for any reason: an open connection would keep the failed process running.
  const acquired: (() => Promise<void>)[] = [];
  try {
    return await start(config, options, (release) => acquired.push(release));
  } catch (err) {
    for (const release of acquired.reverse()) await release().catch(() => {});
    throw err;
  }
}

async function start(config: Config, options: ServerOptions, onFailure: (release: () => Promise<void>) => void): Promise<RunningServer> {
  // Checked again here, not only when a file is loaded: a config can be built in code.
  const unsafe = sourceProblems(config);
  if (unsafe.length > 0) throw new ConfigError('config', unsafe);
  const log = options.log ?? createLogger();
  preloadViews(['error', 'message', 'refused', 'logout', 'home', 'expired-app']);
  const pages = createPages(config.branding);
  const keys = await loadOrCreateKeys(config.data_dir, {
    onCreate: (file) => log('info', 'created a new secret file', { file }),
    shared: config.storage !== undefined,
    env: options.env ?? process.env,
  });
  // In memory by default; in Redis when several instances must share logins in flight.
  const store = await openStore(config, TTL.Session, log);
  onFailure(() => store.close());
  const { accounts, pins } = store;

  const { ambient, interactive, views } = createSources(config, {
    issuer: config.issuer, version: VERSION, pins,
    ...(options.whoisTimeoutMs ? { whoisTimeoutMs: options.whoisTimeoutMs } : {}),
    ...(options.plexTimeoutMs ? { plexTimeoutMs: options.plexTimeoutMs } : {}),
  });
  preloadViews(views);
  const provider = createProvider({ config, keys, store, accounts, log, pages, ambientSources: new Set(ambient.map((a) => a.name)) });
  await checkClients(provider, config);

  const clients = new Map(config.clients.map((c) => [c.client_id, c]));
  provider.use(errorPages(log, pages));
  provider.use(pinToIssuer(config.issuer));
  // An interactive source's page may talk to its upstream from the browser (Plex's PIN).
  provider.use(securityHeaders(config.issuer, interactive.flatMap((s) => s.connectTo)));
  provider.use(crossOrigin());
  provider.use(healthz());
  const network = clientNetwork(config.client_ip_header, ambient);
  provider.use(rateLimits(config, pages, network, store.counter));
  provider.use(pendingSignIns({
    perNetwork: config.rate_limits.pending,
    // Below what the Interaction store holds, so a full house refuses newcomers instead of evicting.
    max: Math.floor(MODEL_BOUNDS.Interaction!.max * 0.8),
    ttlMs: TTL.Interaction * 1000,
    network,
    pages,
    stillPending: async (uid) => (await provider.Interaction.find(uid)) !== undefined,
  }));
  provider.use(rememberApp(clients));
  provider.use(staticFiles());
  provider.use(brandingStyles(config.branding));
  provider.use(interactionRoutes({ provider, issuer: config.issuer, ambient, interactive, accounts, clients, network, log, pages }));
  provider.use(sourceRoutes(config, pages) ?? home(config, pages));

  // Slow clients (slowloris) are cut off: headers within 10 s, the whole request within 30 s.
  const headersTimeout = options.headersTimeoutMs ?? 10_000;
  const server = createServer({
    headersTimeout,
    requestTimeout: Math.max(headersTimeout, 30_000),
    keepAliveTimeout: 5_000,
    connectionsCheckingInterval: Math.min(5_000, headersTimeout),
    maxHeaderSize: 16 * 1024,
  }, onlyPaths(provider.callback()));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.listen.port, config.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });

  const { address, port } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;
  return {
    url: `http://${host}:${port}`,
    issuer: config.issuer,
    server,
    store,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      await store.close();
    },
  };
}

/**
 * Our own URLs (discovery, redirects, cookie `Secure`) come from the configured issuer, never
 * from what a client or proxy put in Host or X-Forwarded-*: behind Fly.io or Cloudflare the
 * request arrives as plain http on an internal address, and the issuer is the public truth.
 */
function pinToIssuer(issuer: string): Middleware {
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
 * becomes the path and query alone (the issuer supplies the rest, see pinToIssuer); a target
 * that is neither (`*`, `host:port`, another scheme) is refused.
 */
function onlyPaths(app: (req: IncomingMessage, res: ServerResponse) => unknown) {
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

/** The metadata anyone may read from any site: discovery (both names) and the public keys. */
const PUBLIC_METADATA = new Set(['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server', '/jwks']);

/**
 * CORS: oidc-provider answers /token and /me with the caller's own Origin in
 * Access-Control-Allow-Origin (on preflights and errors alike). guestlist's clients are all
 * confidential and call those from their servers, so no page on another site may read anything
 * but the public metadata, which is the same for every origin: `*`, not an echo of the caller's.
 */
function crossOrigin(): Middleware {
  return async (ctx, next) => {
    const open = PUBLIC_METADATA.has(ctx.path);
    try {
      await next();
    } finally {
      for (const name of Object.keys(ctx.response.headers)) {
        if (name.startsWith('access-control-') && !open) ctx.remove(name);
      }
    }
    if (!open) return;
    if (ctx.response.get('Access-Control-Allow-Origin')) ctx.set('Access-Control-Allow-Origin', '*');
    if (ctx.response.get('Vary').toLowerCase() === 'origin') ctx.remove('Vary');
    // A signing key stays published for 24 hours after it is replaced, so a copy of /jwks up to
    // 5 minutes old still verifies every token signed before the replacement (relying parties
    // fetch afresh when they meet a new key id), and discovery changes only with the config.
    if (ctx.status === 200) ctx.set('Cache-Control', 'public, max-age=300');
  };
}

/** Our routes' unexpected failures become a plain page; the details go to the log only. */
function errorPages(log: Logger, pages: Pages): Middleware {
  return async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      if (err instanceof StorageUnavailable) {
        log('error', 'storage unavailable', { path: ctx.path, err: err.message });
        ctx.status = 503;
        ctx.type = 'html';
        ctx.body = pages.render('message', 'Try again shortly', storageDownMessage);
        return;
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

function healthz(): Middleware {
  return async (ctx, next) => {
    if (ctx.path !== '/healthz') return next();
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { status: 'ok', version: VERSION };
  };
}

function home(config: Config, pages: Pages): Middleware {
  return async (ctx, next) => {
    if (ctx.path !== '/' || (ctx.method !== 'GET' && ctx.method !== 'HEAD')) return next();
    ctx.type = 'html';
    ctx.body = pages.render('home', 'guestlist', {
      issuer: config.issuer,
      discovery: `${config.issuer}/.well-known/openid-configuration`,
    });
  };
}
