import { readAsset } from '../assets.ts';
import type { BrandingConfig } from '../config/config.ts';
import { escapeHtml, Html, type Pages, type PageValues } from '../html.ts';

// Pages are plain HTML files in views/. `{{name}}` inserts a value HTML-escaped; `{{{name}}}`
// inserts markup that guestlist built itself (never a value from a person or an upstream).
// views/layout.html wraps every page.

const templates = new Map<string, string>();

function template(name: string): string {
  let t = templates.get(name);
  if (t === undefined) {
    t = readAsset(`views/${name}.html`).toString('utf8');
    templates.set(name, t);
  }
  return t;
}

function fill(tpl: string, values: PageValues): string {
  return tpl.replace(/\{\{(\{)?\s*([a-z_]+)\s*\}?\}\}/g, (_m, raw: string | undefined, key: string) => {
    const v = values[key];
    if (v === undefined) return '';
    if (v instanceof Html) return v.markup;
    if (raw) throw new Error(`views: {{{${key}}}} needs an Html value`);
    return escapeHtml(String(v));
  });
}

/** Pages wearing the site's branding: its name, logo and extra stylesheets (see branding.ts). */
export function createPages(branding: BrandingConfig): Pages {
  const head = new Html([
    '<link rel="stylesheet" href="/branding.css">',
    branding.stylesheet ? '<link rel="stylesheet" href="/custom.css">' : '',
  ].join('\n'));
  const logo = new Html(branding.logo_url ? `<img class="logo" src="${escapeHtml(branding.logo_url)}" alt="">` : '');
  return {
    render(view, title, values = {}) {
      const content = fill(template(view), { site: branding.title, ...values });
      return fill(template('layout'), {
        title: title === branding.title ? title : `${title} · ${branding.title}`,
        site: branding.title,
        head,
        logo,
        content: new Html(content),
        body_class: view,
      });
    },
    part: (view, values) => new Html(fill(template(view), values)),
  };
}

/** Load every template now, so a missing view fails at start-up rather than on someone's login. */
export function preloadViews(names: string[]): void {
  for (const n of ['layout', ...names]) template(n);
}
