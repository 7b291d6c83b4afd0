import type { IncomingHttpHeaders } from 'node:http';

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

/** The network facts of the request being signed in: the TCP peer, never a forwarded header. */
export interface Peer {
  address: string;
  port: number;
  headers: IncomingHttpHeaders;
}

export type RefusalReason =
  | 'not-on-tailnet'
  | 'tagged-device'
  | 'source-unavailable'
  | 'expired'
  | 'not-allowed'
  /** The upstream answered but would not vouch for the person (plex.tv's 401 for their token). */
  | 'not-verified';

/** A sign-in that cannot happen, with the words to tell the person why and the HTTP status. */
export class Refusal extends Error {
  readonly reason: RefusalReason;
  readonly status: number;
  readonly title: string;
  /** For the log only, never the page: what failed and where (a socket path, an HTTP status, a timeout). */
  readonly detail: string | undefined;
  constructor(reason: RefusalReason, title: string, message: string, detail?: string) {
    super(message);
    this.name = 'Refusal';
    this.reason = reason;
    this.title = title;
    this.detail = detail;
    this.status = reason === 'source-unavailable' ? 503 : reason === 'expired' ? 400 : 403;
  }
}

/** A source that recognises the person from the connection itself: no page, nothing to click. */
export interface AmbientSource {
  readonly name: string;
  /** Resolve the person behind this peer, or throw a Refusal. */
  identify(peer: Peer): Promise<Identity>;
  /**
   * Who is behind a peer that many people share (loopback, when tailscaled or `tailscale serve`
   * hands us every connection from 127.0.0.1), as a key for counting their requests; undefined
   * when the source cannot tell. Only what the source verified, never a header anyone can send.
   */
  network?(peer: Peer): Promise<string | undefined>;
}

export type SourceName = 'tailscale' | 'plex' | 'demo';
