import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lchownSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { resolveUser } from '../src/privileges.ts';
import { freePort, tempDir } from './helpers.ts';

// The image starts as root so that it can take over a root-owned volume (Fly volumes and bind
// mounts arrive that way), then becomes GUESTLIST_USER before it does anything else. Run for real,
// as root, the way the container runs it.

const root = new URL('../', import.meta.url).pathname;
const asRoot = process.getuid?.() === 0;
const SETPRIV = '/usr/bin/setpriv';

/** A root-owned directory with a fresh, root-owned data_dir in it; `dataDir` for another data_dir (a relative one is the config's). */
async function volume(dataDir?: (dir: string) => string): Promise<{ dir: string; config: string; data: string }> {
  const dir = await tempDir();
  chmodSync(dir, 0o755); // as a mount point's parent is: the unprivileged user can reach data_dir
  const data = join(dir, 'data');
  mkdirSync(data, { mode: 0o755 }); // root-owned and empty, like a fresh Fly volume
  const config = join(dir, 'guestlist.yaml');
  writeFileSync(config, `issuer: http://127.0.0.1:${await freePort()}\nlisten: 127.0.0.1:${await freePort()}\ndata_dir: ${dataDir?.(dir) ?? data}\ntailscale: {}\nclients:\n  - {client_id: app, client_secret: abcdefghijklmnop0123, redirect_uris: ["https://app.example.com/cb"]}\n`);
  return { dir, config, data };
}

/** A directory only root may enter, with a file and a subdirectory in it: what a planted link would point at. */
function rootOnly(path: string): () => Record<string, [number, number, number]> {
  mkdirSync(join(path, 'data'), { recursive: true, mode: 0o700 });
  chmodSync(path, 0o711); // not 0700, so that a chmod through a link would show
  writeFileSync(join(path, 'secret'), 'x', { mode: 0o600 });
  writeFileSync(join(path, 'data', 'secret'), 'x', { mode: 0o600 });
  // Owner, group and mode of everything there, to compare before and after.
  return () => Object.fromEntries(['.', 'secret', 'data', 'data/secret', ...readdirSync(join(path, 'data')).map((n) => `data/${n}`)]
    .map((n) => { const st = lstatSync(join(path, n)); return [n, [st.uid, st.gid, st.mode & 0o7777]]; }));
}

/** A directory of the unprivileged user's, next to data_dir's usual place: there it can plant links. */
function usersOwn(path: string): string {
  mkdirSync(path, { mode: 0o755 });
  chownSync(path, 1000, 1000);
  return path;
}

/** A link made by the unprivileged user (it owns it, as it would own one it planted). */
function plant(target: string, path: string): void {
  symlinkSync(target, path);
  lchownSync(path, 1000, 1000);
}

function start(args: string[], env: Record<string, string>, wrap: string[] = []) {
  const command = [...wrap, process.execPath, join(root, 'src/main.ts'), ...args];
  const proc = spawn(command[0]!, command.slice(1), { env: { PATH: process.env.PATH!, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  proc.stdout.on('data', (c) => (output += c));
  proc.stderr.on('data', (c) => (output += c));
  const ready = new Promise<void>((resolve, reject) => {
    proc.stdout.on('data', () => output.includes('guestlist ready') && resolve());
    proc.on('exit', (code) => reject(new Error(`exited ${code}: ${output}`)));
  });
  ready.catch(() => {}); // awaited only by the tests that expect a server
  const exited = new Promise<number | null>((resolve) => proc.on('exit', resolve));
  return { proc, ready, exited, output: () => output };
}

const idsOf = (pid: number) => {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => /^(\S+)/.exec(status.split('\n').find((l) => l.startsWith(`${name}:`))!.slice(name.length + 1).trim())![1];
  return { uid: Number(field('Uid')), gid: Number(field('Gid')), groups: status.split('\n').find((l) => l.startsWith('Groups:'))!.slice(7).trim() };
};

describe('starting as root', { skip: asRoot ? false : 'needs root (CI runs as root)' }, () => {
  test('with GUESTLIST_USER, takes over a root-owned data_dir, then serves as that user', async () => {
    const { config, data } = await volume();
    // What an older root-run `keys init` may have left behind, and a link planted in the volume.
    writeFileSync(join(data, 'leftover'), 'x', { mode: 0o600 });
    const outside = join(await tempDir(), 'not-yours');
    writeFileSync(outside, 'x');
    symlinkSync(outside, join(data, 'link'));
    // A hard link to a root-only file elsewhere on the same file system (possible where
    // fs.protected_hardlinks is off): it is that file, so handing it over would hand that file over.
    const hardTarget = join(await tempDir(), 'root-only');
    writeFileSync(hardTarget, 'x', { mode: 0o600 });
    linkSync(hardTarget, join(data, 'hard-link'));
    // Someone else's directory on the same volume (tailscaled's state, in the Tailscale image).
    mkdirSync(join(data, 'tailscale'), { mode: 0o700 });
    writeFileSync(join(data, 'tailscale', 'tailscaled.state'), '{}', { mode: 0o600 });
    const server = start(['serve', '--config', config], { GUESTLIST_USER: '1000:1000' });
    try {
      await server.ready;
      assert.deepEqual(idsOf(server.proc.pid!), { uid: 1000, gid: 1000, groups: '1000' });
      const keys = readdirSync(data).filter((n) => n.endsWith('.json'));
      assert.ok(keys.length >= 2, `key files: ${readdirSync(data).join(', ')}`);
      for (const name of [...keys, 'leftover', '.']) {
        const st = statSync(join(data, name));
        assert.deepEqual([st.uid, st.gid], [1000, 1000], name);
      }
      assert.equal(statSync(data).mode & 0o777, 0o700);
      // A link is left alone, and so is what it points to; another's directory too.
      assert.equal(statSync(outside).uid, 0);
      assert.equal(statSync(hardTarget).uid, 0, 'a hard link in data_dir is not handed over');
      assert.equal(statSync(join(data, 'tailscale')).uid, 0);
      assert.equal(statSync(join(data, 'tailscale', 'tailscaled.state')).uid, 0);
    } finally {
      server.proc.kill('SIGTERM');
      await server.exited;
    }
  });

  test('refuses to serve when it cannot become GUESTLIST_USER (no such user, or no setuid capability)', async () => {
    const { config, data } = await volume();
    const missing = start(['serve', '--config', config], { GUESTLIST_USER: 'no-such-user' });
    assert.equal(await missing.exited, 1);
    assert.match(missing.output(), /GUESTLIST_USER: there is no user "no-such-user"/);
    assert.ok(existsSync(SETPRIV), 'setpriv (util-linux) is needed for this test');
    // A container started without CAP_SETUID/CAP_SETGID: root, but unable to switch.
    const capless = start(['serve', '--config', config], { GUESTLIST_USER: '1000:1000' }, [SETPRIV, '--bounding-set=-setuid,-setgid', '--inh-caps=-setuid,-setgid']);
    assert.equal(await capless.exited, 1);
    assert.match(capless.output(), /refusing to run as root: cannot become uid 1000/);
    // Nothing was served or written as root on the way.
    assert.ok(!readdirSync(data).some((n) => n.endsWith('.json')), readdirSync(data).join(', '));
    assert.doesNotMatch(capless.output(), /guestlist ready/);
  });

  test('keys init as root with GUESTLIST_USER writes the keys as that user', async () => {
    const { config, data } = await volume();
    const run = start(['keys', 'init', '--config', config], { GUESTLIST_USER: '1000:1000' });
    assert.equal(await run.exited, 0, run.output());
    for (const name of readdirSync(data)) assert.equal(statSync(join(data, name)).uid, 1000, name);
  });

  // data_dir may sit in a directory the unprivileged user owns (it owns /data after the first
  // start, and a later data_dir may be below it): whatever it plants there must not lead root to
  // hand over, or chmod, what a link points at.
  test('refuses a data_dir that is a symbolic link, and leaves what it points at alone', async () => {
    const { dir, config } = await volume((d) => join(d, 'home', 'data'));
    const home = usersOwn(join(dir, 'home'));
    const state = rootOnly(join(dir, 'root-only'));
    const before = state();
    plant(join(dir, 'root-only'), join(home, 'data'));
    const run = start(['keys', 'init', '--config', config], { GUESTLIST_USER: '1000:1000' });
    await run.exited;
    assert.deepEqual(state(), before);
    assert.equal(await run.exited, 1, run.output());
    assert.match(run.output(), new RegExp(`^data_dir ${join(home, 'data')} is a symbolic link \\(to ${join(dir, 'root-only')}\\)`, 'm'));
    assert.doesNotMatch(run.output(), /\n\s+at /, 'a sentence, not a stack trace');
  });

  test('refuses a data_dir below a link that the unprivileged user could have planted, and hands over nothing there', async () => {
    const { dir, config } = await volume((d) => join(d, 'home', 'parent', 'data'));
    const home = usersOwn(join(dir, 'home'));
    const state = rootOnly(join(dir, 'root-only'));
    const before = state();
    // home/parent -> root-only: data_dir home/parent/data would be root-only/data.
    plant(join(dir, 'root-only'), join(home, 'parent'));
    const run = start(['keys', 'init', '--config', config], { GUESTLIST_USER: '1000:1000' });
    await run.exited;
    assert.deepEqual(state(), before);
    assert.equal(await run.exited, 1, run.output());
    assert.match(run.output(), new RegExp(`^data_dir ${join(home, 'parent', 'data')}: ${join(home, 'parent')} is a symbolic link in a directory that a user other than root can change`, 'm'));
  });

  test('follows a link on the way only where root alone could have made it (a volume linked into place), and a relative data_dir', async () => {
    const { dir, config } = await volume(() => './vol/data');
    mkdirSync(join(dir, 'real'), { mode: 0o755 });
    symlinkSync(join(dir, 'real'), join(dir, 'vol')); // root's link, in root's 0755 directory
    const run = start(['keys', 'init', '--config', config], { GUESTLIST_USER: '1000:1000' });
    assert.equal(await run.exited, 0, run.output());
    const st = statSync(join(dir, 'real', 'data'));
    assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [1000, 1000, 0o700]);
    const keys = readdirSync(join(dir, 'real', 'data'));
    assert.ok(keys.length >= 2, keys.join(', '));
    for (const name of keys) assert.equal(statSync(join(dir, 'real', 'data', name)).uid, 1000, name);
    // A missing directory on the way is made root's and reachable, not the user's.
    assert.equal(lstatSync(join(dir, 'vol')).isSymbolicLink(), true);
  });

  const canUnshare = spawnSync('unshare', ['--mount', 'true']).status === 0;
  test('without /proc, refuses rather than walk data_dir by path', { skip: canUnshare ? false : 'needs unshare --mount' }, async () => {
    const { config, data } = await volume();
    // A mount namespace of its own, with an empty file system where /proc was.
    const run = start(['keys', 'init', '--config', config], { GUESTLIST_USER: '1000:1000' },
      ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs none /proc && exec "$@"', 'sh']);
    assert.equal(await run.exited, 1, run.output());
    assert.match(run.output(), /\/proc\/self\/fd is not available/);
    assert.deepEqual(readdirSync(data), []);
    assert.equal(statSync(data).uid, 0);
  });
});

test('GUESTLIST_USER is a user name, a uid, or uid:gid', () => {
  const passwd = [{ name: 'node', uid: 1000, gid: 1000 }, { name: 'guest', uid: 405, gid: 100 }];
  assert.deepEqual(resolveUser('node', passwd), { name: 'node', uid: 1000, gid: 1000 });
  assert.deepEqual(resolveUser('405', passwd), { name: 'guest', uid: 405, gid: 100 });
  assert.deepEqual(resolveUser('2000:3000', passwd), { uid: 2000, gid: 3000 });
  assert.throws(() => resolveUser('nobody-here', passwd), /no user "nobody-here"/);
});
