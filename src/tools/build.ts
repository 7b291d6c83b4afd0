import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { bundleApp, ROOT } from './bundle.ts';

// `npm run build`: the production build in dist/ (main.js and its chunks; the Docker image and
// the `guestlist` bin run dist/main.js), beside views/ and static/.
const dist = `${ROOT}dist`;
// Chunk names carry a content hash: drop the previous build's so dist/ holds exactly one build.
mkdirSync(dist, { recursive: true });
for (const name of readdirSync(dist, { withFileTypes: true }).filter((e) => e.isFile() && e.name.endsWith('.js'))) rmSync(`${dist}/${name.name}`);
await bundleApp('esm', dist);
console.log(`built ${dist}/main.js`);
