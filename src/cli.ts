import { parseArgs } from 'node:util';
import { ConfigError, loadConfigFile, type Config } from './config.ts';
import { demoConfig } from './demo.ts';
import { KeyFileError } from './keys.ts';
import { createLogger, type Logger } from './log.ts';
import { startServer, type RunningServer } from './server.ts';

const USAGE = `guestlist: a small OpenID Connect provider that signs people in with Tailscale

Usage:
  guestlist serve [--config FILE]   serve (with no config: a demo on http://localhost:8080)
  guestlist check --config FILE     validate a config and print every problem

The config file may also be given as GUESTLIST_CONFIG. PORT overrides the listen port.
`;

export interface CliIo {
  out: (text: string) => void;
  err: (text: string) => void;
  env: Record<string, string | undefined>;
  log?: Logger;
}

/** Runs a command; resolves to an exit code, or to the running server for `serve`. */
export async function runCli(argv: string[], io: CliIo): Promise<number | RunningServer> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (err) {
    io.err(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const [command = 'serve', ...rest] = parsed.positionals;
  if (parsed.values.help || command === 'help') {
    io.out(USAGE);
    return 0;
  }
  if (rest.length > 0 || (command !== 'serve' && command !== 'check')) {
    io.err(`unknown command: ${parsed.positionals.join(' ')}\n\n${USAGE}`);
    return 2;
  }
  const file = parsed.values.config ?? io.env.GUESTLIST_CONFIG;

  if (command === 'check') {
    if (!file) {
      io.err('check needs --config FILE\n');
      return 2;
    }
    try {
      const config = await loadConfigFile(file, io.env);
      io.out(`${file} is valid: issuer ${config.issuer}, ${config.clients.length} client${config.clients.length === 1 ? '' : 's'} (${config.clients.map((c) => c.client_id).join(', ')})\n`);
      return 0;
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      io.err(`${err.message}\n`);
      return 1;
    }
  }

  let config: Config;
  try {
    config = file ? await loadConfigFile(file, io.env) : demoConfig(io.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.err(`${err.message}\n`);
    return 1;
  }
  const log = io.log ?? createLogger(io.out);
  let running: RunningServer;
  try {
    running = await startServer(config, { log });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EADDRINUSE') io.err(`cannot listen on ${config.listen.host}:${config.listen.port}: the port is already in use (set PORT or "listen" to another)\n`);
    else if (e.code === 'EACCES' && e.syscall === 'listen') io.err(`cannot listen on ${config.listen.host}:${config.listen.port}: permission denied\n`);
    else if (e instanceof KeyFileError) io.err(`${e.message}\n`);
    else if (e.code === 'EACCES' || e.code === 'EROFS') io.err(`cannot use data_dir ${config.data_dir}: ${e.message}\n`);
    else throw err;
    return 1;
  }
  log('info', config.demo ? `guestlist demo ready: open ${config.issuer}/ in a browser` : 'guestlist ready', {
    issuer: config.issuer,
    discovery: `${config.issuer}/.well-known/openid-configuration`,
    listening: running.url,
    clients: config.clients.map((c) => ({ client_id: c.client_id, redirect_uris: c.redirect_uris })),
    sources: config.demo ? ['tailscale (when tailscaled answers)', 'demo sample user'] : config.tailscale ? ['tailscale'] : [],
    ...(config.demo ? { demo: 'a built-in demo on localhost; run with --config FILE for real use' } : {}),
  });
  return running;
}
