import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { runCli } from '../../src/cli.ts';
import type { MemoryStore } from '../../src/storage/memory.ts';
import { ALICE, BOB_GITHUB, CI_RUNNER_TAGGED, type FakeDevice } from '../fakes/tailscaled.ts';
import { Browser, HEADSCALE, login, startAuthorization, startTestEnv, tempDir, type TestEnv } from '../helpers.ts';

// With tailscaled in userspace networking (the container default), a tailnet device's
// connection reaches guestlist from 127.0.0.1, exactly where `tailscale serve` connects from.
// Such a device must not be able to name itself with Tailscale-User-* headers.

const FORGED = { 'tailscale-user-login': 'alice@example.com', 'tailscale-user-name': 'Alice Example' };

/** A device on the tailnet reaching guestlist through tailscaled's userspace proxy, sending `headers`. */
async function throughUserspaceProxy(env: TestEnv, device: FakeDevice, headers: Record<string, string>) {
  const url = await env.tailscaled.userspaceProxy(device, env.server.url);
  const browser = new Browser({ ...env, server: { ...env.server, url } }, null);
  const walk = browser.walk.bind(browser);
  browser.walk = (start) => walk(start, headers);
  return login(env, { browser, scope: 'openid email profile' });
}

/** A person reaching guestlist through `tailscale serve` (which sets the headers itself). */
async function throughServe(env: TestEnv, from: FakeDevice | 'funnel', headers: Record<string, string> = {}) {
  const url = await env.tailscaled.serveProxy(from, env.server.url);
  const browser = new Browser({ ...env, server: { ...env.server, url } }, null);
  const walk = browser.walk.bind(browser);
  browser.walk = (start) => walk(start, headers);
  return login(env, { browser, scope: 'openid email profile' });
}

describe('serve_headers behind userspace tailscaled', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv({ tailscale: { serve_headers: true } });
  });
  after(() => env.close());

  test('a tailnet device proxied by tailscaled cannot name itself someone else with Tailscale-User-Login', async () => {
    const { tokens } = await throughUserspaceProxy(env, BOB_GITHUB, FORGED);
    // whois knows the proxied connection: it is Bob, whatever his headers say.
    assert.equal(tokens?.claims()?.sub, 'tailscale:2915887766550002');
    assert.notEqual(tokens?.claims()?.email, 'alice@example.com');
  });

  test('a tagged device proxied by tailscaled is refused, forged headers or not', async () => {
    const { tokens, walk } = await throughUserspaceProxy(env, CI_RUNNER_TAGGED, FORGED);
    assert.equal(tokens, undefined);
    assert.equal(walk.status, 403);
    assert.match(walk.body, /tagged/i);
  });

  test('through tailscale serve, the headers Serve sets sign the person in, and forged ones are replaced', async () => {
    const { tokens } = await throughServe(env, BOB_GITHUB, FORGED);
    assert.equal(tokens?.claims()?.sub, 'tailscale:bob@github');
  });

  test('through tailscale serve, a tagged device gets no headers and does not sign in as anyone', async () => {
    const { tokens } = await throughServe(env, CI_RUNNER_TAGGED, FORGED);
    assert.equal(tokens, undefined);
  });

  test('Funnel traffic with forged identity headers signs no one in', async () => {
    const { tokens } = await throughServe(env, 'funnel', FORGED);
    assert.equal(tokens, undefined);
  });

  test('when tailscaled is not answering, loopback headers are not trusted either (fail closed)', async () => {
    env.tailscaled.fault = 'http-500';
    try {
      const browser = new Browser(env, null);
      const walk = browser.walk.bind(browser);
      browser.walk = (start) => walk(start, FORGED);
      const { tokens, walk: result } = await login(env, { browser });
      assert.equal(tokens, undefined);
      assert.equal(result.status, 503);
    } finally {
      env.tailscaled.fault = 'none';
    }
  });
});

describe('serve_headers and a device that half-closes its connection at once', () => {
  /** One request written whole, and the client's side closed right after (Node then drops the answer). */
  async function sendAndHalfClose(url: string, path: string, headers: Record<string, string>): Promise<void> {
    const { hostname, port } = new URL(url);
    const socket = connect({ host: hostname, port: Number(port), allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const lines = [`GET ${path} HTTP/1.1`, 'Host: 127.0.0.1', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
    socket.end(`${lines.join('\r\n')}\r\n\r\n`);
    socket.resume();
    await new Promise((resolve) => socket.once('close', resolve));
  }

  for (const forwarder of ['an older forwarder, which forgets it at the client\'s close', 'current tailscaled, which keeps it until both sides close']) {
    test(`through ${forwarder}, forged Serve headers never sign the device in as someone else`, async () => {
      const env = await startTestEnv({ tailscale: { serve_headers: true } });
      try {
        const url = await env.tailscaled.userspaceProxy(BOB_GITHUB, env.server.url, { forgetAtClientClose: forwarder.startsWith('an older') });
        const auth = await startAuthorization(env, HEADSCALE);
        await sendAndHalfClose(url, `${auth.url.pathname}${auth.url.search}`, FORGED);
        // The answer never reaches the device (Node drops it after a half-close); what guestlist
        // decided is in its log, or in the sign-in page it started for someone it could not name.
        const decided = () => env.logs.some((l) => l.msg === 'login')
          || ((env.server.store as MemoryStore).sizes().Interaction?.entries ?? 0) > 0;
        for (let i = 0; i < 150 && !decided(); i++) await new Promise((r) => setTimeout(r, 20));
        assert.ok(decided(), 'guestlist answered the request');
        const signedIn = env.logs.filter((l) => l.msg === 'login' && l.outcome === 'signed-in').map((l) => l.sub);
        // Never the Alice his headers named: Bob, as tailscaled knew him when he connected, or nobody.
        assert.ok(signedIn.every((sub) => sub === 'tailscale:2915887766550002'), JSON.stringify(signedIn));
        if (forwarder.startsWith('current')) assert.deepEqual(signedIn, ['tailscale:2915887766550002']);
      } finally {
        await env.close();
      }
    });
  }
});

describe('serve_headers needs a loopback-only listener', () => {
  const yaml = (listen?: string) => `
issuer: https://auth.example.com
${listen ? `listen: "${listen}"\n` : ''}clients:
  - client_id: headscale
    client_secret: abcdefghijklmnop0123
    redirect_uris: [https://headscale.example.com/oidc/callback]
tailscale:
  serve_headers: true
`;
  async function run(args: string[], env: Record<string, string>) {
    let out = '';
    let err = '';
    const code = await runCli(args, { out: (t) => (out += t), err: (t) => (err += t), env, log: () => {} });
    if (typeof code !== 'number') await code.close();
    return { code, out, err };
  }

  for (const [how, listen, env] of [
    ['listen in the config', '0.0.0.0:8080', {}],
    ['an IPv6 wildcard', '[::]:8080', {}],
    ['GUESTLIST_LISTEN (the container default)', undefined, { GUESTLIST_LISTEN: '0.0.0.0:8080' }],
  ] as const) {
    test(`check and serve refuse it with ${how}, naming both keys`, async () => {
      const dir = await tempDir();
      const file = join(dir, 'guestlist.yaml');
      await writeFile(file, yaml(listen));
      for (const command of ['check', 'serve']) {
        const { code, err } = await run([command, '--config', file], { ...env, GUESTLIST_DATA_DIR: dir });
        assert.equal(code, 1, `${command}: ${err}`);
        assert.match(err, /tailscale\.serve_headers/);
        assert.match(err, /listen/);
      }
      // The same config inline (a Fly secret) is refused the same way.
      const inline = await run(['check'], { ...env, GUESTLIST_CONFIG_YAML: yaml(listen) });
      assert.equal(inline.code, 1);
      assert.match(inline.err, /tailscale\.serve_headers/);
    });
  }

  test('a loopback listener with serve_headers passes check', async () => {
    const dir = await tempDir();
    const file = join(dir, 'guestlist.yaml');
    await writeFile(file, yaml('127.0.0.1:8080'));
    const { code, err } = await run(['check', '--config', file], { GUESTLIST_LISTEN: '0.0.0.0:8080' });
    assert.equal(code, 0, err);
  });
});

test('ALICE is still herself through the userspace proxy with serve_headers off', async () => {
  const env = await startTestEnv();
  try {
    const { tokens } = await throughUserspaceProxy(env, ALICE, { 'tailscale-user-login': 'bob@github' });
    assert.equal(tokens?.claims()?.sub, 'tailscale:9007199254740993');
  } finally {
    await env.close();
  }
});

test('startServer itself refuses serve_headers on a non-loopback listener (a config built in code)', async () => {
  const { startServer } = await import('../../src/server.ts');
  const { ConfigError } = await import('../../src/config/config.ts');
  const env = await startTestEnv();
  try {
    const config = { ...env.config, listen: { host: '0.0.0.0', port: 0 }, tailscale: { ...env.config.tailscale!, serve_headers: true } };
    await assert.rejects(startServer(config, { log: () => {}, env: {} }), (e: Error) => e instanceof ConfigError && /tailscale\.serve_headers/.test(e.message) && /listen/.test(e.message));
  } finally {
    await env.close();
  }
});
