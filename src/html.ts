// What pages are made of, for everyone who renders one (http/, the sign-in routes, the sources'
// panels, the demo): values that are escaped, markup guestlist built itself, and the renderer as
// it is handed around. http/pages.ts fills views/ with them.

/** Markup built by guestlist itself, safe to insert unescaped. */
export class Html {
  readonly markup: string;
  constructor(markup: string) {
    this.markup = markup;
  }
}

export type PageValues = Record<string, string | number | Html | undefined>;

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export interface Pages {
  render(view: string, title: string, values?: PageValues): string;
  /** A view as a part of another page (a source's panel on the sign-in page). */
  part(view: string, values: PageValues): Html;
}
