import type { HealthItem } from '../health.ts';
import type { PageValues } from '../html.ts';
import type { Connection, Network, Peer } from '../network.ts';

// The seam between "who is this person?" and OpenID Connect. A source turns what it verified
// itself (tailscaled's whois, plex.tv) into an Identity, or refuses with a reason a person can
// read. Sources know nothing of OAuth, clients or sessions; the interaction routes own those.

export interface Identity {
  /** Which source vouched for this person; it namespaces `sub`. */
  source: string;
  /** The source's stable, never-reused id for the person (a Tailscale user id, a Plex account id). */
  id: string;
  /** The person's login at the source (e.g. alice@example.com, alice@github, a Plex username). */
  login: string;
  name?: string;
  email?: string;
  emailVerified: boolean;
  picture?: string;
  /**
   * Names the source verified that a config's groups may list the person by: a Tailscale login
   * name, a Plex username, a tagged device's tags. Never a value the person can set freely (a
   * display name, a Plex title, an unconfirmed email).
   */
  aliases?: string[];
  /** Groups the source itself vouches for (membership of a shared Plex server). */
  groups?: string[];
}

export type RefusalReason =
  | 'not-on-tailnet'
  | 'tagged-device'
  /** The upstream could not be asked (down, slow, answering garbage). */
  | 'source-unavailable'
  /** This network (or everybody) has started as many upstream sign-ins as guestlist keeps. */
  | 'too-many'
  | 'expired'
  | 'not-allowed'
  /** The upstream answered but would not vouch for this sign-in (plex.tv's 401 for the person's token, a PIN that is not this sign-in's). */
  | 'not-verified';

/** A sign-in that cannot happen, with the words to tell the person why and the HTTP status. */
export class Refusal extends Error {
  readonly reason: RefusalReason;
  readonly status: number;
  readonly title: string;
  /** For the log only, never the page: what failed and where (a socket path, an HTTP status, a timeout). */
  readonly detail: string | undefined;
  /**
   * What to tell the person when the page offers another way to sign in instead: why this one
   * did not sign them in, without the advice that only fits a dead end ("Ask whoever runs it").
   * Absent: say nothing then (a stranger to the tailnet is the ordinary case, not news).
   */
  readonly instead: string | undefined;
  /**
   * Who was refused, when the source could tell (a Plex account its server is not shared with):
   * for the operator console's "why was this person refused?", never for the page.
   */
  person: { sub: string; name: string } | undefined;
  constructor(reason: RefusalReason, title: string, message: string, detail?: string, instead?: string) {
    super(message);
    this.name = 'Refusal';
    this.reason = reason;
    this.title = title;
    this.detail = detail;
    this.instead = instead;
    this.person = undefined;
    this.status = reason === 'source-unavailable' || reason === 'too-many' ? 503 : reason === 'expired' ? 400 : 403;
  }
}

/** The refusal, saying who it refused (Refusal.person). */
export function refusing<R extends Refusal>(refusal: R, sub: string, name: string): R {
  refusal.person = { sub, name };
  return refusal;
}

/** What a step only logs: why it did not go on, for whoever reads the log; the person sees the step's own answer. */
export interface LogOnly {
  reason: RefusalReason;
  detail?: string;
}

/** A refusal kept for the log, its words for the person having been said otherwise. */
export function logOnly(refusal: Refusal): LogOnly {
  return { reason: refusal.reason, ...(refusal.detail ? { detail: refusal.detail } : {}) };
}

/** A day: how long a sign-in that is not verified again holds (an interactive one). */
export const DAY_SECONDS = 24 * 3600;

/**
 * How long a sign-in from a source holds, and how it is verified again when the session is reused
 * for another authorization. oidc-provider keeps the session (and its grant) `holdsFor` seconds.
 */
export interface SessionRule {
  holdsFor: number;
  /**
   * - 'from-the-connection': at every authorization the source must vouch for the same person
   *   again, from the request's own connection (Tailscale: a device removed from the tailnet is
   *   out at once, not when its session ends);
   * - a function: asked of the upstream, given who was signed in: who that is now, or a Refusal
   *   thrown. not-allowed (a Plex server no longer shared) and not-verified (a token plex.tv no
   *   longer accepts) end everything the person was given; any other (plex.tv not answering)
   *   only refuses this time. `kept` says the upstream could not be asked and the last verdict
   *   was kept, and why (for the log);
   * - absent: the sign-in holds, unasked, for as long as it lasts.
   */
  verifyAgain?: 'from-the-connection' | ((signedIn: Identity) => Promise<{ identity: Identity; kept?: string }>);
}

/** A source that recognises the person from the connection itself: no page, nothing to click. */
export interface AmbientSource {
  readonly kind: 'ambient';
  readonly name: string;
  /** How pages name it to people ("Signed in as Alice · via Tailscale"). */
  readonly label: string;
  readonly session: SessionRule;
  /** Resolve the person behind this peer, or throw a Refusal. */
  identify(peer: Peer): Promise<Identity>;
  /**
   * A connection was accepted, before any request on it: a source whose answer could change with
   * what the client does later (tailscaled forgets a proxied connection when it closes) asks now.
   */
  accepted?(connection: Connection): void;
  /**
   * Who is behind a peer that many people share (loopback, when tailscaled or `tailscale serve`
   * hands us every connection from 127.0.0.1), as a key for counting their requests; undefined
   * when the source cannot tell. Only what the source verified, never a header anyone can send.
   */
  network?(peer: Peer): Promise<string | undefined>;
  /** For the operator console: whether its upstream answers now, and what it says of itself. */
  health?(): Promise<HealthItem[]>;
}

/** One request of an interactive source's sign-in, as the interaction router hands it over. */
export interface SignInStep {
  /** The pending sign-in (oidc-provider's interaction) this request belongs to. */
  readonly uid: string;
  /** The network the request comes from, to bound what it may make the server remember. */
  network(): Promise<Network>;
  /** The path of one of this source's actions for this sign-in; absolute (on the issuer) if asked. */
  actionUrl(action: string, absolute?: boolean): string;
  /** Where this sign-in went, if another request (on any instance) has already finished it. */
  finishedTo(): Promise<string | undefined>;
  /** A JSON body, or undefined when there is none, it is not JSON, or it is over `limit` bytes. */
  readJson(limit: number): Promise<unknown>;
}

/** What a step ends in; the router turns it into a response, and logs every refusal. */
export type StepOutcome =
  /** Verified: the router signs the person in, if the app allows them. */
  | { identity: Identity }
  /** A dead end: the refusal's page. */
  | { refusal: Refusal }
  /** The sign-in page again, with a notice (a new attempt can still finish this sign-in). */
  | { page: { status: number; notice?: string }; log?: LogOnly }
  /** An answer to the page's script. */
  | { json: { status: number; body?: unknown; retryAfter?: number }; log?: LogOnly }
  | { redirect: string };

export interface SourceAction {
  method: 'GET' | 'POST';
  /** Answered to the page's script in JSON (an expired sign-in too), not with a page. */
  json?: boolean;
  /**
   * Concurrent requests for one sign-in share one run of this action and its answer (a
   * double-submitted form must be checked, and signed in, once).
   */
  once?: boolean;
  handle(step: SignInStep): Promise<StepOutcome>;
}

/** A source that shows a page and takes the person through its own steps (Plex's PIN). */
export interface InteractiveSource {
  readonly kind: 'interactive';
  readonly name: string;
  readonly session: SessionRule;
  /** How the page names it to people ("Sign in with your Plex account", "You can sign in with Plex instead"). */
  readonly label: string;
  /** Origins its page's script talks to, for the Content-Security-Policy's connect-src. */
  readonly connectTo: string[];
  /**
   * Its panel on the sign-in page (which offers every interactive source the client accepts): a
   * view in views/ and the values it needs (the router adds `client`).
   */
  page(step: SignInStep): { view: string; values: PageValues };
  /** `/interaction/:uid/<name>/<action>` */
  readonly actions: Record<string, SourceAction>;
  /**
   * The token the upstream gave for this person, if the source keeps one (Plex's, for its
   * re-checks): for the apps configured to receive it (clients[].plex_token), nobody else.
   */
  upstreamToken?(identity: Identity): Promise<string | undefined>;
  /** For the operator console: whether its upstream answers now, and what it says of itself. */
  health?(): Promise<HealthItem[]>;
}
