import type { Middleware } from 'koa';
import type Provider from 'oidc-provider';
import { errors } from 'oidc-provider';
import { mayUseClient, type AccountStore } from './accounts.ts';
import type { ClientConfig } from './config.ts';
import type { Logger } from './log.ts';
import { renderPage } from './pages.ts';
import { Refusal, type AmbientSource, type Peer } from './sources/source.ts';

// /interaction/:uid is where oidc-provider sends a person it cannot sign in by itself. Here we
// ask the client's identity sources who the person is, and either finish the login (straight
// back to the app, no page) or show a page that says why not.

export interface InteractionDeps {
  provider: Provider;
  sources: AmbientSource[];
  accounts: AccountStore;
  clients: Map<string, ClientConfig>;
  log: Logger;
}

const ROUTE = /^\/interaction\/([A-Za-z0-9_-]{1,64})(\/abort)?$/;

export function interactionRoutes({ provider, sources, accounts, clients, log }: InteractionDeps): Middleware {
  return async (ctx, next) => {
    const match = ROUTE.exec(ctx.path);
    if (!match) return next();
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      ctx.status = 405;
      ctx.set('Allow', 'GET, HEAD');
      return;
    }
    ctx.set('Cache-Control', 'no-store');

    let details: Awaited<ReturnType<Provider['interactionDetails']>>;
    try {
      details = await provider.interactionDetails(ctx.req, ctx.res);
    } catch (err) {
      if (!(err instanceof errors.SessionNotFound)) throw err;
      ctx.status = 400;
      ctx.type = 'html';
      ctx.body = renderPage('message', 'Sign-in expired', {
        heading: 'This sign-in has expired',
        message: 'It was started too long ago, or in another browser. Go back to the app you were signing in to and start again.',
      });
      return;
    }
    if (details.uid !== match[1]) {
      ctx.status = 400;
      ctx.type = 'html';
      ctx.body = renderPage('message', 'Sign-in expired', {
        heading: 'This sign-in link is stale',
        message: 'Go back to the app you were signing in to and start again.',
      });
      return;
    }
    const clientId = String(details.params.client_id);
    const client = clients.get(clientId);
    const finish = async (result: Parameters<Provider['interactionResult']>[2], merge: boolean) => {
      const to = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: merge });
      ctx.status = 303;
      ctx.redirect(to);
    };

    if (match[2]) {
      log('info', 'login', { outcome: 'abandoned', client_id: clientId });
      return finish({ error: 'access_denied', error_description: 'the person did not sign in' }, false);
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
      return finish({ consent: { grantId: await grant.save() } }, true);
    }

    if (details.prompt.name !== 'login' || !client) {
      ctx.status = 400;
      ctx.type = 'html';
      ctx.body = renderPage('message', 'Sign-in problem', { heading: 'This sign-in cannot continue', message: 'Go back to the app and start again.' });
      return;
    }

    const peer: Peer = { address: ctx.req.socket.remoteAddress ?? '', port: ctx.req.socket.remotePort ?? 0, headers: ctx.req.headers };
    let refusal: Refusal | undefined;
    for (const source of sources) {
      try {
        const identity = await source.identify(peer);
        const account = accounts.remember(identity);
        if (!mayUseClient(account, client)) {
          refusal = new Refusal('not-allowed', 'You are not on the guest list',
            `You are signed in as ${identity.login}, but that account is not allowed into ${client.name}. Ask whoever runs it to add you.`);
          log('info', 'login', { outcome: 'refused', reason: refusal.reason, source: source.name, client_id: clientId, sub: account.accountId });
          break;
        }
        log('info', 'login', { outcome: 'signed-in', source: source.name, client_id: clientId, sub: account.accountId });
        return finish({ login: { accountId: account.accountId, amr: [source.name], remember: false } }, false);
      } catch (err) {
        if (!(err instanceof Refusal)) throw err;
        log('info', 'login', { outcome: 'refused', reason: err.reason, source: source.name, client_id: clientId });
        refusal ??= err;
      }
    }
    refusal ??= new Refusal('not-allowed', 'No way to sign in', `${client.name} accepts no sign-in method that works here.`);
    ctx.status = refusal.status;
    ctx.type = 'html';
    ctx.body = renderPage('refused', refusal.title, {
      heading: refusal.title,
      message: refusal.message,
      client: client.name,
      abort_url: `/interaction/${details.uid}/abort`,
    });
  };
}
