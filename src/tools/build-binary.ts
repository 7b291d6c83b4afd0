import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { bundleApp, ROOT } from './bundle.ts';
import { SERVER_FLAGS } from './node-flags.ts';
import { HOST, isTarget, nodeFor, TARGETS } from './target-node.ts';

// `npm run build:binary`: one self-contained executable, dist/guestlist, made with Node's single
// executable applications. Node 24 runs only a CommonJS main there, so esbuild bundles the app
// into one CommonJS file; views/, static/ and package.json ride along as SEA assets.
// `npm run build:binary -- --target linux-arm64` (or linux-x64) makes dist/guestlist-linux-arm64
// instead, from Node's own build for that platform (see target-node.ts).

const { values } = parseArgs({ options: { target: { type: 'string' } } });
const target = values.target ?? HOST;
if (values.target !== undefined && !isTarget(values.target)) {
  console.error(`unknown --target ${values.target}: one of ${Object.keys(TARGETS).join(', ')}`);
  process.exit(2);
}
const cross = target !== HOST;

const root = ROOT;
const out = join(root, 'dist');
const binary = join(out, values.target === undefined ? 'guestlist' : `guestlist-${target}`);
// A work directory per output, so that building two targets at once does not mix their blobs.
const work = join(out, 'sea', basename(binary));
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });

await bundleApp('cjs', join(work, 'guestlist.cjs'));

const assets: Record<string, string> = { 'package.json': join(root, 'package.json') };
for (const dir of ['views', 'static']) {
  // Files only: static/screenshots/ is the README's, not the server's.
  for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) if (entry.isFile()) assets[`${dir}/${entry.name}`] = join(root, dir, entry.name);
}
writeFileSync(join(work, 'sea-config.json'), JSON.stringify({
  main: join(work, 'guestlist.cjs'),
  output: join(work, 'guestlist.blob'),
  disableExperimentalSEAWarning: true,
  // V8's code cache is compiled by the Node that writes the blob, for its own platform, and
  // Node's docs say it must be off for a cross-platform executable, which "might crash on startup
  // when trying to load code cache or snapshots built on a different platform"
  // (doc/api/single-executable-applications.md, nodejs/node#53994). A cross-built binary
  // compiles its bundle on each start instead.
  useCodeCache: !cross,
  // The production Node flags, as the Docker image passes them (NODE_OPTIONS still adds to them).
  execArgv: SERVER_FLAGS,
  assets,
}, null, 2));
// The code cache is made while this Node writes the blob, and V8 rejects a cache made under other
// flags ("Warning: Code cache data rejected" at every start, and a start without it): so write
// it under the flags the executable runs with.
execFileSync(process.execPath, [...SERVER_FLAGS, '--experimental-sea-config', join(work, 'sea-config.json')], { stdio: 'inherit' });

// The executable is a Node 24 binary of this very version (this one, or the target's official
// build) with the blob injected into it.
// Unlinked first: writing over an executable that is running fails (ETXTBSY).
rmSync(binary, { force: true });
copyFileSync(cross && isTarget(target) ? nodeFor(target) : process.execPath, binary);
chmodSync(binary, 0o755);
execFileSync(process.execPath, [
  join(root, 'node_modules/postject/dist/cli.js'), binary, 'NODE_SEA_BLOB', join(work, 'guestlist.blob'),
  '--sentinel-fuse', 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2',
], { stdio: 'pipe' }); // its chatter ("Can't find string offset...") is noise; a failure throws with it
console.log(`built ${binary} (${target}, Node ${process.version}${cross ? ', no code cache: built on another platform' : ''})`);
