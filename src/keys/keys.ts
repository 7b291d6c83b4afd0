import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import { age, type HealthItem } from '../health.ts';

// Signing keys and cookie secrets live in data_dir so that tokens and sessions survive restarts:
// relying parties cache our JWKS, and a key that changed on every boot would break them.

export interface KeyMaterial {
  /** Private signing JWKs, newest first; oidc-provider signs with the first and publishes all. */
  signingKeys: JWK[];
  /** Cookie signing secrets, newest first (keygrip signs with the first and verifies with all). */
  cookieSecrets: string[];
  /** What the console says of each signing key, in the order of signingKeys. */
  keyInfo: KeyInfo[];
}

export interface KeyInfo {
  kid: string;
  /** The first key signs; the others are only published, until they are dropped. */
  signing: boolean;
  /** When the key was made (ms); unknown for a key made before guestlist wrote it down. */
  createdAt?: number;
  /** When a published key stopped signing (ms); it is dropped ROTATION_GRACE_MS later. */
  retiredAt?: number;
}

export const SIGNING_KEYS_FILE = 'signing-keys.json';
export const COOKIE_SECRETS_FILE = 'cookie-secrets.json';

export class KeyFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyFileError';
  }
}

function sharedKeysMissing(path: string): string {
  return `${path} does not exist, and with shared storage every instance must sign with the same keys, so guestlist will not make its own. `
    + 'Create them once (guestlist keys init --config FILE), then give every instance the same two files in its data_dir '
    + '(a volume seeded once), or set GUESTLIST_SIGNING_KEYS and GUESTLIST_COOKIE_SECRETS to their contents (secrets).';
}

/** How long a replaced signing key stays published, so tokens it signed still verify. */
export const ROTATION_GRACE_MS = 24 * 3600 * 1000;

interface SigningKeysFile {
  keys: JWK[];
  /** kid -> when the key stopped signing (ISO time); absent for the key that signs. */
  retired?: Record<string, string>;
  /** kid -> when the key was made (ISO time), for the console; absent in files from before. */
  created?: Record<string, string>;
}

export interface KeyOptions {
  /** Log that a file was created. */
  onCreate?: (file: string) => void;
  /**
   * Instances that share a store must share keys too, so they never make their own: the keys come
   * from GUESTLIST_SIGNING_KEYS / GUESTLIST_COOKIE_SECRETS or from files already in data_dir.
   */
  shared?: boolean;
  env?: Record<string, string | undefined>;
}

export async function loadOrCreateKeys(dataDir: string, options: KeyOptions = {}): Promise<KeyMaterial> {
  const { onCreate = () => {}, shared = false, env = {} } = options;
  if (env.GUESTLIST_SIGNING_KEYS || env.GUESTLIST_COOKIE_SECRETS) {
    if (!env.GUESTLIST_SIGNING_KEYS || !env.GUESTLIST_COOKIE_SECRETS) {
      throw new KeyFileError('set both GUESTLIST_SIGNING_KEYS and GUESTLIST_COOKIE_SECRETS (the contents of signing-keys.json and cookie-secrets.json), or neither');
    }
    const fromEnv = (name: string) => {
      try {
        return JSON.parse(env[name]!) as unknown;
      } catch {
        throw new KeyFileError(`${name} is not valid JSON: it must hold the contents of the matching file in data_dir`);
      }
    };
    const file = parseSigningKeys(fromEnv('GUESTLIST_SIGNING_KEYS'), 'GUESTLIST_SIGNING_KEYS');
    return { ...live(file, Date.now()), cookieSecrets: parseCookieSecrets(fromEnv('GUESTLIST_COOKIE_SECRETS'), 'GUESTLIST_COOKIE_SECRETS') };
  }
  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw unusable(dataDir, 'create it', err);
  }

  const keysPath = join(dataDir, SIGNING_KEYS_FILE);
  let file = await readJson(dataDir, SIGNING_KEYS_FILE, parseSigningKeys);
  if (!file && shared) throw new KeyFileError(sharedKeysMissing(keysPath));
  if (!file) {
    const fresh = await generateSigningKey();
    file = { keys: [fresh], created: { [fresh.kid!]: new Date().toISOString() } };
    await save(dataDir, SIGNING_KEYS_FILE, `${JSON.stringify(file, null, 2)}\n`);
    onCreate(keysPath);
  }

  const secretsPath = join(dataDir, COOKIE_SECRETS_FILE);
  let cookieSecrets = await readJson(dataDir, COOKIE_SECRETS_FILE, parseCookieSecrets);
  if (!cookieSecrets && shared) throw new KeyFileError(sharedKeysMissing(secretsPath));
  if (!cookieSecrets) {
    cookieSecrets = [randomBytes(32).toString('base64url')];
    await save(dataDir, COOKIE_SECRETS_FILE, `${JSON.stringify({ secrets: cookieSecrets }, null, 2)}\n`);
    onCreate(secretsPath);
  }
  return { ...live(file, Date.now()), cookieSecrets };
}

/**
 * Make a new signing key the one that signs, keep the one it replaces published for
 * ROTATION_GRACE_MS, and drop keys retired longer ago than that. Returns the new key's kid.
 * A running guestlist picks the new key up when it restarts.
 */
export async function rotateSigningKey(dataDir: string, now = Date.now()): Promise<{ kid: string; published: string[] }> {
  const keysPath = join(dataDir, SIGNING_KEYS_FILE);
  const file = await readJson(dataDir, SIGNING_KEYS_FILE, parseSigningKeys);
  if (!file) throw new KeyFileError(`${keysPath} does not exist yet: start guestlist once to create it`);
  const retired = { ...file.retired };
  for (const key of file.keys) if (!retired[key.kid!]) retired[key.kid!] = new Date(now).toISOString();
  const fresh = await generateSigningKey();
  const kept = file.keys.filter((k) => now - Date.parse(retired[k.kid!]!) < ROTATION_GRACE_MS);
  const created = file.created ?? {};
  const next: SigningKeysFile = {
    keys: [fresh, ...kept],
    retired: Object.fromEntries(kept.map((k) => [k.kid!, retired[k.kid!]!])),
    created: Object.fromEntries([[fresh.kid!, new Date(now).toISOString()], ...kept.filter((k) => created[k.kid!]).map((k) => [k.kid!, created[k.kid!]!])]),
  };
  await save(dataDir, SIGNING_KEYS_FILE, `${JSON.stringify(next, null, 2)}\n`);
  return { kid: fresh.kid!, published: next.keys.map((k) => k.kid!) };
}

/** The signing key first, then replaced keys still within their grace period, with what is known of each. */
function live(file: SigningKeysFile, now: number): Pick<KeyMaterial, 'signingKeys' | 'keyInfo'> {
  const retired = file.retired ?? {};
  const created = file.created ?? {};
  const signingKeys = file.keys.filter((k) => !retired[k.kid!] || now - Date.parse(retired[k.kid!]!) < ROTATION_GRACE_MS);
  const keyInfo = signingKeys.map((k, i): KeyInfo => {
    const made = created[k.kid!] ? Date.parse(created[k.kid!]!) : NaN;
    return {
      kid: k.kid!, signing: i === 0,
      ...(Number.isFinite(made) ? { createdAt: made } : {}),
      ...(retired[k.kid!] ? { retiredAt: Date.parse(retired[k.kid!]!) } : {}),
    };
  });
  return { signingKeys, keyInfo };
}

export async function generateSigningKey(): Promise<JWK> {
  // RS256: Cloudflare Access does not accept EdDSA, and RS256 is what every RP supports.
  const { privateKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  const jwk = await exportJWK(privateKey);
  const kid = (await calculateJwkThumbprint(jwk)).slice(0, 16);
  return { ...jwk, kid, alg: 'RS256', use: 'sig' };
}

/** Write to a temporary file and rename it into place, so a crash never leaves half a key. */
export async function writeFileAtomic(path: string, contents: string): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await open(tmp, 'wx', 0o600);
  try {
    await handle.writeFile(contents);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/**
 * Every way data_dir can fail (a file in its place, a mode that shuts guestlist out, a full or
 * read-only disk) ends in one sentence naming data_dir, not in a stack trace: the person reading
 * it is setting up a volume, not debugging guestlist.
 */
function unusable(dataDir: string, doing: string, err: unknown): KeyFileError {
  const e = err as NodeJS.ErrnoException;
  const why = e.code === 'EACCES' || e.code === 'EPERM' ? `permission denied to uid ${process.getuid?.()}, which guestlist runs as (data_dir must be that user's)`
    : e.code === 'ENOTDIR' || e.code === 'EEXIST' ? 'it, or something on its path, is not a directory'
      : e.code === 'EROFS' ? 'the file system is read-only'
        : e.code === 'ENOSPC' ? 'no space is left on the device'
          : e.message;
  return new KeyFileError(`data_dir ${dataDir}: cannot ${doing}: ${why}`);
}

async function save(dataDir: string, name: string, contents: string): Promise<void> {
  try {
    await writeFileAtomic(join(dataDir, name), contents);
  } catch (err) {
    throw unusable(dataDir, `write ${name}`, err);
  }
}

async function readJson<T>(dataDir: string, name: string, parse: (value: unknown, path: string) => T): Promise<T | undefined> {
  const path = join(dataDir, name);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw unusable(dataDir, `read ${name}`, err);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new KeyFileError(`${path} is not valid JSON. Restore it from a backup; deleting it makes a new one, and relying parties will then reject tokens signed before.`);
  }
  return parse(value, path);
}

function parseSigningKeys(value: unknown, path: string): SigningKeysFile {
  const file = value as Partial<SigningKeysFile> | null;
  const keys = file?.keys;
  if (!Array.isArray(keys) || keys.length === 0) throw new KeyFileError(`${path}: expected {"keys": [ ...private JWKs ]}`);
  keys.forEach((k: JWK, i) => {
    if (k?.kty !== 'RSA' || typeof k.d !== 'string' || typeof k.kid !== 'string') {
      throw new KeyFileError(`${path}: keys[${i}] is not a private RSA JWK with a "kid"`);
    }
  });
  const retired = file?.retired ?? {};
  if (typeof retired !== 'object' || Object.values(retired).some((t) => typeof t !== 'string' || Number.isNaN(Date.parse(t)))) {
    throw new KeyFileError(`${path}: "retired" must map kids to ISO times`);
  }
  if (retired[(keys[0] as JWK).kid!]) throw new KeyFileError(`${path}: the first key signs and cannot be retired`);
  // Only for the console: a bad value is as good as none, never a reason not to start.
  const created = typeof file?.created === 'object' && file.created !== null ? file.created : {};
  return { keys: keys as JWK[], retired, created };
}

function parseCookieSecrets(value: unknown, path: string): string[] {
  const secrets = (value as { secrets?: unknown })?.secrets;
  if (!Array.isArray(secrets) || secrets.length === 0 || secrets.some((s) => typeof s !== 'string' || s.length < 32)) {
    throw new KeyFileError(`${path}: expected {"secrets": ["<at least 32 characters>", ...]}`);
  }
  return secrets as string[];
}

/** The console's lines for the signing keys: which signs, which are only published, and their ages. */
export function keysHealth(info: KeyInfo[], now = Date.now()): HealthItem[] {
  return info.map((key) => {
    const made = key.createdAt !== undefined ? `made ${age(now - key.createdAt)} ago` : 'made before guestlist recorded when';
    if (key.signing) return { name: `Signing key ${key.kid}`, ok: true, detail: `signs every token; ${made}` };
    const until = new Date((key.retiredAt ?? now) + ROTATION_GRACE_MS).toISOString().replace('T', ' ').slice(0, 16);
    return {
      name: `Signing key ${key.kid}`, ok: true,
      detail: `only published, so tokens it signed still verify; stopped signing ${age(now - (key.retiredAt ?? now))} ago, dropped at the first start after ${until} UTC; ${made}`,
    };
  });
}
