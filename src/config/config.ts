import { isIP } from 'node:net';
import { parseDocument } from 'yaml';
import { isLoopbackHost, isObject, optionalBoolean, optionalString, stringList, unknownKeys } from './fields.ts';

// The core of the config: every key but the sources' sections, which their kinds read
// (sources/registry.ts). What the core needs of the sources, it is handed (SourceSections):
// config/load.ts, above both, puts them together.

/** A relying party allowed to sign people in through guestlist. */
export interface ClientConfig {
  client_id: string;
  /** Absent for a public client, which cannot keep one. */
  client_secret?: string;
  /**
   * An app that cannot keep a secret (a CLI, a native or mobile app): no secret, PKCE (S256)
   * required, and redirect URIs for native apps (loopback on any port, private-use schemes).
   */
  public?: boolean;
  /** May ask for offline_access and get a refresh token (rotated at every use). */
  refresh_tokens?: boolean;
  /** Its ID token and userinfo carry the person's Plex token (`plex_token`), for Plex sign-ins. */
  plex_token?: boolean;
  redirect_uris: string[];
  post_logout_redirect_uris: string[];
  /** Shown to people on guestlist's pages ("Sign in to Grafana"). */
  name: string;
  require_pkce: boolean;
  /** When set, only members of at least one of these groups may sign in to this client. */
  allowed_groups?: string[];
  /** Identity sources this client accepts (names from the source registry); every configured source when unset. */
  sources?: string[];
  /** The app's own address, for its tile on the home page. */
  url?: string;
  /** An https image for that tile. */
  icon_url?: string;
}

/** Who may use the operator console at /admin. */
export interface AdminConfig {
  /** Members of any of these groups; nobody when empty. */
  allowed_groups: string[];
  /** With Tailscale configured: only from a tailnet device whois says is that same person. */
  tailnet_only: boolean;
}

/** guestlist's own client, for the home page's sign-in: no config may use its id. */
export const HOME_CLIENT_ID = 'guestlist';

export interface BrandingConfig {
  title: string;
  logo_url?: string;
  accent_color?: string;
  background_image?: string;
  /** Path of an extra CSS file, served after guestlist's own. */
  stylesheet?: string;
}

export interface RateLimits {
  /** New authorization requests (each starts a sign-in) per network per minute. */
  authorize: number;
  /** Sign-in page requests, the Plex steps included, per network per minute. */
  interaction: number;
  /** Token requests per network per minute. */
  token: number;
  /** Sign-ins one network may have started and not finished at once. */
  pending: number;
}

export interface CoreConfig {
  issuer: string;
  listen: { host: string; port: number };
  data_dir: string;
  clients: ClientConfig[];
  groups: Record<string, string[]>;
  branding: BrandingConfig;
  /** Requests per client network per minute, and unfinished sign-ins per network; 0 turns one off. */
  rate_limits: RateLimits;
  /** A header that a proxy in front sets to the client's IP (Fly-Client-IP); trusted only if set. */
  client_ip_header?: string;
  /** redis:// or rediss:// URL of a store shared by several instances; in memory when unset. */
  storage?: string;
  /** Only the built-in demo (`npm start` with no config) sets this; no key in a config file can. */
  demo: boolean;
  admin: AdminConfig;
}

const DEFAULT_LISTEN = '127.0.0.1:8080';
export const DEFAULT_DATA_DIR = './data';
export const DEFAULT_BRANDING: BrandingConfig = { title: 'guestlist' };
export const DEFAULT_RATE_LIMITS: RateLimits = { authorize: 60, interaction: 60, token: 300, pending: 50 };

/** Every problem found in a config, each naming the key path, so one run shows them all. */
export class ConfigError extends Error {
  readonly problems: string[];
  constructor(source: string, problems: string[]) {
    super(`${source} has ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

type Env = Record<string, string | undefined>;

/** Where a config comes from: a file, or the YAML itself (GUESTLIST_CONFIG_YAML, a Fly secret). */
export type ConfigSource = { file: string } | { yaml: string };

/** How errors name a source: the file's path, or the environment variable that held the YAML. */
export function sourceName(source: ConfigSource): string {
  return 'file' in source ? source.file : 'GUESTLIST_CONFIG_YAML';
}

/**
 * What the core is told of the identity sources: their section names, how to read the sections
 * a config has (with the problems they find), and how each is added, for "no source configured".
 */
export interface SourceSections<S> {
  names: readonly string[];
  read(raw: Record<string, unknown>, listen: CoreConfig['listen'] | undefined, listenKey: string, problems: string[]): S;
  /** The groups the sections read vouch for people's membership of. */
  groups(sections: S): string[];
  howToAdd: readonly string[];
}

export function parseCoreConfig<S>(text: string, env: Env, source: string, sections: SourceSections<S>): CoreConfig & S {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(source, doc.errors.map((e) => `YAML: ${e.message.split('\n')[0]}`));
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    // Aliases that point nowhere or expand without end are only found here, not by the parser.
    throw new ConfigError(source, [`YAML: ${(err as Error).message.split('\n')[0]}`]);
  }
  const envProblems: string[] = [];
  const raw = substituteEnv(data, '', env, envProblems);
  const problems: string[] = [];
  const config = validate(raw, env, sections, problems);
  // A value whose variable is unset is reported once, for the variable, not again as empty.
  const unset = new Set(envProblems.map((p) => p.slice(0, p.indexOf(': '))));
  const all = [...envProblems, ...problems.filter((p) => !unset.has(p.slice(0, p.indexOf(': '))))];
  if (all.length > 0 || !config) throw new ConfigError(source, all);
  return config;
}

/** `${VAR}` in any string value is replaced from the environment; `$${` stays a literal `${`. */
function substituteEnv(value: unknown, path: string, env: Env, problems: string[]): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$(\$)?\{([^}]*)\}/g, (match, escaped: string | undefined, name: string) => {
      if (escaped) return match.slice(1);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
        problems.push(`${path || '(root)'}: "\${${name}}" is not a valid environment variable reference`);
        return match;
      }
      const v = env[name];
      if (v === undefined || v === '') {
        problems.push(`${path || '(root)'}: environment variable ${name} is not set`);
        return '';
      }
      return v;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => substituteEnv(v, `${path}[${i}]`, env, problems));
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, substituteEnv(v, path ? `${path}.${k}` : k, env, problems)]),
    );
  }
  return value;
}

const CORE_KEYS = ['issuer', 'listen', 'data_dir', 'clients', 'groups', 'branding', 'rate_limits', 'client_ip_header', 'storage', 'admin'];
const CLIENT_KEYS = ['client_id', 'client_secret', 'public', 'redirect_uris', 'post_logout_redirect_uris', 'name', 'require_pkce', 'refresh_tokens', 'plex_token', 'allowed_groups', 'sources', 'url', 'icon_url'];
export const DEFAULT_ADMIN: AdminConfig = { allowed_groups: [], tailnet_only: true };
const BRANDING_KEYS = ['title', 'logo_url', 'accent_color', 'background_image', 'stylesheet'];

// Cloudflare Access sends client credentials in Basic auth without URL-encoding them, and
// oidc-provider decodes them as RFC 6749 says, so anything outside the unreserved set breaks.
const UNRESERVED = /^[A-Za-z0-9._~-]+$/;

function validate<S>(raw: unknown, env: Env, sections: SourceSections<S>, problems: string[]): (CoreConfig & S) | undefined {
  if (raw === null || raw === undefined) {
    problems.push('the config is empty: it needs at least issuer and clients');
    return undefined;
  }
  if (!isObject(raw)) {
    problems.push('the config must be a mapping of keys (issuer, clients, ...)');
    return undefined;
  }
  unknownKeys(raw, [...CORE_KEYS, ...sections.names], '', problems);

  const issuer = validateIssuer(raw.issuer, problems);
  // GUESTLIST_LISTEN changes the default only (the container image sets 0.0.0.0:8080).
  const listen = validateListen(raw.listen ?? (env.GUESTLIST_LISTEN || DEFAULT_LISTEN), env, problems);
  const data_dir = optionalString(raw.data_dir, 'data_dir', problems) ?? DEFAULT_DATA_DIR;
  const groups = validateGroups(raw.groups, problems);
  const configured = sections.names.filter((name) => raw[name] !== undefined);
  const listenKey = raw.listen === undefined && env.GUESTLIST_LISTEN ? 'listen (from GUESTLIST_LISTEN, which the container image sets)' : 'listen';
  const sources = sections.read(raw, listen, listenKey, problems);
  const clients = validateClients(raw.clients, groups, sections.groups(sources), sections.names, configured, problems);
  const admin = validateAdmin(raw.admin, groups, sections.groups(sources), problems);
  const branding = validateBranding(raw.branding, problems);
  const rate_limits = validateRateLimits(raw.rate_limits, problems);
  const client_ip_header = optionalString(raw.client_ip_header, 'client_ip_header', problems);
  const storage = optionalString(raw.storage, 'storage', problems);
  if (storage !== undefined && !/^rediss?:\/\/[^\s]+$/.test(storage)) {
    problems.push('storage: must be a redis:// or rediss:// URL, e.g. redis://localhost:6379 (leave it out to keep state in memory)');
  }
  if (client_ip_header && !/^[A-Za-z0-9-]+$/.test(client_ip_header)) problems.push(`client_ip_header: "${client_ip_header}" is not a header name`);
  if (client_ip_header && /^x-forwarded-for$/i.test(client_ip_header)) {
    problems.push('client_ip_header: X-Forwarded-For carries whatever the client sent first; use the header your proxy sets itself (Fly-Client-IP, CF-Connecting-IP, X-Real-IP)');
  }

  if (configured.length === 0) {
    const ways = sections.howToAdd;
    problems.push(`no identity source is configured: add ${ways.length > 1 ? `${ways.slice(0, -1).join(', ')} or ${ways.at(-1)}` : ways[0]}`);
  }
  if (problems.length > 0 || !issuer || !listen || !clients) return undefined;
  return {
    issuer, listen, data_dir, clients, groups, ...sources, branding, rate_limits,
    ...(client_ip_header ? { client_ip_header } : {}), ...(storage ? { storage } : {}), demo: false, admin,
  };
}

/** A list of group names, each defined under groups or vouched for by a configured source. */
function groupNames(value: unknown, at: string, groups: Record<string, string[]>, vouched: readonly string[], problems: string[]): string[] | undefined {
  const list = stringList(value, at, problems, { allowEmpty: false });
  for (const g of list ?? []) {
    if (!Object.hasOwn(groups, g) && !vouched.includes(g)) {
      problems.push(`${at}: group "${g}" is not defined under groups${vouched.length ? `, nor one a configured source vouches for (${vouched.join(', ')})` : ''}`);
    }
  }
  return list;
}

function validateAdmin(value: unknown, groups: Record<string, string[]>, vouched: readonly string[], problems: string[]): AdminConfig {
  if (value === undefined || value === null) return { ...DEFAULT_ADMIN };
  if (!isObject(value)) {
    problems.push('admin: must be a mapping such as {allowed_groups: [admins]}');
    return { ...DEFAULT_ADMIN };
  }
  unknownKeys(value, ['allowed_groups', 'tailnet_only'], 'admin', problems);
  const allowed = value.allowed_groups === undefined ? [] : groupNames(value.allowed_groups, 'admin.allowed_groups', groups, vouched, problems) ?? [];
  return { allowed_groups: allowed, tailnet_only: optionalBoolean(value.tailnet_only, 'admin.tailnet_only', problems) ?? DEFAULT_ADMIN.tailnet_only };
}

function validateIssuer(value: unknown, problems: string[]): string | undefined {
  if (value === undefined) {
    problems.push('issuer: missing; set it to the public URL people and relying parties reach guestlist at, e.g. https://auth.example.com');
    return undefined;
  }
  if (typeof value !== 'string' || value === '') {
    problems.push('issuer: must be a URL such as https://auth.example.com');
    return undefined;
  }
  const url = URL.parse(value);
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
    problems.push(`issuer: "${value}" is not an http(s) URL`);
    return undefined;
  }
  if (value.endsWith('/')) {
    // Headscale (go-oidc) compares the issuer byte for byte, so a stray slash fails every login.
    problems.push(`issuer: "${value}" must not end with "/"; relying parties compare it exactly: use "${value.replace(/\/+$/, '')}"`);
    return undefined;
  }
  if (url.pathname !== '/' || url.search || url.hash || url.username || url.password) {
    problems.push(`issuer: "${value}" must be just a scheme and host (and port), with no path, query or credentials`);
    return undefined;
  }
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    problems.push(`issuer: "${value}" must use https (plain http is only accepted for localhost); put guestlist behind a TLS proxy such as Fly.io, Caddy or tailscale serve`);
    return undefined;
  }
  return value;
}

function validateListen(value: unknown, env: Env, problems: string[]): CoreConfig['listen'] | undefined {
  if (typeof value !== 'string') {
    problems.push('listen: must be "host:port", e.g. "127.0.0.1:8080" or "0.0.0.0:8080"');
    return undefined;
  }
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(value);
  const host = m?.[1] ?? m?.[2];
  if (!m || !host || (m[1] !== undefined && isIP(m[1]) !== 6)) {
    problems.push(`listen: "${value}" is not "host:port" (IPv6 hosts go in brackets: "[::]:8080")`);
    return undefined;
  }
  let port = Number(m[3]);
  if (env.PORT !== undefined && env.PORT !== '') {
    if (!/^\d+$/.test(env.PORT)) {
      problems.push(`PORT environment variable: "${env.PORT}" is not a port number`);
      return undefined;
    }
    port = Number(env.PORT);
  }
  if (port < 1 || port > 65535) {
    problems.push(`listen: port ${port} is out of range (1-65535)`);
    return undefined;
  }
  return { host, port };
}

function validateGroups(value: unknown, problems: string[]): Record<string, string[]> {
  if (value === undefined || value === null) return {};
  if (!isObject(value)) {
    problems.push('groups: must map a group name to a list of members, e.g. "admins: [alice@example.com]"');
    return {};
  }
  const groups: Record<string, string[]> = {};
  for (const [name, members] of Object.entries(value)) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._:-]*$/.test(name)) {
      problems.push(`groups.${name}: group names may use letters, digits, ".", "_", ":" and "-"`);
      continue;
    }
    const list = stringList(members, `groups.${name}`, problems, { allowEmpty: true });
    if (list) groups[name] = list;
  }
  return groups;
}

function validateClients(value: unknown, groups: Record<string, string[]>, vouched: readonly string[], known: readonly string[], configured: readonly string[], problems: string[]): ClientConfig[] | undefined {
  if (value === undefined) {
    problems.push('clients: missing; add at least one relying party (client_id, client_secret, redirect_uris)');
    return undefined;
  }
  if (!Array.isArray(value) || value.length === 0) {
    problems.push('clients: must be a non-empty list of relying parties');
    return undefined;
  }
  const seen = new Set<string>();
  const clients: ClientConfig[] = [];
  value.forEach((c: unknown, i) => {
    const at = `clients[${i}]`;
    if (!isObject(c)) {
      problems.push(`${at}: must be a mapping with client_id, client_secret and redirect_uris`);
      return;
    }
    unknownKeys(c, CLIENT_KEYS, at, problems);
    const before = problems.length;
    const id = c.client_id;
    if (typeof id !== 'string' || id === '') problems.push(`${at}.client_id: missing`);
    else if (id === HOME_CLIENT_ID) problems.push(`${at}.client_id: "${id}" is guestlist's own (its home page signs people in with it); choose another`);
    else if (!UNRESERVED.test(id)) problems.push(`${at}.client_id: "${id}" may only use letters, digits, ".", "_", "~" and "-"`);
    else if (seen.has(id)) problems.push(`${at}.client_id: "${id}" is already used by another client`);
    else seen.add(id);

    const isPublic = optionalBoolean(c.public, `${at}.public`, problems) ?? false;
    const secret = c.client_secret;
    if (isPublic) {
      if (secret !== undefined) problems.push(`${at}.client_secret: a public client (public: true) has no secret, since it could not keep one; remove it, or set public: false for an app that keeps its secret on a server`);
    } else if (typeof secret !== 'string' || secret === '') {
      problems.push(`${at}.client_secret: missing (or set public: true for an app that cannot keep a secret, such as a CLI or a phone app; it then signs in with PKCE alone)`);
    } else if (!UNRESERVED.test(secret)) {
      problems.push(`${at}.client_secret: may only use letters, digits, ".", "_", "~" and "-" (Cloudflare Access sends it without URL-encoding); generate one with: openssl rand -hex 32`);
    } else if (secret.length < 16) problems.push(`${at}.client_secret: is ${secret.length} characters; use at least 16 (e.g. openssl rand -hex 32)`);

    const redirect_uris = uriList(c.redirect_uris, `${at}.redirect_uris`, problems, false, isPublic);
    const post_logout_redirect_uris = uriList(c.post_logout_redirect_uris, `${at}.post_logout_redirect_uris`, problems, true, isPublic);
    const name = optionalString(c.name, `${at}.name`, problems) ?? (typeof id === 'string' ? id : '');
    const askedPkce = optionalBoolean(c.require_pkce, `${at}.require_pkce`, problems);
    if (isPublic && askedPkce === false) problems.push(`${at}.require_pkce: a public client always needs PKCE (its code is all it has); remove require_pkce: false`);
    const require_pkce = isPublic || (askedPkce ?? false);
    const refresh_tokens = optionalBoolean(c.refresh_tokens, `${at}.refresh_tokens`, problems) ?? false;
    const plex_token = optionalBoolean(c.plex_token, `${at}.plex_token`, problems) ?? false;
    if (plex_token && !configured.includes('plex')) problems.push(`${at}.plex_token: there is no Plex sign-in to take a token from: add a "plex:" section, or remove plex_token`);
    const allowed_groups = c.allowed_groups === undefined ? undefined : groupNames(c.allowed_groups, `${at}.allowed_groups`, groups, vouched, problems);
    const url = c.url === undefined ? undefined : webUrl(c.url, `${at}.url`, problems, false);
    const icon_url = c.icon_url === undefined ? undefined : webUrl(c.icon_url, `${at}.icon_url`, problems, true);
    let sources: ClientConfig['sources'];
    if (c.sources !== undefined) {
      const list = stringList(c.sources, `${at}.sources`, problems, { allowEmpty: false });
      for (const s of list ?? []) {
        if (!known.includes(s)) problems.push(`${at}.sources: "${s}" is not a source (use ${known.join(' or ')})`);
        else if (!configured.includes(s)) problems.push(`${at}.sources: "${s}" is not configured: add a "${s}:" section`);
      }
      sources = list;
    }
    if (problems.length === before) {
      clients.push({
        client_id: id as string,
        ...(isPublic ? { public: true } : { client_secret: secret as string }),
        ...(refresh_tokens ? { refresh_tokens } : {}),
        ...(plex_token ? { plex_token } : {}),
        redirect_uris: redirect_uris ?? [],
        post_logout_redirect_uris: post_logout_redirect_uris ?? [],
        name,
        require_pkce,
        ...(allowed_groups ? { allowed_groups } : {}),
        ...(sources ? { sources } : {}),
        ...(url ? { url } : {}),
        ...(icon_url ? { icon_url } : {}),
      });
    }
  });
  return clients;
}

/** What works but hands something over the operator should know about. */
export function clientWarnings(clients: readonly ClientConfig[]): string[] {
  return clients.flatMap((c, i) => (c.plex_token
    ? [`clients[${i}].plex_token: ${c.name} receives each Plex user's own Plex token in its ID token and userinfo: whatever that token can do at Plex (their libraries, their account), the app can, until they revoke it in Plex's Authorized Devices. Behind Cloudflare Access the token is also inside the CF_Authorization cookie the person's browser holds.`]
    : []));
}

/** An address a page may link to (https, or http on localhost) or, for an image, https only. */
function webUrl(value: unknown, at: string, problems: string[], image: boolean): string | undefined {
  const v = optionalString(value, at, problems);
  if (v === undefined) return undefined;
  const u = URL.parse(v);
  const ok = u && (u.protocol === 'https:' || (!image && u.protocol === 'http:' && isLoopbackHost(u.hostname))) && !/["'()\\\s<>]/.test(v);
  if (!ok) {
    problems.push(`${at}: "${v}" must be an https:// URL${image ? '' : ' (or http on localhost)'} without quotes, brackets or spaces`);
    return undefined;
  }
  return v;
}

/**
 * Redirect URIs: https, or http on a loopback host; and for a public client, a native app's
 * private-use scheme too (RFC 8252 §7.1: a reverse domain name, such as app.immich or
 * com.example.app), never one a browser would run or read (javascript:, data:, file:, ...).
 */
function uriList(value: unknown, at: string, problems: string[], optional: boolean, isPublic: boolean): string[] | undefined {
  if (value === undefined && optional) return [];
  const list = stringList(value, at, problems, { allowEmpty: optional });
  if (!list) return undefined;
  for (const uri of list) {
    const url = URL.parse(uri);
    if (!url || !/^[a-z][a-z0-9+.-]*:$/.test(url.protocol)) problems.push(`${at}: "${uri}" is not an absolute URL`);
    else if (url.hash || uri.includes('#')) problems.push(`${at}: "${uri}" must not contain a fragment (#)`);
    else if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
      problems.push(`${at}: "${uri}" uses plain http; only https (or http on localhost) is allowed`);
    } else if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      const scheme = url.protocol.slice(0, -1);
      if (!isPublic) {
        problems.push(`${at}: "${uri}" uses the scheme "${scheme}:", which only a native app uses; set public: true for it (a native app cannot keep a secret), or use an https URL`);
      } else if (!scheme.includes('.')) {
        problems.push(`${at}: "${uri}" uses the scheme "${scheme}:"; a native app's own scheme is a reverse domain name it owns, such as com.example.app (RFC 8252 §7.1)`);
      }
    }
  }
  return list;
}

function validateBranding(value: unknown, problems: string[]): BrandingConfig {
  if (value === undefined || value === null) return { ...DEFAULT_BRANDING };
  if (!isObject(value)) {
    problems.push('branding: must be a mapping (title, logo_url, accent_color, background_image, stylesheet)');
    return { ...DEFAULT_BRANDING };
  }
  unknownKeys(value, BRANDING_KEYS, 'branding', problems);
  const httpsUrl = (key: string) => {
    const v = optionalString(value[key], `branding.${key}`, problems);
    if (v === undefined) return undefined;
    const u = URL.parse(v);
    // Only https images: pages allow img-src https: and nothing else from outside.
    if (!u || u.protocol !== 'https:' || /["'()\\\s]/.test(v)) {
      problems.push(`branding.${key}: "${v}" must be an https:// URL without quotes, brackets or spaces`);
      return undefined;
    }
    return v;
  };
  const accent = optionalString(value.accent_color, 'branding.accent_color', problems);
  if (accent !== undefined && !/^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$/.test(accent)) {
    problems.push(`branding.accent_color: "${accent}" must be a hex colour such as "#e5a00d"`);
  }
  const logo_url = httpsUrl('logo_url');
  const background_image = httpsUrl('background_image');
  const stylesheet = optionalString(value.stylesheet, 'branding.stylesheet', problems);
  return {
    title: optionalString(value.title, 'branding.title', problems) ?? DEFAULT_BRANDING.title,
    ...(logo_url ? { logo_url } : {}),
    ...(accent && /^#[0-9a-fA-F]+$/.test(accent) ? { accent_color: accent } : {}),
    ...(background_image ? { background_image } : {}),
    ...(stylesheet ? { stylesheet } : {}),
  };
}

function validateRateLimits(value: unknown, problems: string[]): RateLimits {
  if (value === undefined || value === null) return { ...DEFAULT_RATE_LIMITS };
  if (!isObject(value)) {
    problems.push('rate_limits: must be a mapping such as {authorize: 60, interaction: 60, token: 300, pending: 50}');
    return { ...DEFAULT_RATE_LIMITS };
  }
  const keys = Object.keys(DEFAULT_RATE_LIMITS) as (keyof RateLimits)[];
  unknownKeys(value, keys, 'rate_limits', problems);
  const limit = (key: keyof RateLimits) => {
    const v = value[key];
    if (v === undefined) return DEFAULT_RATE_LIMITS[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
      const what = key === 'pending' ? 'number of unfinished sign-ins per network' : 'number of requests per minute';
      problems.push(`rate_limits.${key}: must be a whole ${what} (0 turns it off), not ${JSON.stringify(v)}`);
      return DEFAULT_RATE_LIMITS[key];
    }
    return v;
  };
  return Object.fromEntries(keys.map((k) => [k, limit(k)])) as unknown as RateLimits;
}

