import { Agent, request, type IncomingHttpHeaders } from 'node:http';
import { createServer, createConnection, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as client from 'openid-client';
import { DEFAULT_BRANDING, type BrandingConfig, type ClientConfig } from '../src/config/config.ts';
import { type Config } from '../src/config/load.ts';
import type { TailscaleConfig } from '../src/sources/tailscale/config.ts';
import type { JellyfinConfig } from '../src/sources/jellyfin/config.ts';
import { DEFAULT_GRACE_WHEN_DOWN, DEFAULT_RECHECK_AFTER, type PlexConfig } from '../src/sources/plex/config.ts';
import { loadOrCreateKeys } from '../src/keys/keys.ts';
import { runCli } from '../src/cli.ts';
import { startServer, type RunningServer } from '../src/server.ts';
import { ALICE, FakeTailscaled, type FakeDevice } from './fakes/tailscaled.ts';
import { FakeJellyfin } from './fakes/jellyfin.ts';
import { FakePlex, SERVER_ID } from './fakes/plex.ts';

/** A client that keeps a secret, as most tests' apps are. */
export type ConfidentialClient = ClientConfig & { client_secret: string };

export const HEADSCALE: ConfidentialClient = {
  client_id: 'headscale',
  client_secret: 'hs-secret-0123456789abcdef',
  redirect_uris: ['https://headscale.example.test/oidc/callback'],
  post_logout_redirect_uris: [],
  name: 'Headscale',
  require_pkce: false,
};

export const CLOUDFLARE: ConfidentialClient = {
  client_id: 'cloudflare-access',
  client_secret: 'cf-secret-0123456789abcdef',
  redirect_uris: ['https://team.cloudflareaccess.com/cdn-cgi/access/callback'],
  post_logout_redirect_uris: [],
  name: 'Cloudflare Access',
  require_pkce: true,
};

export const ADMINS_ONLY: ConfidentialClient = {
  client_id: 'grafana',
  client_secret: 'grafana-secret-0123456789',
  redirect_uris: ['https://grafana.example.test/login/generic_oauth'],
  post_logout_redirect_uris: [],
  name: 'Grafana',
  require_pkce: false,
  allowed_groups: ['admins'],
};

export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

export async function tempDir(prefix = 'guestlist-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export interface TestEnv {
  issuer: string;
  server: RunningServer;
  tailscaled: FakeTailscaled;
  plex: FakePlex;
  jellyfin: FakeJellyfin;
  /** Every running instance (two when the suite runs against shared Redis). */
  servers?: () => RunningServer[];
  dataDir: string;
  logs: Record<string, unknown>[];
  config: Config;
  restart(): Promise<void>;
  close(): Promise<void>;
}

export interface TestEnvOptions {
  /** null: no tailscale section at all. */
  tailscale?: Partial<TailscaleConfig> | null;
  /** Configure Plex sign-in against the fake plex.tv (and set any of its keys: recheck_after, ...). */
  plex?: boolean | Partial<PlexConfig>;
  /** Configure Jellyfin sign-in against the fake Jellyfin (url and server_name filled in). */
  jellyfin?: boolean | Partial<JellyfinConfig>;
  jellyfinTimeoutMs?: number;
  branding?: Partial<BrandingConfig>;
  rate_limits?: Partial<Config['rate_limits']>;
  admin?: Partial<Config['admin']>;
  client_ip_header?: string;
  clients?: ClientConfig[];
  groups?: Record<string, string[]>;
  issuer?: string;
  /** Host for the default http issuer (127.0.0.1); a browser needs `localhost` for cookies to match. */
  issuerHost?: string;
  whoisTimeoutMs?: number;
  plexTimeoutMs?: number;
  headersTimeoutMs?: number;
  listenHost?: string;
}

/** guestlist on loopback with a fake tailscaled on a unix socket, both in a fresh temp dir. */
export async function startTestEnv(options: TestEnvOptions = {}): Promise<TestEnv> {
  const dir = await tempDir();
  const tailscaled = await new FakeTailscaled(join(dir, 'tailscaled.sock')).start();
  const plex = await new FakePlex().start();
  const jellyfin = await new FakeJellyfin().start();
  const port = await freePort();
  const config: Config = {
    issuer: options.issuer ?? `http://${options.issuerHost ?? '127.0.0.1'}:${port}`,
    listen: { host: options.listenHost ?? '127.0.0.1', port },
    data_dir: join(dir, 'data'),
    clients: options.clients ?? [HEADSCALE, CLOUDFLARE, ADMINS_ONLY],
    groups: options.groups ?? { admins: ['alice@example.com'], family: ['bob@github'] },
    ...(options.tailscale === null ? {} : { tailscale: { socket: tailscaled.socketPath, allow_tagged: false, serve_headers: false, ...options.tailscale } }),
    ...(options.plex ? { plex: {
      server_ids: [SERVER_ID], product: 'guestlist tests', api_url: plex.url, app_url: `${plex.url}/auth`,
      recheck_after: DEFAULT_RECHECK_AFTER, grace_when_down: DEFAULT_GRACE_WHEN_DOWN, ...(typeof options.plex === 'object' ? options.plex : {}),
    } } : {}),
    ...(options.jellyfin ? { jellyfin: { url: jellyfin.url, server_name: 'Test Jellyfin', ...(typeof options.jellyfin === 'object' ? options.jellyfin : {}) } } : {}),
    branding: { ...DEFAULT_BRANDING, ...options.branding },
    // Many logins from one address in a few seconds: limits are off unless a test turns them on.
    rate_limits: { authorize: 0, interaction: 0, token: 0, pending: 0, ...options.rate_limits },
    ...(options.client_ip_header ? { client_ip_header: options.client_ip_header } : {}),
    demo: false,
    admin: { allowed_groups: [], tailnet_only: true, ...options.admin },
  };
  const logs: Record<string, unknown>[] = [];
  // GUESTLIST_TEST_REDIS_URL (set by two-instances.test.ts) runs every environment as two
  // instances sharing that Redis, with each request of a login sent to the next one in turn.
  const redisUrl = process.env.GUESTLIST_TEST_REDIS_URL;
  const instances = redisUrl ? [config, { ...config, listen: { ...config.listen, port: await freePort() } }] : [config];
  if (redisUrl) {
    config.storage = redisUrl;
    await loadOrCreateKeys(config.data_dir); // made once, shared by both, as a seeded volume would be
    instances[1]!.storage = redisUrl;
  }
  // A source's upstream timeout is its own (3 s, 5 s, 5 s) unless the test asks for another.
  const timeouts = Object.fromEntries(Object.entries({ tailscale: options.whoisTimeoutMs, plex: options.plexTimeoutMs, jellyfin: options.jellyfinTimeoutMs })
    .filter(([, ms]) => ms !== undefined)) as Record<string, number>;
  const startOne = (c: Config) => startServer(c, {
    log: (level, msg, fields) => logs.push({ level, msg, ...fields }),
    sourceTimeoutsMs: timeouts,
    ...(options.headersTimeoutMs ? { headersTimeoutMs: options.headersTimeoutMs } : {}),
    env: {},
  });
  let running: RunningServer[] = [];
  const start = async () => {
    running = [];
    for (const c of instances) running.push(await startOne(c));
    if (running.length === 1) return running[0]!;
    let next = 0;
    // A stand-in for a load balancer: `url` names the next instance each time it is read.
    return { ...running[0]!, get url() { return running[next++ % running.length]!.url; } } as RunningServer;
  };
  const env: TestEnv = {
    issuer: config.issuer,
    server: await start(),
    servers: () => running,
    tailscaled,
    plex,
    jellyfin,
    dataDir: config.data_dir,
    logs,
    config,
    async restart() {
      for (const s of running) await s.close();
      env.server = await start();
    },
    async close() {
      for (const s of running) await s.close();
      await tailscaled.stop();
      await plex.stop();
      await jellyfin.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return env;
}

/**
 * A test body that runs in its own environment (startTestEnv with `defaults`, then `options`),
 * closed whatever happens: `test('...', withEnv({ plex: true }, async (env) => { ... }))`.
 */
export function testEnvs(defaults: TestEnvOptions) {
  return (options: TestEnvOptions, run: (env: TestEnv) => Promise<void>) => async () => {
    const env = await startTestEnv({ ...defaults, ...options });
    try {
      await run(env);
    } finally {
      await env.close();
    }
  };
}

export interface BrowserResult {
  /** Set when the walk left guestlist: the relying party's redirect_uri with code or error. */
  redirectedTo?: URL;
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** Every URL visited on guestlist's side. */
  visited: string[];
}

interface Cookie { name: string; value: string; path: string }

/**
 * An HTTP agent whose every connection tailscaled knows as one proxied from `device` (userspace
 * networking); with `null` (or no tailscaled), a stranger's.
 */
export function deviceAgent(tailscaled: FakeTailscaled | undefined, device: FakeDevice | null): Agent {
  const agent = new Agent({ keepAlive: false });
  (agent as unknown as { createConnection: (o: object, cb: unknown) => Socket }).createConnection = (opts: object) => {
    const socket = createConnection(opts as unknown as Parameters<typeof createConnection>[0]);
    socket.once('connect', () => {
      if (!device || !tailscaled) return;
      const [address, port] = [socket.localAddress!, socket.localPort!];
      tailscaled.mapProxiedConnection(address, port, device);
      socket.once('close', () => tailscaled.unmapProxiedConnection(address, port));
    });
    return socket;
  };
  return agent;
}

/**
 * fetch, as openid-client calls it (its customFetch), from `device`: a CLI on that tailnet device
 * talking to guestlist over the tailnet (its refresh requests, say).
 */
export function fetchFrom(tailscaled: FakeTailscaled, device: FakeDevice | null) {
  const agent = deviceAgent(tailscaled, device);
  return (url: string, options: { method?: string; headers?: HeadersInit; body?: unknown }) => new Promise<Response>((resolve, reject) => {
    const target = new URL(url);
    const req = request({ host: target.hostname, port: target.port, path: `${target.pathname}${target.search}`, method: options.method ?? 'GET', agent,
      headers: Object.fromEntries(new Headers(options.headers).entries()) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(new Response(Buffer.concat(chunks), { status: res.statusCode ?? 0, headers: Object.entries(res.headers).flatMap(([k, v]) => (Array.isArray(v) ? v.map((x) => [k, x] as [string, string]) : v === undefined ? [] : [[k, v] as [string, string]])) })));
    });
    req.on('error', reject);
    req.end(options.body === undefined ? undefined : String(options.body));
  });
}

/**
 * A minimal browser: keeps cookies (by path), follows redirects within guestlist, stops when
 * sent anywhere else. Each of its TCP connections is announced to the fake tailscaled as a
 * connection proxied from `device`, as userspace-networking tailscaled does; with `null`,
 * it is a stranger that tailscaled does not know.
 */
export class Browser {
  private cookies: Cookie[] = [];
  private readonly agent: Agent;
  private readonly env: { server: RunningServer; issuer: string; tailscaled?: FakeTailscaled };
  private readonly headers: Record<string, string>;
  /** `headers` go with every request (say, the Fly-Client-IP a proxy in front would set). */
  constructor(env: { server: RunningServer; issuer: string; tailscaled?: FakeTailscaled }, device: FakeDevice | null = ALICE, headers: Record<string, string> = {}) {
    this.env = env;
    this.headers = headers;
    this.agent = deviceAgent(env.tailscaled, device);
  }

  /** Walk from `start` (a URL on guestlist) until guestlist answers with a page or sends us away. */
  async walk(start: string | URL, extraHeaders: Record<string, string> = {}): Promise<BrowserResult> {
    const issuerOrigin = new URL(this.env.issuer).origin;
    let url = new URL(start);
    const visited: string[] = [];
    for (let hop = 0; hop < 10; hop++) {
      visited.push(url.href);
      const res = await this.get(url, extraHeaders);
      const location = res.headers.location;
      if (res.status >= 300 && res.status < 400 && location) {
        const next = new URL(location, url);
        if (next.origin !== issuerOrigin) return { ...res, redirectedTo: next, visited };
        url = next;
        continue;
      }
      return { ...res, visited };
    }
    throw new Error(`too many redirects: ${visited.join(' -> ')}`);
  }

  cookie(name: string): string | undefined {
    return this.cookies.find((c) => c.name === name)?.value;
  }

  /** Take every cookie `other` holds, as someone who stole them would (to try them from another device). */
  stealCookiesOf(other: Browser): this {
    this.cookies = other.cookies.map((c) => ({ ...c }));
    return this;
  }

  /** POST as a page would (same-origin fetch or form), then follow any redirect like walk(). */
  async post(url: string | URL, body: string, contentType: string, extraHeaders: Record<string, string> = {}): Promise<BrowserResult> {
    const target = new URL(url, this.env.issuer);
    const res = await this.get(target, { 'content-type': contentType, origin: new URL(this.env.issuer).origin, ...extraHeaders }, 'POST', body);
    const location = res.headers.location;
    if (res.status >= 300 && res.status < 400 && location) {
      const next = new URL(location, target);
      if (next.origin !== new URL(this.env.issuer).origin) return { ...res, redirectedTo: next, visited: [target.href] };
      const walk = await this.walk(next);
      return { ...walk, visited: [target.href, ...walk.visited] };
    }
    return { ...res, visited: [target.href] };
  }

  async get(url: URL, extraHeaders: Record<string, string> = {}, method = 'GET', body?: string): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
    // Requests go to where the server listens; the URL's host (the issuer) goes in Host.
    const target = new URL(this.env.server.url);
    const cookie = this.cookies.filter((c) => url.pathname === c.path || url.pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`))
      .map((c) => `${c.name}=${c.value}`).join('; ');
    return new Promise((resolve, reject) => {
      const req = request({
        host: target.hostname.replace(/^\[|\]$/g, ''),
        port: target.port,
        path: `${url.pathname}${url.search}`,
        method,
        agent: this.agent,
        headers: { host: url.host, accept: 'text/html', ...(cookie ? { cookie } : {}), ...this.headers, ...extraHeaders },
      }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          this.store(res.headers['set-cookie'] ?? []);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
        });
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  private store(setCookies: string[]): void {
    for (const line of setCookies) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq);
      const value = pair!.slice(eq + 1);
      const path = attrs.find((a) => /^path=/i.test(a))?.slice(5) ?? '/';
      const expired = attrs.some((a) => /^expires=/i.test(a) && Date.parse(a.slice(8)) < Date.now()) || attrs.some((a) => /^max-age=0$/i.test(a));
      this.cookies = this.cookies.filter((c) => !(c.name === name && c.path === path));
      if (!expired && value !== '') this.cookies.push({ name, value, path });
    }
  }
}

export interface LoginOptions {
  client?: ClientConfig;
  /** null: a peer tailscaled does not know. */
  device?: FakeDevice | null;
  auth?: 'basic' | 'post';
  scope?: string;
  pkce?: boolean;
  browser?: Browser;
}

export async function discover(env: { issuer: string; servers?: () => RunningServer[] }, c: ClientConfig, auth: 'basic' | 'post' = 'basic'): Promise<client.Configuration> {
  // A public client sends its client_id alone (openid-client's None), as a CLI or a phone app does.
  const config = await client.discovery(new URL(env.issuer), c.client_id, c.client_secret,
    c.public ? client.None() : auth === 'basic' ? client.ClientSecretBasic(c.client_secret!) : client.ClientSecretPost(c.client_secret!),
    { execute: [client.allowInsecureRequests] });
  const servers = env.servers?.() ?? [];
  if (servers.length > 1) {
    // The relying party's token and userinfo calls, too, go to each instance in turn.
    let next = 0;
    config[client.customFetch] = (url, options) => {
      const target = new URL(url);
      target.host = new URL(servers[next++ % servers.length]!.url).host;
      return fetch(target, options as RequestInit);
    };
  }
  return config;
}

/** What a relying party does first: an authorization URL with fresh PKCE, state and nonce, and those to check the answer with. */
export async function startAuthorization(env: { issuer: string; servers?: () => RunningServer[] }, c: ClientConfig, scope = 'openid email profile') {
  const config = await discover(env, c);
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: c.redirect_uris[0]!, scope, state, nonce,
    code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
  });
  return { config, verifier, state, nonce, url };
}

/** A sign-in page a relying party's authorization led to, with what the app checks its answer with. */
export interface SignInPage {
  browser: Browser;
  page: BrowserResult;
  config: client.Configuration;
  verifier: string;
  state: string;
  nonce: string;
}

/** The app's code exchange for where a sign-in page sent the browser back. */
export function redeem(p: SignInPage, callback: URL) {
  return client.authorizationCodeGrant(p.config, callback, { pkceCodeVerifier: p.verifier, expectedState: p.state, expectedNonce: p.nonce });
}

/** The CLI in-process, with everything it prints and logs. */
export async function cli(args: string[], env: Record<string, string>) {
  let out = '';
  let err = '';
  const logs: Record<string, unknown>[] = [];
  const result = await runCli(args, {
    out: (t) => (out += t),
    err: (t) => (err += t),
    env,
    log: (level, msg, fields) => logs.push({ level, msg, ...fields }),
  });
  return { result, code: typeof result === 'number' ? result : 0, out, err, logs };
}

const APP_CLIENT = 'clients: [{client_id: app, client_secret: 0123456789abcdef0123, redirect_uris: ["https://app.example.com/cb"]}]\n';

/**
 * A config's YAML with its data_dir in a fresh temp dir: an issuer on loopback (listening on
 * `port` if given), `clients` (one app by default), then `extra` (the sources, say).
 */
export async function configYaml(extra: string, port?: number, clients = APP_CLIENT): Promise<{ dir: string; text: string }> {
  const dir = await tempDir();
  const text = `issuer: http://127.0.0.1:${port ?? 1}\n${port ? `listen: 127.0.0.1:${port}\n` : ''}data_dir: ${join(dir, 'data')}\n${clients}${extra}`;
  return { dir, text };
}

/** `guestlist serve` with this YAML (in GUESTLIST_CONFIG_YAML), stopped again once it is ready; what it printed and logged. */
export async function serveOnce(yaml: string) {
  const run = await cli(['serve'], { GUESTLIST_CONFIG_YAML: yaml });
  if (typeof run.result === 'number') throw new Error(`serve exited ${run.result}: ${run.err}`);
  await run.result.close();
  return run;
}

/** A relying party's whole login with openid-client: authorize, the browser's walk, code exchange. */
export async function login(env: TestEnv, options: LoginOptions = {}) {
  const c = options.client ?? HEADSCALE;
  const config = await discover(env, c, options.auth);
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authUrl = client.buildAuthorizationUrl(config, {
    redirect_uri: c.redirect_uris[0]!,
    scope: options.scope ?? 'openid email profile',
    state,
    nonce,
    ...(options.pkce === false ? {} : { code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' }),
  });
  const browser = options.browser ?? new Browser(env, options.device === undefined ? ALICE : options.device);
  const walk = await browser.walk(authUrl);
  if (!walk.redirectedTo || walk.redirectedTo.searchParams.has('error')) return { walk, config };
  const tokens = await client.authorizationCodeGrant(config, walk.redirectedTo, {
    expectedState: state,
    expectedNonce: nonce,
    ...(options.pkce === false ? {} : { pkceCodeVerifier: verifier }),
  });
  return { walk, config, tokens, verifier, callback: walk.redirectedTo };
}
