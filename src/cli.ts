import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { ConfigError, sourceName, type ConfigSource } from './config/config.ts';
import { configWarnings, loadConfig, type Config } from './config/load.ts';
import { demoConfig } from './demo/config.ts';
import { describeSources, SOURCE_KINDS } from './sources/registry.ts';
import { KeyFileError, loadOrCreateKeys, ROTATION_GRACE_MS, rotateSigningKey, SIGNING_KEYS_FILE, COOKIE_SECRETS_FILE } from './keys/keys.ts';
import { StorageUnavailable } from './storage/store.ts';
import { createLogger, type Logger } from './log.ts';
import { dropPrivileges, PrivilegeError } from './privileges.ts';
import { startServer, VERSION, type RunningServer } from './server.ts';

const USAGE = `guestlist: a small OpenID Connect provider that signs people in with an identity they
already have (${SOURCE_KINDS.map((k) => k.name).join(', ')})

Usage:
  guestlist serve [--config FILE]   serve (with no config: a demo on http://localhost:8080)
  guestlist check --config FILE     validate a config and print every problem
  guestlist client add NAME --redirect-uri URI [--config FILE | --issuer URL]
                                    make a client: its secret, the YAML to add, and the
                                    settings to paste into Headscale and Cloudflare Access
  guestlist client add NAME --public --redirect-uri URI [--config FILE | --issuer URL]
                                    a public client (a CLI, a native app): no secret, PKCE
  guestlist keys rotate --config FILE
                                    start signing with a new key; the old one stays
                                    published for 24 hours (restart guestlist after)
  guestlist keys init --config FILE
                                    create the signing keys and cookie secrets in data_dir
                                    now (to copy to every instance that shares storage)
  guestlist --version               print the version (also in the ready log and /healthz)

The config file may also be given as GUESTLIST_CONFIG, or the YAML itself as GUESTLIST_CONFIG_YAML.
PORT overrides the listen port.
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
      options: {
        config: { type: 'string', short: 'c' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
        'redirect-uri': { type: 'string', multiple: true },
        issuer: { type: 'string' },
        public: { type: 'boolean' },
      },
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
  if (parsed.values.version) {
    io.out(`guestlist ${VERSION}\n`);
    return 0;
  }
  // --config FILE, else the YAML itself in GUESTLIST_CONFIG_YAML, else GUESTLIST_CONFIG (a file).
  const { GUESTLIST_CONFIG_YAML: yaml, GUESTLIST_CONFIG: file } = io.env;
  const source: ConfigSource | undefined = parsed.values.config !== undefined ? { file: parsed.values.config }
    : yaml ? { yaml } : file ? { file } : undefined;
  const sub = rest.join(' ');
  if (command === 'client' && rest[0] === 'add' && rest.length === 2) {
    if (parsed.values.public) return publicClientAdd(rest[1]!, parsed.values['redirect-uri'] ?? [], source, parsed.values.issuer, io);
    return clientAdd(rest[1]!, parsed.values['redirect-uri'] ?? [], source, parsed.values.issuer, io);
  }
  if (command === 'keys' && sub === 'rotate') return keysRotate(source, io);
  if (command === 'keys' && sub === 'init') return keysInit(source, io);
  if (rest.length > 0 || (command !== 'serve' && command !== 'check')) {
    io.err(`unknown command: ${parsed.positionals.join(' ')}\n\n${USAGE}`);
    return 2;
  }

  if (command === 'check') {
    if (!source) {
      io.err('check needs --config FILE\n');
      return 2;
    }
    const config = await loadForCommand(source, io);
    if (typeof config === 'number') return config;
    for (const warning of configWarnings(config)) io.err(`warning: ${warning}\n`);
    io.out(`${sourceName(source)} is valid: issuer ${config.issuer}, ${config.clients.length} client${config.clients.length === 1 ? '' : 's'} (${config.clients.map((c) => c.client_id).join(', ')})\n`);
    return 0;
  }

  const config = source ? await loadForCommand(source, io) : demoConfig(io.env);
  if (typeof config === 'number') return config;
  if (!becomeUser(config, io)) return 1;
  const log = io.log ?? createLogger(io.out);
  let running: RunningServer;
  try {
    running = await startServer(config, { log });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EADDRINUSE') io.err(`cannot listen on ${config.listen.host}:${config.listen.port}: the port is already in use (set PORT or "listen" to another)\n`);
    else if (e.code === 'EACCES' && e.syscall === 'listen') io.err(`cannot listen on ${config.listen.host}:${config.listen.port}: permission denied\n`);
    else if (e instanceof KeyFileError || e instanceof StorageUnavailable || e instanceof ConfigError) io.err(`${e.message}\n`);
    else if (e.code === 'EACCES' || e.code === 'EROFS') io.err(`cannot use data_dir ${config.data_dir}: ${e.message}\n`);
    else throw err;
    return 1;
  }
  for (const warning of configWarnings(config)) log('warn', 'config warning', { warning });
  log('info', config.demo ? `guestlist demo ready: open ${config.issuer}/ in a browser` : 'guestlist ready', {
    version: VERSION,
    issuer: config.issuer,
    discovery: `${config.issuer}/.well-known/openid-configuration`,
    listening: running.url,
    clients: config.clients.map((c) => ({ client_id: c.client_id, redirect_uris: c.redirect_uris })),
    sources: describeSources(config),
    ...(config.demo ? { demo: 'a built-in demo on localhost; run with --config FILE for real use' } : {}),
  });
  return running;
}

/**
 * Before anything touches data_dir: as root with GUESTLIST_USER set (the image), hand data_dir to
 * that user and become it, so keys are never written by root. False when that cannot be done.
 */
function becomeUser(config: Config, io: CliIo): boolean {
  try {
    dropPrivileges(config.data_dir, io.env);
    return true;
  } catch (err) {
    if (!(err instanceof PrivilegeError)) throw err;
    io.err(`${err.message}\n`);
    return false;
  }
}

async function loadForCommand(source: ConfigSource | undefined, io: CliIo): Promise<Config | number> {
  if (!source) {
    io.err('this command needs --config FILE (or GUESTLIST_CONFIG, or GUESTLIST_CONFIG_YAML)\n');
    return 2;
  }
  try {
    return await loadConfig(source, io.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.err(`${err.message}\n`);
    return 1;
  }
}

/** The name and redirect URIs `client add` was given, checked, and the issuer to print; or an exit code. */
async function clientAddInput(name: string, redirectUris: string[], source: ConfigSource | undefined, issuerFlag: string | undefined, io: CliIo, examples: string): Promise<string | number> {
  if (!/^[A-Za-z0-9._~-]+$/.test(name)) {
    io.err(`client name "${name}" may only use letters, digits, ".", "_", "~" and "-"\n`);
    return 2;
  }
  if (redirectUris.length === 0 || redirectUris.some((u) => !URL.parse(u) || u.includes('#'))) {
    io.err(`give the app's callback URL with --redirect-uri URI (absolute, no #fragment), e.g.\n${examples}`);
    return 2;
  }
  if (!issuerFlag && source) {
    const config = await loadForCommand(source, io);
    return typeof config === 'number' ? config : config.issuer;
  }
  return issuerFlag ?? 'https://auth.example.com';
}

async function publicClientAdd(name: string, redirectUris: string[], source: ConfigSource | undefined, issuerFlag: string | undefined, io: CliIo): Promise<number> {
  const issuer = await clientAddInput(name, redirectUris, source, issuerFlag, io,
    '  a CLI on its loopback (any port):  http://127.0.0.1/callback\n  a phone app\'s own scheme:         app.immich:///oauth-callback\n');
  if (typeof issuer === 'number') return issuer;
  io.out(`# 1. guestlist: add this under "clients:" in your config (a public client has no secret:
#    it could not keep one, so it signs in with PKCE alone)
  - client_id: ${name}
    public: true
    redirect_uris: [${redirectUris.join(', ')}]
    # refresh_tokens: true    # if the app asks for offline_access and keeps people signed in

# 2. The app: an OpenID Connect provider with
#   Issuer:           ${issuer}
#   Client ID:        ${name}
#   Client secret:    (none: leave it empty)
#   PKCE (S256):      on (required)
#   Redirect URI:     ${redirectUris[0]}   (on 127.0.0.1 or [::1], any port comes back; localhost only as written)
#   Scopes:           openid profile email groups (and offline_access for a refresh token)
`);
  return 0;
}

async function clientAdd(name: string, redirectUris: string[], source: ConfigSource | undefined, issuerFlag: string | undefined, io: CliIo): Promise<number> {
  const issuer = await clientAddInput(name, redirectUris, source, issuerFlag, io,
    '  Headscale:         https://headscale.example.com/oidc/callback\n  Cloudflare Access: https://<team>.cloudflareaccess.com/cdn-cgi/access/callback\n');
  if (typeof issuer === 'number') return issuer;
  // Letters, digits, "-" and "_" only: Cloudflare Access sends secrets without URL-encoding.
  const secret = randomBytes(32).toString('base64url');
  const env = `${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_SECRET`;
  io.out(`# 1. guestlist: add this under "clients:" in your config, and set ${env}
#    in guestlist's environment (e.g. fly secrets set ${env}=...):
  - client_id: ${name}
    client_secret: \${${env}}
    redirect_uris: [${redirectUris.join(', ')}]
    require_pkce: true
    # allowed_groups: [plex-owner, plex-home]   # optional: only these groups (a source's, such as
    #                                           # the Plex tiers, need no definition under groups)

# The secret (shown once; store it as ${env} and in the app):
${secret}

# 2a. Headscale: in its config.yaml
oidc:
  issuer: ${issuer}
  client_id: ${name}
  client_secret: ${secret}
  scope: [openid, profile, email, groups]
  pkce:
    enabled: true
    method: S256
  # allowed_groups: [plex-owner, plex-home]    # optional, checked by Headscale itself

# 2b. Cloudflare Access: Zero Trust > Settings > Authentication > Add new > OpenID Connect
#   App ID:           ${name}
#   Client secret:    ${secret}
#   Auth URL:         ${issuer}/auth
#   Token URL:        ${issuer}/token
#   Certificate URL:  ${issuer}/jwks
#   PKCE:             on
#   To let in only some: an Access policy rule "OIDC Claims", claim name groups, value plex-home
#   (or any group guestlist puts in the groups claim).
`);
  return 0;
}

async function keysRotate(source: ConfigSource | undefined, io: CliIo): Promise<number> {
  const config = await loadForCommand(source, io);
  if (typeof config === 'number') return config;
  if (!becomeUser(config, io)) return 1;
  try {
    const { kid, published } = await rotateSigningKey(config.data_dir);
    io.out(`New signing key ${kid} in ${config.data_dir}. Published now: ${published.join(', ')}.\n`
      + `The previous key stays published for ${ROTATION_GRACE_MS / 3600_000} hours. Restart guestlist to start signing with the new one.\n`);
    return 0;
  } catch (err) {
    if (!(err instanceof KeyFileError)) throw err;
    io.err(`${err.message}\n`);
    return 1;
  }
}

async function keysInit(source: ConfigSource | undefined, io: CliIo): Promise<number> {
  const config = await loadForCommand(source, io);
  if (typeof config === 'number') return config;
  if (!becomeUser(config, io)) return 1;
  const created: string[] = [];
  try {
    await loadOrCreateKeys(config.data_dir, { onCreate: (f) => created.push(f) });
  } catch (err) {
    if (!(err instanceof KeyFileError)) throw err;
    io.err(`${err.message}\n`);
    return 1;
  }
  io.out(`${created.length ? `Created ${created.join(' and ')}.` : `The keys already exist in ${config.data_dir}.`}
Give every instance the same ${SIGNING_KEYS_FILE} and ${COOKIE_SECRETS_FILE} (a volume seeded once), or
set GUESTLIST_SIGNING_KEYS and GUESTLIST_COOKIE_SECRETS to their contents, e.g.
  fly secrets set GUESTLIST_SIGNING_KEYS="$(cat ${config.data_dir}/${SIGNING_KEYS_FILE})" \\
                  GUESTLIST_COOKIE_SECRETS="$(cat ${config.data_dir}/${COOKIE_SECRETS_FILE})"
`);
  return 0;
}
