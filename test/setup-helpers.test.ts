import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, chown, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { runCli } from '../src/cli.ts';
import { loadConfigFile } from '../src/config/load.ts';
import { keysHealth, loadOrCreateKeys, ROTATION_GRACE_MS, rotateSigningKey, SIGNING_KEYS_FILE } from '../src/keys/keys.ts';
import { freePort, HEADSCALE, login, startTestEnv, tempDir, type TestEnv } from './helpers.ts';

async function cli(args: string[], env: Record<string, string> = {}) {
  let out = '';
  let err = '';
  const code = await runCli(args, { out: (t) => (out += t), err: (t) => (err += t), env });
  return { code, out, err };
}

describe('guestlist client add', () => {
  test('prints a URL-safe secret, the YAML to add, and what Headscale and Cloudflare need', async () => {
    const { code, out } = await cli(['client', 'add', 'cloudflare', '--redirect-uri', 'https://team.cloudflareaccess.com/cdn-cgi/access/callback', '--issuer', 'https://auth.example.com']);
    assert.equal(code, 0);
    const secret = /^# The secret.*\n(.+)$/m.exec(out)![1]!;
    assert.match(secret, /^[A-Za-z0-9_-]{43}$/);
    assert.match(out, /client_secret: \$\{CLOUDFLARE_SECRET\}/);
    assert.match(out, /Auth URL: +https:\/\/auth\.example\.com\/auth/);
    assert.match(out, /Token URL: +https:\/\/auth\.example\.com\/token/);
    assert.match(out, /Certificate URL: +https:\/\/auth\.example\.com\/jwks/);
    assert.match(out, /PKCE: +on/);
    assert.match(out, /oidc:\n  issuer: https:\/\/auth\.example\.com\n  client_id: cloudflare\n  client_secret: \S+\n  scope: \[openid, profile, email, groups\]\n  pkce:\n    enabled: true\n    method: S256/);
    // Where an app may be kept to some: the groups a source vouches for, the Plex tiers say.
    assert.match(out, /^ {4}# allowed_groups: \[plex-owner, plex-home\]/m);
    assert.match(out, /^ {2}# allowed_groups: \[plex-owner, plex-home\] +# optional, checked by Headscale itself/m);
    assert.match(out, /"OIDC Claims", claim name groups, value plex-home/);
  });

  test('its output, pasted into a config, loads and signs someone in with that secret', async () => {
    const redirect = 'https://headscale.example.test/oidc/callback';
    const { out } = await cli(['client', 'add', 'hs', '--redirect-uri', redirect, '--issuer', 'https://auth.example.com']);
    const secret = /^# The secret.*\n(.+)$/m.exec(out)![1]!;
    const snippet = out.split('\n').filter((l) => /^  (- |  )/.test(l) && !l.startsWith('  client_id') && !l.startsWith('  client_secret:') && !l.startsWith('  scope') && !l.startsWith('  pkce')).slice(0, 4).join('\n');
    const dir = await tempDir();
    const file = join(dir, 'guestlist.yaml');
    await writeFile(file, `issuer: http://127.0.0.1:1\ntailscale: {}\nclients:\n${snippet}\n`);
    const config = await loadConfigFile(file, { HS_SECRET: secret });
    assert.deepEqual(config.clients[0], { client_id: 'hs', client_secret: secret, redirect_uris: [redirect], post_logout_redirect_uris: [], name: 'hs', require_pkce: true });
    const env = await startTestEnv({ clients: [config.clients[0]!] });
    try {
      const { tokens } = await login(env, { client: config.clients[0]!, auth: 'basic' });
      assert.equal(tokens?.claims()?.aud, 'hs');
    } finally {
      await env.close();
    }
  });

  test('refuses a missing or fragment redirect URI, and a bad name', async () => {
    assert.equal((await cli(['client', 'add', 'x'])).code, 2);
    assert.match((await cli(['client', 'add', 'x', '--redirect-uri', 'https://a.example/cb#x'])).err, /--redirect-uri/);
    assert.match((await cli(['client', 'add', 'bad name!', '--redirect-uri', 'https://a.example/cb'])).err, /may only use letters/);
  });
});

describe('guestlist keys rotate', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv();
  });
  after(() => env.close());

  test('a new key signs after a restart, and tokens signed by the old one still verify', async () => {
    const before = await login(env);
    const oldKid = decodeProtectedHeader(before.tokens!.id_token!).kid;
    const file = join(env.dataDir, 'guestlist.yaml');
    await writeFile(file, `issuer: ${env.issuer}\ndata_dir: ${env.dataDir}\ntailscale: {}\nclients: [{client_id: a, client_secret: 0123456789abcdef0123, redirect_uris: ["https://a.example.com/cb"]}]\n`);
    const { code, out } = await cli(['keys', 'rotate', '--config', file]);
    assert.equal(code, 0, out);
    await env.restart();

    const jwks = await (await fetch(`${env.issuer}/jwks`)).json() as { keys: { kid: string }[] };
    assert.equal(jwks.keys.length, 2);
    assert.equal(jwks.keys[1]!.kid, oldKid);
    const { payload } = await jwtVerify(before.tokens!.id_token!, createRemoteJWKSet(new URL(`${env.issuer}/jwks`)), { issuer: env.issuer, audience: HEADSCALE.client_id });
    assert.equal(payload.sub, 'tailscale:9007199254740993');
    const afterLogin = await login(env);
    assert.equal(decodeProtectedHeader(afterLogin.tokens!.id_token!).kid, jwks.keys[0]!.kid);
    assert.notEqual(jwks.keys[0]!.kid, oldKid);
  });

  test('a key retired longer ago than the grace period is dropped at the next rotation', async () => {
    await assert.rejects(rotateSigningKey(await tempDir()), /start guestlist once to create it/);
    const env2 = await startTestEnv();
    try {
      const first = await rotateSigningKey(env2.dataDir);
      const second = await rotateSigningKey(env2.dataDir, Date.now() + ROTATION_GRACE_MS + 60_000);
      // The key first created was retired at the first rotation, more than a grace period ago.
      assert.deepEqual(second.published, [second.kid, first.kid]);
      const saved = JSON.parse(await readFile(join(env2.dataDir, SIGNING_KEYS_FILE), 'utf8')) as { keys: unknown[] };
      assert.equal(saved.keys.length, 2);
    } finally {
      await env2.close();
    }
  });
});

describe('what the console says of the signing keys', () => {
  test('which signs and which is only published, their ages, and when a published one goes', async () => {
    const dir = await tempDir();
    const made = await loadOrCreateKeys(dir);
    assert.deepEqual(made.keyInfo.map((k) => ({ ...k, createdAt: typeof k.createdAt })), [{ kid: made.signingKeys[0]!.kid, signing: true, createdAt: 'number' }]);
    const rotatedAt = Date.now();
    const { kid } = await rotateSigningKey(dir, rotatedAt);
    const { keyInfo } = await loadOrCreateKeys(dir);
    assert.deepEqual(keyInfo.map((k) => [k.kid, k.signing, k.retiredAt]), [[kid, true, undefined], [made.signingKeys[0]!.kid, false, rotatedAt]]);
    const lines = keysHealth(keyInfo, rotatedAt + 3 * 3600_000);
    assert.match(lines[0]!.detail, /^signs every token; made 3 hours ago$/);
    const until = new Date(rotatedAt + ROTATION_GRACE_MS).toISOString().replace('T', ' ').slice(0, 16);
    assert.equal(lines[1]!.detail, `only published, so tokens it signed still verify; stopped signing 3 hours ago, dropped at the first start after ${until} UTC; made 3 hours ago`);
    // A file from before guestlist wrote down when keys were made: no age, and it still loads.
    const file = join(dir, SIGNING_KEYS_FILE);
    const saved = JSON.parse(await readFile(file, 'utf8')) as { created?: unknown };
    delete saved.created;
    await writeFile(file, JSON.stringify(saved));
    assert.match(keysHealth((await loadOrCreateKeys(dir)).keyInfo)[0]!.detail, /made before guestlist recorded when/);
  });
});

describe('a data_dir that cannot be used', () => {
  const root = new URL('../', import.meta.url).pathname;
  async function configFor(dataDir: (dir: string) => string) {
    const dir = await tempDir();
    await chmod(dir, 0o755);
    const file = join(dir, 'guestlist.yaml');
    await writeFile(file, `issuer: http://127.0.0.1:${await freePort()}\nlisten: 127.0.0.1:${await freePort()}\ndata_dir: ${dataDir(dir)}\ntailscale: {}\nclients: [{client_id: a, client_secret: 0123456789abcdef0123, redirect_uris: ["https://a.example.com/cb"]}]\n`, { mode: 0o644 });
    return { dir, file };
  }
  /** The real program, as uid 1000 when the tests run as root: root may read a directory with mode 000. */
  function run(args: string[]): Promise<{ code: number | null; output: string }> {
    const asRoot = process.getuid?.() === 0;
    const command = [...(asRoot ? ['/usr/bin/setpriv', '--reuid=1000', '--regid=1000', '--clear-groups'] : []), process.execPath, join(root, 'src/main.ts'), ...args];
    const proc = spawn(command[0]!, command.slice(1), { env: { PATH: process.env.PATH! }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    proc.stdout.on('data', (c) => (output += c));
    proc.stderr.on('data', (c) => (output += c));
    return new Promise((resolve) => proc.on('exit', (code) => resolve({ code, output })));
  }
  const sentence = (text: string) => assert.doesNotMatch(text, /\n\s+at |^\s*\^/m, `a sentence, not a stack trace:\n${text}`);

  test('a file where data_dir should be: keys init, keys rotate and serve say so in one sentence and exit 1', async () => {
    const { dir, file } = await configFor((d) => join(d, 'data'));
    await writeFile(join(dir, 'data'), 'not a directory');
    for (const command of [['keys', 'init'], ['keys', 'rotate'], ['serve']]) {
      const { code, out, err } = await cli([...command, '--config', file]);
      assert.equal(code, 1, `${command.join(' ')}: ${out}${err}`);
      assert.match(err, new RegExp(`^data_dir ${join(dir, 'data')}: cannot (create it|read signing-keys\\.json): it, or something on its path, is not a directory\n$`), command.join(' '));
    }
  });

  test('a data_dir its user may not read (mode 000): keys init and keys rotate name it and the cause', async () => {
    const { dir, file } = await configFor((d) => join(d, 'data'));
    const data = join(dir, 'data');
    await mkdir(data, { mode: 0o700 });
    const uid = process.getuid?.() === 0 ? 1000 : process.getuid?.();
    if (process.getuid?.() === 0) await chown(data, 1000, 1000);
    await chmod(data, 0o000);
    for (const command of [['keys', 'init'], ['keys', 'rotate']]) {
      const { code, output } = await run([...command, '--config', file]);
      sentence(output);
      assert.equal(code, 1, output);
      assert.equal(output, `data_dir ${data}: cannot read signing-keys.json: permission denied to uid ${uid}, which guestlist runs as (data_dir must be that user's)\n`);
    }
  });

  test('a data_dir its user may read but not write (mode 500): keys init and keys rotate name it and the cause', async () => {
    const { dir, file } = await configFor((d) => join(d, 'data'));
    const data = join(dir, 'data');
    await mkdir(data, { mode: 0o700 });
    const uid = process.getuid?.() === 0 ? 1000 : process.getuid?.();
    if (process.getuid?.() === 0) await chown(data, 1000, 1000);
    assert.equal((await run(['keys', 'init', '--config', file])).code, 0);
    await rm(join(data, 'cookie-secrets.json'));
    await chmod(data, 0o500);
    for (const [command, written] of [[['keys', 'init'], 'cookie-secrets.json'], [['keys', 'rotate'], 'signing-keys.json']] as const) {
      const { code, output } = await run([...command, '--config', file]);
      sentence(output);
      assert.equal(code, 1, output);
      assert.equal(output, `data_dir ${data}: cannot write ${written}: permission denied to uid ${uid}, which guestlist runs as (data_dir must be that user's)\n`);
    }
  });
});
