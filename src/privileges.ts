import { chmodSync, lchownSync, lstatSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

// The container starts as root for one reason: a Fly volume or a bind mount arrives root-owned,
// and guestlist must write its keys there. So, when GUESTLIST_USER names who to become (the image
// sets it to `node`), a process that finds itself root makes data_dir that user's and becomes
// that user before it reads a key, opens a socket or starts the server. If it cannot, it stops:
// guestlist never serves as root.

export class PrivilegeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PrivilegeError';
  }
}

export interface Account {
  uid: number;
  gid: number;
  name?: string;
}

/** `node`, `1000` or `1000:1000`, looked up in /etc/passwd where a name is given. */
export function resolveUser(spec: string, passwd = readPasswd()): Account {
  const numeric = /^(\d+)(?::(\d+))?$/.exec(spec);
  if (numeric) {
    const uid = Number(numeric[1]);
    const entry = passwd.find((a) => a.uid === uid);
    return { uid, gid: numeric[2] !== undefined ? Number(numeric[2]) : entry?.gid ?? uid, ...(entry?.name ? { name: entry.name } : {}) };
  }
  const entry = passwd.find((a) => a.name === spec);
  if (!entry) throw new PrivilegeError(`GUESTLIST_USER: there is no user "${spec}" on this system (give a user name from /etc/passwd, or uid:gid)`);
  return entry;
}

function readPasswd(): Account[] {
  let text = '';
  try {
    text = readFileSync('/etc/passwd', 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').flatMap((line) => {
    const [name, , uid, gid] = line.split(':');
    return name && /^\d+$/.test(uid ?? '') && /^\d+$/.test(gid ?? '') ? [{ name, uid: Number(uid), gid: Number(gid) }] : [];
  });
}

/**
 * As root with GUESTLIST_USER set: give data_dir (and what is in it) to that user, then become
 * it. Returns who we became, or undefined when there was nothing to do.
 */
export function dropPrivileges(dataDir: string, env: Record<string, string | undefined>): Account | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const spec = env.GUESTLIST_USER;
  if (!spec) return undefined;
  const to = resolveUser(spec);
  if (to.uid === 0) throw new PrivilegeError('GUESTLIST_USER names root; guestlist does not serve as root: name an unprivileged user');
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    giveDataDir(dataDir, to);
    chmodSync(dataDir, 0o700);
  } catch (err) {
    throw new PrivilegeError(`cannot make data_dir ${dataDir} belong to uid ${to.uid}: ${(err as Error).message}`);
  }
  try {
    process.setgroups?.([to.gid]);
    process.setgid?.(to.gid);
    process.setuid?.(to.uid);
  } catch (err) {
    throw new PrivilegeError(`refusing to run as root: cannot become uid ${to.uid} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); `
      + 'the container may lack the SETUID/SETGID capabilities: allow them, or start it as an unprivileged user that owns data_dir');
  }
  if (process.getuid?.() !== to.uid || process.getgid?.() !== to.gid) {
    throw new PrivilegeError(`refusing to run as root: still uid ${process.getuid?.()} after switching to ${to.uid}`);
  }
  return to;
}

/**
 * data_dir and the files directly in it (guestlist keeps its keys there), not its subdirectories:
 * those are someone else's, such as tailscaled's state beside it on the same volume, which holds
 * the node's private key. chown without following links: a link planted in the volume must not
 * hand over what it points to.
 */
function giveDataDir(dir: string, to: Account): void {
  const give = (path: string) => {
    const st = lstatSync(path);
    if (st.uid !== to.uid || st.gid !== to.gid) lchownSync(path, to.uid, to.gid);
  };
  give(dir);
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isFile() || entry.isSymbolicLink()) give(join(dir, entry.name));
  }
}
