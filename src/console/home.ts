import { randomBytes } from 'node:crypto';
import type { Middleware } from 'koa';
import type { ClientConfig, CoreConfig } from '../config/config.ts';
import { escapeHtml, Html, type Pages } from '../html.ts';
import { mayUseClient, type Account } from '../sign-in/accounts.ts';
import type { WhoIsHere } from './who.ts';

// `/` for everyone: who is signed in to guestlist in this browser, and a tile for each app they
// may use (by the app's sources and allowed_groups, as its own sign-in would decide). Signing in
// here runs the same sources as an app's sign-in does, through guestlist's own client: a tailnet
// device is signed in with no page, anyone else gets the page with the Plex and Jellyfin buttons.
//
//   GET /           the home page
//   GET /sign-in    to /auth, for guestlist's own client
//   GET /signed-in  where that sign-in comes back (its code is not needed: the session is)

export interface HomeDeps {
  config: Pick<CoreConfig, 'issuer'>;
  /** The apps, as configured (guestlist's own client is not one). */
  apps: readonly ClientConfig[];
  homeClient: ClientConfig;
  whoIsHere: WhoIsHere;
  isOperator(account: Account): boolean;
  /** Each source's name for people ("Tailscale", "Plex"), by the name a `sub` starts with. */
  sourceLabels: ReadonlyMap<string, string>;
  pages: Pages;
}

export function homePage(deps: HomeDeps): Middleware {
  const { config, apps, homeClient, whoIsHere, isOperator, sourceLabels, pages } = deps;
  const signOut = `/session/end?${new URLSearchParams({ client_id: homeClient.client_id, post_logout_redirect_uri: homeClient.post_logout_redirect_uris[0]! })}`;

  function tiles(account: Account): Html {
    const mine = apps.filter((app) => mayUseClient(account, app));
    if (mine.length === 0) return new Html('<p class="detail">No app here lets you in yet. Ask whoever runs this site.</p>');
    const tile = (app: ClientConfig) => {
      const icon = app.icon_url
        ? `<img src="${escapeHtml(app.icon_url)}" alt="">`
        : `<span class="initial" aria-hidden="true">${escapeHtml([...app.name][0]?.toUpperCase() ?? '?')}</span>`;
      const name = `<span class="name">${escapeHtml(app.name)}</span>`;
      return app.url
        ? `<li><a class="tile" href="${escapeHtml(app.url)}">${icon}${name}</a></li>`
        : `<li><span class="tile">${icon}${name}<span class="no-link">opened from its own address</span></span></li>`;
    };
    return new Html(`<ul class="tiles">${mine.map(tile).join('')}</ul>`);
  }

  return async (ctx, next) => {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next();
    if (ctx.path === '/sign-in') {
      const auth = new URLSearchParams({
        client_id: homeClient.client_id, response_type: 'code', scope: 'openid profile',
        redirect_uri: homeClient.redirect_uris[0]!, state: randomBytes(12).toString('base64url'),
      });
      ctx.status = 303;
      return ctx.redirect(`/auth?${auth}`);
    }
    if (ctx.path === '/signed-in') {
      ctx.status = 303;
      return ctx.redirect('/');
    }
    if (ctx.path !== '/') return next();
    ctx.set('Cache-Control', 'no-store');
    ctx.type = 'html';
    const here = await whoIsHere(ctx);
    if (!here) {
      ctx.body = pages.render('home', 'guestlist', { issuer: config.issuer, discovery: `${config.issuer}/.well-known/openid-configuration` });
      return;
    }
    const { account, source } = here;
    ctx.body = pages.render('home-signed-in', 'Your apps', {
      name: account.identity.name ?? account.identity.login,
      source: sourceLabels.get(source) ?? source,
      sign_out_url: signOut,
      tiles: tiles(account),
      console: new Html(isOperator(account) ? '<p class="console-link"><a href="/admin">Operator console</a></p>' : ''),
    });
  };
}
