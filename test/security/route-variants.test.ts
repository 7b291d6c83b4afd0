import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Adapter } from 'oidc-provider';
import { createPages } from '../../src/http/pages.ts';
import { matchRoute, PROVIDER_ROUTES } from '../../src/http/provider-routes.ts';
import { loadOrCreateKeys } from '../../src/keys/keys.ts';
import { createProvider } from '../../src/oidc/provider.ts';
import { createMemoryStore, type MemoryStore } from '../../src/storage/memory.ts';
import { CLOUDFLARE, HEADSCALE, startTestEnv, tempDir, type TestEnv } from '../helpers.ts';
import { FRIENDS } from '../plex-flow.ts';

// oidc-provider's router takes a path case-insensitively, with one trailing slash or none, and a
// HEAD wherever it takes a GET. Every limit guestlist keys on a route must count each of those
// spellings, or an outsider walks around it (issue 19: `HEAD /auth`, `GET /AUTH`, `GET /auth/`
// each started an uncounted sign-in; `/TOKEN` skipped the token limit).

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'];

/** The ways one path can be spelled: the router takes some, and must be matched exactly as it does. */
function spellings(path: string): string[] {
  const upper = path.toUpperCase();
  const mixed = path.replace(/[a-z]/g, (c, i: number) => (i % 2 ? c.toUpperCase() : c));
  const encoded = path.replace(/[a-z]/, (c) => `%${c.charCodeAt(0).toString(16)}`);
  return [path, upper, mixed, `${path}/`, `${upper}/`, `${path}//`, encoded, `/${path}`, `${path}.`, `${path}%2F`];
}

/** Every route's path, with a parameter filled in. */
const PATHS = [...new Set(PROVIDER_ROUTES.map((r) => r.path.replace(':uid', 'aBc-123_x')))];

async function send(base: string, method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined> }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: hostname, port, method, path, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('routes are matched the way oidc-provider\'s router matches them', () => {
  let env: TestEnv;
  let bare: Server;
  let bareUrl: string;
  before(async () => {
    env = await startTestEnv();
    // oidc-provider as guestlist configures it, with none of guestlist's own layers in front.
    const store = createMemoryStore({ accountTtlSeconds: 60 });
    const provider = createProvider({
      config: env.config, keys: await loadOrCreateKeys(await tempDir()), store, log: () => {},
      pages: createPages(env.config.branding), clients: new Map(env.config.clients.map((c) => [c.client_id, c])),
      signIn: { withinAuthorization: async () => {}, stillHolds: async () => true, holdsFor: () => 3600, accountOf: async () => undefined, refreshed: async () => undefined, refreshLifetime: () => 3600, upstreamToken: async () => undefined }, pendingInteractions: (inner: Adapter) => inner,
    });
    bare = createServer(provider.callback());
    await new Promise<void>((resolve) => bare.listen(0, '127.0.0.1', resolve));
    bareUrl = `http://127.0.0.1:${(bare.address() as AddressInfo).port}`;
  });
  after(async () => {
    bare.closeAllConnections();
    await new Promise((resolve) => bare.close(resolve));
    await env.close();
  });

  test('for every route, method and spelling, guestlist names the route exactly when the router takes the request', async () => {
    const disagreements: string[] = [];
    for (const path of PATHS) {
      for (const spelled of spellings(path)) {
        for (const method of METHODS) {
          // A preflight is answered only as one (without these, the route takes it and says 404).
          const preflight: Record<string, string> = method === 'OPTIONS' ? { origin: 'https://elsewhere.example', 'access-control-request-method': 'POST' } : {};
          const taken = (await send(bareUrl, method, spelled, preflight)).status !== 404;
          const named = matchRoute(method, spelled) !== undefined;
          if (taken !== named) disagreements.push(`${method} ${spelled}: router ${taken ? 'takes it' : 'does not'}, guestlist ${named ? 'names it' : 'does not'}`);
        }
      }
    }
    assert.deepEqual(disagreements, []);
  });

  test('a spelling the router takes is the same route in its own spelling', () => {
    assert.deepEqual(matchRoute('HEAD', '/AUTH/'), { name: 'authorization', path: '/auth' });
    assert.deepEqual(matchRoute('GET', '/Auth/aBc-123_x/'), { name: 'resume', path: '/auth/aBc-123_x' });
    assert.deepEqual(matchRoute('GET', '/auth/%61b%2Fc'), { name: 'resume', path: '/auth/ab%2Fc' });
    assert.deepEqual(matchRoute('POST', '/ToKeN/'), { name: 'token', path: '/token' });
    assert.deepEqual(matchRoute('GET', '/SESSION/END'), { name: 'end_session', path: '/session/end' });
    // A non-ASCII letter that upper-cases to an ASCII one (the Kelvin sign) is not a "k".
    assert.equal(matchRoute('POST', '/to\u212Aen'), undefined);
    assert.equal(matchRoute('GET', '/interaction/abc'), undefined);
  });

  test('a method a route does not take is a 405 naming the ones it does, never a 500', async () => {
    for (const path of ['/jwks', '/.well-known/openid-configuration', '/.well-known/oauth-authorization-server', '/auth', '/token', '/session/end']) {
      for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
        const res = await send(env.server.url, method, path);
        if (matchRoute(method, path)) continue;
        assert.equal(res.status, 405, `${method} ${path}`);
        const allow = String(res.headers.allow).split(', ');
        assert.ok(allow.length > 0 && allow.every((m) => matchRoute(m, path)) && !allow.includes(method), `${method} ${path}: Allow ${allow}`);
      }
    }
    assert.deepEqual(env.logs.filter((l) => l.level === 'error'), []);
  });

  test('a resume with no sign-in behind it is the expired page, whatever its query names (was a 500)', async () => {
    for (const query of ['', '?client_id=headscale', `?client_id=headscale&redirect_uri=${encodeURIComponent(HEADSCALE.redirect_uris[0]!)}&response_type=code`]) {
      for (const path of ['/auth/abc', '/AUTH/abc/']) {
        const res = await send(env.server.url, 'GET', `${path}${query}`, { accept: 'text/html' });
        assert.equal(res.status, 400, `${path}${query}`);
        assert.equal(res.headers.location, undefined);
      }
    }
    assert.deepEqual(env.logs.filter((l) => l.level === 'error'), []);
  });
});

/** An authorization request for a stranger (so it needs a page: a pending sign-in). */
const authorize = (c = CLOUDFLARE) => `?${new URLSearchParams({ client_id: c.client_id, response_type: 'code', scope: 'openid', redirect_uri: c.redirect_uris[0]!, state: 's', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuHJSJ3_PTI', code_challenge_method: 'S256' })}`;
const AUTH_SPELLINGS: [string, string][] = [['GET', '/auth'], ['HEAD', '/auth'], ['GET', '/AUTH'], ['GET', '/auth/'], ['HEAD', '/Auth/'], ['GET', '/aUtH']];
const TOKEN_SPELLINGS: [string, string][] = [['POST', '/token'], ['POST', '/TOKEN'], ['POST', '/token/'], ['POST', '/Token/']];
const SIGN_OUT_SPELLINGS: [string, string][] = [['GET', '/session/end'], ['HEAD', '/session/end'], ['GET', '/SESSION/END/'], ['POST', '/session/end/confirm'], ['POST', '/Session/End/Confirm/'], ['GET', '/session/end/success']];

describe('every spelling of a limited route counts against its limit', () => {
  test('authorization requests: the limit counts HEAD, any case and a trailing slash alike', async () => {
    const env = await startTestEnv({ rate_limits: { authorize: AUTH_SPELLINGS.length }, client_ip_header: 'Fly-Client-IP' });
    try {
      const from = { 'fly-client-ip': '203.0.113.30' };
      for (const [method, path] of AUTH_SPELLINGS) assert.notEqual((await send(env.server.url, method, `${path}${authorize()}`, from)).status, 429, `${method} ${path}`);
      for (const [method, path] of AUTH_SPELLINGS) assert.equal((await send(env.server.url, method, `${path}${authorize()}`, from)).status, 429, `${method} ${path}`);
    } finally {
      await env.close();
    }
  });

  test('token requests: /TOKEN and /token/ count against the token limit', async () => {
    const env = await startTestEnv({ rate_limits: { token: TOKEN_SPELLINGS.length }, client_ip_header: 'Fly-Client-IP' });
    try {
      const from = { 'fly-client-ip': '203.0.113.31', 'content-type': 'application/x-www-form-urlencoded' };
      for (const [method, path] of TOKEN_SPELLINGS) assert.equal((await send(env.server.url, method, path, from)).status, 400, `${method} ${path}`);
      for (const [method, path] of TOKEN_SPELLINGS) assert.equal((await send(env.server.url, method, path, from)).status, 429, `${method} ${path}`);
    } finally {
      await env.close();
    }
  });

  test('sign-out: limited like the sign-in pages, in every spelling', async () => {
    const env = await startTestEnv({ rate_limits: { interaction: SIGN_OUT_SPELLINGS.length }, client_ip_header: 'Fly-Client-IP' });
    try {
      const from = { 'fly-client-ip': '203.0.113.32' };
      for (const [method, path] of SIGN_OUT_SPELLINGS) assert.notEqual((await send(env.server.url, method, path, from)).status, 429, `${method} ${path}`);
      for (const [method, path] of SIGN_OUT_SPELLINGS) assert.equal((await send(env.server.url, method, path, from)).status, 429, `${method} ${path}`);
      // Another network is not held back.
      assert.notEqual((await send(env.server.url, 'GET', '/session/end', { 'fly-client-ip': '203.0.113.33' })).status, 429);
    } finally {
      await env.close();
    }
  });

  test('unfinished sign-ins: every spelling that starts one counts against the network\'s share', async () => {
    const env = await startTestEnv({ rate_limits: { pending: AUTH_SPELLINGS.length }, client_ip_header: 'Fly-Client-IP', plex: true, clients: [FRIENDS] });
    try {
      const from = { 'fly-client-ip': '203.0.113.34' };
      const statuses: number[] = [];
      for (const [method, path] of [...AUTH_SPELLINGS, ...AUTH_SPELLINGS]) statuses.push((await send(env.server.url, method, `${path}${authorize(FRIENDS)}`, from)).status);
      assert.deepEqual(statuses, [...AUTH_SPELLINGS.map(() => 303), ...AUTH_SPELLINGS.map(() => 429)]);
      assert.equal((env.server.store as MemoryStore).sizes().Interaction?.entries, AUTH_SPELLINGS.length);
    } finally {
      await env.close();
    }
  });
});
