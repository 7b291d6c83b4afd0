import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Context, Middleware } from 'koa';
import { HOME_CLIENT_ID, type ClientConfig, type CoreConfig } from '../config/config.ts';
import { escapeHtml, Html, type Pages } from '../html.ts';
import { readBody } from '../http/body.ts';
import { claimsFor, mayUseClient, type Account } from '../sign-in/accounts.ts';
import type { SignIn } from '../sign-in/sign-in.ts';
import type { Activity, Presence, SignInEvent } from '../storage/store.ts';
import { hourlyChart, OUTCOMES } from './chart.ts';
import type { HealthReport } from '../health.ts';
import type { WhoIsHere } from './who.ts';

// /admin, the operator console: is everything answering, who tried to sign in and what were they
// told, who is signed in (and a way to end all of someone's sign-ins), the apps and what to paste
// into them, and what an app would receive for you. For members of admin.allowed_groups only,
// checked at every request (someone taken out of the group loses it at once), and with Tailscale
// configured and admin.tailnet_only, only from a tailnet device whois says is that same person.
// Everyone else gets a 403 page that says nothing of the console, or the sign-in. It sends the
// page nothing secret: no client secret, token, Plex token, Jellyfin secret or cookie value.
//
//   GET  /admin            the console (?outcome= filters the sign-ins, ?try= picks an app)
//   POST /admin/sign-out   end every sign-in of one person (a form with its CSRF token)

export interface ConsoleDeps {
  config: Pick<CoreConfig, 'issuer' | 'admin'>;
  apps: readonly ClientConfig[];
  whoIsHere: WhoIsHere;
  signIn: Pick<SignIn, 'signOutEverywhere'>;
  activity: Activity;
  isOperator(account: Account): boolean;
  /** The `sub` of the tailnet person at the other end, when the console must be opened from the tailnet; undefined when it need not. */
  tailnetPerson?: (req: IncomingMessage) => Promise<string | undefined>;
  health(): Promise<HealthReport>;
  /** Signs the sign-out form's CSRF token (the newest cookie secret). */
  secret: string;
  pages: Pages;
}

const SHOWN_EVENTS = 100;
const FILTERS = [['', 'All'], ...OUTCOMES] as const;

const when = (ms: number) => new Date(ms).toISOString().replace('T', ' ').slice(0, 16);
const list = (items: readonly string[] | undefined, none: string) => (items?.length ? items.map((i) => `<code>${escapeHtml(i)}</code>`).join(' ') : `<span class="detail">${escapeHtml(none)}</span>`);

export function operatorConsole(deps: ConsoleDeps): Middleware {
  const { config, apps, whoIsHere, signIn, activity, isOperator, tailnetPerson, health, secret, pages } = deps;
  const appName = (id: string | undefined) => (id === HOME_CLIENT_ID ? 'this home page' : apps.find((a) => a.client_id === id)?.name ?? id ?? '');
  // Bound to the session, so a token from one operator's page is worthless on another's.
  const csrf = (sessionId: string) => createHmac('sha256', secret).update(`console sign-out ${sessionId}`).digest('base64url');

  const denied = (ctx: Context, message: string) => {
    ctx.status = 403;
    ctx.type = 'html';
    ctx.body = pages.render('message', 'Not available', { heading: 'This page is not for you', message });
  };

  function healthTable(report: HealthReport): Html {
    const rows = report.map((item) => `<tr><th scope="row">${escapeHtml(item.name)}</th>`
      + `<td><span class="state ${item.ok ? 'ok' : 'bad'}">${item.ok ? 'OK' : 'Not OK'}</span></td><td>${escapeHtml(item.detail)}</td></tr>`).join('');
    return new Html(`<table class="data health"><tbody>${rows}</tbody></table>`);
  }

  function eventsTable(events: SignInEvent[]): Html {
    if (events.length === 0) return new Html('<p class="detail">None yet.</p>');
    const rows = events.slice(0, SHOWN_EVENTS).map((e) => `<tr><td class="nowrap">${escapeHtml(when(e.at))}</td>`
      + `<td>${e.name ? `${escapeHtml(e.name)}<br>` : ''}${e.sub ? `<code>${escapeHtml(e.sub)}</code>` : '<span class="detail">unknown</span>'}</td>`
      + `<td>${escapeHtml(e.source ?? '')}</td><td>${escapeHtml(appName(e.client_id))}</td>`
      + `<td><span class="outcome ${escapeHtml(e.outcome)}">${escapeHtml(e.outcome)}</span>${e.reason ? `<br><span class="detail">${escapeHtml(e.reason)}</span>` : ''}</td>`
      + `<td>${escapeHtml(e.said ?? '')}</td></tr>`).join('');
    return new Html(`<div class="scroll"><table class="data"><thead><tr><th>Time (UTC)</th><th>Person</th><th>Source</th><th>App</th><th>Outcome</th><th>They were told</th></tr></thead><tbody>${rows}</tbody></table></div>`);
  }

  function peopleTable(people: Presence[], token: string): Html {
    if (people.length === 0) return new Html('<p class="detail">Nobody is signed in.</p>');
    const rows = people.sort((a, b) => b.lastSeen - a.lastSeen).map((p) => `<tr><td>${escapeHtml(p.name)}<br><code>${escapeHtml(p.sub)}</code></td>`
      + `<td>${escapeHtml(p.source)}</td><td>${list(p.groups, 'none')}</td><td>${escapeHtml(p.apps.map(appName).join(', '))}</td>`
      + `<td class="nowrap">${escapeHtml(when(p.since))}</td>`
      + `<td><form method="post" action="/admin/sign-out"><input type="hidden" name="sub" value="${escapeHtml(p.sub)}">`
      + `<input type="hidden" name="csrf" value="${escapeHtml(token)}"><button class="button secondary small" type="submit">Sign out everywhere</button></form></td></tr>`).join('');
    return new Html(`<div class="scroll"><table class="data"><thead><tr><th>Person</th><th>Source</th><th>Groups</th><th>Apps</th><th>Since (UTC)</th><th></th></tr></thead><tbody>${rows}</tbody></table></div>`);
  }

  function appsList(events: SignInEvent[]): Html {
    return new Html(apps.map((app) => {
      const last = events.find((e) => e.outcome === 'signed-in' && e.client_id === app.client_id);
      const secret = app.public ? '(none: a public client)' : '<its secret, from guestlist\'s config>';
      const paste = `oidc:\n  issuer: ${config.issuer}\n  client_id: ${app.client_id}\n  client_secret: ${secret}\n  scope: [openid, profile, email, groups]\n  pkce:\n    enabled: true\n    method: S256`;
      const cloudflare = `App ID: ${app.client_id}\nClient secret: ${secret}\nAuth URL: ${config.issuer}/auth\nToken URL: ${config.issuer}/token\nCertificate URL: ${config.issuer}/jwks\nPKCE: ${app.require_pkce ? 'on' : 'on (and set require_pkce: true here)'}`;
      const kind = [app.public ? 'public (PKCE, no secret)' : 'confidential', ...(app.refresh_tokens ? ['refresh tokens'] : []), ...(app.plex_token ? ['receives the Plex token'] : [])];
      return `<section class="app"><h3>${escapeHtml(app.name)} <code>${escapeHtml(app.client_id)}</code></h3><dl class="facts">`
        + `<dt>Kind</dt><dd>${escapeHtml(kind.join(', '))}</dd>`
        + `<dt>Redirect URIs</dt><dd>${list(app.redirect_uris, 'none')}</dd>`
        + `<dt>Sources</dt><dd>${list(app.sources, 'every configured one')}</dd>`
        + `<dt>Allowed groups</dt><dd>${list(app.allowed_groups, 'everyone')}</dd>`
        + `<dt>Last sign-in</dt><dd>${last ? `${escapeHtml(when(last.at))} UTC, ${escapeHtml(last.name ?? last.sub ?? '')}` : '<span class="detail">none among the latest events</span>'}</dd></dl>`
        + `<details><summary>Settings to paste: Headscale, Cloudflare Access</summary><pre>${escapeHtml(paste)}</pre><pre>${escapeHtml(cloudflare)}</pre></details></section>`;
    }).join(''));
  }

  function tryIt(account: Account, clientId: string | undefined): Html {
    const options = apps.map((a) => `<option value="${escapeHtml(a.client_id)}"${a.client_id === clientId ? ' selected' : ''}>${escapeHtml(a.name)}</option>`).join('');
    const form = `<form method="get" action="/admin#try" class="try"><label>What would <select name="try">${options}</select> receive for me?</label> <button class="button secondary small" type="submit">Show</button></form>`;
    const app = apps.find((a) => a.client_id === clientId);
    if (!app) return new Html(form);
    if (!mayUseClient(account, app)) return new Html(`${form}<p>You may not sign in to ${escapeHtml(app.name)}: it receives nothing for you.</p>`);
    const rows = Object.entries(claimsFor(account)).map(([k, v]) => `<tr><th scope="row">${escapeHtml(k)}</th><td><code>${escapeHtml(JSON.stringify(v))}</code></td></tr>`).join('');
    return new Html(`${form}<p>The ID token for ${escapeHtml(app.name)} would carry, besides iss, aud, exp, iat and nonce:</p><table class="claims"><tbody>${rows}</tbody></table>`);
  }

  return async (ctx, next) => {
    if (ctx.path !== '/admin' && !ctx.path.startsWith('/admin/')) return next();
    ctx.set('Cache-Control', 'no-store');
    const here = await whoIsHere(ctx);
    if (!here) {
      if (ctx.method === 'GET' || ctx.method === 'HEAD') {
        ctx.status = 303;
        return ctx.redirect('/sign-in');
      }
      return denied(ctx, 'Sign in first.');
    }
    // Asked at every request: someone taken out of the group is out at once.
    if (!isOperator(here.account)) return denied(ctx, 'This page is only for whoever runs this site.');
    if (tailnetPerson && (await tailnetPerson(ctx.req)) !== here.account.accountId) {
      return denied(ctx, 'The operator console opens only from your own device on the tailnet, signed in as you (admin.tailnet_only).');
    }

    if (ctx.path === '/admin/sign-out' && ctx.method === 'POST') {
      // The token decides; where the browser says where the form came from, that must agree.
      // Pages here send no referrer, so a browser's Origin for their forms is "null": it says
      // nothing either way, and Sec-Fetch-Site still does.
      const origin = ctx.get('Origin');
      const site = ctx.get('Sec-Fetch-Site');
      const posted = await readBody(ctx, 'application/x-www-form-urlencoded', 4096);
      const form = posted === undefined ? undefined : new URLSearchParams(posted);
      const given = Buffer.from(form?.get('csrf') ?? '');
      const expected = Buffer.from(csrf(here.sessionId));
      const sub = form?.get('sub');
      const elsewhere = (origin && origin !== 'null' && origin !== new URL(config.issuer).origin) || (site && site !== 'same-origin');
      if (elsewhere || !sub || given.length !== expected.length || !timingSafeEqual(given, expected)) {
        ctx.status = 403;
        ctx.type = 'html';
        ctx.body = pages.render('message', 'Not done', { heading: 'Nobody was signed out', message: 'This form was not sent from your console page. Open the console again and try from there.' });
        return;
      }
      await signIn.signOutEverywhere(sub, here.account.accountId);
      ctx.status = 303;
      return ctx.redirect('/admin?done=signed-out#people');
    }
    if (ctx.path === '/admin/' && (ctx.method === 'GET' || ctx.method === 'HEAD')) {
      ctx.status = 308;
      return ctx.redirect('/admin');
    }
    if (ctx.path !== '/admin' || (ctx.method !== 'GET' && ctx.method !== 'HEAD')) {
      ctx.status = ctx.path === '/admin' || ctx.path === '/admin/sign-out' ? 405 : 404;
      if (ctx.status === 405) ctx.set('Allow', ctx.path === '/admin' ? 'GET, HEAD' : 'POST');
      return;
    }

    const outcome = typeof ctx.query.outcome === 'string' && OUTCOMES.some(([o]) => o === ctx.query.outcome) ? ctx.query.outcome : '';
    const [report, events, hours, people] = await Promise.all([health(), activity.recent(), activity.perHour(24), activity.people()]);
    const shown = outcome ? events.filter((e) => e.outcome === outcome) : events;
    const filters = FILTERS.map(([o, label]) => (o === outcome ? `<strong>${escapeHtml(label)}</strong>` : `<a href="/admin${o ? `?outcome=${o}` : ''}#sign-ins">${escapeHtml(label)}</a>`)).join(' · ');
    ctx.type = 'html';
    ctx.body = pages.render('admin', 'Operator console', {
      name: here.account.identity.name ?? here.account.identity.login,
      done: ctx.query.done === 'signed-out' ? 'Done: everything that person was given has ended; they sign in again to go on.' : undefined,
      health: healthTable(report),
      chart: hourlyChart(hours),
      filters: new Html(filters),
      events: eventsTable(shown),
      people: peopleTable(people, csrf(here.sessionId)),
      apps: appsList(events),
      try: tryIt(here.account, typeof ctx.query.try === 'string' ? ctx.query.try : undefined),
    });
  };
}
