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
  signIn: Pick<SignIn, 'withinAuthorization' | 'stillHolds' | 'holdsFor' | 'accountOf'>;
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
      client_secret: c.client_secret,
      client_name: c.name,
      redirect_uris: c.redirect_uris,
      post_logout_redirect_uris: c.post_logout_redirect_uris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      // A secret-based client may authenticate with either Basic or POST: x/oauth2 (Headscale)
      // tries Basic and falls back to POST, Cloudflare Access uses Basic.
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    })),
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    responseTypes: ['code'],
    scopes: ['openid'],
    claims: {
      openid: ['sub'],
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
    ttl: {
      ...TTL,
      // As long as the person's source says a sign-in from it holds (its session rule).
      Session: (_ctx, session) => signIn.holdsFor(session.accountId),
      Grant: (_ctx, grant) => signIn.holdsFor(grant.accountId),
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
    extraParams: {
      [ONE_HOP_HOOK]: async (ctx: KoaContextWithOIDC) => {
        if (ctx.oidc.route === 'authorization') await signIn.withinAuthorization(ctx);
      },
    },
    // A token, code or session given out before the person's sign-ins were ended (a Plex share
    // gone, a sign-out everywhere) finds no account: userinfo answers 401, a code exchange fails
    // and the session no longer signs anyone in. A sign-in finishing in this very request is new.
    async findAccount(ctx, sub, token) {
      const fresh = !token && ctx.oidc?.result?.login?.accountId === sub;
      const issuedAt = fresh ? Date.now() / 1000 : (token as { iat?: number } | undefined)?.iat ?? ctx.oidc?.session?.loginTs;
      const account = await signIn.accountOf(sub, issuedAt);
      if (!account) return undefined;
      return { accountId: sub, claims: () => ({ ...claimsFor(account), sub }) };
    },
    // Configured clients are first-party: consent is implicit, so a grant is made on the spot.
    async loadExistingGrant(ctx) {
      const { oidc } = ctx;
      const client = oidc.client!;
      const session = oidc.session!;
      const grantId = oidc.result?.consent?.grantId ?? session.grantIdFor(client.clientId);
      if (grantId) {
        const existing = await oidc.provider.Grant.find(grantId);
        if (existing && existing.accountId === session.accountId) {
          existing.addOIDCScope(SCOPE_STRING);
          await existing.save();
          return existing;
        }
      }
      const grant = new oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId! });
      grant.addOIDCScope(SCOPE_STRING);
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
