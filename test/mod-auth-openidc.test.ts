import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import type { ClientConfig } from '../src/config/config.ts';
import { chromiumMissing, launchChromium } from './chromium.ts';
import { freePort, startTestEnv, tempDir, type TestEnv } from './helpers.ts';

// A real, widely deployed relying party: Apache with mod_auth_openidc (Debian's packages) does
// discovery, the authorization code flow with PKCE, client_secret_basic at /token, and checks
// the RS256 ID token against our JWKS, its nonce, issuer and audience. Chromium is the person,
// signing in through `tailscale serve` identity headers from loopback.

const APACHE = '/usr/sbin/apache2';
const MODULES = '/usr/lib/apache2/modules';

function apacheMissing(): string | false {
  if (existsSync(APACHE) && existsSync(`${MODULES}/mod_auth_openidc.so`)) return chromiumMissing();
  if (process.env.CI) throw new Error('apache2 with mod_auth_openidc is missing: .ci/run should have installed it');
  return 'no apache2 + libapache2-mod-auth-openidc (apt-get install them to run this test)';
}

describe('Apache mod_auth_openidc as the relying party', { skip: apacheMissing() }, () => {
  let env: TestEnv;
  let apache: ChildProcess;
  let browser: Browser;
  let appUrl: string;
  let dir: string;

  before(async () => {
    const apachePort = await freePort();
    appUrl = `http://localhost:${apachePort}`;
    const rp: ClientConfig = {
      client_id: 'apache',
      client_secret: randomBytes(24).toString('base64url'),
      redirect_uris: [`${appUrl}/protected/redirect_uri`],
      post_logout_redirect_uris: [],
      name: 'Apache',
      require_pkce: true,
    };
    env = await startTestEnv({ issuerHost: 'localhost', clients: [rp], tailscale: { serve_headers: true }, groups: { family: ['carol@example.com'] } });

    dir = await tempDir('guestlist-apache-');
    await chmod(dir, 0o755); // Apache's workers run as www-data
    await mkdir(join(dir, 'www/protected'), { recursive: true });
    await writeFile(join(dir, 'www/protected/index.html'), '<!doctype html><title>app</title><h1>Welcome to the protected app</h1>\n');
    await writeFile(join(dir, 'httpd.conf'), `
ServerRoot ${dir}
ServerName localhost
Listen 127.0.0.1:${apachePort}
PidFile ${dir}/httpd.pid
ErrorLog ${dir}/error.log
LogLevel warn auth_openidc:debug
User www-data
Group www-data
LoadModule mpm_event_module ${MODULES}/mod_mpm_event.so
LoadModule authn_core_module ${MODULES}/mod_authn_core.so
LoadModule authz_core_module ${MODULES}/mod_authz_core.so
LoadModule authz_user_module ${MODULES}/mod_authz_user.so
LoadModule auth_openidc_module ${MODULES}/mod_auth_openidc.so
LoadModule dir_module ${MODULES}/mod_dir.so
LoadModule mime_module ${MODULES}/mod_mime.so
TypesConfig /etc/mime.types
DocumentRoot ${dir}/www
DirectoryIndex index.html
OIDCProviderMetadataURL ${env.issuer}/.well-known/openid-configuration
OIDCClientID ${rp.client_id}
OIDCClientSecret ${rp.client_secret}
OIDCRedirectURI ${rp.redirect_uris[0]}
OIDCCryptoPassphrase ${randomBytes(16).toString('hex')}
OIDCScope "openid email profile"
OIDCPKCEMethod S256
OIDCProviderTokenEndpointAuth client_secret_basic
OIDCRemoteUserClaim sub
OIDCInfoHook iat access_token_expires id_token userinfo
<Location /protected>
  AuthType openid-connect
  Require valid-user
</Location>
`);
    apache = spawn(APACHE, ['-f', join(dir, 'httpd.conf'), '-DFOREGROUND'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    apache.stdout!.on('data', (c) => (out += c));
    apache.stderr!.on('data', (c) => (out += c));
    for (let i = 0; ; i++) {
      try {
        await fetch(appUrl);
        break;
      } catch {
        if (i > 100 || apache.exitCode !== null) throw new Error(`apache did not start: ${out}\n${await readFile(join(dir, 'error.log'), 'utf8').catch(() => '')}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    if (apache && apache.exitCode === null) {
      const exited = new Promise((r) => apache.once('exit', r));
      apache.kill('SIGTERM');
      await exited;
    }
    await env?.close();
  });

  test('a person behind tailscale serve opens the protected app and is signed in by guestlist', async () => {
    const context = await browser.newContext({
      extraHTTPHeaders: { 'Tailscale-User-Login': 'carol@example.com', 'Tailscale-User-Name': '=?utf-8?q?Carol_J=C3=B6rgensen?=' },
    });
    const page = await context.newPage();
    const response = await page.goto(`${appUrl}/protected/`);
    const log = async () => (await readFile(join(dir, 'error.log'), 'utf8')).split('\n').filter((l) => /error|warn/i.test(l)).slice(-15).join('\n');
    assert.equal(response?.status(), 200, await log());
    assert.match(await page.textContent('h1') ?? '', /Welcome to the protected app/);
    // The visit went through guestlist and back, with no page of guestlist's in between.
    assert.ok(env.logs.some((l) => l.msg === 'login' && l.outcome === 'signed-in' && l.sub === 'tailscale:carol@example.com'));

    const info = await page.goto(`${appUrl}/protected/redirect_uri?info=json`);
    const session = await info!.json() as { id_token: Record<string, unknown> };
    assert.equal(session.id_token.iss, env.issuer);
    assert.equal(session.id_token.sub, 'tailscale:carol@example.com');
    assert.equal(session.id_token.name, 'Carol Jörgensen');
    assert.equal(session.id_token.email, 'carol@example.com');
    assert.deepEqual(session.id_token.groups, ['family']);
    await context.close();
  });

  test('without an identity, the person sees guestlist\'s refusal page, not the app', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const response = await page.goto(`${appUrl}/protected/`);
    assert.equal(response?.status(), 403);
    assert.match(await page.textContent('h1') ?? '', /not on the tailnet/);
    await context.close();
  });
});
