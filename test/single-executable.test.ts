import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FakeTailscaled } from './fakes/tailscaled.ts';
import { freePort, HEADSCALE, login, tempDir, type TestEnv } from './helpers.ts';

// `npm run build:binary` makes dist/guestlist: Node 24 with the app, its views and its static
// files inside. Started from an empty directory, it must serve and complete a login.
// `-- --target linux-arm64` makes dist/guestlist-linux-arm64 from Node's own arm64 build: an
// AArch64 ELF whatever machine built it. Where an arm64 CPU or qemu's user-mode emulator (with
// Debian's arm64 C libraries for it to load) is at hand, it must serve and log in the same way.

const root = new URL('../', import.meta.url).pathname;
const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;

function build(...args: string[]): void {
  execFileSync(process.execPath, [join(root, 'src/tools/build-binary.ts'), ...args], { stdio: 'pipe' });
}

/** How to run an arm64 Linux binary here: directly, under qemu, or (undefined) not at all. */
function arm64Runner(): string[] | undefined {
  if (process.platform === 'linux' && process.arch === 'arm64') return [];
  const sysroot = '/usr/aarch64-linux-gnu';
  if (!existsSync(join(sysroot, 'lib/ld-linux-aarch64.so.1'))) return undefined;
  for (const qemu of ['/usr/bin/qemu-aarch64-static', '/usr/bin/qemu-aarch64']) {
    if (existsSync(qemu)) return [qemu, '-L', sysroot];
  }
  return undefined;
}

/** dist/guestlist's tests, for a binary started as `command`. */
function servesLogins(command: () => string[]): void {
  let proc: ChildProcess;
  let env: TestEnv;
  let tailscaled: FakeTailscaled;
  let output = '';

  before(async () => {
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
    const [file, ...args] = command();
    proc = spawn(file!, [...args, 'serve', '--config', 'guestlist.yaml'], { cwd: dir, env: { PATH: '/usr/bin:/bin' }, stdio: ['ignore', 'pipe', 'pipe'] });
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

  test('--version prints the version; the ready line and /healthz carry it', async () => {
    const [file, ...args] = command();
    const run = spawnSync(file!, [...args, '--version'], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } });
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stdout, `guestlist ${version}\n`);
    // Nothing on stderr: in particular no "Code cache data rejected" (a cache V8 cannot use).
    assert.equal(run.stderr, '');
    assert.doesNotMatch(output, /rejected/);
    const ready = JSON.parse(output.split('\n').find((l) => l.includes('"guestlist ready"'))!) as { version: string };
    assert.equal(ready.version, version);
    assert.deepEqual(await (await fetch(`${env.issuer}/healthz`)).json(), { status: 'ok', version });
  });

  test('serves discovery for its issuer', async () => {
    const meta = await (await fetch(`${env.issuer}/.well-known/openid-configuration`)).json() as { issuer: string };
    assert.equal(meta.issuer, env.issuer);
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
}

describe('the single executable', () => {
  before(() => build());
  servesLogins(() => [join(root, 'dist/guestlist')]);
});

describe('the single executable for linux-arm64', () => {
  const binary = join(root, 'dist/guestlist-linux-arm64');
  // The first build fetches Node's arm64 build from the npm registry (about 50 MB, kept in
  // node_modules/.cache for the next).
  before(() => build('--target', 'linux-arm64'));

  test('is a 64-bit little-endian ELF for AArch64, with the app injected', () => {
    const bytes = readFileSync(binary);
    assert.equal(bytes.subarray(0, 4).toString('latin1'), '\x7fELF');
    assert.equal(bytes[4], 2, 'ELFCLASS64');
    assert.equal(bytes[5], 1, 'little-endian');
    assert.equal(bytes.readUInt16LE(18), 0xb7, 'e_machine EM_AARCH64');
    // postject flips Node's SEA fuse from :0 to :1 when it injects a blob.
    assert.ok(bytes.includes('NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2:1'));
    // No code cache in a cross-built blob: it would be the build machine's, which an arm64 Node
    // may crash on.
    if (process.arch !== 'arm64') {
      const config = JSON.parse(readFileSync(join(root, 'dist/sea/guestlist-linux-arm64/sea-config.json'), 'utf8')) as { useCodeCache: boolean };
      assert.equal(config.useCodeCache, false);
    }
  });

  const runner = arm64Runner();
  describe('run on arm64', { skip: runner ? false : 'no arm64 CPU, and no qemu-aarch64 with /usr/aarch64-linux-gnu (apt-get install qemu-user libc6-arm64-cross libstdc++6-arm64-cross)' }, () => {
    servesLogins(() => [...runner!, binary]);
  });
});
