import { isIP } from 'node:net';
import { isLoopbackHost, isObject, optionalString, stringList, unknownKeys } from '../../config/fields.ts';

// The `jellyfin:` section of the config.

export interface JellyfinConfig {
  /** The Jellyfin server guestlist talks to (and only guestlist: the browser never does), no trailing slash. */
  url: string;
  /** Shown on the sign-in page ("the account you use on <server_name>"). */
  server_name?: string;
  /** Jellyfin user ids (32 hex, no dashes, lowercase) who may sign in; every enabled account when absent. */
  allowed_users?: string[];
}

export function parseJellyfinConfig(value: unknown, problems: string[]): JellyfinConfig | undefined {
  if (!isObject(value)) {
    problems.push('jellyfin: must be a mapping with at least url, e.g. {url: https://jellyfin.example.com}');
    return undefined;
  }
  unknownKeys(value, ['url', 'server_name', 'allowed_users'], 'jellyfin', problems);
  const url = optionalString(value.url, 'jellyfin.url', problems);
  if (url === undefined && value.url === undefined) {
    problems.push('jellyfin.url: missing; set it to the address guestlist reaches your Jellyfin server at, e.g. https://jellyfin.example.com or http://192.168.1.10:8096');
  }
  let base: string | undefined;
  if (url !== undefined) {
    const u = URL.parse(url);
    if (!u || (u.protocol !== 'https:' && u.protocol !== 'http:')) {
      problems.push(`jellyfin.url: "${url}" must be an http or https URL, e.g. https://jellyfin.example.com`);
    } else if (u.username || u.password || u.search || u.hash) {
      problems.push(`jellyfin.url: "${url}" must be the server's address only, without a user, query or fragment`);
    } else {
      // A base URL (Jellyfin's "Base URL" setting, e.g. /jellyfin) is kept; the API lives under it.
      base = `${u.origin}${u.pathname.replace(/\/+$/, '')}`;
    }
  }
  const serverName = optionalString(value.server_name, 'jellyfin.server_name', problems);
  let allowed: string[] | undefined;
  if (value.allowed_users !== undefined) {
    allowed = [];
    for (const id of stringList(value.allowed_users, 'jellyfin.allowed_users', problems, { allowEmpty: false }) ?? []) {
      const normal = normalUserId(id);
      if (normal) allowed.push(normal);
      else problems.push(`jellyfin.allowed_users: "${id}" is not a Jellyfin user id (32 hex characters, as in the address of the user's page in Jellyfin's dashboard)`);
    }
  }
  if (base === undefined) return undefined;
  return {
    url: base,
    ...(serverName ? { server_name: serverName } : {}),
    ...(allowed ? { allowed_users: allowed } : {}),
  };
}

/** A Jellyfin user id as Jellyfin writes it in JSON (32 lowercase hex); a dashed GUID is the same id. */
export function normalUserId(id: string): string | undefined {
  const hex = id.trim().toLowerCase().replace(/^\{|\}$/g, '').replace(/-/g, '');
  return /^[0-9a-f]{32}$/.test(hex) ? hex : undefined;
}

/**
 * Plain http is fine where the network itself keeps the traffic private (the same machine, a home
 * network, a container network, the tailnet), which is how most people reach their Jellyfin;
 * anywhere else the Quick Connect secret and the access token it buys would cross the internet
 * in clear.
 */
export function plainHttpWarning(config: JellyfinConfig): string | undefined {
  const u = new URL(config.url);
  if (u.protocol !== 'http:' || isPrivateHost(u.hostname)) return undefined;
  return `jellyfin.url: "${config.url}" is plain http to a public address: the Quick Connect secret and the access token it buys would cross the internet unencrypted. Use https, or an address on a private network or your tailnet.`;
}

function isPrivateHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (isLoopbackHost(host)) return true;
  const ip = isIP(host);
  if (ip === 4) {
    const [a, b] = host.split('.').map(Number) as [number, number];
    return a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 169 && b === 254)
      || (a === 100 && b >= 64 && b <= 127); // 100.64.0.0/10: the tailnet (CGNAT) range
  }
  if (ip === 6) {
    return /^f[cd]/.test(host) || /^fe[89ab]/.test(host) // unique local, link-local
      || host.startsWith('fd7a:115c:a1e0:'); // Tailscale's IPv6 range (inside fd00::/8, named for clarity)
  }
  // A name only a private network can resolve: a container or LAN host name with no dot, the
  // tailnet's MagicDNS names, and the names reserved for home and local networks.
  return !host.includes('.') || /\.(ts\.net|local|lan|home\.arpa|internal)$/.test(host);
}
