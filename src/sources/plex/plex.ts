import { isObject } from '../../config/fields.ts';
import type { PlexConfig } from './config.ts';
import type { HealthItem } from '../../health.ts';
import { Refusal, refusing, type Identity } from '../source.ts';

// Sign-in with a Plex account, admitted only when one of the configured Plex servers is shared
// with it (or owned by it). The browser creates the PIN, because Plex shows a "Security Alert"
// when the PIN was made from another IP than the person's; everything that decides who the
// person is and whether they get in is read by this server, from plex.tv, with its own client
// identifier: the PIN, the account, and the account's resources. Nothing the browser says about
// a token, an id or a verdict is used. The Plex token is used for two calls and dropped.

type PinState =
  /** `code` is the PIN's secret half: only plex.tv and whoever created the PIN know it. */
  | { state: 'pending'; expiresAt: number; code: string }
  | { state: 'approved'; token: string }
  | { state: 'expired' };

export interface PlexSource {
  readonly clientIdentifier: string;
  readonly config: PlexConfig;
  /** Read a PIN from plex.tv; one that belongs to another client identifier counts as expired. */
  readPin(pinId: number): Promise<PinState>;
  /** The account behind an approved PIN's token, if a configured server is shared with it. */
  identify(token: string): Promise<Identity>;
  /** For the console: plex.tv answering, and the configured servers' names as last seen. */
  health(): Promise<HealthItem[]>;
}

/** `/api/v2/user` as plex.tv sends it: nothing in it is trusted to have the type it should. */
interface PlexUser {
  id: number;
  uuid?: unknown;
  /** Empty for a managed Home user, who has no plex.tv login of their own. */
  username?: unknown;
  /** The name shown in Plex: a managed user's only name, and anyone's to set. Display only. */
  title?: unknown;
  friendlyName?: unknown;
  /** A managed or Home user's may be the Home owner's address. */
  email?: unknown;
  thumb?: unknown;
  /** Plex marks an account `confirmed` once its owner has confirmed the email address. */
  confirmed?: unknown;
  /** A Plex Home user (any member of a Home, its admin included). */
  home?: unknown;
  /** The admin (owner) of the Plex Home. */
  homeAdmin?: unknown;
  /** A managed Home user. */
  restricted?: unknown;
  /** A Plex Home guest user. */
  guest?: unknown;
}

interface PlexResource {
  clientIdentifier?: string;
  provides?: string;
  owned?: boolean;
  /** The server reaches this account through the owner's Plex Home. */
  home?: boolean;
  name?: string;
}

/**
 * The groups a Plex sign-in vouches for, besides `plex:<machineIdentifier>`: everyone with a
 * configured server (`plex`), and the relationship to it, one of three: its owner, a member of
 * its owner's Plex Home (managed users and guests included), or a friend it is shared with.
 */
export const PLEX_TIERS = ['plex', 'plex-owner', 'plex-home', 'plex-friend'] as const;

/** How this account has a configured server. */
function tierOf(server: PlexResource, account: PlexUser): 'plex-owner' | 'plex-home' | 'plex-friend' {
  const dependent = isDependentAccount(account);
  if (!dependent && server.owned === true) return 'plex-owner';
  // plex.tv marks a Home member's copy of the server `home` (and may even call it owned, which a
  // dependent account cannot be); a managed user or a guest lives in the owner's Home by nature.
  if (server.home === true || (dependent && server.owned === true) || account.restricted === true || account.guest === true) return 'plex-home';
  return 'plex-friend';
}

/**
 * An account that lives under someone else's: a managed Home user, a Home guest, or a Home member
 * who is not its admin. Such an account can carry the Home owner's email, and a Home member's copy
 * of the owner's server may come back `owned` (plex-api.md §7b), so neither is theirs to claim.
 */
function isDependentAccount(account: PlexUser): boolean {
  return account.restricted === true || account.guest === true || (account.home === true && account.homeAdmin !== true);
}

/**
 * An account with a plex.tv login of its own (a Home member who is not managed, say), whose email
 * is therefore its own: plex.tv addresses belong to one account each.
 */
function hasOwnLogin(account: PlexUser, username: string | undefined): boolean {
  return username !== undefined && account.restricted !== true && account.guest !== true;
}

/**
 * The username, as a name config groups may list: Plex ties it to this one account. One with "@"
 * or ":" could pass for an email, a Tailscale login name, a tag or a `sub`, so it is not listed.
 */
function groupAlias(username: string | undefined): string[] {
  return username && !/[@:]/.test(username) ? [username] : [];
}

function nonEmptyString(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** plex.tv answered 401 for the person's own token: it will not vouch for them. Not an outage. */
function notVerified(what: string): Refusal {
  return new Refusal('not-verified', 'Plex did not confirm your sign-in',
    'plex.tv did not accept the sign-in it had just approved, so guestlist cannot tell who you are. Start again; if it keeps happening, sign out of Plex and back in.',
    `${what}: HTTP 401`);
}

/** plex.tv did not answer usefully: fail closed, and say so differently from "not allowed". */
class PlexUnavailable extends Refusal {
  constructor(detail: string) {
    super('source-unavailable', 'Plex is not answering',
      'guestlist could not check your Plex account with plex.tv just now, so it cannot sign you in. Try again in a minute.', detail);
  }
}

/** How long plex.tv has to answer one call. */
export const PLEX_TIMEOUT_MS = 5000;

export function plexSource(config: PlexConfig, clientIdentifier: string, version: string, timeoutMs = PLEX_TIMEOUT_MS): PlexSource {
  const headers = (token?: string): Record<string, string> => ({
    Accept: 'application/json',
    'X-Plex-Product': config.product,
    'X-Plex-Version': version,
    'X-Plex-Client-Identifier': clientIdentifier,
    // The token goes in a header, never the query string, so no proxy or log records it.
    ...(token ? { 'X-Plex-Token': token } : {}),
  });

  async function call(path: string, token?: string): Promise<{ status: number; body: unknown }> {
    let res: Response;
    try {
      res = await fetch(new URL(path, config.api_url), { headers: headers(token), signal: AbortSignal.timeout(timeoutMs), redirect: 'error' });
    } catch (err) {
      const why = (err as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (err as Error).message;
      throw new PlexUnavailable(`${path}: ${why}`);
    }
    const text = await res.text().catch(() => '');
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = undefined;
    }
    return { status: res.status, body };
  }

  // plex.tv tells a server's name only to accounts it is shared with, so guestlist learns each
  // configured server's name at the sign-ins it sees (on this instance), for the console.
  const serverNames = new Map<string, string>();

  return {
    clientIdentifier,
    config,

    async readPin(pinId) {
      const { status, body } = await call(`/api/v2/pins/${pinId}`);
      if (status === 404) return { state: 'expired' };
      if (status !== 200 || !isObject(body)) throw new PlexUnavailable(`GET /api/v2/pins/${pinId}: HTTP ${status}`);
      // plex.tv answers 404 for another client's PIN; check anyway, this is the one thing that
      // ties a PIN to this guestlist.
      if (body.clientIdentifier !== undefined && body.clientIdentifier !== clientIdentifier) return { state: 'expired' };
      const expiresAt = typeof body.expiresAt === 'string' ? Date.parse(body.expiresAt) : NaN;
      if (typeof body.authToken === 'string' && body.authToken !== '') return { state: 'approved', token: body.authToken };
      if (Number.isFinite(expiresAt) && expiresAt <= Date.now()) return { state: 'expired' };
      if (typeof body.code !== 'string' || body.code === '') throw new PlexUnavailable(`GET /api/v2/pins/${pinId}: a PIN without its code`);
      return { state: 'pending', expiresAt: Number.isFinite(expiresAt) ? expiresAt : Date.now() + 15 * 60_000, code: body.code };
    },

    async identify(token) {
      const user = await call('/api/v2/user', token);
      if (user.status === 401) throw notVerified('GET /api/v2/user');
      if (user.status !== 200 || !isObject(user.body) || typeof user.body.id !== 'number') {
        throw new PlexUnavailable(`GET /api/v2/user: HTTP ${user.status}`);
      }
      const account = user.body as unknown as PlexUser;
      const resources = await call('/api/v2/resources?includeHttps=1', token);
      if (resources.status === 401) throw notVerified('GET /api/v2/resources');
      if (resources.status !== 200 || !Array.isArray(resources.body)) {
        throw new PlexUnavailable(`GET /api/v2/resources: HTTP ${resources.status}`);
      }
      const servers = (resources.body as PlexResource[]).filter((r) =>
        isObject(r) && typeof r.provides === 'string' && r.provides.split(',').map((p) => p.trim()).includes('server')
        && typeof r.clientIdentifier === 'string' && config.server_ids.includes(r.clientIdentifier));
      const username = nonEmptyString(account.username);
      // Never the title: anyone can set it, and a managed user's may be anyone's name.
      const login = username ?? `plex-${account.id}`;
      const name = nonEmptyString(account.friendlyName) ?? nonEmptyString(account.title);
      if (servers.length === 0) {
        throw refusing(new Refusal('not-allowed', 'You are not on the guest list',
          `You signed in to Plex as ${login}, but the Plex server this site is for is not shared with that account. Ask its owner to share it with you, then try again.`,
          `plex:${account.id} has none of plex.server_ids among its resources`), `plex:${account.id}`, name ?? login);
      }
      for (const s of servers) if (nonEmptyString(s.name)) serverNames.set(s.clientIdentifier!, s.name!.slice(0, 200));
      const groups = ['plex', ...servers.map((s) => `plex:${s.clientIdentifier}`), ...servers.map((s) => tierOf(s, account))];
      // Only an address the account confirmed, on an account that signs in to plex.tv by itself:
      // a managed user or a guest may carry the Home owner's address. Without it there is no
      // email claim and no group by email.
      const email = hasOwnLogin(account, username) && account.confirmed === true ? nonEmptyString(account.email) : undefined;
      const thumb = nonEmptyString(account.thumb);
      return {
        source: 'plex',
        id: String(account.id),
        login,
        ...(name ? { name } : {}),
        ...(email ? { email } : {}),
        emailVerified: email !== undefined,
        ...(thumb && /^https:\/\//.test(thumb) ? { picture: thumb } : {}),
        aliases: groupAlias(username),
        groups: [...new Set(groups)],
      };
    },

    async health() {
      // Asked without a token, plex.tv answers 401: that it answers at all is what counts here.
      let reached: string;
      let ok: boolean;
      try {
        const { status } = await call('/api/v2/user');
        ok = status === 401 || status === 200;
        reached = ok ? `${config.api_url} answers` : `${config.api_url} answered HTTP ${status}, so sign-ins with Plex fail for now`;
      } catch (err) {
        ok = false;
        reached = (err as Refusal).detail ?? (err as Error).message;
      }
      return [
        { name: 'Plex', ok, detail: reached },
        ...config.server_ids.map((id) => ({
          name: `Plex server ${id}`, ok: true,
          detail: serverNames.has(id) ? `"${serverNames.get(id)}", as plex.tv listed it at a recent sign-in`
            : 'its name shows here once someone it is shared with signs in (plex.tv tells it only to them)',
        })),
      ];
    },
  };
}
