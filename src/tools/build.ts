import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { COMPILE_CACHE_DIR } from '../compile-cache.ts';
import { bundleApp, bundleTool, ROOT } from './bundle.ts';

// `npm run build`: the production build in dist/ (main.js and its chunks; the Docker image and
// the `guestlist` bin run dist/main.js), beside views/ and static/.
const dist = `${ROOT}dist`;
// Chunk names carry a content hash: drop the previous build's so dist/ holds exactly one build.
mkdirSync(dist, { recursive: true });
for (const name of readdirSync(dist, { withFileTypes: true }).filter((e) => e.isFile() && e.name.endsWith('.js'))) rmSync(`${dist}/${name.name}`);
// A compile cache belongs to the build it was made from; the image makes its own (see below).
rmSync(`${dist}/${COMPILE_CACHE_DIR}`, { recursive: true, force: true });
await bundleApp('esm', dist);
// The step that makes V8's compile cache for this bundle, with the Node that will run it: the
// Dockerfile's final stage runs it (node dist/warm-compile-cache.js).
await bundleTool(`${ROOT}src/tools/warm-compile-cache.ts`, `${dist}/warm-compile-cache.js`);
console.log(`built ${dist}/main.js`);
