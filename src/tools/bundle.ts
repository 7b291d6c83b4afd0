import { readFileSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';

// guestlist as bundled JavaScript. Loading one file instead of a few hundred modules is most of a
// cold start (Fly wakes a stopped machine on a login), and the result needs no node_modules.

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * The ESM build (dist/, which the image and the `guestlist` bin run) is split at dynamic
 * imports: dist/main.js is a few lines that turn on V8's compile cache before the app's chunks are
 * loaded (a cache enabled from inside one big file is too late for that file), and the Redis
 * store with its client becomes a chunk of its own that only `storage: redis://` loads (what it
 * shares with the app, oidc-provider among it, goes to a chunk both import). The CommonJS build
 * (for the single executable, which takes one script) stays one file.
 */
export async function bundleApp(format: 'esm' | 'cjs', out: string): Promise<void> {
  await build({
    entryPoints: [`${ROOT}src/main.ts`],
    ...(format === 'esm' ? { outdir: out, splitting: true, entryNames: '[name]', chunkNames: '[name]-[hash]' } : { outfile: out }),
    bundle: true,
    platform: 'node',
    format,
    target: 'node24',
    minify: true,
    keepNames: true,
    legalComments: 'none',
    plugins: [slimMimeDb, lazyListFormat, lazyWebGlobals, ...(format === 'esm' ? [builtinsByRequire] : [])],
    // Dependencies written as CommonJS (koa, cookies) call require(); give the ESM bundle one.
    ...(format === 'esm' ? { banner: { js: "import { createRequire as __guestlistRequire } from 'node:module'; const require = __guestlistRequire(import.meta.url);" } } : {}),
    // In the CommonJS bundle import.meta is empty; it is only read outside the executable.
    logOverride: { 'empty-import-meta': 'silent' },
    logLevel: 'warning',
  });
}

/**
 * A build step that the image's final stage runs (dist/warm-compile-cache.js): one ESM file
 * beside the bundle, since that stage has neither src/ nor node_modules.
 */
export async function bundleTool(entry: string, outfile: string): Promise<void> {
  await build({ entryPoints: [entry], outfile, bundle: true, platform: 'node', format: 'esm', target: 'node24', legalComments: 'none', logLevel: 'warning' });
}

/**
 * The media types guestlist's responses and request checks name, by type or by extension
 * (koa's `ctx.type = 'html'`, a string body's 'text', a Buffer's 'bin', `ctx.accepts('json',
 * 'html')`, oidc-provider's JWT and JWK set types, our static files). test/deploy-files checks
 * the Content-Type of each kind of response the bundle sends.
 */
const MEDIA_TYPES = [
  'text/html', 'text/plain', 'text/css', 'text/javascript', 'application/javascript',
  'application/json', 'application/octet-stream', 'application/x-www-form-urlencoded',
  'application/jwt', 'application/jwk-set+json', 'application/token-introspection+jwt',
  'image/svg+xml', 'image/png', 'image/x-icon', 'image/vnd.microsoft.icon',
];

/**
 * mime-db is 2,500 media types (two copies: koa's and accepts'), parsed into objects at start-up
 * and resident for good; guestlist only ever names the few above. Same entries, fewer of them.
 */
const slimMimeDb: Plugin = {
  name: 'slim-mime-db',
  setup(b) {
    b.onLoad({ filter: /[\\/]mime-db[\\/]db\.json$/ }, (args) => {
      const db = JSON.parse(readFileSync(args.path, 'utf8')) as Record<string, unknown>;
      const kept = Object.fromEntries(MEDIA_TYPES.filter((t) => t in db).map((t) => [t, db[t]]));
      return { contents: JSON.stringify(kept), loader: 'json' };
    });
  },
};

/**
 * oidc-provider builds two Intl.ListFormat objects when it is imported, for error messages
 * ("missing required parameters 'a' and 'b'"). Creating the first one maps ICU's locale data:
 * about 6.5 MB of RSS for the life of the process. Build them on first use instead; the
 * messages are unchanged. The build fails if the file no longer reads as expected.
 */
const lazyListFormat: Plugin = {
  name: 'lazy-list-format',
  setup(b) {
    b.onLoad({ filter: /[\\/]oidc-provider[\\/]lib[\\/]helpers[\\/]formatters\.js$/ }, (args) => {
      const source = readFileSync(args.path, 'utf8');
      let replaced = 0;
      const contents = source.replace(
        /const (conjunction|disjunction) = new Intl\.ListFormat\('en', \{ type: '(conjunction|disjunction)' \}\);/g,
        (_all, name: string, type: string) => {
          replaced++;
          return `let ${name}Format; const ${name} = { format: (list) => (${name}Format ??= new Intl.ListFormat('en', { type: '${type}' })).format(list) };`;
        },
      );
      if (replaced !== 2) throw new Error(`${args.path} changed: expected two Intl.ListFormat to defer, found ${replaced}`);
      return { contents, loader: 'js' };
    });
  },
};

/**
 * An ES module that imports a Node built-in gets an ES module facade of it, and making that facade
 * reads every export. node:http's exports include WebSocket, CloseEvent and MessageEvent, which
 * load undici (fetch) and with it http2, tls, zlib and perf_hooks: importing node:http from ESM
 * costs about 13 MB of RSS and 30 ms more than requiring it (measured with `node -e` on Node 24).
 * So in the ES module build every built-in is required, through the require the banner makes:
 * esbuild wraps it as a CommonJS module, whose exports are read only when used.
 */
const builtinsByRequire: Plugin = {
  name: 'builtins-by-require',
  setup(b) {
    b.onResolve({ filter: /^[a-z_:/]+$/ }, (args) => {
      if (!isBuiltin(args.path)) return undefined;
      if (args.namespace === 'builtin' || args.kind === 'require-call') return { path: args.path, external: true };
      return { path: args.path, namespace: 'builtin' };
    });
    b.onLoad({ filter: /.*/, namespace: 'builtin' }, (args) => ({ contents: `module.exports = require(${JSON.stringify(args.path)});`, loader: 'js' }));
  },
};

/**
 * Node defines Response, ReadableStream and Blob lazily: the first use of Response loads undici
 * (fetch), and with it http2, tls, zlib and perf_hooks. koa tests every body it is given against
 * all three (`val instanceof Response`), so the first JSON answer (discovery) loaded them all:
 * about 10 MB of RSS and 15 ms on the first request, for classes guestlist never hands koa. Ask
 * the cheap question first (only a Response or a Blob has arrayBuffer(), only a ReadableStream
 * has getReader()); a real one still gets the same test. The build fails if koa changes here.
 */
const lazyWebGlobals: Plugin = {
  name: 'lazy-web-globals',
  setup(b) {
    b.onLoad({ filter: /[\\/]koa[\\/]lib[\\/](application|response)\.js$/ }, (args) => {
      const source = readFileSync(args.path, 'utf8');
      let replaced = 0;
      const contents = source.replace(/\b(body|val) instanceof (Response|ReadableStream|Blob)\b/g, (_all, v: string, cls: string) => {
        replaced++;
        const looksLike = cls === 'ReadableStream' ? 'getReader' : 'arrayBuffer';
        return `(typeof ${v}?.${looksLike} === 'function' && ${v} instanceof ${cls})`;
      });
      if (replaced !== 3) throw new Error(`${args.path} changed: expected three instanceof tests of web classes, found ${replaced}`);
      return { contents, loader: 'js' };
    });
  },
};
