import type { ClientConfig } from '../config/config.ts';
import type { Identity } from '../sources/source.ts';
import type { AccountRecords, EndMark } from '../storage/store.ts';

// There is no user database: the identity a source vouched for is kept (by the store, see
// storage/store.ts) for as long as the session that carries it, because oidc-provider asks for
// the account again at /token and /me.

export interface Account {
  accountId: string;
  identity: Identity;
  groups: string[];
}

export interface AccountStore {
  remember(identity: Identity): Promise<Account>;
  find(accountId: string): Promise<Account | undefined>;
  /** When the person's source last vouched for them (ms): their last sign-in or re-check. */
  vouchedAt(accountId: string): Promise<number | undefined>;
  /** Everything given to this person so far stops counting: their sessions, grants and tokens. */
  end(accountId: string, mark: EndMark): Promise<void>;
  ended(accountId: string): Promise<EndMark | undefined>;
}

/** The people signed in, as these rules make them from an identity, kept in the store's records. */
export function accountStore(records: AccountRecords, groups: Record<string, string[]>): AccountStore {
  return {
    async remember(identity) {
      const account = accountFor(identity, groups);
      await records.keep({ ...account, vouchedAt: Date.now() });
      return account;
    },
    async find(accountId) {
      const kept = await records.find(accountId) as (Account & { vouchedAt?: number }) | undefined;
      // The groups by today's config, not the one it was kept under: someone taken out of a group
      // (and guestlist restarted on a shared store that kept them) is out at their next request.
      return kept && accountFor(kept.identity, groups);
    },
    vouchedAt: async (accountId) => ((await records.find(accountId)) as { vouchedAt?: number } | undefined)?.vouchedAt,
    end: (accountId, mark) => records.end(accountId, mark),
    ended: (accountId) => records.ended(accountId),
  };
}

export function accountFor(identity: Identity, groups: Record<string, string[]>): Account {
  return { accountId: accountIdFor(identity), identity, groups: groupsFor(identity, groups) };
}

/** `sub`: stable and namespaced by source, so a Plex id can never collide with a Tailscale id. */
export function accountIdFor(identity: Identity): string {
  return `${identity.source}:${identity.id}`;
}

/** The source a `sub` came from. */
export function sourceOf(sub: string): string {
  const colon = sub.indexOf(':');
  return colon === -1 ? sub : sub.slice(0, colon);
}

/**
 * Groups from the config that list this person, and the source's own. A member matches,
 * case-insensitively, only a verified fact: the `sub` itself, the email when the source verified
 * it, or one of the names the source verified (`aliases`: a Tailscale login name, a Plex username,
 * a tagged device's tags). Never the login or display name as such: a Plex title, a device's host
 * name or an unconfirmed email is anyone's to set, and must not put them in a group.
 */
export function groupsFor(identity: Identity, groups: Record<string, string[]>): string[] {
  const verifiedEmail = identity.emailVerified ? identity.email : undefined;
  const names = new Set([accountIdFor(identity), verifiedEmail, ...(identity.aliases ?? [])]
    .filter((n): n is string => !!n).map((n) => n.toLowerCase()));
  const configured = Object.entries(groups)
    .filter(([, members]) => members.some((m) => names.has(m.toLowerCase())))
    .map(([name]) => name);
  return [...new Set([...configured, ...(identity.groups ?? [])])];
}

/** Whether this person may sign in to this client: by a source it accepts, in a group it allows. */
export function mayUseClient(account: Account, client: ClientConfig): boolean {
  const source = account.identity.source;
  if (client.sources && !client.sources.includes(source)) return false;
  if (!client.allowed_groups) return true;
  return client.allowed_groups.some((g) => account.groups.includes(g));
}

/**
 * A preferred_username that Headscale accepts (hscontrol/util ValidateUsername): at least two
 * characters, starting with a letter, only letters, digits, "-", "." and "_", at most one "@".
 * Headscale silently drops a name that breaks the rule, leaving the user nameless.
 */
export function preferredUsername(login: string): string {
  let seenAt = false;
  let name = [...login.normalize('NFKD').replace(/\p{M}/gu, '')]
    .map((ch) => {
      if (ch === '@') {
        if (seenAt) return '-';
        seenAt = true;
        return ch;
      }
      return /[A-Za-z0-9._-]/.test(ch) ? ch : '-';
    })
    .join('');
  if (!/^[A-Za-z]/.test(name)) name = `u${name}`;
  if (name.length < 2) name = `${name}-user`;
  return name;
}

export function claimsFor(account: Account): Record<string, unknown> {
  const { identity } = account;
  return {
    sub: account.accountId,
    preferred_username: preferredUsername(identity.login),
    name: identity.name ?? identity.login,
    // Only a verified address: Cloudflare Access (and many apps) know a person by the email
    // claim alone, whatever email_verified says.
    ...(identity.email && identity.emailVerified ? { email: identity.email, email_verified: true } : {}),
    ...(identity.picture ? { picture: identity.picture } : {}),
    groups: account.groups,
  };
}
