import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

// guestlist as one JavaScript file. Loading one file instead of a few hundred modules is most
// of a cold start (Fly wakes a stopped machine on a login), and the result needs no node_modules.

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export async function bundleApp(format: 'esm' | 'cjs', outfile: string): Promise<void> {
  await build({
    entryPoints: [`${ROOT}src/main.ts`],
    outfile,
    bundle: true,
    platform: 'node',
    format,
    target: 'node24',
    minify: true,
    keepNames: true,
    legalComments: 'none',
    // Dependencies written as CommonJS (koa, cookies) call require(); give the ESM bundle one.
    ...(format === 'esm' ? { banner: { js: "import { createRequire as __guestlistRequire } from 'node:module'; const require = __guestlistRequire(import.meta.url);" } } : {}),
    // In the CommonJS bundle import.meta is empty; it is only read outside the executable.
    logOverride: { 'empty-import-meta': 'silent' },
    logLevel: 'warning',
  });
}
