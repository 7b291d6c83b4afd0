import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Middleware } from 'koa';
import { createAccountStore } from './accounts.ts';
import { createLruStorage, type LruStorage } from './adapter.ts';
import type { Config } from './config.ts';
import { demoRoutes } from './demo.ts';
import { interactionRoutes } from './interactions.ts';
import { loadOrCreateKeys } from './keys.ts';
import { createLogger, type Logger } from './log.ts';
import { preloadViews, renderPage } from './pages.ts';
import { checkClients, createProvider, TTL } from './provider.ts';
import { securityHeaders } from './security-headers.ts';
import { demoSource } from './sources/demo.ts';
import type { AmbientSource } from './sources/source.ts';
import { tailscaleSource } from './sources/tailscale.ts';
import { staticFiles } from './static-files.ts';

export interface ServerOptions {
  log?: Logger;
  /** How long to wait for tailscaled before failing closed. */
  whoisTimeoutMs?: number;
}

export interface RunningServer {
  /** Where the server actually listens (differs from the issuer behind a proxy). */
  url: string;
  issuer: string;
  server: Server;
  storage: LruStorage;
  close(): Promise<void>;
}

export async function startServer(config: Config, options: ServerOptions = {}): Promise<RunningServer> {
  const log = options.log ?? createLogger();
  preloadViews(['error', 'message', 'refused', 'logout', 'home', 'demo', 'demo-result']);
  const keys = await loadOrCreateKeys(config.data_dir, (file) => log('info', 'created a new secret file', { file }));
  const storage = createLruStorage();
  const accounts = createAccountStore(config.groups, TTL.Session);

  const tailscale = config.tailscale ? tailscaleSource(config.tailscale, options.whoisTimeoutMs) : undefined;
  const sources: AmbientSource[] = config.demo ? [demoSource(tailscale)] : tailscale ? [tailscale] : [];
  const provider = createProvider({ config, keys, storage, accounts, log, ambientSources: new Set(['tailscale', 'demo']) });
  await checkClients(provider, config);

  const clients = new Map(config.clients.map((c) => [c.client_id, c]));
  provider.use(errorPages(log));
  provider.use(pinToIssuer(config.issuer));
  provider.use(securityHeaders(config.issuer));
  provider.use(healthz());
  provider.use(staticFiles());
  provider.use(interactionRoutes({ provider, sources, accounts, clients, log }));
  provider.use(config.demo ? demoRoutes(config) : home(config));

  const server = createServer(provider.callback());
  server.keepAliveTimeout = 5_000;
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.listen.port, config.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const purge = setInterval(() => storage.purgeStale(), 60_000);
  purge.unref();

  const { address, port } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;
  return {
    url: `http://${host}:${port}`,
    issuer: config.issuer,
    server,
    storage,
    close: () => new Promise<void>((resolve) => {
      clearInterval(purge);
      server.close(() => resolve());
      server.closeIdleConnections();
    }),
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

/** Our routes' unexpected failures become a plain page; the details go to the log only. */
function errorPages(log: Logger): Middleware {
  return async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      log('error', 'unhandled error', { path: ctx.path, err: (err as Error).message, stack: (err as Error).stack });
      ctx.status = 500;
      ctx.type = 'html';
      ctx.body = renderPage('message', 'Something went wrong', {
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
    ctx.body = { status: 'ok' };
  };
}

function home(config: Config): Middleware {
  return async (ctx, next) => {
    if (ctx.path !== '/' || (ctx.method !== 'GET' && ctx.method !== 'HEAD')) return next();
    ctx.type = 'html';
    ctx.body = renderPage('home', 'guestlist', {
      issuer: config.issuer,
      discovery: `${config.issuer}/.well-known/openid-configuration`,
    });
  };
}
