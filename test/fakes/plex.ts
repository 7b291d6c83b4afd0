import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomBytes, randomInt } from 'node:crypto';
import type { AddressInfo } from 'node:net';

// A stand-in for plex.tv and its approval page (app.plex.tv/auth) that answers as the reference
// describes (shared/reference/plex-api.md §1-§3, §7):
// - X-Plex-* values are read from headers or from the query string;
// - JSON only with `Accept: application/json` (real plex.tv would send XML; 406 here catches it);
// - POST /api/v2/pins (strong in query, form or JSON) -> 201 pin record; no client id -> 400 1000;
// - GET /api/v2/pins/:id -> 200 record (authToken null until approved); unknown, expired or
//   asked with another client identifier -> 404 {"errors":[{"code":1020,...}]};
// - GET /api/v2/user -> 200 account, with each user's Plex Home fields (§7b: home, homeAdmin,
//   restricted, guest); bad token -> 401 1001;
// - GET /api/v2/resources -> 200 array of devices (`provides` is a comma-separated list; a Home
//   member's copy of the owner's server carries `home: true`, and here even `owned: true`);
// - CORS for the browser: `Access-Control-Allow-Origin: *`, preflights for X-Plex-* headers;
// - GET /auth: the approval page, which reads `#?clientID=&code=&forwardUrl=` and approves the
//   PIN as a chosen test user, then forwards (same-tab flow) or closes itself (popup flow).

export const SERVER_ID = 'f76e7b49cd981f44e37f3128b6e9fca2db32bca1';
const OTHER_SERVER_ID = '0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d';

export interface FakePlexUser {
  id: number;
  uuid: string;
  /** Empty for a managed Home user, who has no plex.tv login of their own (§7b). */
  username: string;
  /** The name shown in Plex; a managed user's only name, and anyone's to set. */
  title: string;
  friendlyName: string;
  email: string;
  confirmed: boolean;
  /** §7b: a Plex Home user. */
  home: boolean;
  /** §7b: the Plex Home admin (the owner). */
  homeAdmin: boolean;
  /** §7b: a managed Home user. */
  restricted: boolean;
  /** §7b: a Plex Home guest user. */
  guest: boolean;
  resources: object[];
}

const server = (id: string, owned: boolean, name: string, home = false) => ({
  name, product: 'Plex Media Server', productVersion: '1.43.3.10828-00f62d37d', platform: 'Linux',
  clientIdentifier: id, createdAt: '2019-12-05T08:50:12Z', lastSeenAt: '2026-07-28T19:47:43Z',
  provides: 'server', ownerId: owned ? null : 2639453, sourceTitle: owned ? null : 'ownerusername',
  accessToken: randomBytes(10).toString('hex'), owned, home, synced: false, relay: true,
  presence: true, httpsRequired: false, publicAddressMatches: false, connections: [],
});
const NOT_HOME = { home: false, homeAdmin: false, restricted: false, guest: false };
const player = (id: string) => ({ name: 'Living Room TV', product: 'Plex for Apple TV', clientIdentifier: id, provides: 'client,player,pubsub-player', owned: true, ownerId: null, connections: [] });

export const PLEX_USERS: Record<string, FakePlexUser> = {
  alice: { id: 13692262, uuid: 'dae343c1f45beb4f', username: 'alice', title: 'alice', friendlyName: 'Alice Liddell', email: 'alice@example.com', confirmed: true, ...NOT_HOME,
    resources: [server(SERVER_ID, false, "Owner's Plex"), player('0000000000000000000000000000000b')] },
  // The server's owner, and the admin of a Plex Home that `kid` belongs to.
  owner: { id: 2639453, uuid: '0123456789abcdef', username: 'ownerusername', title: 'ownerusername', friendlyName: 'The Owner', email: 'owner@example.com', confirmed: true,
    home: true, homeAdmin: true, restricted: false, guest: false,
    resources: [server(SERVER_ID, true, "Owner's Plex", true)] },
  // Has another server shared, and a player whose id happens to equal ours: neither is a share.
  dave: { id: 55500012, uuid: 'fedcba9876543210', username: 'dave', title: 'dave', friendlyName: '<img src=x onerror=alert(1)>Dave', email: 'dave@example.com', confirmed: false, ...NOT_HOME,
    resources: [server(OTHER_SERVER_ID, false, 'Someone else'), player(SERVER_ID)] },
  // A managed user in the owner's Plex Home (§7b), as bad as the reference allows: no username,
  // a title that is the owner's username, the owner's (confirmed) email, and the owner's server
  // listed as owned by this account.
  kid: { id: 2639470, uuid: '5a5a5a5a5a5a5a5a', username: '', title: 'ownerusername', friendlyName: '', email: 'owner@example.com', confirmed: true,
    home: true, homeAdmin: false, restricted: true, guest: false,
    resources: [server(SERVER_ID, true, "Owner's Plex", true)] },
  // A Home member with a plex.tv login of her own (not managed): her email is her own, but her
  // copy of the owner's server still comes back owned.
  hannah: { id: 2639471, uuid: '4b4b4b4b4b4b4b4b', username: 'hannah', title: 'hannah', friendlyName: 'Hannah', email: 'hannah@example.com', confirmed: true,
    home: true, homeAdmin: false, restricted: false, guest: false,
    resources: [server(SERVER_ID, true, "Owner's Plex", true)] },
  // Has the share, and typed someone else's address as her email without confirming it.
  erin: { id: 41000007, uuid: '0e0e0e0e0e0e0e0e', username: 'erin', title: 'erin', friendlyName: 'Erin', email: 'alice@example.com', confirmed: false, ...NOT_HOME,
    resources: [server(SERVER_ID, false, "Owner's Plex")] },
  // Has the share, and a title that is another person's username.
  frank: { id: 41000008, uuid: '0f0f0f0f0f0f0f0f', username: 'frank', title: 'alice', friendlyName: 'alice', email: 'frank@example.com', confirmed: true, ...NOT_HOME,
    resources: [server(SERVER_ID, false, "Owner's Plex")] },
  // Has the share, and a username shaped like someone's email (whether plex.tv allows one is not known).
  mallory: { id: 41000009, uuid: '0a0a0a0a0a0a0a0a', username: 'alice@example.com', title: 'mallory', friendlyName: 'Mallory', email: 'mallory@example.com', confirmed: false, ...NOT_HOME,
    resources: [server(SERVER_ID, false, "Owner's Plex")] },
};

interface Pin {
  id: number;
  code: string;
  clientIdentifier: string;
  product: string;
  createdAt: number;
  expiresAt: number;
  authToken: string | null;
  /** A browser's fetch carries Origin; a server's does not. Plex warns when they differ in IP. */
  createdByBrowser: boolean;
}

export type PlexFault = 'http-500' | 'http-401' | 'http-429' | 'hang' | 'garbage';

export class FakePlex {
  url = '';
  pinLifetimeSeconds = 1800;
  /** Faults by path prefix, e.g. {'/api/v2/user': 'http-500'}. */
  readonly faults = new Map<string, PlexFault>();
  readonly calls: { method: string; path: string; fromBrowser: boolean; token?: string }[] = [];
  readonly pins = new Map<number, Pin>();
  /** This fake's own copy of the users, which a test may change (a share removed, a move into the Home). */
  readonly users: Record<string, FakePlexUser> = structuredClone(PLEX_USERS);
  private readonly tokens = new Map<string, string>(); // token -> username
  private readonly tokenOwners = new Map<string, string>(); // every token ever given -> username
  // plex.tv's PIN ids are global: start each fake somewhere else, as a shared store outlives one.
  private nextPinId = 1_272_322_473 + randomInt(1_000_000_000);
  private server: Server | undefined;
  private readonly hung = new Set<ServerResponse>();

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err) => {
        res.writeHead(500);
        res.end(String(err));
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    for (const res of this.hung) res.destroy();
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  /** What a person does on app.plex.tv: sign in as `username` and approve the PIN. */
  approve(code: string, username: string): void {
    const pin = [...this.pins.values()].find((p) => p.code === code);
    if (!pin || !this.users[username]) throw new Error(`cannot approve ${code} as ${username}`);
    const token = randomBytes(10).toString('base64url').slice(0, 20);
    this.tokens.set(token, username);
    this.tokenOwners.set(token, username);
    pin.authToken = token;
  }

  /** The owner stops sharing the server with `username` (who keeps any other server). */
  unshare(username: string): void {
    const user = this.users[username]!;
    user.resources = user.resources.filter((r) => (r as { clientIdentifier?: string }).clientIdentifier !== SERVER_ID || (r as { provides?: string }).provides !== 'server');
  }

  /** The owner shares the server with `username` (again). */
  share(username: string): void {
    const user = this.users[username]!;
    if (!user.resources.some((r) => (r as { clientIdentifier?: string }).clientIdentifier === SERVER_ID)) user.resources.push(server(SERVER_ID, false, "Owner's Plex"));
  }

  /** `username` signs out of every device at plex.tv (or the account is disabled): every token of theirs is refused with a 401. */
  revokeTokens(username: string): void {
    for (const [token, user] of this.tokens) if (user === username) this.tokens.delete(token);
  }

  /** `username`, a friend, joins the owner's Plex Home: the account is a Home member's, and the server comes through the Home. */
  joinHome(username: string): void {
    const user = this.users[username]!;
    Object.assign(user, { home: true, homeAdmin: false });
    for (const r of user.resources as { clientIdentifier?: string; home?: boolean }[]) if (r.clientIdentifier === SERVER_ID) r.home = true;
  }

  /** Calls plex.tv was asked with `username`'s tokens, at `path`. */
  callsFor(username: string, path: string): number {
    return this.calls.filter((c) => c.path === path && c.token !== undefined && this.tokenOwners.get(c.token) === username).length;
  }

  expire(pinId: number): void {
    const pin = this.pins.get(pinId);
    if (pin) pin.expiresAt = Date.now() - 1000;
  }

  /** A PIN made by someone else's client (an attacker) and approved with their own account. */
  approvedPinFor(username: string, clientIdentifier: string): Pin {
    const pin = this.createPin(clientIdentifier, 'attacker', true, false);
    this.approve(pin.code, username);
    return pin;
  }

  private createPin(clientIdentifier: string, product: string, strong: boolean, fromBrowser: boolean): Pin {
    const id = this.nextPinId++;
    const alphabet = strong ? 'abcdefghijklmnopqrstuvwxyz0123456789' : 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';
    const code = Array.from(randomBytes(strong ? 25 : 4), (b) => alphabet[b % alphabet.length]).join('');
    const pin: Pin = { id, code, clientIdentifier, product, createdAt: Date.now(), expiresAt: Date.now() + this.pinLifetimeSeconds * 1000, authToken: null, createdByBrowser: fromBrowser };
    this.pins.set(id, pin);
    return pin;
  }

  private record(pin: Pin) {
    return {
      id: pin.id, code: pin.code, product: pin.product, trusted: false,
      qr: `https://plex.tv/api/v2/pins/qr/${pin.code}`, clientIdentifier: pin.clientIdentifier,
      location: { code: 'US', european_union_member: false, continent_code: 'NA', country: 'United States', city: 'Austin', time_zone: 'America/Chicago', postal_code: '78732', in_privacy_restricted_country: false, in_privacy_restricted_region: false, subdivisions: 'Texas', coordinates: '30.3768, -97.8935' },
      expiresIn: Math.max(0, Math.round((pin.expiresAt - Date.now()) / 1000)),
      createdAt: new Date(pin.createdAt).toISOString().replace(/\.\d+Z$/, 'Z'),
      expiresAt: new Date(pin.expiresAt).toISOString().replace(/\.\d+Z$/, 'Z'),
      authToken: pin.authToken, newRegistration: null,
    };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const plex = (name: string) => (req.headers[name.toLowerCase()] as string | undefined) ?? url.searchParams.get(name) ?? undefined;
    const fromBrowser = req.headers.origin !== undefined;
    res.setHeader('Access-Control-Allow-Origin', '*');
    if (req.method === 'OPTIONS') {
      res.writeHead(204, {
        'Access-Control-Allow-Methods': 'GET, POST, PUT, DELETE, OPTIONS',
        'Access-Control-Allow-Headers': 'Accept, Content-Type, X-Plex-Product, X-Plex-Version, X-Plex-Client-Identifier, X-Plex-Token, X-Plex-Device, X-Plex-Platform',
        'Access-Control-Max-Age': '86400',
      });
      return void res.end();
    }
    if (url.pathname === '/auth') return this.approvalPage(res);
    if (url.pathname === '/test/approve' && req.method === 'POST') {
      const { code, user } = JSON.parse(await body(req)) as { code: string; user: string };
      this.approve(code, user);
      return json(res, 200, { ok: true });
    }

    const token = plex('X-Plex-Token');
    this.calls.push({ method: req.method ?? '', path: url.pathname, fromBrowser, ...(token ? { token } : {}) });
    for (const [prefix, fault] of this.faults) {
      if (!url.pathname.startsWith(prefix)) continue;
      if (fault === 'hang') {
        this.hung.add(res);
        return;
      }
      if (fault === 'http-500') return json(res, 500, { errors: [{ code: 1900, message: 'Internal server error', status: 500 }] });
      if (fault === 'http-401') return json(res, 401, { errors: [{ code: 1001, message: 'User could not be authenticated', status: 401 }] });
      if (fault === 'http-429') return json(res, 429, { errors: [{ code: 1003, message: 'API rate limit exceeded' }] });
      if (fault === 'garbage') {
        res.writeHead(200, { 'Content-Type': 'text/html' });
        return void res.end('<html><body>Maintenance</body></html>');
      }
    }
    if (!(req.headers.accept ?? '').includes('application/json')) {
      res.writeHead(406, { 'Content-Type': 'text/plain' });
      return void res.end('this fake only speaks JSON: send Accept: application/json');
    }
    const clientId = plex('X-Plex-Client-Identifier');

    if (url.pathname === '/api/v2/pins' && req.method === 'POST') {
      if (!clientId) return json(res, 400, { errors: [{ code: 1000, message: 'X-Plex-Client-Identifier is missing', status: 400 }] });
      const text = await body(req);
      const form = req.headers['content-type']?.includes('json') ? JSON.parse(text || '{}') : Object.fromEntries(new URLSearchParams(text));
      const strong = url.searchParams.get('strong') === 'true' || String(form.strong) === 'true';
      return json(res, 201, this.record(this.createPin(clientId, plex('X-Plex-Product') ?? '0', strong, fromBrowser)));
    }
    const pinMatch = /^\/api\/v2\/pins\/(\d+)$/.exec(url.pathname);
    if (pinMatch && req.method === 'GET') {
      const pin = this.pins.get(Number(pinMatch[1]));
      if (!pin || pin.expiresAt <= Date.now() || pin.clientIdentifier !== clientId) {
        return json(res, 404, { errors: [{ code: 1020, message: 'Code not found or expired' }] });
      }
      return json(res, 200, this.record(pin));
    }
    const user = token ? this.users[this.tokens.get(token) ?? ''] : undefined;
    if (url.pathname === '/api/v2/user' || url.pathname === '/api/v2/resources') {
      if (!user) return json(res, 401, { errors: [{ code: 1001, message: 'User could not be authenticated', status: 401 }] });
      if (url.pathname === '/api/v2/resources') return json(res, 200, user.resources);
      const { resources: _resources, ...account } = user;
      return json(res, 200, {
        ...account, thumb: `https://plex.tv/users/${user.uuid}/avatar?c=1720981098`, authToken: token, joinedAt: 1419625151,
        emailOnlyAuth: false, hasPassword: true, protected: false, homeSize: user.home ? 2 : 1, maxHomeSize: 15,
        subscription: { active: false, status: 'Inactive', features: [] }, twoFactorEnabled: false,
      });
    }
    json(res, 404, { errors: [{ code: 1002, message: 'Not found' }] });
  }

  private approvalPage(res: ServerResponse): void {
    const buttons = Object.keys(this.users).map((u) => `<button data-user="${u}">Approve as ${u}</button>`).join('\n');
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><title>Plex (fake)</title><link rel="icon" href="data:,"><h1>Fake Plex sign-in</h1>
<p id="product"></p>${buttons}<button id="cancel">Cancel</button><p id="done"></p>
<script>
const params = new URLSearchParams(location.hash.replace(/^#!?\\??/, ''));
document.getElementById('product').textContent = 'Sign in to ' + params.get('context[device][product]');
for (const b of document.querySelectorAll('button[data-user]')) {
  b.addEventListener('click', async () => {
    await fetch('/test/approve', { method: 'POST', body: JSON.stringify({ code: params.get('code'), user: b.dataset.user }) });
    const forward = params.get('forwardUrl');
    if (forward) location.assign(forward); else { document.getElementById('done').textContent = 'Approved'; window.close(); }
  });
}
document.getElementById('cancel').addEventListener('click', () => {
  const forward = params.get('forwardUrl');
  if (forward) location.assign(forward); else window.close();
});
</script>`);
  }
}

function json(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify(value));
}

async function body(req: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of req) text += chunk;
  return text;
}
