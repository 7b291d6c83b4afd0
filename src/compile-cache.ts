import { existsSync } from 'node:fs';
import { constants, enableCompileCache } from 'node:module';
import { fileURLToPath } from 'node:url';

// A stopped Fly machine wakes from the image, with an empty /tmp: a compile cache that Node
// writes there at the first run is gone at the next wake. So the image ships one, made at build
// time (dist/warm-compile-cache.js) in this directory beside the bundle.

/** The shipped cache's directory, inside dist/ next to main.js and its chunks. */
export const COMPILE_CACHE_DIR = 'compile-cache';

/**
 * Turns on V8's compile cache for the modules loaded from now on: the shipped one when it is
 * there, else Node's default (the OS temp directory, filled by the first run). Best effort: a
 * cache Node cannot use is only a slower start. `portable` keys entries by their path relative to
 * the cache, so a cache made in one place is valid wherever dist/ is copied to; it still holds
 * only for the Node version, V8 flags and uid it was made with (Node keeps a directory for each).
 * A shipped directory that is read-only (root's, in the image) is still read; entries Node would
 * add are skipped. When the directory has nothing for this Node and uid and cannot be written
 * (Node cannot create the directory it would write to), the default is used instead.
 * NODE_COMPILE_CACHE, when set, wins: Node turned the cache on before this ran.
 */
export function enableShippedCompileCache(entryUrl: string | undefined): void {
  try {
    // The single executable's CommonJS bundle has no import.meta.url (it carries V8's code
    // cache inside it instead).
    if (typeof entryUrl === 'string' && entryUrl.startsWith('file:')) {
      const shipped = fileURLToPath(new URL(COMPILE_CACHE_DIR, entryUrl));
      if (existsSync(shipped) && enableCompileCache({ directory: shipped, portable: true }).status !== constants.compileCacheStatus.FAILED) return;
    }
    enableCompileCache();
  } catch {
    // no cache then
  }
}
