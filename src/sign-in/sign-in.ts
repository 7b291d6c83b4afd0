import type { IncomingMessage, ServerResponse } from 'node:http';
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { ClientConfig } from '../config/config.ts';
import type { Logger, LogLevel } from '../log.ts';
import type { Activity } from '../storage/store.ts';
import type { Peer } from '../network.ts';
import { Refusal, refusing, type AmbientSource, type Identity, type LogOnly, type SessionRule } from '../sources/source.ts';
import { accountIdFor, mayUseClient, sourceOf, type Account, type AccountStore } from './accounts.ts';

// The one place a sign-in is decided: between "a source answered" and "oidc-provider was told".
// Both ways in end here: /auth itself, for a person an ambient source knows from the connection
// (one hop, no page), and the interaction routes, for everyone else. Here:
//
//   ambient(req, client)       the client's ambient sources, asked once per request, in the
//                              config's order: the first who knows the person and whom the
//                              client admits, else every refusal, for the page to explain
//   admit(identity, client)    may this person use this client (groups, sources)
//   withinAuthorization(ctx)   the one-hop hand-over to oidc-provider, inside /auth
//   finish(...)                the interaction's hand-over to oidc-provider
//   holdsFor / stillHolds      each source's session rule: how long its sign-in holds, and
//                              whether a reused session must be verified again
//   end / account              the one rule that ends a person's sign-ins: everything given to
//                              them before stops counting (sessions, codes, tokens)
//   the `login` log lines      one shape for every outcome

/** A person a source vouched for, whom the client lets in. */
export interface Admitted {
  account: Account;
  source: string;
}

/** What the client's ambient sources said of a request. */
export type AmbientAnswer = { admitted: Admitted } | { refused: { refusal: Refusal; source: string }[] };

export interface SignInDeps {
  ambient: AmbientSource[];
  /** Each source's session rule, by the source name a `sub` starts with. */
  rules: ReadonlyMap<string, SessionRule>;
  accounts: AccountStore;
  clients: ReadonlyMap<string, ClientConfig>;
  /** The TCP peer of a request (http/client-network.ts). */
  peerOf(req: IncomingMessage): Peer;
  log: Logger;
  /** Where the console finds the sign-ins and who is signed in (the store's). */
  activity: Activity;
  /** The upstream token a source keeps for a person, by source name (Plex's), for the apps configured to receive it. */
  upstreamTokens?: ReadonlyMap<string, (identity: Identity) => Promise<string | undefined>>;
}

export type SignIn = ReturnType<typeof signIns>;

/** Whether this client takes people from this source (every configured one, unless it lists some). */
export function accepts(client: ClientConfig, source: string): boolean {
  return !client.sources || client.sources.includes(source);
}

/** A day: what a session holds for when its source has no rule (it is no longer configured). */
const WITHOUT_RULE_SECONDS = 24 * 3600;

/**
 * How long a refresh token's grant may last when its source verifies the person again at each
 * refresh (tsidp keeps 30 days): a tailnet device refreshing over the tailnet, a Plex share
 * re-checked with plex.tv.
 */
export const REFRESH_SECONDS = 30 * 24 * 3600;

export function signIns(deps: SignInDeps) {
  const { ambient, rules, accounts, clients, peerOf, log, activity } = deps;
  const ruleOf = (sub: string): SessionRule | undefined => rules.get(sourceOf(sub));

  /** The person is known: remember them, and let them into this client only if it allows them. */
  async function admit(identity: Identity, client: ClientConfig): Promise<Account> {
    const account = await accounts.remember(identity);
    if (!mayUseClient(account, client)) {
      const why = `You are signed in as ${identity.login}, but that account is not allowed into ${client.name}.`;
      throw refusing(new Refusal('not-allowed', 'You are not on the guest list', `${why} Ask whoever runs it to add you.`,
        `${account.accountId} is in none of ${client.client_id}'s allowed_groups or sources`, why), account.accountId, identity.name ?? identity.login);
    }
    return account;
  }

  async function askAmbient(req: IncomingMessage, client: ClientConfig): Promise<AmbientAnswer> {
    const peer = peerOf(req);
    const refused: { refusal: Refusal; source: string }[] = [];
    for (const source of ambient.filter((s) => accepts(client, s.name))) {
      try {
        return { admitted: { account: await admit(await source.identify(peer), client), source: source.name } };
      } catch (err) {
        if (!(err instanceof Refusal)) throw err;
        refused.push({ refusal: err, source: source.name });
      }
    }
    return { refused };
  }

  // Asked once per request: /auth's one-hop hand-over and its session check share one answer.
  const answers = new WeakMap<IncomingMessage, { clientId: string; answer: Promise<AmbientAnswer> }>();
  function ambientFor(req: IncomingMessage, client: ClientConfig): Promise<AmbientAnswer> {
    const known = answers.get(req);
    if (known?.clientId === client.client_id) return known.answer;
    const answer = askAmbient(req, client);
    answers.set(req, { clientId: client.client_id, answer });
    return answer;
  }

  /**
   * Every outcome's one record: a `login` log line, and the console's event (with the sentence
   * the person was shown). The console is told on the side: a sign-in never waits for it, nor
   * fails with it (a shared store that is down says so at the next step that needs it).
   */
  function loginLine(level: LogLevel, fields: Record<string, unknown> & { outcome: string }, said?: string): void {
    log(level, 'login', fields);
    const pick = (k: string) => (typeof fields[k] === 'string' ? { [k]: fields[k] as string } : {});
    void activity.record({ at: Date.now(), outcome: fields.outcome, ...pick('source'), ...pick('client_id'), ...pick('sub'), ...pick('name'), ...pick('reason'), ...(said ? { said } : {}) })
      .catch(() => {});
  }

  function logSignedIn(source: string, clientId: string, account: Account): void {
    const name = account.identity.name ?? account.identity.login;
    loginLine('info', { outcome: 'signed-in', source, client_id: clientId, sub: account.accountId, name });
    const holds = (ruleOf(account.accountId)?.holdsFor ?? WITHOUT_RULE_SECONDS) * 1000;
    void activity.seen({ sub: account.accountId, name, source, groups: account.groups }, clientId, Date.now() + holds).catch(() => {});
  }

  /** A refusal the person sees, or a step's log-only outcome; `next` says what the person is offered instead. */
  function logRefused(refusal: Refusal | LogOnly, source: string, clientId: string, next?: string): void {
    const person = refusal instanceof Refusal ? refusal.person : undefined;
    loginLine(refusal.reason === 'source-unavailable' || refusal.reason === 'too-many' ? 'warn' : 'info', {
      outcome: 'refused', reason: refusal.reason, source, client_id: clientId, ...(person ? { sub: person.sub, name: person.name } : {}),
      ...(refusal.detail ? { detail: refusal.detail } : {}), ...(next ? { next } : {}),
    }, refusal instanceof Refusal ? refusal.message : undefined);
  }

  /**
   * End everything this person was given so far; `refusal` is what they are told when they come
   * back (a re-check's verdict), and is logged as outcome `revoked`.
   */
  async function end(sub: string, refusal?: Refusal, clientId?: string): Promise<void> {
    await accounts.end(sub, { at: Date.now(), ...(refusal ? { note: { reason: refusal.reason, title: refusal.title, message: refusal.message } } : {}) });
    await activity.forget(sub).catch(() => {});
    if (refusal) {
      loginLine('info', { outcome: 'revoked', reason: refusal.reason, source: sourceOf(sub), sub, ...(refusal.person ? { name: refusal.person.name } : {}),
        ...(clientId ? { client_id: clientId } : {}), ...(refusal.detail ? { detail: refusal.detail } : {}) }, refusal.message);
    }
  }

  /** Whoever runs guestlist ended everything `sub` was given (the console's Sign out everywhere); `by` is the operator's sub. */
  async function signOutEverywhere(sub: string, by: string): Promise<void> {
    const identity = (await accounts.find(sub))?.identity;
    await end(sub);
    loginLine('info', { outcome: 'revoked', reason: 'signed-out-by-operator', source: sourceOf(sub), sub,
      ...(identity ? { name: identity.name ?? identity.login } : {}), by });
  }

  /**
   * Whether what was given to `sub` at `issuedAt` still holds for `client`: the person is still
   * known, still allowed in, and still who their source says, as its session rule asks. Who they
   * are now, or undefined.
   */
  async function verifiedAgain(req: IncomingMessage, sub: string, issuedAt: number | undefined, client: ClientConfig): Promise<Account | undefined> {
    const account = await accountOf(sub, issuedAt);
    if (!account || !mayUseClient(account, client)) return undefined;
    const rule = ruleOf(sub);
    if (!rule) return undefined;
    if (!rule.verifyAgain) return account;
    if (rule.verifyAgain === 'from-the-connection') {
      const answer = await ambientFor(req, client);
      return 'admitted' in answer && answer.admitted.account.accountId === sub ? answer.admitted.account : undefined;
    }
    try {
      const again = await rule.verifyAgain(account.identity);
      if (again.kept) loginLine('warn', { outcome: 'kept', reason: 'source-unavailable', source: sourceOf(sub), sub, client_id: client.client_id, detail: again.kept });
      if (accountIdFor(again.identity) !== sub) return undefined;
      if (again.identity === account.identity) return account; // not asked again: nothing new
      // Who they are now: a tier that changed (a friend moved into the Plex Home) is in the next
      // token. Unless another instance's re-check ended them meanwhile.
      const now = await accounts.remember(again.identity);
      return mayUseClient(now, client) && (await accountOf(sub, issuedAt)) !== undefined ? now : undefined;
    } catch (err) {
      if (!(err instanceof Refusal)) throw err;
      // The upstream says they are out (the share is gone, the token revoked): so is everything
      // they were given. Not answering past the grace, or nothing left to ask with, is no
      // verdict: not this time, and they sign in again.
      if (err.reason === 'not-allowed' || err.reason === 'not-verified') await end(sub, err, client.client_id);
      else logRefused(err, sourceOf(sub), client.client_id);
      return undefined;
    }
  }

  /**
   * The person behind `sub`, unless their sign-ins were ended after `issuedAt` (seconds: oidc-
   * provider's `iat`, a session's `loginTs`) was given out. Within the second of the end, what
   * was given out is taken as before it, unless the person was vouched for again after the end
   * and in that second or later (shared again, and signed in again at once).
   */
  async function accountOf(sub: string, issuedAt: number | undefined): Promise<Account | undefined> {
    const found = await accounts.find(sub);
    if (!found) return undefined;
    const ended = await accounts.ended(sub);
    if (!ended || (issuedAt !== undefined && issuedAt * 1000 > ended.at)) return found;
    const vouchedAt = await accounts.vouchedAt(sub);
    const since = vouchedAt !== undefined && vouchedAt > ended.at ? Math.floor(vouchedAt / 1000) : undefined;
    return since !== undefined && issuedAt !== undefined && issuedAt >= since ? found : undefined;
  }

  return {
    admit,
    end,
    signOutEverywhere,
    accountOf,
    ambient: ambientFor,

    /** What a person whose sign-ins a re-check ended is told when they come back, if that is why. */
    async endedWith(sub: string): Promise<Refusal | undefined> {
      const note = (await accounts.ended(sub))?.note;
      return note?.reason ? new Refusal(note.reason as Refusal['reason'], note.title ?? '', note.message ?? '') : undefined;
    },
    logSignedIn,
    logRefused,
    logAbandoned: (clientId: string) => loginLine('info', { outcome: 'abandoned', client_id: clientId }),

    /** How long a sign-in from the source of this sub holds, in seconds. */
    holdsFor: (sub: string | undefined): number => (sub && ruleOf(sub)?.holdsFor) || WITHOUT_RULE_SECONDS,

    /**
     * Inside /auth (oidc-provider's hook, see oidc/provider.ts): when an ambient source knows the
     * person and the client admits them, the session takes them here and /auth answers with the
     * code: no page. Anyone else, and a refusal, is left to the interaction page, which asks again
     * and says why. A session whose rule lets it hold unasked (Plex) stays who it is.
     */
    async withinAuthorization(ctx: KoaContextWithOIDC): Promise<void> {
      const client = clients.get(ctx.oidc.client?.clientId ?? '');
      const session = ctx.oidc.session!;
      if (!client) return;
      if (session.accountId && ruleOf(session.accountId)?.verifyAgain !== 'from-the-connection') return;
      const answer = await ambientFor(ctx.req, client);
      if (!('admitted' in answer)) return;
      const { account, source } = answer.admitted;
      // Another person's session in this browser: leave the switch to the interaction, which asks.
      if (session.accountId && session.accountId !== account.accountId) return;
      session.loginAccount({ accountId: account.accountId, amr: [source], transient: true });
      // As oidc-provider does when a sign-in resumes: a session that existed before this
      // sign-in gets a new id, so a session id planted in the browser never becomes signed in.
      if (!(session as unknown as { new?: boolean }).new) session.resetIdentifier();
      logSignedIn(source, client.client_id, account);
    },

    /**
     * Whether the session's person may be let into this client again without a page: they are
     * still known, still allowed in, and still who their source says, as its rule asks.
     */
    async stillHolds(ctx: KoaContextWithOIDC): Promise<boolean> {
      const { oidc } = ctx;
      const sub = oidc.session?.accountId;
      if (oidc.result?.login || !sub) return true;
      const client = clients.get(oidc.client?.clientId ?? '');
      return !!client && (await verifiedAgain(ctx.req, sub, oidc.session?.loginTs, client)) !== undefined;
    },

    /**
     * At a refresh (oidc-provider's findAccount for a RefreshToken): who the token's person is
     * now, or undefined (invalid_grant). Nothing ended them since `issuedAt`, the client still
     * admits them, and their source vouches for them again as its rule says: a source that asks
     * its upstream (Plex) asks it; a tailnet sign-in holds long only while the refresh itself
     * comes over the tailnet from one of that person's devices, otherwise, as a source that is
     * not asked again (Jellyfin), only for the session rule's lifetime after the sign-in.
     */
    async refreshed(req: IncomingMessage, sub: string, issuedAt: number | undefined, signedInAt: number | undefined, client: ClientConfig): Promise<Account | undefined> {
      const rule = ruleOf(sub);
      const young = signedInAt !== undefined && rule !== undefined && Date.now() - signedInAt * 1000 <= rule.holdsFor * 1000;
      if (rule?.verifyAgain === 'from-the-connection' && young) {
        const account = await accountOf(sub, issuedAt);
        return account && mayUseClient(account, client) ? account : undefined;
      }
      if (!rule?.verifyAgain && !young) return undefined;
      return verifiedAgain(req, sub, issuedAt, client);
    },

    /** The token the person's source keeps for them (their Plex token), if it keeps one. */
    upstreamToken: async (account: Account): Promise<string | undefined> => deps.upstreamTokens?.get(account.identity.source)?.(account.identity),

    /** How long a refresh token's grant may last for this person: the session rule's lifetime, or REFRESH_SECONDS for a source that verifies them again. */
    refreshLifetime: (sub: string): number => {
      const rule = ruleOf(sub);
      return rule?.verifyAgain ? REFRESH_SECONDS : rule?.holdsFor ?? WITHOUT_RULE_SECONDS;
    },

    /** The interaction's hand-over to oidc-provider: where the browser goes next. */
    async finish(provider: Provider, ctx: { req: IncomingMessage; res: ServerResponse }, admitted: Admitted, clientId: string): Promise<string> {
      logSignedIn(admitted.source, clientId, admitted.account);
      return provider.interactionResult(ctx.req, ctx.res, { login: { accountId: admitted.account.accountId, amr: [admitted.source], remember: false } }, { mergeWithLastSubmission: false });
    },
  };
}

/**
 * What the sign-in page says above the other ways in, when an ambient source did not let the
 * person in and that is news to them (the refusal's own words, else why it could not work here).
 */
export function insteadNotice(refusal: Refusal, clientName: string, labels: string): string | undefined {
  const why = refusal.instead ?? (refusal.reason === 'not-allowed' ? refusal.message
    : refusal.reason === 'tagged-device' || refusal.reason === 'source-unavailable' ? `${refusal.title}, so you cannot be signed in to ${clientName} automatically.`
      : undefined);
  return why && `${why} You can sign in with ${labels} instead.`;
}
