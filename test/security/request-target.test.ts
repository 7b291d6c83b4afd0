import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection } from 'node:net';
import { ALICE } from '../fakes/tailscaled.ts';
import { HEADSCALE, startTestEnv, type TestEnv } from '../helpers.ts';

// An HTTP/1.1 request line may name a whole URL ("absolute-form", meant for proxies):
//   GET http://evil.example/.well-known/openid-configuration HTTP/1.1
// koa then takes that URL as the request's href and oidc-provider builds its own URLs from it.
// Every URL guestlist hands out must come from the configured issuer instead.

const ISSUER = 'https://auth.example.test';

interface RawResponse { status: number; headers: Record<string, string[]>; body: string }

describe('the request line cannot choose our URLs', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv({ issuer: ISSUER });
  });
  after(() => env.close());

  /** One request written byte for byte on its own TCP connection, as Alice's device. */
  function raw(target: string, headers: Record<string, string> = {}, method = 'GET'): Promise<RawResponse> {
    const { hostname, port } = new URL(env.server.url);
    return new Promise((resolve, reject) => {
      const socket = createConnection(Number(port), hostname, () => {
        env.tailscaled.mapProxiedConnection(socket.localAddress!, socket.localPort!, ALICE);
        const lines = [`${method} ${target} HTTP/1.1`, ...Object.entries({ host: 'evil.example', ...headers, connection: 'close' }).map(([k, v]) => `${k}: ${v}`)];
        socket.write(`${lines.join('\r\n')}\r\n\r\n`);
      });
      let data = '';
      socket.setEncoding('latin1');
      socket.on('data', (c: string) => (data += c));
      socket.on('error', reject);
      socket.on('close', () => {
        const end = data.indexOf('\r\n\r\n');
        const [statusLine, ...headerLines] = data.slice(0, end).split('\r\n');
        const headers: Record<string, string[]> = {};
        for (const line of headerLines) {
          const i = line.indexOf(':');
          (headers[line.slice(0, i).toLowerCase()] ??= []).push(line.slice(i + 1).trim());
        }
        let body = data.slice(end + 4);
        if (headers['transfer-encoding']?.[0] === 'chunked') {
          let out = '';
          for (let rest = body; ;) {
            const nl = rest.indexOf('\r\n');
            const size = parseInt(rest.slice(0, nl), 16);
            if (!size) break;
            out += rest.slice(nl + 2, nl + 2 + size);
            rest = rest.slice(nl + 2 + size + 2);
          }
          body = out;
        }
        resolve({ status: Number(statusLine!.split(' ')[1]), headers, body: Buffer.from(body, 'latin1').toString('utf8') });
      });
    });
  }

  test('discovery names only issuer URLs when the request line is absolute-form', async () => {
    for (const [target, host] of [
      ['http://evil.example/.well-known/openid-configuration', 'evil.example'],
      ['https://evil.example:8443/.well-known/openid-configuration?x=1', 'auth.example.test'],
      ['HTTP://EVIL.EXAMPLE/.well-known/openid-configuration', 'evil.example'],
    ] as const) {
      const res = await raw(target, { host });
      assert.equal(res.status, 200, `${target}: ${res.body.slice(0, 200)}`);
      const meta = JSON.parse(res.body) as Record<string, unknown>;
      assert.equal(meta.issuer, ISSUER);
      const urls = Object.entries(meta).filter(([, v]) => typeof v === 'string' && /^[a-z]+:\/\//i.test(v));
      assert.ok(urls.length >= 5, JSON.stringify(meta));
      for (const [k, v] of urls) assert.ok((v as string).startsWith(`${ISSUER}/`) || v === ISSUER, `${target}: ${k} = ${v}`);
    }
  });

  test('a login begun with an absolute-form request line is never sent to another host', async () => {
    const redirect = HEADSCALE.redirect_uris[0]!;
    const query = new URLSearchParams({ client_id: HEADSCALE.client_id, response_type: 'code', scope: 'openid', redirect_uri: redirect, state: 'st', nonce: 'n' });
    const cookies = new Map<string, string>();
    let target = `http://evil.example/auth?${query}`;
    for (let hop = 0; ; hop++) {
      assert.ok(hop < 10, 'too many redirects');
      const res = await raw(target, cookies.size ? { cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join('; ') } : {});
      for (const line of res.headers['set-cookie'] ?? []) {
        const [name, value] = line.split(';')[0]!.split(/=(.*)/s) as [string, string];
        if (value) cookies.set(name, value);
        else cookies.delete(name);
      }
      const location = res.headers.location?.[0];
      assert.ok(location, `HTTP ${res.status} with no Location: ${res.body.slice(0, 300)}`);
      assert.doesNotMatch(location, /evil\.example/i);
      const next = new URL(location, ISSUER);
      if (next.origin !== ISSUER) {
        // The only place to leave for is the client's registered redirect_uri, with a code.
        assert.equal(`${next.origin}${next.pathname}`, redirect);
        assert.ok(next.searchParams.get('code'), location);
        assert.equal(next.searchParams.get('iss'), ISSUER);
        return;
      }
      target = `${next.pathname}${next.search}`;
    }
  });

  test('a request target that is neither a path nor an http(s) URL is refused with 400', async () => {
    for (const [method, target] of [['OPTIONS', '*'], ['GET', 'evil.example:443'], ['GET', 'ftp://evil.example/.well-known/openid-configuration'], ['GET', 'http:/x']] as const) {
      const res = await raw(target, {}, method);
      assert.equal(res.status, 400, `${method} ${target}: HTTP ${res.status} ${res.body.slice(0, 200)}`);
      assert.doesNotMatch(res.body, /evil\.example/);
    }
    // Ordinary requests still work.
    assert.equal((await raw('/healthz')).status, 200);
  });
});
