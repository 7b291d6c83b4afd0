import { bundleApp, ROOT } from './bundle.ts';

// `npm run build`: the production build, dist/main.js (the Docker image and the `guestlist` bin
// run it), beside views/ and static/.
await bundleApp('esm', `${ROOT}dist/main.js`);
console.log(`built ${ROOT}dist/main.js`);
