import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { COMPILE_CACHE_DIR } from '../src/compile-cache.ts';
import { SERVER_FLAGS } from '../src/tools/node-flags.ts';
import { freePort, tempDir } from './helpers.ts';
import { appStage, compileCacheStep, compileCacheVerdicts, copyImageFiles, runCompileCacheStep } from './image-files.ts';
import { parseToml } from './toml.ts';

// The Dockerfile, fly.toml and the app must agree on ports, paths, the health check, the data
// volume and the stop signal; and the production build must start the way the image starts it.

const root = new URL('../', import.meta.url).pathname;
const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
const fly = parseToml(readFileSync(join(root, 'fly.toml'), 'utf8'));
const readme = readFileSync(join(root, 'README.md'), 'utf8');


function dockerInstruction(name: string): string[] {
  return dockerfile.split('\n').filter((l) => l.startsWith(`${name} `)).map((l) => l.slice(name.length + 1).trim());
}

describe('Dockerfile and fly.toml agree with the app', () => {
  test('.dockerignore lets through everything the Dockerfile copies from the build context, and no node_modules', () => {
    const rules = readFileSync(join(root, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    const allowed = (path: string) => rules.reduce((ok, rule) => {
      const negated = rule.startsWith('!');
      const pattern = negated ? rule.slice(1) : rule;
      const matches = pattern === '*' || path === pattern || path.startsWith(`${pattern}/`);
      return matches ? negated : ok;
    }, true);
    const sources = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1]!.split(/\s+/));
    assert.ok(sources.length >= 5, sources.join(' '));
    for (const source of sources) assert.ok(allowed(source.replace(/^\.\//, '')), `${source} is ignored by .dockerignore`);
    assert.ok(!allowed('node_modules/x') && !allowed('dist/main.js') && !allowed('data/signing-keys.json'));
  });

  test('one port everywhere: EXPOSE, GUESTLIST_LISTEN, fly internal_port and PORT', () => {
    const listen = /GUESTLIST_LISTEN=0\.0\.0\.0:(\d+)/.exec(dockerfile)?.[1];
    assert.equal(dockerInstruction('EXPOSE').at(-1), listen);
    assert.equal(String(fly.http_service.internal_port), listen);
    assert.equal(fly.env.PORT, listen);
  });

  test('the health check path is one the app serves, in both files', () => {
    assert.equal(fly.http_service.checks[0].path, '/healthz');
    assert.match(/^HEALTHCHECK (?:.*\\\n)*.*$/m.exec(dockerfile)![0], /\/healthz/);
    assert.match(readFileSync(join(root, 'src/http/healthz.ts'), 'utf8'), /ctx\.path !== '\/healthz'/);
  });

  test('the data volume is /data in both files and in the README\'s Fly config', () => {
    assert.deepEqual(dockerInstruction('VOLUME'), ['/data']);
    assert.equal(fly.mounts[0].destination, '/data');
    assert.match(readme, /data_dir: \/data/);
  });

  test('the stop signal is one the app shuts down cleanly on', () => {
    assert.equal(fly.kill_signal, 'SIGTERM');
    assert.deepEqual(dockerInstruction('STOPSIGNAL'), ['SIGTERM']);
    assert.match(readFileSync(join(root, 'src/main.ts'), 'utf8'), /process\.on\('SIGTERM'/);
  });

  test('the smallest Fly machine, stopped when idle, HTTPS forced', () => {
    assert.equal(fly.vm[0].size, 'shared-cpu-1x');
    assert.equal(fly.vm[0].memory, '256mb');
    assert.equal(fly.http_service.force_https, true);
    assert.equal(fly.http_service.auto_stop_machines, 'stop');
    assert.equal(fly.http_service.auto_start_machines, true);
  });

  test('the image runs as a non-root user and starts the built entry point', () => {
    // It starts as root only to take over a root-owned volume, then becomes GUESTLIST_USER (test/privileges.test.ts).
    assert.deepEqual(dockerInstruction('USER'), []);
    assert.match(dockerfile, /GUESTLIST_USER=node\b/);
    assert.deepEqual(JSON.parse(dockerInstruction('CMD').at(-1)!), ['node', ...SERVER_FLAGS, 'dist/main.js', 'serve']);
    assert.match(dockerfile, /FROM node:24-/);
  });

  test('the image makes its compile cache in the app stage, from the copied bundle, for the user guestlist becomes too', () => {
    const stage = appStage();
    const step = compileCacheStep();
    const copyDist = stage.indexOf('\nCOPY --from=build /app/dist ./dist\n');
    assert.ok(copyDist !== -1);
    assert.ok(stage.indexOf(step.line) > copyDist, 'after dist/ is copied');
    assert.ok(stage.indexOf(step.line) < stage.indexOf('\nCMD '), 'before the image starts it');
    // Node keeps a cache directory per uid. The build runs as root and so does the process at
    // first (then it becomes GUESTLIST_USER); `docker run --user node` starts it as node.
    assert.equal(step.user, /GUESTLIST_USER=(\w+)/.exec(stage)?.[1]);
  });
});

/** The official Node images' `node` user, whose uid the Dockerfile's compile-cache step adds. */
const NODE_UID = 1000;

describe('the production build, started as the image starts it', () => {
  // What the image holds: dist/main.js, views/, static/ and package.json; no node_modules.
  let proc: ChildProcess;
  let output = '';
  let port: number;
  let imageDir: string;
  before(async () => {
    execFileSync(process.execPath, [join(root, 'src/tools/build.ts')], { stdio: 'pipe' });
    port = await freePort();
    const data = await tempDir();
    imageDir = await tempDir();
    // Copy what the app stage of the Dockerfile copies, from where the build leaves it, and run
    // its compile-cache step on the copy.
    copyImageFiles(imageDir);
    runCompileCacheStep(imageDir, [NODE_UID]);
    proc = spawn(process.execPath, [...SERVER_FLAGS, join(imageDir, 'dist/main.js'), 'serve'], {
      cwd: imageDir,
      env: {
        PATH: process.env.PATH,
        PORT: String(port),
        GUESTLIST_LISTEN: '127.0.0.1:8080',
        GUESTLIST_CONFIG: '/nonexistent/guestlist.yaml',
        APP_SECRET: 'abcdefghijklmnop0123',
        GUESTLIST_CONFIG_YAML: `issuer: https://auth.example.com\ndata_dir: ${data}\ntailscale: {}\nclients:\n  - {client_id: app, client_secret: "\${APP_SECRET}", redirect_uris: ["https://app.example.com/cb"]}\n`,
        // Node reports on stderr what it did with each module's compile cache.
        NODE_DEBUG_NATIVE: 'COMPILE_CACHE',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    proc.stdout!.on('data', (c) => (output += c));
    proc.stderr!.on('data', (c) => (output += c));
    await new Promise<void>((resolve, reject) => {
      proc.stdout!.on('data', () => output.includes('guestlist ready') && resolve());
      proc.on('exit', (code) => reject(new Error(`exited ${code}: ${output}`)));
    });
  });
  after(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
  });

  test('runs from the files the final image stage copies, with no node_modules', () => {
    assert.ok(existsSync(join(imageDir, 'dist/main.js')));
    assert.ok(existsSync(join(imageDir, 'views/layout.html')));
    assert.ok(!existsSync(join(imageDir, 'node_modules')));
    assert.ok(existsSync(join(imageDir, compileCacheStep().script)));
  });

  test('starts with the compile cache the image\'s build step made beside the bundle, and uses it', () => {
    const cache = join(imageDir, 'dist', COMPILE_CACHE_DIR);
    const dirs = readdirSync(cache);
    assert.equal(dirs.length, 2, 'this user\'s and the node user\'s');
    for (const dir of dirs) assert.ok(readdirSync(join(cache, dir)).length > 0, dir);
    const verdicts = compileCacheVerdicts(output);
    assert.ok(verdicts.size > 0, output);
    for (const [file, verdict] of verdicts) {
      assert.ok(file.startsWith(pathToFileURL(join(imageDir, 'dist')).href), file);
      assert.equal(verdict, 'accepted', file);
    }
  });

  test('serves /healthz and discovery on PORT, with the config from GUESTLIST_CONFIG_YAML', async () => {
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(health.status, 200);
    // The version comes from the package.json the image copies beside dist/.
    assert.deepEqual(await health.json(), { status: 'ok', version: JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version });
    const meta = await (await fetch(`http://127.0.0.1:${port}/.well-known/openid-configuration`)).json() as { issuer: string; token_endpoint: string };
    assert.equal(meta.issuer, 'https://auth.example.com');
    assert.equal(meta.token_endpoint, 'https://auth.example.com/token');
    const page = await fetch(`http://127.0.0.1:${port}/static/guestlist.css`);
    assert.equal(page.status, 200);
  });

  test('labels every kind of response as the unbundled server does (the bundle carries a slimmed mime-db)', async () => {
    const base = `http://127.0.0.1:${port}`;
    const type = async (path: string, init?: RequestInit) => {
      const res = await fetch(`${base}${path}`, { redirect: 'manual', ...init });
      await res.arrayBuffer();
      return res.headers.get('content-type');
    };
    assert.equal(await type('/.well-known/openid-configuration'), 'application/json; charset=utf-8');
    assert.equal(await type('/jwks'), 'application/jwk-set+json; charset=utf-8');
    assert.equal(await type('/'), 'text/html; charset=utf-8');
    assert.equal(await type('/static/guestlist.css'), 'text/css; charset=utf-8');
    assert.equal(await type('/static/plex.js'), 'text/javascript; charset=utf-8');
    assert.equal(await type('/static/favicon.svg'), 'image/svg+xml');
    // oidc-provider's errors: negotiated with accepts ('json' or 'html'), and a JSON one at /token
    // (which also reads an x-www-form-urlencoded body through type-is).
    assert.equal(await type('/auth?client_id=nobody'), 'text/html; charset=utf-8');
    assert.equal(await type('/me', { headers: { accept: 'text/html' } }), 'text/html; charset=utf-8');
    assert.equal(await type('/me', { headers: { accept: '*/*' } }), 'application/json; charset=utf-8');
    const token = await fetch(`${base}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=authorization_code&code=x&client_id=app&client_secret=wrong-secret-0123' });
    assert.equal(token.headers.get('content-type'), 'application/json; charset=utf-8');
    assert.equal(((await token.json()) as { error: string }).error, 'invalid_client');
    // oidc-provider's list-formatted messages are built lazily in the bundle; they still read right.
    const missing = await fetch(`${base}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'client_id=app&client_secret=abcdefghijklmnop0123' });
    assert.deepEqual(await missing.json(), { error: 'invalid_request', error_description: "missing required parameter 'grant_type'" });
  });

  test('stops with exit code 0 on the fly.toml kill signal', async () => {
    const exited = new Promise<number | null>((resolve) => proc.once('exit', resolve));
    proc.kill(fly.kill_signal);
    assert.equal(await exited, 0);
  });

  test('the node user reads the cache from the directory root made, which it cannot write, and starts', { skip: process.getuid?.() !== 0 && 'needs root to start a process as another user' }, async () => {
    const cache = join(imageDir, 'dist', COMPILE_CACHE_DIR);
    const files = () => readdirSync(cache, { recursive: true }).sort();
    const before = files();
    chmodSync(imageDir, 0o755); // a temp directory is its owner's only; /app is not
    const data = await tempDir();
    chownSync(data, NODE_UID, NODE_UID);
    const userPort = await freePort();
    const user = spawn(process.execPath, [...SERVER_FLAGS, join(imageDir, 'dist/main.js'), 'serve'], {
      cwd: imageDir,
      uid: NODE_UID,
      gid: NODE_UID,
      env: {
        PATH: process.env.PATH,
        GUESTLIST_LISTEN: `127.0.0.1:${userPort}`,
        GUESTLIST_CONFIG_YAML: `issuer: https://auth.example.com\ndata_dir: ${data}\ntailscale: {}\nclients:\n  - {client_id: app, client_secret: abcdefghijklmnop0123, redirect_uris: ["https://app.example.com/cb"]}\n`,
        NODE_DEBUG_NATIVE: 'COMPILE_CACHE',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let userOutput = '';
    user.stdout!.on('data', (c) => (userOutput += c));
    user.stderr!.on('data', (c) => (userOutput += c));
    const exited = new Promise<number | null>((resolve) => user.once('exit', resolve));
    try {
      await Promise.race([
        new Promise<void>((resolve) => user.stdout!.on('data', () => userOutput.includes('guestlist ready') && resolve())),
        exited.then((code) => assert.fail(`exited ${code}: ${userOutput}`)),
      ]);
      assert.equal((await fetch(`http://127.0.0.1:${userPort}/.well-known/openid-configuration`)).status, 200);
    } finally {
      user.kill('SIGTERM');
    }
    assert.equal(await exited, 0, userOutput);
    const verdicts = compileCacheVerdicts(userOutput);
    assert.ok(verdicts.size > 0, userOutput);
    for (const [file, verdict] of verdicts) assert.equal(verdict, 'accepted', file);
    assert.match(userOutput, new RegExp(`${COMPILE_CACHE_DIR}/[^/\\s]+-${NODE_UID}/`));
    assert.deepEqual(files(), before);
  });
});
