import type { Context, Middleware } from 'koa';
import type Provider from 'oidc-provider';
import { errors } from 'oidc-provider';
import { mayUseClient, type AccountStore } from './accounts.ts';
import type { ClientConfig } from './config.ts';
import type { Logger } from './log.ts';
import type { Pages } from './pages.ts';
import type { PinBindings } from './plex-pins.ts';
import type { PlexSource } from './sources/plex.ts';
import { Refusal, type AmbientSource, type Identity, type Peer } from './sources/source.ts';

// /interaction/:uid is where oidc-provider sends a person it cannot sign in by itself. A login
// reads top to bottom here: the client's ambient sources (Tailscale) are asked first and, when
// one knows the person, they go straight back to the app with no page at all; otherwise the
// Plex page is shown (when the client accepts Plex); otherwise a page says why not.
//
//   GET  /interaction/:uid              try ambient sources, else the Plex page, else a refusal
//   GET  /interaction/:uid/abort        back to the app with access_denied
//   POST /interaction/:uid/plex/pin     bind the PIN the page just created to this login
//   POST /interaction/:uid/plex/finish  the page saw Plex approve: check it all on the server
//   GET  /interaction/:uid/plex/return  the same, when Plex forwards back (no popup possible)

export interface InteractionDeps {
  provider: Provider;
  issuer: string;
  ambient: AmbientSource[];
  plex?: PlexSource;
  pins: PinBindings;
  accounts: AccountStore;
  clients: Map<string, ClientConfig>;
  log: Logger;
  pages: Pages;
}

type Action = '' | 'abort' | 'plex/pin' | 'plex/finish' | 'plex/return';
const ROUTE = /^\/interaction\/([A-Za-z0-9_-]{1,64})(?:\/(abort|plex\/pin|plex\/finish|plex\/return))?$/;
const METHOD: Record<Action, string> = { '': 'GET', abort: 'GET', 'plex/pin': 'POST', 'plex/finish': 'POST', 'plex/return': 'GET' };

export function interactionRoutes(deps: InteractionDeps): Middleware {
  const { provider, issuer, ambient, plex, pins, accounts, clients, log, pages } = deps;

  return async (ctx, next) => {
    const match = ROUTE.exec(ctx.path);
    if (!match) return next();
    const action = (match[2] ?? '') as Action;
    const method = METHOD[action];
    if (ctx.method !== method && !(method === 'GET' && ctx.method === 'HEAD')) {
      ctx.status = 405;
      ctx.set('Allow', method === 'GET' ? 'GET, HEAD' : method);
      return;
    }
    ctx.set('Cache-Control', 'no-store');
    const page = (status: number, view: string, title: string, values: Record<string, string | undefined>) => {
      ctx.status = status;
      ctx.type = 'html';
      ctx.body = pages.render(view, title, values);
    };

    let details: Awaited<ReturnType<Provider['interactionDetails']>>;
    try {
      details = await provider.interactionDetails(ctx.req, ctx.res);
      if (details.uid !== match[1]) throw new errors.SessionNotFound('interaction and cookie disagree');
    } catch (err) {
      if (!(err instanceof errors.SessionNotFound)) throw err;
      if (action === 'plex/pin') return json(ctx, 400, { error: 'This sign-in has expired. Go back to the app and start again.' });
      return expiredPage(ctx, clients, pages);
    }
    const uid = details.uid;
    const clientId = String(details.params.client_id);
    const client = clients.get(clientId);

    const finish = async (result: Parameters<Provider['interactionResult']>[2], merge: boolean) => {
      const to = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: merge });
      ctx.status = 303;
      ctx.redirect(to);
    };

    if (action === 'abort') {
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
      return page(400, 'message', 'Sign-in problem', { heading: 'This sign-in cannot continue', message: 'Go back to the app and start again.' });
    }

    const accepts = (source: string) => source === 'demo' || !client.sources || (client.sources as string[]).includes(source);
    const plexHere = plex && accepts('plex') ? plex : undefined;

    /** The person is known: let them in if this client allows them, else say why not. */
    const signIn = async (identity: Identity, source: string) => {
      const account = await accounts.remember(identity);
      if (!mayUseClient(account, client)) {
        throw new Refusal('not-allowed', 'You are not on the guest list',
          `You are signed in as ${identity.login}, but that account is not allowed into ${client.name}. Ask whoever runs it to add you.`);
      }
      log('info', 'login', { outcome: 'signed-in', source, client_id: clientId, sub: account.accountId });
      return finish({ login: { accountId: account.accountId, amr: [source], remember: false } }, false);
    };

    const refuse = (refusal: Refusal, source?: string) => {
      log('info', 'login', { outcome: 'refused', reason: refusal.reason, ...(source ? { source } : {}), client_id: clientId,
        ...(refusal.detail ? { detail: refusal.detail } : {}) });
      return page(refusal.status, 'refused', refusal.title, {
        heading: refusal.title,
        message: refusal.message,
        client: client.name,
        abort_url: `/interaction/${uid}/abort`,
      });
    };

    const showPlex = (status = 200, notice?: string) => page(status, 'plex', `Sign in to ${client.name}`, {
      client: client.name,
      notice,
      plex_client_id: plexHere!.clientIdentifier,
      plex_product: plexHere!.config.product,
      plex_api: plexHere!.config.api_url,
      plex_app: plexHere!.config.app_url,
      bind_url: `/interaction/${uid}/plex/pin`,
      finish_url: `/interaction/${uid}/plex/finish`,
      return_url: `${issuer}/interaction/${uid}/plex/return`,
      abort_url: `/interaction/${uid}/abort`,
    });

    if (action === '') {
      const peer: Peer = { address: ctx.req.socket.remoteAddress ?? '', port: ctx.req.socket.remotePort ?? 0, headers: ctx.req.headers };
      let refusal: { refusal: Refusal; source: string } | undefined;
      for (const source of ambient.filter((s) => accepts(s.name))) {
        try {
          return await signIn(await source.identify(peer), source.name);
        } catch (err) {
          if (!(err instanceof Refusal)) throw err;
          refusal ??= { refusal: err, source: source.name };
        }
      }
      // Whoever the network could not vouch for can still sign in with Plex.
      if (plexHere) return showPlex();
      return refuse(refusal?.refusal ?? new Refusal('not-allowed', 'No way to sign in', `${client.name} accepts no sign-in method that works here.`), refusal?.source);
    }

    if (!plexHere) return page(404, 'message', 'Not found', { heading: 'Plex sign-in is not available here', message: 'Go back to the app and start again.' });

    if (action === 'plex/pin') {
      const pinId = await readPinId(ctx);
      if (pinId === undefined) return json(ctx, 400, { error: 'Expected a JSON body {"id": <PIN id>}.' });
      if (!(await pins.bind(uid, pinId))) return json(ctx, 409, { error: 'This Plex PIN was already used. Start again.' });
      try {
        const pin = await plexHere.readPin(pinId);
        if (pin.state === 'pending') return json(ctx, 204);
        await pins.release(uid);
        // A PIN approved before it was offered to this login was approved for someone else's.
        return json(ctx, 409, { error: pin.state === 'approved' ? 'This Plex PIN was already approved. Start again.' : 'This Plex PIN has expired. Start again.' });
      } catch (err) {
        await pins.release(uid);
        if (!(err instanceof Refusal)) throw err;
        log('warn', 'plex unavailable', { detail: err.detail ?? err.message });
        return json(ctx, 503, { error: err.message });
      }
    }

    // plex/finish and plex/return: the same check, made here with our own client identifier.
    const pinId = await pins.boundTo(uid);
    if (pinId === undefined) return showPlex(400, 'Start the Plex sign-in again.');
    try {
      const pin = await plexHere.readPin(pinId);
      if (pin.state === 'pending') {
        return showPlex(200, action === 'plex/return'
          ? 'The Plex sign-in was cancelled or has not finished. Try again.'
          : 'Plex has not confirmed the sign-in yet. Try again.');
      }
      await pins.release(uid);
      if (pin.state === 'expired') {
        log('info', 'login', { outcome: 'refused', reason: 'expired', source: 'plex', client_id: clientId });
        return showPlex(400, 'That Plex sign-in expired before it was finished. Start again.');
      }
      return await signIn(await plexHere.identify(pin.token), 'plex');
    } catch (err) {
      if (!(err instanceof Refusal)) throw err;
      return refuse(err, 'plex');
    }
  };
}

function json(ctx: Context, status: number, body?: unknown): void {
  ctx.status = status;
  if (body !== undefined) ctx.body = body;
}

async function readPinId(ctx: Context): Promise<number | undefined> {
  if (!ctx.is('application/json')) return undefined;
  let text = '';
  for await (const chunk of ctx.req) {
    text += chunk;
    if (text.length > 1024) return undefined;
  }
  try {
    const id = (JSON.parse(text) as { id?: unknown })?.id;
    return typeof id === 'number' && Number.isSafeInteger(id) && id > 0 ? id : undefined;
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
