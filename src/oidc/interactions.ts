import type { Context, Middleware } from 'koa';
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import { errors } from 'oidc-provider';
import { mayUseClient, type Account, type AccountStore } from '../sign-in/accounts.ts';
import { peerOf, type ClientNetwork } from '../http/client-network.ts';
import type { ClientConfig } from '../config/config.ts';
import type { Logger } from '../log.ts';
import { Html, type PageValues, type Pages } from '../html.ts';
import { Refusal, type AmbientSource, type Identity, type InteractiveSource, type SignInStep, type StepOutcome } from '../sources/source.ts';

// /interaction/:uid is where oidc-provider sends a person it cannot sign in by itself. A sign-in
// reads top to bottom here: the client's ambient sources (Tailscale) are asked first and, when
// one knows the person, they go straight back to the app with no page at all; otherwise the
// sign-in page offers the client's interactive sources (Plex, ...), each as its own panel, saying
// why the ambient one did not let them in where that matters; otherwise a page says why not.
// Every refusal is logged with its cause. The router knows no source by name: each brings its
// own panel and steps.
//
//   GET  /interaction/:uid                   ambient sources, else the sign-in page, else a refusal
//   GET  /interaction/:uid/abort             back to the app with access_denied
//   *    /interaction/:uid/:source/:action   one of an interactive source's steps

/** Whether this client takes people from this source (every configured one, unless it lists some). */
function accepts(client: ClientConfig, source: string): boolean {
  return !client.sources || client.sources.includes(source);
}

/** The person is known: remember them, and let them into this client only if it allows them. */
async function admit(accounts: AccountStore, identity: Identity, client: ClientConfig): Promise<Account> {
  const account = await accounts.remember(identity);
  if (!mayUseClient(account, client)) {
    throw new Refusal('not-allowed', 'You are not on the guest list',
      `You are signed in as ${identity.login}, but that account is not allowed into ${client.name}. Ask whoever runs it to add you.`,
      `${account.accountId} is in none of ${client.client_id}'s allowed_groups or sources`);
  }
  return account;
}

function logSignedIn(log: Logger, source: string, clientId: string, sub: string): void {
  log('info', 'login', { outcome: 'signed-in', source, client_id: clientId, sub });
}

/** Who an ambient source verified for this /auth; `signedIn` logs it once the session takes them. */
export interface AmbientSignIn {
  accountId: string;
  source: string;
  signedIn(): void;
}

/**
 * The one-hop sign-in, inside /auth itself (see provider.ts): who the connection is, when an
 * ambient source knows them and this app lets them in; logged like any sign-in. Anything else
 * (a stranger, a refusal, an app they may not use) is left to the interaction page, which
 * offers the app's interactive source or says why not, and logs it.
 */
export function ambientSignIn(deps: Pick<InteractionDeps, 'ambient' | 'accounts' | 'clients' | 'log'>) {
  const { ambient, accounts, clients, log } = deps;
  return async (ctx: KoaContextWithOIDC): Promise<AmbientSignIn | undefined> => {
    const clientId = ctx.oidc.client?.clientId ?? '';
    const client = clients.get(clientId);
    if (!client) return undefined;
    for (const source of ambient.filter((s) => accepts(client, s.name))) {
      let account: Account;
      try {
        account = await admit(accounts, await source.identify(peerOf(ctx.req)), client);
      } catch (err) {
        if (!(err instanceof Refusal)) throw err;
        if (err.reason === 'not-allowed') return undefined;
        continue;
      }
      const name = source.name;
      return { accountId: account.accountId, source: name, signedIn: () => logSignedIn(log, name, clientId, account.accountId) };
    }
    return undefined;
  };
}

export interface InteractionDeps {
  provider: Provider;
  issuer: string;
  ambient: AmbientSource[];
  interactive: InteractiveSource[];
  accounts: AccountStore;
  clients: Map<string, ClientConfig>;
  network: ClientNetwork;
  log: Logger;
  pages: Pages;
}

const ROUTE = /^\/interaction\/([A-Za-z0-9_-]{1,64})(?:\/(abort)|\/([a-z0-9-]{1,32})\/([a-z0-9-]{1,32}))?$/;

/** What a request ends in, so that two requests finishing one sign-in can share one answer. */
type Outcome =
  | { redirect: string }
  | { status: number; view: string; title: string; values: PageValues }
  | { json: { status: number; body?: unknown; retryAfter?: number } };

export function interactionRoutes(deps: InteractionDeps): Middleware {
  const { provider, issuer, ambient, interactive, accounts, clients, network, log, pages } = deps;
  // Steps marked `once` under way in this process, by sign-in: a double-submitted form waits for
  // the first and gets its answer, so the upstream is asked once and the sign-in logged once.
  const underway = new Map<string, Promise<Outcome>>();

  return async (ctx, next) => {
    const match = ROUTE.exec(ctx.path);
    if (!match) return next();
    const [, uidInPath, abort, sourceName, actionName] = match;
    const source = sourceName ? interactive.find((s) => s.name === sourceName) : undefined;
    const action = source && actionName ? source.actions[actionName] : undefined;
    if (sourceName && !action) return notFound(ctx, pages);
    const method = action?.method ?? 'GET';
    if (ctx.method !== method && !(method === 'GET' && ctx.method === 'HEAD')) {
      ctx.status = 405;
      ctx.set('Allow', method === 'GET' ? 'GET, HEAD' : method);
      return;
    }
    ctx.set('Cache-Control', 'no-store');
    const answer = (outcome: Outcome) => {
      if ('redirect' in outcome) {
        ctx.status = 303;
        return ctx.redirect(outcome.redirect);
      }
      if ('json' in outcome) {
        ctx.status = outcome.json.status;
        if (outcome.json.retryAfter) ctx.set('Retry-After', String(outcome.json.retryAfter));
        if (outcome.json.body !== undefined) ctx.body = outcome.json.body;
        return;
      }
      ctx.status = outcome.status;
      ctx.type = 'html';
      ctx.body = pages.render(outcome.view, outcome.title, outcome.values);
    };
    const page = (status: number, view: string, title: string, values: PageValues): Outcome => ({ status, view, title, values });

    let details: Awaited<ReturnType<Provider['interactionDetails']>>;
    try {
      details = await provider.interactionDetails(ctx.req, ctx.res);
      if (details.uid !== uidInPath) throw new errors.SessionNotFound('interaction and cookie disagree');
    } catch (err) {
      if (!(err instanceof errors.SessionNotFound)) throw err;
      // A page's script gets words it can show; a browser, a page that leads back to the app.
      if (action?.json) return answer({ json: { status: 400, body: { error: 'This sign-in has expired. Go back to the app and start again.' } } });
      return expiredPage(ctx, clients, pages);
    }
    const uid = details.uid;
    const clientId = String(details.params.client_id);
    const client = clients.get(clientId);

    const finish = async (result: Parameters<Provider['interactionResult']>[2], merge: boolean): Promise<Outcome> =>
      ({ redirect: await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: merge }) });

    if (abort) {
      log('info', 'login', { outcome: 'abandoned', client_id: clientId });
      return answer(await finish({ error: 'access_denied', error_description: 'the person did not sign in' }, false));
    }

    if (details.prompt.name === 'consent') {
      // Consent is implicit for configured clients; this prompt still appears when an app asks
      // for it explicitly (prompt=consent), so approve what was asked and carry on.
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: details.session!.accountId, clientId });
      if (!grant) throw new Error('interaction references a grant that no longer exists');
      const missing = details.prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[] };
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      return answer(await finish({ consent: { grantId: await grant.save() } }, true));
    }

    if (details.prompt.name !== 'login' || !client) {
      return answer(page(400, 'message', 'Sign-in problem', { heading: 'This sign-in cannot continue', message: 'Go back to the app and start again.' }));
    }

    // The client's interactive sources, each a panel on one sign-in page, in the config's order.
    const offered = interactive.filter((s) => accepts(client, s.name));
    const offeredNames = offered.map((s) => s.name).join(',') || undefined;
    const offeredLabels = offered.map((s) => s.label).join(' or ');

    /** The person is known: let them in if this client allows them, else say why not. */
    const signIn = async (identity: Identity, sourceName: string): Promise<Outcome> => {
      const account = await admit(accounts, identity, client);
      logSignedIn(log, sourceName, clientId, account.accountId);
      return finish({ login: { accountId: account.accountId, amr: [sourceName], remember: false } }, false);
    };

    /** Every refusal goes to the log with its reason and cause; `next` says what the person is offered instead. */
    const logRefusal = (refusal: Refusal, sourceName: string, next?: string) => {
      log(refusal.reason === 'source-unavailable' ? 'warn' : 'info', 'login', {
        outcome: 'refused', reason: refusal.reason, source: sourceName, client_id: clientId,
        ...(refusal.detail ? { detail: refusal.detail } : {}), ...(next ? { next } : {}),
      });
    };
    const refusalPage = (refusal: Refusal): Outcome => page(refusal.status, 'refused', refusal.title, {
      heading: refusal.title,
      message: refusal.message,
      client: client.name,
      abort_url: `/interaction/${uid}/abort`,
    });
    const refuse = (refusal: Refusal, sourceName: string): Outcome => {
      logRefusal(refusal, sourceName);
      return refusalPage(refusal);
    };

    const stepFor = (s: InteractiveSource): SignInStep => ({
      uid,
      network: () => network(ctx.req),
      actionUrl: (name, absolute) => `${absolute ? issuer : ''}/interaction/${uid}/${s.name}/${name}`,
      finishedTo: async () => {
        const done = await provider.Interaction.find(uid);
        return done?.result?.login ? done.returnTo : undefined;
      },
      readJson: (limit) => readJson(ctx, limit),
    });
    const signInPage = (status: number, notice?: string): Outcome => {
      const panels = offered.map((s) => {
        const { view, values } = s.page(stepFor(s));
        return pages.part(view, { ...values, client: client.name }).markup;
      });
      return page(status, 'sign-in', `Sign in to ${client.name}`, {
        client: client.name,
        heading: `Sign in with your ${offeredLabels} account`,
        notice,
        panels: new Html(panels.join('\n')),
        abort_url: `/interaction/${uid}/abort`,
      });
    };

    if (!source) {
      const peer = peerOf(ctx.req);
      let refused: { refusal: Refusal; source: string } | undefined;
      for (const s of ambient.filter((a) => accepts(client, a.name))) {
        try {
          return answer(await signIn(await s.identify(peer), s.name));
        } catch (err) {
          if (!(err instanceof Refusal)) throw err;
          // A stranger to the tailnet who goes on to another source is the ordinary case, not a refusal.
          if (!(offeredNames && err.reason === 'not-on-tailnet')) logRefusal(err, s.name, offeredNames);
          refused ??= { refusal: err, source: s.name };
        }
      }
      // Whoever the network could not vouch for can still sign in with an interactive source.
      if (offered.length) return answer(signInPage(200, refused && fallbackNotice(refused.refusal, client.name, offeredLabels)));
      if (refused) return answer(refusalPage(refused.refusal)); // logged above
      return answer(refuse(new Refusal('not-allowed', 'No way to sign in', `${client.name} accepts no sign-in method that works here.`,
        `${client.client_id} accepts no configured source`), 'none'));
    }

    if (!accepts(client, source.name)) return notFound(ctx, pages);

    const run = async (): Promise<Outcome> => {
      let outcome: StepOutcome;
      try {
        outcome = await action!.handle(stepFor(source));
        if ('identity' in outcome) return await signIn(outcome.identity, source.name);
      } catch (err) {
        if (!(err instanceof Refusal)) throw err;
        return refuse(err, source.name);
      }
      if ('refusal' in outcome && outcome.refusal) {
        if (!('json' in outcome) && !('page' in outcome)) return refuse(outcome.refusal, source.name);
        logRefusal(outcome.refusal, source.name);
      }
      if ('json' in outcome) return { json: outcome.json };
      if ('page' in outcome) return signInPage(outcome.page.status, outcome.page.notice);
      if ('redirect' in outcome) return { redirect: outcome.redirect };
      throw new Error(`${source.name}/${actionName}: a step that ended in nothing`);
    };
    if (!action!.once) return answer(await run());
    const key = `${uid} ${source.name}`;
    const running = underway.get(key);
    if (running) return answer(await running);
    const work = run();
    underway.set(key, work);
    try {
      return answer(await work);
    } finally {
      underway.delete(key);
    }
  };
}

function notFound(ctx: Context, pages: Pages): void {
  ctx.status = 404;
  ctx.type = 'html';
  ctx.body = pages.render('message', 'Not found', { heading: 'This sign-in step is not available here', message: 'Go back to the app and start again.' });
}

/** Words for the interactive source's page when an ambient one did not let someone in, where that is news to them. */
function fallbackNotice(refusal: Refusal, clientName: string, label: string): string | undefined {
  switch (refusal.reason) {
    case 'not-allowed':
      return `${refusal.message.replace(/ Ask whoever runs it to add you\.$/, '')} You can sign in with ${label} instead.`;
    case 'tagged-device':
    case 'source-unavailable':
      return `${refusal.title}, so you cannot be signed in to ${clientName} automatically. You can sign in with ${label} instead.`;
    default:
      return undefined;
  }
}

async function readJson(ctx: Context, limit: number): Promise<unknown> {
  if (!ctx.is('application/json')) return undefined;
  let text = '';
  for await (const chunk of ctx.req) {
    text += chunk;
    if (text.length > limit) return undefined;
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

const APP_COOKIE = 'guestlist_app';

/**
 * Remember, in the browser, which app a sign-in started from, so that when the sign-in itself
 * is gone (it expired, or guestlist restarted in the middle) the page can lead back to that app.
 * It names a configured client and nothing more; a forged one changes only a link.
 */
export function rememberApp(clients: Map<string, ClientConfig>): Middleware {
  return async (ctx, next) => {
    if (ctx.path === '/auth' && ctx.method === 'GET') {
      const clientId = ctx.query.client_id;
      if (typeof clientId === 'string' && clients.has(clientId)) {
        ctx.cookies.set(APP_COOKIE, clientId, { httpOnly: true, sameSite: 'lax', maxAge: 3600_000, signed: false, secure: ctx.secure, overwrite: true });
      }
    }
    return next();
  };
}

/** The origin of an app's first redirect URI: as close to "the app" as a config knows. */
function appHome(client: ClientConfig): string | undefined {
  const url = URL.parse(client.redirect_uris[0] ?? '');
  return url && (url.protocol === 'https:' || url.protocol === 'http:') ? `${url.origin}/` : undefined;
}

export function expiredPage(ctx: Context, clients: Map<string, ClientConfig>, pages: Pages): void {
  const client = clients.get(ctx.cookies.get(APP_COOKIE, { signed: false }) ?? '');
  const home = client ? appHome(client) : undefined;
  ctx.status = 400;
  ctx.type = 'html';
  ctx.set('Cache-Control', 'no-store');
  ctx.body = pages.render(home ? 'expired-app' : 'message', 'Sign-in expired', {
    heading: 'This sign-in has expired',
    message: 'It was started too long ago, or in another browser, or guestlist restarted since. Go back to the app you were signing in to and start again.',
    client: client?.name,
    home,
  });
}
