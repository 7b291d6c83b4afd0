import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { COMPILE_CACHE_DIR } from '../compile-cache.ts';
import { SERVER_FLAGS } from './node-flags.ts';

// The image's build step that makes V8's compile cache for the production bundle and leaves it in
// dist/compile-cache, where dist/main.js looks for it (src/compile-cache.ts). `npm run build`
// bundles this file into dist/warm-compile-cache.js; the Dockerfile's final stage runs it there,
// with the Node the image runs. `--uid N` (repeatable) also makes the cache usable by that user:
// Node keeps one directory per uid, chosen when the cache is turned on; the build runs as root,
// and so does the image's process at that point, unless `docker run --user` starts it as `node`.
//
// Node's cache is only valid for the Node version, V8's flags and the uid it was made with, so the
// server runs here exactly as the image starts it: the production flags (--optimize-for-size
// changes V8's flag hash; a cache made without it is ignored), dist/main.js, on a throwaway
// config and data directory on loopback. V8 serializes a module's cache when it compiles it, so
// what goes in is which chunks were loaded: the server's start, a first login's requests, then an
// import of every other chunk (the Redis store, which only `storage: redis://` loads).

const dist = dirname(fileURLToPath(import.meta.url));
const cache = join(dist, COMPILE_CACHE_DIR);
const { values } = parseArgs({ options: { uid: { type: 'string', multiple: true } } });
const extraUids = (values.uid ?? []).map((u) => {
  if (!/^\d+$/.test(u)) throw new Error(`--uid ${u}: expected a number`);
  return Number(u);
});
if (!existsSync(join(dist, 'main.js'))) throw new Error(`${dist}/main.js is missing: run the built dist/warm-compile-cache.js (npm run build)`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// A clean environment: NODE_OPTIONS or NODE_COMPILE_CACHE from the build would change or move the cache.
const childEnv = (extra: Record<string, string>) => ({ PATH: process.env.PATH ?? '/usr/bin:/bin', ...(process.env.NODE_ENV ? { NODE_ENV: process.env.NODE_ENV } : {}), ...extra });

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** Starts dist/main.js as the image does, walks the start of a login, and stops it (Node writes the cache at exit). */
async function runServerOnce(): Promise<void> {
  const data = mkdtempSync(join(tmpdir(), 'guestlist-warm-'));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const redirect = 'https://app.example.test/callback';
  const proc = spawn(process.execPath, [...SERVER_FLAGS, join(dist, 'main.js'), 'serve'], {
    cwd: dirname(dist),
    env: childEnv({
      GUESTLIST_CONFIG_YAML: `issuer: ${base}\nlisten: 127.0.0.1:${port}\ndata_dir: ${data}\ntailscale: {socket: ${join(data, 'no-tailscaled.sock')}}\n`
        + `clients:\n  - {client_id: warm, client_secret: warm-up-secret-0123456789, redirect_uris: ["${redirect}"]}\n`,
    }),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  proc.stderr!.on('data', (c) => (stderr += c));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  try {
    const get = async (path: string, headers: Record<string, string> = {}) => {
      const res = await fetch(`${base}${path}`, { redirect: 'manual', headers });
      await res.arrayBuffer();
      return res;
    };
    for (let waited = 0; ; waited += 20) {
      if (proc.exitCode !== null) throw new Error(`dist/main.js exited with ${proc.exitCode}: ${stderr}`);
      if (waited > 60_000) throw new Error(`dist/main.js did not answer discovery within 60 s: ${stderr}`);
      try {
        if ((await get('/.well-known/openid-configuration')).status === 200) break;
      } catch {
        // not listening yet
      }
      await sleep(20);
    }
    const expect = (what: string, res: Response, status: number) => {
      if (res.status !== status) throw new Error(`${what}: HTTP ${res.status}, expected ${status}`);
    };
    expect('/jwks', await get('/jwks'), 200);
    const auth = await get(`/auth?${new URLSearchParams({
      client_id: 'warm', response_type: 'code', scope: 'openid email profile', redirect_uri: redirect, state: 'warm-state', nonce: 'warm-nonce',
      code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256',
    })}`);
    expect('/auth', auth, 303);
    // The sign-in page: here it finds no tailscaled and says so (a 503), but it must not fail (500).
    const cookie = auth.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
    const page = await get(new URL(auth.headers.get('location')!, base).pathname, { cookie });
    if (page.status === 500) throw new Error(`the sign-in page failed: ${stderr}`);
  } finally {
    if (proc.exitCode === null) proc.kill('SIGTERM');
    const code = await exited;
    rmSync(data, { recursive: true, force: true }); // throwaway keys stay out of the image
    if (code !== 0) throw new Error(`dist/main.js exited with ${code} on SIGTERM: ${stderr}`);
  }
}

/** Compiles the chunks the server did not load, with the same flags and cache (entries already there are kept). */
function importOtherChunks(chunks: string[]): void {
  const script = `import { enableCompileCache } from 'node:module';\n`
    + `enableCompileCache({ directory: ${JSON.stringify(cache)}, portable: true });\n`
    + chunks.map((c) => `await import(${JSON.stringify(pathToFileURL(join(dist, c)).href)});\n`).join('');
  const run = spawnSync(process.execPath, [...SERVER_FLAGS, '--input-type=module', '-e', script], { env: childEnv({}), encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`importing the chunks failed: ${run.stderr}`);
}

rmSync(cache, { recursive: true, force: true });
mkdirSync(cache);
await runServerOnce();
// main.js itself is compiled before it turns the cache on; it is a few lines.
const chunks = readdirSync(dist).filter((f) => f.endsWith('.js') && f !== 'main.js' && f !== 'warm-compile-cache.js');
importOtherChunks(chunks);

// Node names each directory <node version>-<arch>-<V8 cache tag>-<uid>; the one made here is this uid's.
const tags = readdirSync(cache);
const uid = process.getuid?.();
if (tags.length !== 1 || (uid !== undefined && !tags[0]!.endsWith(`-${uid}`))) throw new Error(`expected one cache directory for uid ${uid} in ${cache}, found: ${tags.join(', ') || 'none'}`);
const tag = tags[0]!;
const entries = readdirSync(join(cache, tag));
if (entries.length !== chunks.length) throw new Error(`expected a cache entry for each of ${chunks.length} chunks in ${cache}/${tag}, found ${entries.length}`);
for (const other of extraUids.filter((u) => u !== uid)) {
  // The entries do not depend on the uid (only the directory name does): the same files, linked.
  const otherTag = tag.replace(/-\d+$/, `-${other}`);
  mkdirSync(join(cache, otherTag));
  for (const e of entries) {
    try {
      linkSync(join(cache, tag, e), join(cache, otherTag, e));
    } catch {
      copyFileSync(join(cache, tag, e), join(cache, otherTag, e));
    }
  }
}
// Node writes entries readable by their owner only; the image runs as another user, who reads
// them and cannot write here (so the cache stays as built).
for (const dir of readdirSync(cache)) {
  chmodSync(join(cache, dir), 0o755);
  for (const e of readdirSync(join(cache, dir))) chmodSync(join(cache, dir, e), 0o644);
}
chmodSync(cache, 0o755);
const bytes = entries.reduce((n, e) => n + statSync(join(cache, tag, e)).size, 0);
console.log(`compile cache: ${entries.length} chunks, ${(bytes / 1024).toFixed(0)} KB in ${cache}/${tag}${extraUids.length ? `, also for uid ${extraUids.join(', ')}` : ''}`);
