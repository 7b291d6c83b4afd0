import { execFileSync } from 'node:child_process';
import { cpSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

// The Docker image without a Docker engine: what its app stage copies and the compile-cache step
// it runs, read from the Dockerfile, so test/deploy-files and the benchmark start the build the
// way a freshly unpacked image does.

const root = new URL('../', import.meta.url).pathname;
export const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');

/** The stage that copies guestlist's files (`AS app`; the default image and the Tailscale one build on it). */
export function appStage(): string {
  const start = dockerfile.indexOf(' AS app\n');
  if (start === -1) throw new Error('Dockerfile: no stage "AS app"');
  const end = dockerfile.indexOf('\nFROM ', start);
  return dockerfile.slice(start, end === -1 ? undefined : end);
}

/** Copies what the app stage COPYs, from where `npm run build` leaves it, into dir (the image's /app). */
export function copyImageFiles(dir: string): void {
  for (const [, from, to] of appStage().matchAll(/^COPY (?:--from=build \/app\/)?(\S+) (\S+)$/gm)) {
    // dist/ may also hold `npm run build:binary`'s products (guestlist, guestlist-linux-arm64,
    // their sea/ work), which the image's build stage never makes.
    const notBinary = (path: string) => !/[\\/]dist[\\/](guestlist(-[\w-]+)?|sea)$/.test(path);
    cpSync(join(root, from!), to!.endsWith('/') ? join(dir, to!, from!) : join(dir, to!), { recursive: true, filter: notBinary });
  }
}

/** The app stage's compile-cache step: its RUN line, the script it runs (relative to /app) and the user it adds with --uid. */
export function compileCacheStep(): { line: string; script: string; user: string | undefined } {
  const line = /^RUN node (dist\/warm-compile-cache\.js)\b.*$/m.exec(appStage());
  if (!line) throw new Error('Dockerfile: the app stage does not run dist/warm-compile-cache.js');
  return { line: line[0], script: line[1]!, user: /--uid "\$\(id -u (\w+)\)"/.exec(line[0])?.[1] };
}

/**
 * Runs the compile-cache step in a copy made by copyImageFiles, as the image's build does (as
 * this process's user, plus `uids`); returns what it printed.
 */
export function runCompileCacheStep(dir: string, uids: number[] = []): string {
  return execFileSync(process.execPath, [join(dir, compileCacheStep().script), ...uids.flatMap((u) => ['--uid', String(u)])], {
    cwd: dir, env: { PATH: process.env.PATH! }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/**
 * What Node did with the compile cache of each module it compiled, from its
 * NODE_DEBUG_NATIVE=COMPILE_CACHE output: 'accepted' (read from the cache and used), 'rejected'
 * (there, but made for another Node, flags or source) or 'not initialized' (not there).
 */
export function compileCacheVerdicts(debugOutput: string): Map<string, string> {
  const verdicts = new Map<string, string>();
  for (const [, file, verdict] of debugOutput.matchAll(/^\[compile cache\] V8 code cache for \S+ (\S+) was (accepted|rejected|not initialized)/gm)) {
    verdicts.set(file!, verdict!);
  }
  return verdicts;
}
