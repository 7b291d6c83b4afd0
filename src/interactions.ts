import { createHash, timingSafeEqual } from 'node:crypto';
import type { Context, Middleware } from 'koa';
import type Provider from 'oidc-provider';
import { errors } from 'oidc-provider';
import { mayUseClient, type AccountStore } from './accounts.ts';
import { peerOf, type ClientNetwork } from './client-network.ts';
import type { ClientConfig } from './config.ts';
import type { Logger } from './log.ts';
import type { PageValues, Pages } from './pages.ts';
import { FINISH_CLAIM_MS, type PinBindings, type PinToBind } from './plex-pins.ts';
import type { PlexSource } from './sources/plex/plex.ts';
import { Refusal, type AmbientSource, type Identity } from './sources/source.ts';

// /interaction/:uid is where oidc-provider sends a person it cannot sign in by itself. A login
// reads top to bottom here: the client's ambient sources (Tailscale) are asked first and, when
// one knows the person, they go straight back to the app with no page at all; otherwise the
// Plex page is shown (when the client accepts Plex), saying why the tailnet did not let them in
// where that matters; otherwise a page says why not. Every refusal is logged with its cause.
//
//   GET  /interaction/:uid              try ambient sources, else the Plex page, else a refusal
//   GET  /interaction/:uid/abort        back to the app with access_denied
//   POST /interaction/:uid/plex/pin     bind the PIN the page just created (id and code) to this login
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
  network: ClientNetwork;
  log: Logger;
  pages: Pages;
}

type Action = '' | 'abort' | 'plex/pin' | 'plex/finish' | 'plex/return';
const ROUTE = /^\/interaction\/([A-Za-z0-9_-]{1,64})(?:\/(abort|plex\/pin|plex\/finish|plex\/return))?$/;
const METHOD: Record<Action, string> = { '': 'GET', abort: 'GET', 'plex/pin': 'POST', 'plex/finish': 'POST', 'plex/return': 'GET' };

/** What a request ends in, so that two requests finishing one login can share one answer. */
type Outcome =
  | { redirect: string }
  | { status: number; view: string; title: string; values: PageValues };

export function interactionRoutes(deps: InteractionDeps): Middleware {
  const { provider, issuer, ambient, plex, pins, accounts, clients, network, log, pages } = deps;
  // Plex finishes under way in this process, by interaction: a double-submitted form waits for
  // the first and gets its answer, so plex.tv is asked once and the login logged once.
  const finishing = new Map<string, Promise<Outcome>>();

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
    const answer = (outcome: Outcome) => {
      if ('redirect' in outcome) {
        ctx.status = 303;
        return ctx.redirect(outcome.redirect);
      }
      ctx.status = outcome.status;
      ctx.type = 'html';
      ctx.body = pages.render(outcome.view, outcome.title, outcome.values);
    };
    const page = (status: number, view: string, title: string, values: PageValues): Outcome => ({ status, view, title, values });

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

    const finish = async (result: Parameters<Provider['interactionResult']>[2], merge: boolean): Promise<Outcome> =>
      ({ redirect: await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: merge }) });

    if (action === 'abort') {
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

    const accepts = (source: string) => source === 'demo' || !client.sources || (client.sources as string[]).includes(source);
    const plexHere = plex && accepts('plex') ? plex : undefined;

    /** The person is known: let them in if this client allows them, else say why not. */
    const signIn = async (identity: Identity, source: string): Promise<Outcome> => {
      const account = await accounts.remember(identity);
      if (!mayUseClient(account, client)) {
        throw new Refusal('not-allowed', 'You are not on the guest list',
          `You are signed in as ${identity.login}, but that account is not allowed into ${client.name}. Ask whoever runs it to add you.`,
          `${account.accountId} is in none of ${client.client_id}'s allowed_groups or sources`);
      }
      log('info', 'login', { outcome: 'signed-in', source, client_id: clientId, sub: account.accountId });
      return finish({ login: { accountId: account.accountId, amr: [source], remember: false } }, false);
    };

    /** Every refusal goes to the log with its reason and cause; `next` says what the person is offered instead. */
    const logRefusal = (refusal: Refusal, source: string, next?: string) => {
      log(refusal.reason === 'source-unavailable' ? 'warn' : 'info', 'login', {
        outcome: 'refused', reason: refusal.reason, source, client_id: clientId,
        ...(refusal.detail ? { detail: refusal.detail } : {}), ...(next ? { next } : {}),
      });
    };

    const refusalPage = (refusal: Refusal): Outcome => page(refusal.status, 'refused', refusal.title, {
      heading: refusal.title,
      message: refusal.message,
      client: client.name,
      abort_url: `/interaction/${uid}/abort`,
    });
    const refuse = (refusal: Refusal, source: string): Outcome => {
      logRefusal(refusal, source);
      return refusalPage(refusal);
    };

    const showPlex = (status = 200, notice?: string): Outcome => page(status, 'plex', `Sign in to ${client.name}`, {
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
      const peer = peerOf(ctx.req);
      let refused: { refusal: Refusal; source: string } | undefined;
      for (const source of ambient.filter((s) => accepts(s.name))) {
        try {
          return answer(await signIn(await source.identify(peer), source.name));
        } catch (err) {
          if (!(err instanceof Refusal)) throw err;
          // A stranger to the tailnet who goes on to Plex is the ordinary case, not a refusal.
          if (!(plexHere && err.reason === 'not-on-tailnet')) logRefusal(err, source.name, plexHere ? 'plex' : undefined);
          refused ??= { refusal: err, source: source.name };
        }
      }
      // Whoever the network could not vouch for can still sign in with Plex.
      if (plexHere) return answer(showPlex(200, refused && fallbackNotice(refused.refusal, client.name)));
      if (refused) return answer(refusalPage(refused.refusal)); // logged above
      return answer(refuse(new Refusal('not-allowed', 'No way to sign in', `${client.name} accepts no sign-in method that works here.`,
        `${client.client_id} accepts no configured source`), 'none'));
    }

    if (!plexHere) return answer(page(404, 'message', 'Not found', { heading: 'Plex sign-in is not available here', message: 'Go back to the app and start again.' }));

    if (action === 'plex/pin') {
      const posted = await readPostedPin(ctx);
      if (!posted) return json(ctx, 400, { error: 'Expected a JSON body {"id": <PIN id>, "code": "<PIN code>"}.' });
      // Read the PIN first: a PIN that does not exist (yet) binds nothing and burns nothing.
      let pin;
      try {
        pin = await plexHere.readPin(posted.id);
      } catch (err) {
        if (!(err instanceof Refusal)) throw err;
        logRefusal(err, 'plex');
        return json(ctx, 503, { error: err.message });
      }
      // A PIN approved before it was offered to this login was approved for someone else's.
      if (pin.state !== 'pending') {
        logRefusal(new Refusal(pin.state === 'approved' ? 'not-verified' : 'expired', 'Not a usable PIN', '',
          `PIN ${posted.id} was ${pin.state === 'approved' ? 'already approved' : 'expired or unknown'} when offered`), 'plex');
        return json(ctx, 409, { error: pin.state === 'approved' ? 'This Plex PIN was already approved. Start again.' : 'This Plex PIN has expired. Start again.' });
      }
      if (!sameSecret(pin.code, posted.code)) {
        logRefusal(new Refusal('not-verified', 'Not your PIN', '', `PIN ${posted.id} was offered with the wrong code`), 'plex');
        return json(ctx, 409, { error: 'This Plex PIN does not belong to this sign-in. Start again.' });
      }
      const bound = await pins.bind(uid, { id: posted.id, expiresAt: pin.expiresAt }, await network(ctx.req));
      if (bound === 'bound') return json(ctx, 204);
      if (bound === 'taken') return json(ctx, 409, { error: 'This Plex PIN was already used. Start again.' });
      log('warn', 'login', { outcome: 'refused', reason: bound, source: 'plex', client_id: clientId, detail: `PIN ${posted.id} not bound: the memory of bound PINs is full ${bound === 'network-full' ? 'for this network' : 'for everyone'}` });
      ctx.set('Retry-After', '60');
      return json(ctx, bound === 'network-full' ? 429 : 503, { error: bound === 'network-full'
        ? 'Too many Plex sign-ins have been started from your network. Wait a few minutes and try again.'
        : 'guestlist has too many Plex sign-ins in progress right now. Try again in a few minutes.' });
    }

    /**
     * The PIN to finish with; or, while another request is finishing this login (on another
     * instance: this one's are awaited above), where that one went once it is done.
     */
    const claimOrFollow = async (id: string): Promise<PinToBind | { redirect: string } | undefined> => {
      for (const until = Date.now() + FINISH_CLAIM_MS; Date.now() < until;) {
        const claimed = await pins.claim(id);
        if (claimed && claimed !== 'finishing') return claimed;
        const done = await provider.Interaction.find(id);
        if (done?.result?.login) return { redirect: done.returnTo };
        if (!claimed) return undefined;
        await new Promise((resolve) => setTimeout(resolve, FOLLOW_EVERY_MS));
      }
      return undefined;
    };

    // plex/finish and plex/return: the same check, made here with our own client identifier,
    // once per login however many times the form is sent.
    const underway = finishing.get(uid);
    if (underway) return answer(await underway);
    const work = (async (): Promise<Outcome> => {
      const bound = await claimOrFollow(uid);
      if (!bound) return showPlex(400, 'Start the Plex sign-in again.');
      if ('redirect' in bound) return bound;
      let settled = false;
      try {
        const pin = await plexHere.readPin(bound.id);
        if (pin.state === 'pending') {
          await pins.restore(uid, bound);
          settled = true;
          return showPlex(200, action === 'plex/return'
            ? 'The Plex sign-in was cancelled or has not finished. Try again.'
            : 'Plex has not confirmed the sign-in yet. Try again.');
        }
        if (pin.state === 'expired') {
          logRefusal(new Refusal('expired', 'Expired', '', `PIN ${bound.id} expired before it was approved`), 'plex');
          return showPlex(400, 'That Plex sign-in expired before it was finished. Start again.');
        }
        return await signIn(await plexHere.identify(pin.token), 'plex');
      } catch (err) {
        if (!(err instanceof Refusal)) throw err;
        return refuse(err, 'plex');
      } finally {
        if (!settled) await pins.settle(uid);
      }
    })();
    finishing.set(uid, work);
    try {
      return answer(await work);
    } finally {
      finishing.delete(uid);
    }
  };
}

/** How often a request that finds another finishing the same login looks again. */
const FOLLOW_EVERY_MS = 100;

/** Words for the Plex page when the tailnet did not let someone in, where that is news to them. */
function fallbackNotice(refusal: Refusal, clientName: string): string | undefined {
  switch (refusal.reason) {
    case 'not-allowed':
      return `${refusal.message.replace(/ Ask whoever runs it to add you\.$/, '')} You can sign in with Plex instead.`;
    case 'tagged-device':
      return `This is a tagged Tailscale device, which cannot sign in to ${clientName} by itself. You can sign in with Plex instead.`;
    case 'source-unavailable':
      return 'Tailscale is not answering, so guestlist cannot recognise this device right now. You can sign in with Plex instead.';
    default:
      return undefined;
  }
}

/** Compared in constant time (hashed first, so lengths leak nothing either). */
function sameSecret(expected: string, given: string): boolean {
  const digest = (v: string) => createHash('sha256').update(v).digest();
  return timingSafeEqual(digest(expected), digest(given));
}

function json(ctx: Context, status: number, body?: unknown): void {
  ctx.status = status;
  if (body !== undefined) ctx.body = body;
}

async function readPostedPin(ctx: Context): Promise<{ id: number; code: string } | undefined> {
  if (!ctx.is('application/json')) return undefined;
  let text = '';
  for await (const chunk of ctx.req) {
    text += chunk;
    if (text.length > 1024) return undefined;
  }
  try {
    const { id, code } = (JSON.parse(text) ?? {}) as { id?: unknown; code?: unknown };
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id <= 0) return undefined;
    if (typeof code !== 'string' || !/^[A-Za-z0-9]{1,64}$/.test(code)) return undefined;
    return { id, code };
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
