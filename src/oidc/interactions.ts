import type { Context, Middleware } from 'koa';
import type Provider from 'oidc-provider';
import { errors } from 'oidc-provider';
import type { ClientConfig } from '../config/config.ts';
import { Html, type PageValues, type Pages } from '../html.ts';
import type { ClientNetwork } from '../http/client-network.ts';
import { readBody } from '../http/body.ts';
import { expiredPage } from '../http/expired-sign-in.ts';
import { accepts, insteadNotice, type SignIn } from '../sign-in/sign-in.ts';
import { Refusal, type InteractiveSource, type SignInStep, type StepOutcome } from '../sources/source.ts';

// /interaction/:uid is where oidc-provider sends a person it cannot sign in by itself. A sign-in
// reads top to bottom here: the client's ambient sources (Tailscale) are asked first (the
// decision is sign-in/sign-in.ts's, as for /auth) and, when one knows the person, they go
// straight back to the app with no page at all; otherwise the sign-in page offers the client's
// interactive sources (Plex, ...), each as its own panel, saying why the ambient one did not let
// them in where that matters; otherwise a page says why not. Every refusal is logged with its
// cause. The router knows no source by name: each brings its own panel and steps.
//
//   GET  /interaction/:uid                   ambient sources, else the sign-in page, else a refusal
//   GET  /interaction/:uid/abort             back to the app with access_denied
//   *    /interaction/:uid/:source/:action   one of an interactive source's steps

export interface InteractionDeps {
  provider: Provider;
  issuer: string;
  interactive: InteractiveSource[];
  signIn: SignIn;
  clients: ReadonlyMap<string, ClientConfig>;
  network: ClientNetwork;
  pages: Pages;
}

const ROUTE = /^\/interaction\/([A-Za-z0-9_-]{1,64})(?:\/(abort)|\/([a-z0-9-]{1,32})\/([a-z0-9-]{1,32}))?$/;

/** What a request ends in, so that two requests finishing one sign-in can share one answer. */
type Outcome =
  | { redirect: string }
  | { status: number; view: string; title: string; values: PageValues }
  | { json: { status: number; body?: unknown; retryAfter?: number } };

export function interactionRoutes(deps: InteractionDeps): Middleware {
  const { provider, issuer, interactive, signIn, clients, network, pages } = deps;
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
      signIn.logAbandoned(clientId);
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

    const refusalPage = (refusal: Refusal): Outcome => page(refusal.status, 'refused', refusal.title, {
      heading: refusal.title,
      message: refusal.message,
      client: client.name,
      abort_url: `/interaction/${uid}/abort`,
    });
    const refuse = (refusal: Refusal, sourceName: string): Outcome => {
      signIn.logRefused(refusal, sourceName, clientId);
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
      // Back after a re-check ended their sign-ins (the Plex share is gone): told so, once; the
      // session goes, so that the next sign-in in this browser starts afresh.
      const ended = details.session?.accountId ? await signIn.endedWith(details.session.accountId) : undefined;
      if (ended) {
        const session = details.session?.uid ? await provider.Session.findByUid(details.session.uid) : undefined;
        await session?.destroy();
        return answer(refusalPage(ended)); // logged when it was ended
      }
      const decided = await signIn.ambient(ctx.req, client);
      if ('admitted' in decided) return answer({ redirect: await signIn.finish(provider, ctx, decided.admitted, clientId) });
      for (const { refusal, source: name } of decided.refused) {
        // A stranger to the tailnet who goes on to another source is the ordinary case, not a refusal.
        if (!(offeredNames && refusal.reason === 'not-on-tailnet')) signIn.logRefused(refusal, name, clientId, offeredNames);
      }
      // Whoever the network could not vouch for can still sign in with an interactive source.
      const first = decided.refused[0];
      if (offered.length) return answer(signInPage(200, first && insteadNotice(first.refusal, client.name, offeredLabels)));
      if (first) return answer(refusalPage(first.refusal)); // logged above
      return answer(refuse(new Refusal('not-allowed', 'No way to sign in', `${client.name} accepts no sign-in method that works here.`,
        `${client.client_id} accepts no configured source`), 'none'));
    }

    if (!accepts(client, source.name)) return notFound(ctx, pages);

    const run = async (): Promise<Outcome> => {
      let outcome: StepOutcome;
      try {
        outcome = await action!.handle(stepFor(source));
        if ('identity' in outcome) {
          const account = await signIn.admit(outcome.identity, client);
          return { redirect: await signIn.finish(provider, ctx, { account, source: source.name }, clientId) };
        }
      } catch (err) {
        if (!(err instanceof Refusal)) throw err;
        return refuse(err, source.name);
      }
      if ('refusal' in outcome) return refuse(outcome.refusal, source.name);
      if ('log' in outcome && outcome.log) signIn.logRefused(outcome.log, source.name, clientId);
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

async function readJson(ctx: Context, limit: number): Promise<unknown> {
  const text = await readBody(ctx, 'application/json', limit);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

