import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bundleApp, ROOT } from './bundle.ts';
import { SERVER_FLAGS } from './node-flags.ts';

// `npm run build:binary`: one self-contained executable, dist/guestlist, made with Node's single
// executable applications. Node 24 runs only a CommonJS main there, so esbuild bundles the app
// into one CommonJS file; views/, static/ and package.json ride along as SEA assets.

const root = ROOT;
const out = join(root, 'dist');
const work = join(out, 'sea');
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });

await bundleApp('cjs', join(work, 'guestlist.cjs'));

const assets: Record<string, string> = { 'package.json': join(root, 'package.json') };
for (const dir of ['views', 'static']) {
  for (const name of readdirSync(join(root, dir))) assets[`${dir}/${name}`] = join(root, dir, name);
}
writeFileSync(join(work, 'sea-config.json'), JSON.stringify({
  main: join(work, 'guestlist.cjs'),
  output: join(work, 'guestlist.blob'),
  disableExperimentalSEAWarning: true,
  useCodeCache: true,
  // The production Node flags, as the Docker image passes them (NODE_OPTIONS still adds to them).
  execArgv: SERVER_FLAGS,
  assets,
}, null, 2));
// The code cache is made while this Node writes the blob, and V8 rejects a cache made under other
// flags ("Warning: Code cache data rejected" at every start, and a start without it): so write
// it under the flags the executable runs with.
execFileSync(process.execPath, [...SERVER_FLAGS, '--experimental-sea-config', join(work, 'sea-config.json')], { stdio: 'inherit' });

// The executable is this very Node 24 binary with the blob injected into it.
const binary = join(out, 'guestlist');
copyFileSync(process.execPath, binary);
chmodSync(binary, 0o755);
execFileSync(process.execPath, [
  join(root, 'node_modules/postject/dist/cli.js'), binary, 'NODE_SEA_BLOB', join(work, 'guestlist.blob'),
  '--sentinel-fuse', 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2',
], { stdio: 'pipe' }); // its chatter ("Can't find string offset...") is noise; a failure throws with it
console.log(`built ${binary}`);
