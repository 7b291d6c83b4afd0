import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { resolveUser } from '../src/privileges.ts';
import { freePort, tempDir } from './helpers.ts';

// The image starts as root so that it can take over a root-owned volume (Fly volumes and bind
// mounts arrive that way), then becomes GUESTLIST_USER before it does anything else. Run for real,
// as root, the way the container runs it.

const root = new URL('../', import.meta.url).pathname;
const asRoot = process.getuid?.() === 0;
const SETPRIV = '/usr/bin/setpriv';

async function volume(): Promise<{ dir: string; config: string; data: string }> {
  const dir = await tempDir();
  chmodSync(dir, 0o755); // as a mount point's parent is: the unprivileged user can reach data_dir
  const data = join(dir, 'data');
  mkdirSync(data, { mode: 0o755 }); // root-owned and empty, like a fresh Fly volume
  const config = join(dir, 'guestlist.yaml');
  writeFileSync(config, `issuer: http://127.0.0.1:${await freePort()}\nlisten: 127.0.0.1:${await freePort()}\ndata_dir: ${data}\ntailscale: {}\nclients:\n  - {client_id: app, client_secret: abcdefghijklmnop0123, redirect_uris: ["https://app.example.com/cb"]}\n`);
  return { dir, config, data };
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
      // The link itself was handed over, not what it points to; another's directory was left alone.
      assert.equal(statSync(outside).uid, 0);
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
});

test('GUESTLIST_USER is a user name, a uid, or uid:gid', () => {
  const passwd = [{ name: 'node', uid: 1000, gid: 1000 }, { name: 'guest', uid: 405, gid: 100 }];
  assert.deepEqual(resolveUser('node', passwd), { name: 'node', uid: 1000, gid: 1000 });
  assert.deepEqual(resolveUser('405', passwd), { name: 'guest', uid: 405, gid: 100 });
  assert.deepEqual(resolveUser('2000:3000', passwd), { uid: 2000, gid: 3000 });
  assert.throws(() => resolveUser('nobody-here', passwd), /no user "nobody-here"/);
});
