#!/usr/bin/env node
import { enableShippedCompileCache } from './compile-cache.ts';
import { createLogger } from './log.ts';

// Process entry: run the command, and for `serve` shut down cleanly on SIGINT and SIGTERM
// (Fly.io sends SIGINT by default, Docker SIGTERM): stop accepting, let in-flight requests finish.

async function main(): Promise<void> {
  // Cold starts matter (a stopped Fly machine wakes on a login): V8's compiled code for
  // oidc-provider and friends comes from disk, before they are loaded below. The image ships it.
  enableShippedCompileCache(import.meta.url);
  const { runCli } = await import('./cli.ts');
  const log = createLogger();
  const result = await runCli(process.argv.slice(2), {
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    env: process.env,
    log,
  });

  if (typeof result === 'number') {
    process.exitCode = result;
    return;
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    log('info', 'shutting down', { signal });
    setTimeout(() => process.exit(0), 10_000).unref();
    void result.close().then(() => process.exit(0));
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

// No top-level await: the single executable runs this file bundled as CommonJS.
void main();
