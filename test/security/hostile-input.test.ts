import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { ConfigError } from '../../src/config/config.ts';
import { parseConfig } from '../../src/config/load.ts';
import { HEADSCALE, startTestEnv, type TestEnv } from '../helpers.ts';

// Malformed and hostile input, generated: every answer must be a well-formed OAuth error or a
// page with a 4xx status; never a 500, a crash, or a stack trace; and no input reflected as markup.

const STACK = /at [\w.<>]+ \(|node:internal|\.js:\d+:\d+|\.ts:\d+:\d+/;
const nasty = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom('<script>alert(1)</script>', '"><img src=x onerror=alert(1)>', '../../../etc/passwd', '%00', '\u0000', '${HOME}',
    'https://evil.example/', 'javascript:alert(1)', 'A'.repeat(5000), '=?utf-8?q?=3Cscript=3E?=', 'openid openid openid', '{"a":1}'),
);

describe('hostile input at the endpoints', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv({ plex: true, clients: [HEADSCALE, { ...HEADSCALE, client_id: 'plexapp', sources: ['plex'] }] });
  });
  after(() => env.close());

  function noStack(body: string, where: string) {
    assert.doesNotMatch(body, STACK, `${where} leaked a stack trace: ${body.slice(0, 300)}`);
    assert.doesNotMatch(body, /<script>alert|<img src=x/, `${where} reflected markup: ${body.slice(0, 300)}`);
  }

  test('authorize: any parameters give a redirect or a 4xx page, never a 500', async () => {
    const keys = ['client_id', 'response_type', 'scope', 'redirect_uri', 'state', 'nonce', 'code_challenge', 'code_challenge_method', 'prompt', 'max_age', 'response_mode', 'claims', 'request', 'id_token_hint', 'login_hint', 'ui_locales'];
    await fc.assert(fc.asyncProperty(
      fc.dictionary(fc.oneof(fc.constantFrom(...keys), fc.string({ maxLength: 10 })), nasty, { maxKeys: 8 }),
      fc.boolean(),
      async (params, valid) => {
        const query = new URLSearchParams(valid ? { client_id: HEADSCALE.client_id, redirect_uri: HEADSCALE.redirect_uris[0]!, response_type: 'code', scope: 'openid', ...params } : params);
        const res = await fetch(`${env.issuer}/auth?${query}`, { redirect: 'manual' });
        const body = await res.text();
        assert.ok(res.status === 303 || res.status === 302 || (res.status >= 400 && res.status < 500), `/auth?${query} -> ${res.status}`);
        noStack(body, '/auth');
      },
    ), { numRuns: 150 });
  });

  test('token: any body and credentials give an OAuth error as JSON, never a 500', async () => {
    await fc.assert(fc.asyncProperty(
      fc.dictionary(fc.constantFrom('grant_type', 'code', 'redirect_uri', 'code_verifier', 'client_id', 'client_secret', 'refresh_token', 'scope'), nasty, { maxKeys: 6 }),
      fc.option(nasty),
      fc.constantFrom('application/x-www-form-urlencoded', 'application/json', 'text/plain', 'multipart/form-data'),
      async (form, auth, type) => {
        const headers: Record<string, string> = { 'content-type': type };
        if (auth !== null) headers.authorization = `Basic ${Buffer.from(auth).toString('base64')}`;
        const res = await fetch(`${env.issuer}/token`, { method: 'POST', headers, body: new URLSearchParams(form).toString() });
        const body = await res.text();
        assert.ok(res.status >= 400 && res.status < 500, `/token -> ${res.status}: ${body}`);
        const json = JSON.parse(body) as { error?: unknown };
        assert.equal(typeof json.error, 'string');
        noStack(body, '/token');
      },
    ), { numRuns: 150 });
  });

  test('userinfo: forged bearer tokens, alg none and key confusion included, get 401', async () => {
    const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const claims = { sub: 'tailscale:9007199254740993', iss: env.issuer, aud: HEADSCALE.client_id, exp: Math.floor(Date.now() / 1000) + 3600, scope: 'openid' };
    const jwks = await (await fetch(`${env.issuer}/jwks`)).json() as { keys: { n: string }[] };
    const forged = [
      `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`,
      // HS256 "signed" with the public RSA modulus as the HMAC secret: the classic key confusion.
      `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}.${Buffer.from(jwks.keys[0]!.n).toString('base64url')}`,
    ];
    await fc.assert(fc.asyncProperty(fc.oneof(fc.constantFrom(...forged), nasty), fc.constantFrom('Bearer ', 'bearer ', 'Basic ', ''), async (token, scheme) => {
      const res = await fetch(`${env.issuer}/me`, { headers: { authorization: `${scheme}${token}`.replace(/[\r\n\u0000-\u001f\u007f-\uffff]/g, '') } });
      const body = await res.text();
      assert.ok(res.status === 400 || res.status === 401, `/me -> ${res.status}`);
      noStack(body, '/me');
    }), { numRuns: 100 });
  });

  test('interaction endpoints: unknown ids, wrong methods and junk bodies get 4xx, never a 500', async () => {
    await fc.assert(fc.asyncProperty(
      fc.oneof(fc.stringMatching(/^[A-Za-z0-9_-]{1,70}$/), nasty),
      fc.constantFrom('', '/abort', '/plex/pin', '/plex/finish', '/plex/return', '/../../etc', '/plex'),
      fc.constantFrom('GET', 'POST', 'PUT', 'DELETE'),
      nasty,
      async (uid, action, method, body) => {
        const res = await fetch(`${env.issuer}/interaction/${encodeURIComponent(uid)}${action}`, {
          method, redirect: 'manual',
          ...(method === 'GET' ? {} : { body, headers: { 'content-type': 'application/json' } }),
        });
        const text = await res.text();
        assert.ok(res.status >= 400 && res.status < 500, `${method} /interaction/${uid}${action} -> ${res.status}`);
        noStack(text, '/interaction');
      },
    ), { numRuns: 150 });
  });
});

describe('hostile config files', () => {
  test('any document is either a valid config or a ConfigError naming problems, never a crash', () => {
    const value = fc.letrec((tie) => ({
      any: fc.oneof({ depthSize: 'small' }, fc.string({ maxLength: 20 }), fc.integer(), fc.boolean(), fc.constant(null), fc.array(tie('any'), { maxLength: 3 }),
        fc.dictionary(fc.constantFrom('issuer', 'listen', 'clients', 'client_id', 'client_secret', 'redirect_uris', 'tailscale', 'plex', 'groups', 'branding', 'server_id', 'socket', 'x'), tie('any'), { maxKeys: 4 })),
    })).any;
    fc.assert(fc.property(fc.oneof(value.map((v) => stringify(v)), fc.string({ maxLength: 200 })), (yaml) => {
      try {
        parseConfig(yaml, { SECRET: 'abcdefghijklmnop0123' });
      } catch (err) {
        assert.ok(err instanceof ConfigError, `threw ${(err as Error).name}: ${(err as Error).message}`);
        assert.ok(err.problems.length > 0);
      }
    }), { numRuns: 500 });
  });
});
