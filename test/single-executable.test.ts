import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FakeTailscaled } from './fakes/tailscaled.ts';
import { freePort, HEADSCALE, login, tempDir, type TestEnv } from './helpers.ts';

// `npm run build:binary` makes dist/guestlist: Node 24 with the app, its views and its static
// files inside. Started from an empty directory, it must serve and complete a login.

const root = new URL('../', import.meta.url).pathname;

describe('the single executable', () => {
  let proc: ChildProcess;
  let env: TestEnv;
  let tailscaled: FakeTailscaled;
  let output = '';

  before(async () => {
    execFileSync(process.execPath, [join(root, 'src/tools/build-binary.ts')], { stdio: 'pipe' });
    const dir = await tempDir();
    tailscaled = await new FakeTailscaled(join(dir, 'tailscaled.sock')).start();
    const port = await freePort();
    const issuer = `http://127.0.0.1:${port}`;
    await writeFile(join(dir, 'guestlist.yaml'), `issuer: ${issuer}
listen: 127.0.0.1:${port}
tailscale: { socket: tailscaled.sock }
clients:
  - client_id: ${HEADSCALE.client_id}
    client_secret: ${HEADSCALE.client_secret}
    redirect_uris: [${HEADSCALE.redirect_uris[0]}]
`);
    // Run from an empty directory: nothing but the binary and its config.
    proc = spawn(join(root, 'dist/guestlist'), ['serve', '--config', 'guestlist.yaml'], { cwd: dir, env: { PATH: '/usr/bin:/bin' }, stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout!.on('data', (c) => (output += c));
    proc.stderr!.on('data', (c) => (output += c));
    await new Promise<void>((resolve, reject) => {
      proc.stdout!.on('data', () => output.includes('guestlist ready') && resolve());
      proc.on('exit', (code) => reject(new Error(`exited ${code}: ${output}`)));
    });
    env = { issuer, server: { url: issuer }, tailscaled } as unknown as TestEnv;
  });
  after(async () => {
    if (proc?.exitCode === null) proc.kill('SIGKILL');
    await tailscaled?.stop();
  });

  test('completes a zero-click login whose ID token openid-client accepts', async () => {
    const { tokens, walk } = await login(env);
    assert.ok(tokens, `HTTP ${walk.status}: ${walk.body.slice(0, 200)}`);
    assert.equal(tokens.claims()!.sub, 'tailscale:9007199254740993');
  });

  test('serves its embedded pages and stylesheet', async () => {
    const css = await fetch(`${env.issuer}/static/guestlist.css`);
    assert.equal(css.status, 200);
    assert.match(await css.text(), /--accent/);
    const home = await (await fetch(`${env.issuer}/`)).text();
    assert.match(home, /OpenID Connect identity provider/);
  });
});
