import { isObject } from '../../config/fields.ts';
import type { HealthItem } from '../../health.ts';
import { Refusal, refusing, type Identity } from '../source.ts';
import { normalUserId, type JellyfinConfig } from './config.ts';

// The operator's Jellyfin server, as guestlist's server talks to it (the browser never does):
// Quick Connect, checked against Jellyfin 10.9 to 10.11 and 12.0 (jellyfin/jellyfin:
// QuickConnectController, QuickConnectManager, UserController.AuthenticateWithQuickConnect,
// SessionController, AuthorizationContext).
//
//   POST /QuickConnect/Initiate                 -> { Secret (64 hex), Code (6 digits), ... }
//   GET  /QuickConnect/Connect?secret=          -> { Authenticated, ... }; 404 once unknown or expired
//   POST /Users/AuthenticateWithQuickConnect    -> { User, AccessToken, ... }; 404 until authorized
//   POST /Sessions/Logout                       -> 204; the access token is gone
//
// Every call carries `Authorization: MediaBrowser Client=, Device=, DeviceId=, Version=`: Jellyfin
// refuses Initiate (400) without all four. A request lives 10 minutes. Authorizing a code makes an
// access token for the person at once, as a "device" named by the DeviceId; each sign-in gets its
// own DeviceId, so the token guestlist is handed can be revoked without touching anyone else's.
// Exchanging the secret does not consume it (it answers again for 10 minutes): using it once is
// guestlist's job (sign-in.ts). Jellyfin does not check that the account is enabled when an
// administrator authorizes a code for it, so guestlist checks Policy.IsDisabled itself.

/** How long Jellyfin keeps a Quick Connect request (QuickConnectManager.Timeout). */
export const REQUEST_LIFETIME_MS = 10 * 60_000;

export interface QuickConnectRequest {
  /** Only guestlist's server and Jellyfin ever see it; whoever holds it can collect the sign-in. */
  secret: string;
  /** The six digits the person types into Jellyfin. */
  code: string;
}

export type RequestState = 'pending' | 'authorized' | 'expired';

export interface JellyfinUser {
  id: string;
  name: string;
  isAdministrator: boolean;
  isDisabled: boolean;
}

export interface JellyfinClient {
  readonly config: JellyfinConfig;
  initiate(deviceId: string): Promise<QuickConnectRequest>;
  state(secret: string, deviceId: string): Promise<RequestState>;
  /** The person who authorized the request, or 'pending' while nobody has (or it expired). */
  exchange(secret: string, deviceId: string): Promise<{ user: JellyfinUser; accessToken: string } | 'pending'>;
  /** Revokes an access token; true when Jellyfin confirmed it. */
  revoke(accessToken: string, deviceId: string): Promise<boolean>;
  /** For the console: the server answering, its name and version, and Quick Connect on. */
  health(): Promise<HealthItem[]>;
}

/** Jellyfin did not answer usefully: fail closed, and say so differently from "not allowed". */
export class JellyfinUnavailable extends Refusal {
  /** The error status Jellyfin answered with; undefined when it did not answer (a timeout, a reset) or sent a 200 that made no sense. */
  readonly httpStatus: number | undefined;
  constructor(detail: string, options: { message?: string; title?: string; httpStatus?: number } = {}) {
    super('source-unavailable', options.title ?? 'Jellyfin is not answering',
      options.message ?? 'guestlist could not reach the Jellyfin server just now, so it cannot sign you in with it. Try again in a minute.', detail);
    this.httpStatus = options.httpStatus;
  }
}

function quickConnectOff(detail: string): JellyfinUnavailable {
  return new JellyfinUnavailable(detail, {
    title: 'Quick Connect is turned off',
    message: 'This Jellyfin server does not allow Quick Connect sign-ins right now, so guestlist cannot sign you in with it. Ask whoever runs it to turn on "Enable Quick Connect" in Jellyfin\'s dashboard (General).',
    httpStatus: 401,
  });
}

export function jellyfinClient(config: JellyfinConfig, version: string, deviceName: string, timeoutMs = 5000): JellyfinClient {
  // Jellyfin URL-decodes each value and splits on commas and quotes, so every value is encoded.
  const authorization = (deviceId: string, token?: string) => `MediaBrowser ${[
    ['Client', 'guestlist'], ['Device', deviceName], ['DeviceId', deviceId], ['Version', version],
    ...(token ? [['Token', token]] : []),
  ].map(([k, v]) => `${k}="${encodeURIComponent(v!)}"`).join(', ')}`;

  async function call(method: 'GET' | 'POST', path: string, deviceId: string, options: { body?: unknown; token?: string } = {}): Promise<{ status: number; body: unknown; what: string }> {
    const what = `${method} ${path.replace(/secret=[^&]*/, 'secret=…')}`;
    let res: Response;
    try {
      res = await fetch(`${config.url}${path}`, {
        method,
        headers: {
          Accept: 'application/json',
          Authorization: authorization(deviceId, options.token),
          ...(options.body !== undefined ? { 'Content-Type': 'application/json' } : {}),
        },
        ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
        signal: AbortSignal.timeout(timeoutMs),
        // A redirect would be a proxy's login page or a moved server: not Jellyfin answering.
        redirect: 'manual',
      });
    } catch (err) {
      const why = (err as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : describeFetchError(err);
      throw new JellyfinUnavailable(`${what}: ${why}`);
    }
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      throw new JellyfinUnavailable(`${what}: HTTP ${res.status}, body cut short (${describeFetchError(err)})`);
    }
    let body: unknown;
    if ((res.headers.get('content-type') ?? '').includes('json')) {
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        throw new JellyfinUnavailable(`${what}: HTTP ${res.status}, a body that is not JSON`);
      }
    }
    return { status: res.status, body, what };
  }

  const unexpected = (r: { status: number; what: string }) => r.status === 200
    ? new JellyfinUnavailable(`${r.what}: HTTP 200, not the JSON Jellyfin sends`)
    : new JellyfinUnavailable(`${r.what}: HTTP ${r.status}`, { httpStatus: r.status });

  return {
    config,

    async initiate(deviceId) {
      const r = await call('POST', '/QuickConnect/Initiate', deviceId);
      if (r.status === 401) throw quickConnectOff(`${r.what}: HTTP 401 (Quick Connect disabled)`);
      if (r.status === 405 || r.status === 404) {
        throw new JellyfinUnavailable(`${r.what}: HTTP ${r.status} (Jellyfin older than 10.9, or not Jellyfin)`, {
          message: 'The Jellyfin server is too old for guestlist (it needs 10.9 or later), or the address guestlist has for it is wrong. Tell whoever runs it.',
          httpStatus: r.status,
        });
      }
      if (r.status !== 200 || !isObject(r.body)) throw unexpected(r);
      const { Secret: secret, Code: code } = r.body;
      if (typeof secret !== 'string' || !/^[0-9A-Fa-f]{32,128}$/.test(secret) || typeof code !== 'string' || !/^\d{6}$/.test(code)) {
        throw new JellyfinUnavailable(`${r.what}: a Quick Connect request without a proper Secret and Code`);
      }
      return { secret, code };
    },

    async state(secret, deviceId) {
      const r = await call('GET', `/QuickConnect/Connect?secret=${encodeURIComponent(secret)}`, deviceId);
      if (r.status === 404) return 'expired';
      if (r.status === 401) throw quickConnectOff(`${r.what}: HTTP 401 (Quick Connect disabled)`);
      if (r.status !== 200 || !isObject(r.body) || typeof r.body.Authenticated !== 'boolean') throw unexpected(r);
      return r.body.Authenticated ? 'authorized' : 'pending';
    },

    async exchange(secret, deviceId) {
      const r = await call('POST', '/Users/AuthenticateWithQuickConnect', deviceId, { body: { Secret: secret } });
      if (r.status === 404) return 'pending';
      if (r.status === 401) throw quickConnectOff(`${r.what}: HTTP 401 (Quick Connect disabled)`);
      if (r.status !== 200 || !isObject(r.body) || !isObject(r.body.User)) throw unexpected(r);
      const user = r.body.User;
      const policy = isObject(user.Policy) ? user.Policy : undefined;
      const id = typeof user.Id === 'string' ? normalUserId(user.Id) : undefined;
      // Without the policy there is no telling whether the account is disabled: fail closed.
      if (!id || typeof user.Name !== 'string' || user.Name === '' || !policy || typeof policy.IsDisabled !== 'boolean') {
        throw new JellyfinUnavailable(`${r.what}: a user without a proper Id, Name or Policy.IsDisabled`);
      }
      return {
        user: { id, name: user.Name, isAdministrator: policy.IsAdministrator === true, isDisabled: policy.IsDisabled },
        accessToken: typeof r.body.AccessToken === 'string' ? r.body.AccessToken : '',
      };
    },

    async revoke(accessToken, deviceId) {
      if (!accessToken) return false;
      const r = await call('POST', '/Sessions/Logout', deviceId, { token: accessToken });
      return r.status === 204 || r.status === 200;
    },

    async health() {
      const name = 'Jellyfin';
      // Both anonymous: no token is made or used to look.
      let info, enabled;
      try {
        [info, enabled] = await Promise.all([call('GET', '/System/Info/Public', 'guestlist-health'), call('GET', '/QuickConnect/Enabled', 'guestlist-health')]);
      } catch (err) {
        return [{ name, ok: false, detail: (err instanceof Refusal && err.detail) || (err as Error).message }];
      }
      if (info.status !== 200 || !isObject(info.body)) return [{ name, ok: false, detail: `${info.what}: HTTP ${info.status}, not Jellyfin's answer` }];
      const server = typeof info.body.ServerName === 'string' ? `"${info.body.ServerName.slice(0, 200)}"` : 'a server with no name';
      const version = typeof info.body.Version === 'string' ? `, Jellyfin ${info.body.Version.slice(0, 40)}` : '';
      const on = enabled.status === 200 && enabled.body === true;
      return [{
        name, ok: on,
        detail: `${config.url}: ${server}${version}; ${on ? 'Quick Connect is on' : 'Quick Connect is off, so nobody can sign in with Jellyfin until it is turned on (Dashboard, General)'}`,
      }];
    },
  };
}

/** Who a Jellyfin user is to guestlist; refused when disabled or not among allowed_users. */
export function identityOf(user: JellyfinUser, config: JellyfinConfig): Identity {
  const where = config.server_name ?? 'this Jellyfin server';
  if (user.isDisabled) {
    throw refusing(new Refusal('not-allowed', 'You are not on the guest list',
      `The Jellyfin account ${user.name} is disabled on ${where}, so it cannot sign in here. Ask whoever runs it.`,
      `jellyfin:${user.id} is disabled (Policy.IsDisabled)`), `jellyfin:${user.id}`, user.name);
  }
  if (config.allowed_users && !config.allowed_users.includes(user.id)) {
    throw refusing(new Refusal('not-allowed', 'You are not on the guest list',
      `You signed in to Jellyfin as ${user.name}, but that account is not one of those allowed to sign in here. Ask whoever runs it to add you.`,
      `jellyfin:${user.id} is not in jellyfin.allowed_users`), `jellyfin:${user.id}`, user.name);
  }
  return {
    source: 'jellyfin',
    id: user.id,
    // A name an administrator gives and can change: shown, and made a username, but no config
    // group lists people by it (they are listed by `sub`, jellyfin:<id>).
    login: user.name,
    name: user.name,
    // Jellyfin keeps no verified email.
    emailVerified: false,
    groups: user.isAdministrator ? ['jellyfin', 'jellyfin-admin'] : ['jellyfin'],
  };
}

function describeFetchError(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err as Error).message;
}
