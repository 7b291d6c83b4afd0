import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readAsset } from './assets.ts';
import { ConfigError, HOME_CLIENT_ID, type ClientConfig } from './config/config.ts';
import { type Config } from './config/load.ts';
import { formatListen } from './config/fields.ts';
import { brandingStyles } from './http/branding.ts';
import { clientNetwork, peerOf } from './http/client-network.ts';
import { crossOrigin } from './http/cross-origin.ts';
import { errorPages } from './http/error-pages.ts';
import { healthz } from './http/healthz.ts';
import { operatorConsole } from './console/admin.ts';
import { homePage } from './console/home.ts';
import { whoIsHere } from './console/who.ts';
import { healthOf } from './health.ts';
import { originFormOnly, pinToIssuer } from './http/issuer.ts';
import { createPages, preloadViews } from './http/pages.ts';
import { PLACE_BYTES, pendingSignIns } from './http/pending-sign-ins.ts';
import { canonicalRoutes } from './http/provider-routes.ts';
import { rateLimits } from './http/rate-limits.ts';
import { securityHeaders } from './http/security-headers.ts';
import { staticFiles } from './http/static-files.ts';
import { accountIdFor, accountStore, type Account } from './sign-in/accounts.ts';
import { interactionRoutes } from './oidc/interactions.ts';
import { rememberApp } from './http/expired-sign-in.ts';
import { REFRESH_SECONDS, signIns } from './sign-in/sign-in.ts';
import { keysHealth, loadOrCreateKeys } from './keys/keys.ts';
import { createLogger, type Logger } from './log.ts';
import { checkClients, createProvider, signOutWithNobody, TTL } from './oidc/provider.ts';
import { demoApp } from './demo/app.ts';
import { createSources, sourceProblems } from './sources/registry.ts';
import { MODEL_BOUNDS } from './storage/memory.ts';
import { openStore, type Store } from './storage/store.ts';

export interface ServerOptions {
  log?: Logger;
  /** How long to wait for each source's upstream (tailscaled, plex.tv, ...) before failing closed, by source name. */
  sourceTimeoutsMs?: Partial<Record<string, number>>;
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
  preloadViews(['error', 'message', 'refused', 'logout', 'home', 'home-signed-in', 'expired-app', 'sign-in', 'admin']);
  const pages = createPages(config.branding);
  const keys = await loadOrCreateKeys(config.data_dir, {
    onCreate: (file) => log('info', 'created a new secret file', { file }),
    shared: config.storage !== undefined,
    env: options.env ?? process.env,
  });
  // As long as a sign-in may be used: a day, or a refresh token's lifetime when an app gets them.
  const keepSeconds = config.clients.some((c) => c.refresh_tokens) ? Math.max(REFRESH_SECONDS, TTL.Session) : TTL.Session;
  // In memory by default; in Redis when several instances must share logins in flight.
  const store = await openStore(config.storage, keepSeconds, log, keys.cookieSecrets);
  onFailure(() => store.close());
  const { bindings } = store;
  const accounts = accountStore(store.accounts, config.groups);

  const { ambient, interactive, views, rules, upstreamTokens } = createSources(config, {
    issuer: config.issuer, version: VERSION, bindings, vault: store.vault, keepSeconds,
    ...(options.sourceTimeoutsMs ? { timeoutsMs: options.sourceTimeoutsMs } : {}),
  });
  preloadViews(views);
  // guestlist's own client, for the home page's sign-in; its secret is never used (the home page
  // only needs the session the sign-in leaves), so it is made anew at each start.
  const homeClient: ClientConfig = {
    client_id: HOME_CLIENT_ID, client_secret: randomBytes(32).toString('base64url'), name: config.branding.title,
    redirect_uris: [`${config.issuer}/signed-in`], post_logout_redirect_uris: [`${config.issuer}/`], require_pkce: false,
  };
  const clients = new Map([...config.clients, homeClient].map((c) => [c.client_id, c]));
  const network = clientNetwork(config.client_ip_header, async (peer) => {
    for (const source of ambient) {
      const key = await source.network?.(peer);
      if (key) return key;
    }
    return undefined;
  });
  const pending = pendingSignIns({
    perNetwork: config.rate_limits.pending,
    ttlMs: TTL.Interaction * 1000,
    network,
    // Below what the memory store keeps of them, in number and in bytes, so that a full house
    // refuses newcomers instead of evicting anyone's.
    quota: store.quota('pending', Math.floor(0.8 * Math.min(MODEL_BOUNDS.Interaction!.max, MODEL_BOUNDS.Interaction!.maxBytes / PLACE_BYTES))),
  });
  const signIn = signIns({ ambient, rules, accounts, clients, peerOf, log, activity: store.activity, upstreamTokens });
  const provider = createProvider({ config, keys, store, log, pages, clients, signIn, pendingInteractions: pending.adapter });
  await checkClients(provider, config);

  provider.use(errorPages(log, pages));
  provider.use(pinToIssuer(config.issuer));
  // An interactive source's page may talk to its upstream from the browser (Plex's PIN).
  provider.use(securityHeaders(config.issuer, interactive.flatMap((s) => s.connectTo)));
  // Before anything looks at a path: one spelling for each of oidc-provider's routes.
  provider.use(canonicalRoutes());
  provider.use(crossOrigin());
  provider.use(healthz(VERSION));
  provider.use(rateLimits(config, pages, network, store.counter));
  provider.use(pending.middleware);
  provider.use(signOutWithNobody());
  provider.use(rememberApp(clients));
  provider.use(staticFiles());
  provider.use(brandingStyles(config.branding));
  provider.use(interactionRoutes({ provider, issuer: config.issuer, interactive, signIn, clients, network, pages }));
  const here = whoIsHere(provider, signIn);
  const isOperator = (account: Account) => account.groups.some((g) => config.admin.allowed_groups.includes(g));
  // With an ambient source (Tailscale) on and admin.tailnet_only, the console opens only from a
  // device that source vouches for as the very person signed in, from the request's own
  // connection, as at a sign-in.
  const tailnetPerson = ambient.length > 0 && config.admin.tailnet_only
    ? async (req: Parameters<typeof peerOf>[0]) => {
      for (const source of ambient) {
        const sub = await source.identify(peerOf(req)).then(accountIdFor, () => undefined);
        if (sub) return sub;
      }
      return undefined;
    }
    : undefined;
  provider.use(operatorConsole({
    config, apps: config.clients, whoIsHere: here, signIn, activity: store.activity, isOperator, pages,
    ...(tailnetPerson ? { tailnetPerson } : {}),
    secret: keys.cookieSecrets[0]!,
    health: healthOf([
      ...[...ambient, ...interactive].flatMap((s) => (s.health ? [{ name: s.name, check: s.health.bind(s) }] : [])),
      { name: 'Store', check: () => store.health() },
      { name: 'Signing keys', check: async () => keysHealth(keys.keyInfo) },
    ]),
  }));
  // The built-in demo's app lives at `/`; otherwise `/` is the home page: who is signed in here, and their apps.
  provider.use(config.demo ? demoApp(config, pages) : homePage({
    config, apps: config.clients, homeClient, whoIsHere: here, pages, isOperator,
    sourceLabels: new Map([...ambient, ...interactive].map((s) => [s.name, s.label])),
  }));

  // Slow clients (slowloris) are cut off: headers within 10 s, the whole request within 30 s.
  const headersTimeout = options.headersTimeoutMs ?? 10_000;
  const server = createServer({
    headersTimeout,
    requestTimeout: Math.max(headersTimeout, 30_000),
    keepAliveTimeout: 5_000,
    connectionsCheckingInterval: Math.min(5_000, headersTimeout),
    maxHeaderSize: 16 * 1024,
  }, originFormOnly(provider.callback()));
  server.on('connection', (socket) => {
    for (const source of ambient) source.accepted?.(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.listen.port, config.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });

  const { address, port } = server.address() as AddressInfo;
  return {
    url: `http://${formatListen({ host: address, port })}`,
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

