import type { Middleware } from 'koa';
import Provider, { errors, interactionPolicy, type Adapter, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import { cookieSigner } from '../keys/cookie-signer.ts';
import { claimsFor } from '../sign-in/accounts.ts';
import type { SignIn } from '../sign-in/sign-in.ts';
import { expiredPage } from '../http/expired-sign-in.ts';
import { HOME_CLIENT_ID, type ClientConfig, type CoreConfig } from '../config/config.ts';
import type { KeyMaterial } from '../keys/keys.ts';
import type { Logger } from '../log.ts';
import { Html, type Pages } from '../html.ts';
import { answerTooManySignIns, TooManySignIns } from '../http/pending-sign-ins.ts';
import { routeOf } from '../http/provider-routes.ts';
import { answerStorageDown } from '../http/error-pages.ts';
import { StorageUnavailable, type Store } from '../storage/store.ts';

// How guestlist configures oidc-provider, and why. The relying parties we must please:
// Headscale (go-oidc + x/oauth2) and Cloudflare Access (generic OIDC, no discovery, no userinfo).

export const TTL = {
  AuthorizationCode: 60,
  IdToken: 3600,
  AccessToken: 3600,
  Interaction: 600,
  Session: 24 * 3600,
  Grant: 24 * 3600,
} as const;

const SCOPE_STRING = ['openid', 'email', 'profile', 'groups'].join(' ');
/** The extra authorization parameter whose validator is the one-hop sign-in hook (see extraParams). */
const ONE_HOP_HOOK = 'guestlist_ambient';

export interface ProviderDeps {
  config: CoreConfig;
  keys: KeyMaterial;
  store: Pick<Store, 'adapterFor'>;
  log: Logger;
  pages: Pages;
  /** The configured clients, and guestlist's own (the home page's), by client_id. */
  clients: ReadonlyMap<string, ClientConfig>;
  /** The sign-in decision (sign-in/sign-in.ts): the one-hop hand-over and each source's session rule. */
  signIn: Pick<SignIn, 'withinAuthorization' | 'stillHolds' | 'holdsFor' | 'accountOf' | 'refreshed' | 'refreshLifetime' | 'upstreamToken'>;
  /** The Interaction adapter as the pending sign-ins count it (see http/pending-sign-ins.ts). */
  pendingInteractions(inner: Adapter): Adapter;
}

export function createProvider({ config, keys, store, log, pages, clients, signIn, pendingInteractions }: ProviderDeps): Provider {
  const configuration: Configuration = {
    adapter: (model: string) => {
      const inner = store.adapterFor(model);
      if (model === 'Session') return sessionsOfPeople(inner);
      if (model === 'Interaction') return pendingInteractions(inner);
      return inner;
    },
    jwks: { keys: keys.signingKeys as NonNullable<Configuration['jwks']>['keys'] },
    cookies: {
      keys: keys.cookieSecrets,
      long: { httpOnly: true, sameSite: 'lax' },
      short: { httpOnly: true, sameSite: 'lax' },
    },
    clients: [...clients.values()].map((c) => ({
      client_id: c.client_id,
      ...(c.public ? {} : { client_secret: c.client_secret }),
      client_name: c.name,
      redirect_uris: c.redirect_uris,
      post_logout_redirect_uris: c.post_logout_redirect_uris,
      grant_types: c.refresh_tokens ? ['authorization_code', 'refresh_token'] : ['authorization_code'],
      response_types: ['code'],
      // A secret-based client may authenticate with either Basic or POST: x/oauth2 (Headscale)
      // tries Basic and falls back to POST, Cloudflare Access uses Basic. A public client sends
      // its client_id alone.
      token_endpoint_auth_method: c.public ? 'none' : 'client_secret_basic',
      // Native: what lets a public client register a private-use scheme and a loopback redirect.
      application_type: c.public ? 'native' : 'web',
      id_token_signed_response_alg: 'RS256',
    })),
    clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'none'],
    responseTypes: ['code'],
    // offline_access: only clients with refresh_tokens get the refresh_token grant (see
    // keepOfflineAccess for how they get it without prompt=consent).
    scopes: ['openid', 'offline_access'],
    claims: {
      // plex_token only ever goes to a client with plex_token: true (see findAccount).
      openid: ['sub', 'plex_token'],
      email: ['email', 'email_verified'],
      // groups also rides on `profile`: Cloudflare Access and Headscale's defaults request only
      // "openid email profile", and group-based access rules need the claim.
      profile: ['name', 'preferred_username', 'picture', 'groups'],
      groups: ['groups'],
    },
    // Cloudflare Access never calls userinfo and Headscale before v0.27 checked its allow-lists
    // on the ID token alone, so every claim goes in the ID token.
    conformIdTokenClaims: false,
    enabledJWA: { idTokenSigningAlgValues: ['RS256'] },
    pkce: { required: (_ctx, client) => clients.get(client.clientId)?.require_pkce ?? false },
    // Every refresh gives a new refresh token, and the old one presented again ends the whole
    // grant (OAuth 2.0 Security BCP): a stolen token is good for one use, by the thief or the app.
    rotateRefreshToken: true,
    ttl: {
      ...TTL,
      // As long as the person's source says a sign-in from it holds (its session rule); for a
      // client with refresh tokens, as long as a refresh may last for that source. A grant's
      // lifetime is fixed when it is first saved, and caps every refresh token of it.
      Session: (_ctx, session) => signIn.holdsFor(session.accountId),
      Grant: (_ctx, grant) => (clients.get(grant.clientId ?? '')?.refresh_tokens ? signIn.refreshLifetime(grant.accountId!) : signIn.holdsFor(grant.accountId)),
      RefreshToken: (_ctx, token) => signIn.refreshLifetime(token.accountId),
    },
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
      rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
      revocation: { enabled: false },
      introspection: { enabled: false },
      registration: { enabled: false },
      pushedAuthorizationRequests: { enabled: false },
      dPoP: { enabled: false },
      resourceIndicators: { enabled: false },
      deviceFlow: { enabled: false },
      claimsParameter: { enabled: false },
    },
    clientBasedCORS: () => false,
    interactions: {
      url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
      policy: loginPolicy(),
    },
    // oidc-provider runs extra-parameter validators after it has loaded the session and before it
    // loads the account and decides whether to prompt: the one place where an ambient identity can
    // sign the session in and let /auth answer with the code itself (and prompt=none succeed).
    // The parameter itself means nothing; a client that sends it changes nothing.
    // It is also where offline_access is put back for a client with refresh_tokens (see
    // keepOfflineAccess), before a sign-in page keeps the request for its resume.
    extraParams: {
      [ONE_HOP_HOOK]: async (ctx: KoaContextWithOIDC) => {
        if (ctx.oidc.route !== 'authorization') return;
        keepOfflineAccess(ctx);
        await signIn.withinAuthorization(ctx);
      },
    },
    // A token, code or session given out before the person's sign-ins were ended (a Plex share
    // gone, a sign-out everywhere) finds no account: userinfo answers 401, a code exchange fails
    // and the session no longer signs anyone in. A sign-in finishing in this very request is new.
    // A refresh is verified as its source's rule says (sign-in.ts, refreshed): no answer is
    // invalid_grant.
    async findAccount(ctx, sub, token) {
      const fresh = !token && ctx.oidc?.result?.login?.accountId === sub;
      const issuedAt = fresh ? Date.now() / 1000 : (token as { iat?: number } | undefined)?.iat ?? ctx.oidc?.session?.loginTs;
      const client = clients.get(ctx.oidc?.client?.clientId ?? '');
      const account = token?.kind === 'RefreshToken'
        ? client && await signIn.refreshed(ctx.req, sub, issuedAt, (token as { authTime?: number }).authTime, client)
        : await signIn.accountOf(sub, issuedAt);
      if (!account) return undefined;
      return {
        accountId: sub,
        claims: async () => {
          // The person's Plex token, to the apps that were configured to act on Plex as them.
          const plexToken = client?.plex_token && account.identity.source === 'plex' ? await signIn.upstreamToken(account) : undefined;
          return { ...claimsFor(account), sub, ...(plexToken ? { plex_token: plexToken } : {}) };
        },
      };
    },
    // Configured clients are first-party: consent is implicit, so a grant is made on the spot.
    async loadExistingGrant(ctx) {
      const { oidc } = ctx;
      const client = oidc.client!;
      const session = oidc.session!;
      const refreshes = clients.get(client.clientId)?.refresh_tokens === true;
      const asked = String((oidc.params as { scope?: string }).scope ?? '').split(' ');
      const scope = refreshes && asked.includes('offline_access') ? `${SCOPE_STRING} offline_access` : SCOPE_STRING;
      const grantId = oidc.result?.consent?.grantId ?? session.grantIdFor(client.clientId);
      if (grantId) {
        const existing = await oidc.provider.Grant.find(grantId);
        // A refresh token lasts no longer than its grant, fixed when first saved: one made for an
        // earlier sign-in would cut the new token short, so only one made for this one is reused.
        if (existing && existing.accountId === session.accountId && (!refreshes || Date.now() / 1000 - (existing.iat ?? 0) < TTL.Interaction)) {
          existing.addOIDCScope(scope);
          await existing.save();
          return existing;
        }
      }
      const grant = new oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId! });
      grant.addOIDCScope(scope);
      await grant.save();
      return grant;
    },
    renderError: async (ctx, out, error) => {
      // A resume whose sign-in is gone (expired, or lost in a restart) is not the app's fault.
      if (error instanceof errors.SessionNotFound) return expiredPage(ctx, clients, pages);
      if (error instanceof StorageUnavailable) return answerStorageDown(ctx, pages);
      if (error instanceof TooManySignIns) return answerTooManySignIns(ctx, error, pages);
      ctx.type = 'html';
      ctx.body = pages.render('error', 'Sign-in problem', {
        heading: 'This sign-in request was not accepted',
        message: describeOAuthError(out.error, out.error_description),
        error: out.error,
      });
    },
  };

  /**
   * oidc-provider drops offline_access from any authorization request without prompt=consent,
   * and guestlist shows no consent page: for a client with refresh_tokens, the operator's opt-in
   * is the consent. So when such a client asked for it (in the request's own query: there is no
   * POST, PAR or request object here), it is put back into the request oidc-provider goes on
   * with, and keeps for the resume after a sign-in page; loadExistingGrant grants it.
   */
  function keepOfflineAccess(ctx: KoaContextWithOIDC): void {
    const { oidc } = ctx;
    if (clients.get(oidc.client?.clientId ?? '')?.refresh_tokens !== true) return;
    const params = oidc.params as { scope?: string; response_type?: string };
    const asked = typeof ctx.query.scope === 'string' ? ctx.query.scope.split(' ') : [];
    const kept = String(params.scope ?? '').split(' ').filter(Boolean);
    if (asked.includes('offline_access') && !kept.includes('offline_access') && String(params.response_type ?? '').split(' ').includes('code')) {
      params.scope = [...kept, 'offline_access'].join(' ');
    }
  }

  /**
   * A session is only a shortcut when it still holds: the person must still be known, still
   * allowed into this client, and still who their source says, as the source's session rule asks
   * (a tailnet device at every authorization, so one removed from the tailnet is out at once).
   */
  function loginPolicy() {
    const { Check, base } = interactionPolicy;
    const policy = base();
    policy.get('login')!.checks.add(new Check('identity_recheck', 'the identity must be verified again for this client', async (ctx: KoaContextWithOIDC) =>
      (await signIn.stillHolds(ctx) ? Check.NO_NEED_TO_PROMPT : Check.REQUEST_PROMPT)));
    return policy;
  }

  async function logoutSource(ctx: KoaContextWithOIDC, form: string) {
    ctx.type = 'html';
    const client = ctx.oidc.client;
    ctx.body = pages.render('logout', 'Sign out', {
      asked: client?.clientId === HOME_CLIENT_ID
        ? 'You will be signed out here, in this browser. The apps you opened keep their own sign-in until it ends.'
        : `${client?.clientName ?? client?.clientId ?? 'An app'} asked to sign you out of guestlist.`,
      // oidc-provider's own form: a hidden xsrf input, posting to its end_session endpoint.
      form: new Html(form),
    });
  }

  async function postLogoutSuccessSource(ctx: KoaContextWithOIDC) {
    ctx.type = 'html';
    ctx.body = pages.render('message', 'Signed out', { heading: 'You are signed out', message: 'You can close this tab.' });
  }

  const provider = new Provider(config.issuer, configuration);
  // The issuer is the only source of truth for our own URLs (see pinToIssuer in http/issuer.ts),
  // so the forwarded headers this trusts are ones guestlist set itself.
  provider.proxy = true;
  // koa's signed cookies through our signer (same signatures, a tenth of a login's CPU less).
  provider.keys = cookieSigner(keys.cookieSecrets) as unknown as typeof provider.keys;
  // A native app's loopback redirect may come back on any port (RFC 8252 §7.3), but only for the
  // IP literals: oidc-provider lets `localhost` change port too, which §8.3 advises against (a
  // name can resolve elsewhere), and oidc-agent registers http://localhost:PORT exactly anyway.
  // There is no option for it, so the client's check is this one.
  provider.Client.prototype.redirectUriAllowed = function redirectUriAllowed(this: { redirectUris: string[]; applicationType?: string }, value: string) {
    return this.redirectUris.includes(value) || (this.applicationType === 'native' && this.redirectUris.some((registered) => sameButPort(registered, value)));
  };

  provider.on('server_error', (ctx, err) => log('error', 'server error', { path: ctx.path, err: err.message, stack: err.stack }));
  const logOAuthError = (event: string) => (ctx: KoaContextWithOIDC, err: Error & { error?: string; error_description?: string; error_detail?: string }) => {
    // The symptom of a flood, one line per refused request: the 429 and 503 pages are its record.
    if (err instanceof TooManySignIns) return;
    log('warn', event, {
      client_id: ctx.oidc?.client?.clientId,
      error: err.error ?? err.message,
      error_description: err.error_description,
      error_detail: err.error_detail,
    });
  };
  provider.on('authorization.error', logOAuthError('authorization.error'));
  provider.on('grant.error', logOAuthError('grant.error'));
  provider.on('userinfo.error', logOAuthError('userinfo.error'));
  provider.on('end_session.error', logOAuthError('end_session.error'));
  provider.on('grant.success', (ctx: KoaContextWithOIDC) => {
    log('info', 'token issued', { client_id: ctx.oidc.client?.clientId, sub: ctx.oidc.account?.accountId });
  });
  return provider;
}

/**
 * A session is stored only once someone is signed in to it. oidc-provider saves one for any
 * browser it hands a session cookie, signed in or not (a sign-out with nobody signed in, a stale
 * cookie at /auth): anyone could fill the store with them. A session with nobody in it holds
 * nothing a later request needs; signOutWithNobody covers the one flow that relied on it.
 */
function sessionsOfPeople(inner: Adapter): Adapter {
  return { ...inner, upsert: async (id, payload, expiresIn) => (payload.accountId ? inner.upsert(id, payload, expiresIn) : undefined) };
}

/**
 * Sign-out for a browser with nobody signed in. oidc-provider would answer with a form that posts
 * back to confirm, with a secret it keeps in a session made for the purpose, which
 * sessionsOfPeople does not store. There is nothing to end, so once oidc-provider has checked the
 * request (the client, id_token_hint, post_logout_redirect_uri), the browser goes straight where
 * the confirmation would have sent it: back to the app, or to the signed-out page.
 */
export function signOutWithNobody(): Middleware {
  return async (ctx, next) => {
    await next();
    if (routeOf(ctx) !== 'end_session' || ctx.status !== 200) return;
    const { oidc } = ctx as unknown as KoaContextWithOIDC;
    if (!oidc?.session || oidc.session.accountId) return;
    const back = oidc.params?.post_logout_redirect_uri as string | undefined;
    const state = oidc.params?.state as string | undefined;
    const to = new URL(back ?? oidc.urlFor('end_session_success'));
    if (back && state !== undefined) to.searchParams.set('state', state);
    // The cookie of the session that was not stored would name nothing.
    const session = oidc.provider.cookieName('session');
    const cookies = ([] as string[]).concat(ctx.response.get('Set-Cookie') || []);
    ctx.remove('Set-Cookie');
    const kept = cookies.filter((c) => !c.startsWith(`${session}=`) && !c.startsWith(`${session}.sig=`));
    if (kept.length) ctx.set('Set-Cookie', kept);
    ctx.status = 303;
    ctx.redirect(to.href);
  };
}

/** Two http loopback IP-literal URIs (127.0.0.1, [::1]) that differ in their port at most. */
export function sameButPort(registered: string, asked: string): boolean {
  const loopback = /^http:\/\/(127\.0\.0\.1|\[::1\])(:\d{1,5})?(?=[/?]|$)/;
  const a = loopback.exec(registered);
  const b = loopback.exec(asked);
  // Compared as written beyond the port: parsing would normalise what an exact match would not.
  return !!a && !!b && a[1] === b[1] && registered.slice(a[0].length) === asked.slice(b[0].length);
}

/** Validate every client now: oidc-provider would otherwise only notice at its first login. */
export async function checkClients(provider: Provider, config: CoreConfig): Promise<void> {
  for (const c of config.clients) await provider.Client.find(c.client_id);
}

function describeOAuthError(error: string, description?: string): string {
  switch (error) {
    case 'invalid_redirect_uri':
      return 'The app asked to send you back to an address that is not registered for it, so guestlist stopped here. Whoever set up the app should add that redirect URI to guestlist\'s config.';
    case 'invalid_client':
      return 'The app that sent you here is not known to guestlist. Whoever set up the app should check its client ID.';
    case 'invalid_request':
      return `The app sent an incomplete or malformed sign-in request${description ? ` (${description})` : ''}.`;
    default:
      return description ? `${description}.` : 'Something about this sign-in request was not right. Go back to the app and try again.';
  }
}
