import { closeSync, constants, fchmodSync, fchownSync, fstatSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, statSync, type Stats } from 'node:fs';
import { isAbsolute, join } from 'node:path';

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
  const dir = openDataDir(dataDir);
  try {
    giveDataDir(dir, to);
  } catch (err) {
    throw new PrivilegeError(`cannot make data_dir ${dataDir} belong to uid ${to.uid}: ${cause(err)}`);
  } finally {
    closeSync(dir);
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

// Root must not be led elsewhere by a link that someone else planted on data_dir's path (data_dir
// may sit in a directory the unprivileged user owns: it owns /data after the first start). Every
// step below is taken through a descriptor of the directory already reached, never by a path
// that could be re-resolved after a check. Node has no openat(), so "name in the directory open
// as fd" is /proc/self/fd/<fd>/<name>, which the kernel resolves from that open directory.
const FDS = '/proc/self/fd';
const at = (fd: number, name: string) => `${FDS}/${fd}/${name}`;
const DIRECTORY = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
const FILE = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;
const MAX_LINKS = 40; // as the kernel's own limit: a loop ends in a sentence, not forever

/**
 * Opens data_dir, making what is missing, and walking from "/" one directory at a time without
 * following a link, except one that only root could have made: a root-owned link in a root-owned
 * directory that neither group nor others may write to (a volume linked into place by whoever set
 * up the machine). data_dir itself must not be a link at all: what it holds is handed over.
 */
function openDataDir(dataDir: string): number {
  const refuse = (why: string) => new PrivilegeError(`data_dir ${dataDir}${why}`);
  let fd = openSync('/', DIRECTORY);
  try {
    const viaProc = statSync(at(fd, '.'), { throwIfNoEntry: false });
    const root = fstatSync(fd);
    if (!viaProc || viaProc.ino !== root.ino || viaProc.dev !== root.dev) {
      throw refuse(`: ${FDS} is not available (is /proc mounted?), and as root guestlist reaches data_dir only through it, so that no link on the way can redirect it; mount /proc, or start as the unprivileged user with data_dir already its own`);
    }
    // Not path.resolve(): ".." is taken as the kernel takes it, from where a link led, so that
    // the directory handed over is the one the unprivileged process will use by this path.
    const left = (isAbsolute(dataDir) ? dataDir : `${process.cwd()}/${dataDir}`).split('/').filter(Boolean);
    let reached = '/'; // for sentences: where the walk is
    let links = 0;
    while (left.length > 0) {
      const name = left.shift()!;
      const path = join(reached, name);
      const last = left.length === 0;
      let next: number | undefined;
      try {
        next = openSync(at(fd, name), DIRECTORY);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') {
          // Made root's and reachable on the way (a user's data_dir needs its parents searchable),
          // 0700 at the end, where it is handed over next.
          try {
            mkdirSync(at(fd, name), last ? 0o700 : 0o755);
            next = openSync(at(fd, name), DIRECTORY);
          } catch (made) {
            throw refuse(`: cannot create ${path}: ${cause(made)}`);
          }
        } else if (code !== 'ENOTDIR') {
          throw refuse(`: cannot open ${path}: ${cause(err)}`);
        }
      }
      if (next !== undefined) {
        closeSync(fd);
        fd = next;
        reached = path;
        continue;
      }
      // O_NOFOLLOW answers ENOTDIR for a link too: which of the two is it?
      const st = lstatSync(at(fd, name));
      if (!st.isSymbolicLink()) throw refuse(`: ${path} is not a directory`);
      const target = readlinkSync(at(fd, name));
      if (last) {
        throw refuse(`${links === 0 ? '' : `: ${path}`} is a symbolic link (to ${target}); as root guestlist does not follow it, because it would hand over whatever the link points at: set data_dir to the directory itself`);
      }
      if (!onlyRootCouldPlace(fstatSync(fd), st)) {
        throw refuse(`: ${path} is a symbolic link in a directory that a user other than root can change, so as root guestlist does not follow it (anyone who can write there could point it at another directory): set data_dir to a path without it`);
      }
      if (++links > MAX_LINKS) throw refuse(`: too many symbolic links on the way (at ${path})`);
      left.unshift(...target.split('/').filter(Boolean));
      if (target.startsWith('/')) {
        const root = openSync('/', DIRECTORY);
        closeSync(fd);
        fd = root;
        reached = '/';
      }
    }
    return fd;
  } catch (err) {
    closeSync(fd);
    throw err instanceof PrivilegeError ? err : refuse(`: ${cause(err)}`);
  }
}

function onlyRootCouldPlace(dir: Stats, link: Stats): boolean {
  return link.uid === 0 && dir.uid === 0 && (dir.mode & 0o022) === 0;
}

/**
 * data_dir and the regular files directly in it (guestlist keeps its keys there), not its
 * subdirectories: those are someone else's, such as tailscaled's state beside it on the same
 * volume, which holds the node's private key. Links are left alone, and so is a file with more
 * than one name: a hard link is the file it links to, wherever that is. The directory is made
 * 0700 first and handed over last, so that a root-owned one gets nothing new while it is read.
 */
function giveDataDir(dir: number, to: Account): void {
  fchmodSync(dir, 0o700);
  for (const name of readdirSync(at(dir, '.'))) {
    const st = lstatSync(at(dir, name), { throwIfNoEntry: false });
    if (!st?.isFile() || st.nlink !== 1 || owns(st, to)) continue;
    let file: number;
    try {
      file = openSync(at(dir, name), FILE);
    } catch {
      continue; // gone, or swapped for a link since it was listed: not ours to hand over
    }
    try {
      const now = fstatSync(file);
      if (now.isFile() && now.nlink === 1 && now.ino === st.ino && now.dev === st.dev) fchownSync(file, to.uid, to.gid);
    } finally {
      closeSync(file);
    }
  }
  if (!owns(fstatSync(dir), to)) fchownSync(dir, to.uid, to.gid);
}

const owns = (st: Stats, to: Account) => st.uid === to.uid && st.gid === to.gid;

/** An error's cause without the /proc/self/fd path it was reached by. */
function cause(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code && e.syscall ? e.message.replace(/, \w+ '[^']*'(?: -> '[^']*')?$/, '') : e.message;
}
