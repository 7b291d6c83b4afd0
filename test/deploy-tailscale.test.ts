import { afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { parseConfig } from '../src/config/load.ts';
import { tempDir } from './helpers.ts';
import { parseToml } from './toml.ts';

// The two "Tailscale next to guestlist" recipes: the Dockerfile's `tailscale` stage with its
// fly.toml and supervising entrypoint (Fly.io), and a compose file with Tailscale's container
// as a sidecar (home server). No Docker engine or tailnet here: the files are checked against
// each other and against the app, and the entrypoint is run for real against stand-ins for
// tailscaled and the tailscale CLI.

const root = new URL('../', import.meta.url).pathname;
const deploy = join(root, 'src/deploy');
const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
const stage = (name: string) => {
  const start = dockerfile.indexOf(` AS ${name}\n`);
  assert.ok(start > 0, `no stage named ${name}`);
  const end = dockerfile.indexOf('\nFROM ', start);
  return dockerfile.slice(dockerfile.lastIndexOf('\nFROM ', start), end === -1 ? undefined : end);
};
const example = (env: Record<string, string> = {}) => parseConfig(readFileSync(join(deploy, 'guestlist.example.yaml'), 'utf8'), { HEADSCALE_SECRET: 'abcdefghijklmnop0123', ...env });

describe('the Fly recipe: one machine running tailscaled and guestlist', () => {
  const fly = parseToml(readFileSync(join(deploy, 'fly.tailscale.toml'), 'utf8'));

  test('the tailscale stage builds on the app, adds tailscaled from the official image, and is not the default', () => {
    const ts = stage('tailscale');
    assert.match(ts, /^\nFROM app AS tailscale/);
    assert.match(ts, /COPY --from=docker\.io\/tailscale\/tailscale:\S+ \/usr\/local\/bin\/tailscaled \/usr\/local\/bin\/tailscale \/usr\/local\/bin\//);
    assert.match(ts, /COPY src\/deploy\/tailscale-entrypoint\.sh (\S+)\n[\s\S]*ENTRYPOINT \["\1"\]/);
    assert.ok(statSync(join(deploy, 'tailscale-entrypoint.sh')).mode & 0o100, 'the entrypoint is executable');
    // guestlist behind Serve: loopback only, which serve_headers requires.
    assert.match(ts, /GUESTLIST_LISTEN=127\.0\.0\.1:8080/);
    // `docker build .` (and fly.toml) still get guestlist alone: the last stage is the plain app.
    assert.match(dockerfile.slice(dockerfile.lastIndexOf('\nFROM ')), /^\nFROM app\n*$/);
  });

  test('fly.tailscale.toml builds that stage, keeps state on the volume, and has no Fly proxy in front', () => {
    assert.equal(fly.build['build-target'], 'tailscale');
    assert.deepEqual(fly.mounts.map((m: { destination: string }) => m.destination), ['/data']);
    assert.equal(fly.http_service, undefined);
    assert.equal(fly.kill_signal, 'SIGTERM');
    assert.equal(fly.vm[0].memory, '256mb');
    const state = /TS_STATE_DIR=(\S+)/.exec(stage('tailscale'))![1]!;
    assert.ok(state.startsWith('/data/'), `tailscaled's state (${state}) must be on the volume`);
  });

  test('the example config fits the stage: https ts.net issuer, serve_headers, loopback, the stage\'s socket', () => {
    const config = example({ GUESTLIST_LISTEN: '127.0.0.1:8080' });
    assert.match(config.issuer, /^https:\/\/[a-z0-9-]+\.[a-z0-9-]+\.ts\.net$/);
    assert.equal(config.tailscale?.serve_headers, true);
    assert.equal(config.tailscale?.socket, /TS_SOCKET=(\S+)/.exec(stage('tailscale'))![1]);
    assert.equal(config.listen.host, '127.0.0.1');
    assert.equal(config.data_dir, '/data');
  });
});

describe('the supervising entrypoint', () => {
  /**
   * Stand-ins on PATH: a tailscaled that opens its socket and runs until killed, a CLI that logs its
   * calls. The tailscaled writes its state the way the real one does (ipn/store's FileStore and
   * the certificate store, through atomicfile.WriteFile: a temporary file in the directory, renamed
   * into place, every path built under --statedir), at start and again at each SIGHUP.
   */
  async function fakes() {
    const dir = await tempDir();
    const calls = join(dir, 'calls.log');
    writeFileSync(join(dir, 'tailscaled'), `#!${process.execPath}
const { createServer } = require('node:net');
const fs = require('node:fs');
const arg = (name) => process.argv.find((a) => a.startsWith(name + '=')).slice(name.length + 1);
const socket = arg('--socket');
const statedir = arg('--statedir');
fs.appendFileSync(${JSON.stringify(calls)}, 'tailscaled ' + process.argv.slice(2).join(' ') + '\\n');
fs.writeFileSync(${JSON.stringify(join(dir, 'tailscaled.pid'))}, String(process.pid));
const write = (path, contents) => {
  const tmp = path + '.tmp' + Math.random().toString(36).slice(2);
  fs.writeFileSync(tmp, contents, { flag: 'wx', mode: 0o600 });
  fs.renameSync(tmp, path);
};
let saves = 0;
const save = () => {
  write(statedir + '/tailscaled.state', JSON.stringify({ save: saves }));
  fs.mkdirSync(statedir + '/certs', { recursive: true, mode: 0o700 });
  write(statedir + '/certs/acme-account.key.pem', 'private ' + saves);
  fs.appendFileSync(${JSON.stringify(calls)}, 'saved ' + saves++ + '\\n');
};
save();
process.on('SIGHUP', save);
createServer().listen(socket);
process.on('SIGTERM', () => process.exit(0));
`);
    writeFileSync(join(dir, 'tailscale'), `#!/bin/sh\necho "tailscale $*" >> ${calls}\n`);
    chmodSync(join(dir, 'tailscaled'), 0o755);
    chmodSync(join(dir, 'tailscale'), 0o755);
    return { dir, calls };
  }

  function run(shell: string[], dir: string, env: Record<string, string>, app: string[]) {
    const proc = spawn(shell[0]!, [...shell.slice(1), join(deploy, 'tailscale-entrypoint.sh'), ...app], {
      env: { PATH: `${dir}:${shell.includes('/usr/bin/busybox') ? `${applets()}:` : ''}${process.env.PATH}`, TS_STATE_DIR: join(dir, 'state'), TS_SOCKET: join(dir, 'run/tailscaled.sock'), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    proc.stdout.on('data', (c) => (output += c));
    proc.stderr.on('data', (c) => (output += c));
    const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
    running.add(proc);
    void exited.then(() => running.delete(proc));
    return { proc, exited, output: () => output };
  }
  // A test that fails half-way still stops what it started (the entrypoint stops its children).
  const running = new Set<ReturnType<typeof spawn>>();
  afterEach(async () => {
    await Promise.all([...running].filter((proc) => proc.exitCode === null && proc.signalCode === null).map((proc) => new Promise((resolve) => {
      proc.on('exit', resolve);
      proc.kill('SIGTERM');
    })));
  });

  const pidOf = async (file: string) => {
    for (let i = 0; i < 100 && !existsSync(file); i++) await new Promise((r) => setTimeout(r, 50));
    return Number(readFileSync(file, 'utf8'));
  };
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  /** The exit code, or, if the entrypoint is still running after a while (it started everything), a stop and 'kept running'. */
  const exitWithin = async (r: ReturnType<typeof run>, ms = 3000): Promise<number | null | 'kept running'> => {
    const timer = new Promise<'kept running'>((res) => setTimeout(() => res('kept running'), ms));
    const first = await Promise.race([r.exited, timer]);
    if (first === 'kept running') {
      r.proc.kill('SIGTERM');
      await r.exited;
    }
    return first;
  };
  /** A directory that guestlist's user could read, with a file in it: where a planted link would send tailscaled. */
  const readable = (path: string) => {
    mkdirSync(path, { mode: 0o755 });
    writeFileSync(join(path, 'mine'), 'x', { mode: 0o644 });
    if (process.getuid?.() === 0) chownSync(path, 1000, 1000);
    return path;
  };
  const modes = (path: string) => readdirSync(path).concat('.').map((n) => {
    const st = lstatSync(join(path, n));
    return [n, st.uid, st.gid, st.mode & 0o7777];
  });
  const canUnshare = process.getuid?.() === 0 && spawnSync('/usr/bin/unshare', ['--mount', 'true']).status === 0;
  /** The "app": records its pid, runs until TERM, and says that it got it. */
  const app = (dir: string) => ['/bin/sh', '-c', `echo $$ > ${dir}/app.pid; trap 'echo app stopped; exit 0' TERM; while :; do sleep 0.1; done`];

  // In the image find, stat, id, mkdir and the rest are BusyBox applets too: under BusyBox ash the
  // entrypoint finds those first on PATH.
  let appletDir: string | undefined;
  const applets = () => {
    if (!appletDir) {
      appletDir = mkdtempSync(join(tmpdir(), 'guestlist-busybox-'));
      assert.equal(spawnSync('/usr/bin/busybox', ['--install', '-s', appletDir]).status, 0);
    }
    return appletDir;
  };

  // The image runs it with Alpine's /bin/sh (BusyBox ash); Debian's is dash.
  const shells: [string, string[], string | false][] = [
    ['/bin/sh', ['/bin/sh'], false],
    ['busybox ash', ['/usr/bin/busybox', 'sh'], existsSync('/usr/bin/busybox') || process.env.CI ? false : 'no busybox (apt-get install busybox)'],
  ];
  for (const [name, shell, skip] of shells) {
    describe(name, { skip }, () => {
    test(`${name}: joins with the auth key, serves guestlist through Serve and Funnel, then runs it`, async () => {
      const { dir, calls } = await fakes();
      const r = run(shell, dir, { TS_AUTHKEY: 'tskey-auth-test', TS_HOSTNAME: 'auth', PORT: '8080' }, app(dir));
      const appPid = await pidOf(join(dir, 'app.pid'));
      const log = readFileSync(calls, 'utf8');
      // The state directory, handed over open: see the tests below for why.
      assert.match(log, /^tailscaled --tun=userspace-networking --statedir=\/proc\/self\/fd\/3 --socket=\S+\/run\/tailscaled\.sock$/m);
      assert.deepEqual(JSON.parse(readFileSync(join(dir, 'state', 'tailscaled.state'), 'utf8')), { save: 0 });
      assert.equal(statSync(join(dir, 'state')).mode & 0o777, 0o700);
      assert.ok(!existsSync(`/proc/${appPid}/fd/3`), 'guestlist does not get the state directory\'s descriptor');
      assert.match(log, /^tailscale --socket=\S+ up --authkey=tskey-auth-test --hostname=auth$/m);
      assert.match(log, /^tailscale --socket=\S+ funnel --bg 8080$/m);
      assert.ok(alive(appPid));
      // A stop from Fly: guestlist is asked to finish, then tailscaled goes, and the exit is clean.
      r.proc.kill('SIGTERM');
      assert.equal(await r.exited, 0, r.output());
      assert.match(r.output(), /app stopped/);
    });

    test(`${name}: when tailscaled dies, guestlist is stopped and the machine restarts (non-zero exit)`, async () => {
      const { dir } = await fakes();
      const r = run(shell, dir, { TS_AUTHKEY: 'tskey-auth-test' }, app(dir));
      const appPid = await pidOf(join(dir, 'app.pid'));
      process.kill(await pidOf(join(dir, 'tailscaled.pid')), 'SIGKILL');
      assert.equal(await r.exited, 1);
      assert.match(r.output(), /tailscaled exited; stopping guestlist/);
      assert.ok(!alive(appPid), 'no orphaned guestlist');
    });

    test(`${name}: when guestlist dies, tailscaled is stopped and the machine restarts`, async () => {
      const { dir } = await fakes();
      const r = run(shell, dir, { TS_AUTHKEY: 'tskey-auth-test' }, ['/bin/sh', '-c', 'sleep 0.3; exit 3']);
      assert.equal(await r.exited, 1);
      assert.match(r.output(), /guestlist exited; stopping tailscaled/);
    });

    // guestlist's user owns /data, the volume tailscaled's state is on: between two boots it can put
    // a link, or a directory of its own, where tailscaled's state directory is.
    test(`${name}: a link planted at the state directory stops the start, and what it points at is untouched`, async () => {
      const { dir, calls } = await fakes();
      const elsewhere = readable(join(dir, 'elsewhere'));
      const before = modes(elsewhere);
      symlinkSync(elsewhere, join(dir, 'state'));
      const r = run(shell, dir, { TS_AUTHKEY: 'tskey-auth-test' }, app(dir));
      const code = await exitWithin(r);
      assert.deepEqual(modes(elsewhere), before);
      assert.equal(code, 1, r.output());
      assert.match(r.output(), new RegExp(`^tailscale-entrypoint: refusing to start: ${join(dir, 'state')} is a symbolic link \\(to ${elsewhere}\\), and tailscaled's state directory`, 'm'));
      assert.ok(!existsSync(calls), 'tailscaled was not started');
    });

    test(`${name}: a link on the way to the state directory stops the start too`, async () => {
      const { dir, calls } = await fakes();
      const elsewhere = readable(join(dir, 'elsewhere'));
      const before = modes(elsewhere);
      symlinkSync(elsewhere, join(dir, 'volume'));
      const r = run(shell, dir, { TS_AUTHKEY: 'tskey-auth-test', TS_STATE_DIR: join(dir, 'volume', 'tailscale') }, app(dir));
      const code = await exitWithin(r);
      assert.deepEqual(modes(elsewhere), before);
      assert.equal(code, 1, r.output());
      assert.match(r.output(), new RegExp(`refusing to start: ${join(dir, 'volume')} is a symbolic link`));
      assert.ok(!existsSync(calls));
    });

    test(`${name}: a state directory holding what tailscaled did not put there (a link, another user's directory) stops the start`, async () => {
      const { dir, calls } = await fakes();
      const elsewhere = readable(join(dir, 'elsewhere'));
      const before = modes(elsewhere);
      mkdirSync(join(dir, 'state'), { mode: 0o700 });
      symlinkSync(elsewhere, join(dir, 'state', 'certs')); // where the TLS and ACME keys would go
      const r = run(shell, dir, { TS_AUTHKEY: 'tskey-auth-test' }, app(dir));
      const code = await exitWithin(r);
      assert.deepEqual(modes(elsewhere), before);
      assert.equal(code, 1, r.output());
      assert.match(r.output(), new RegExp(`refusing to start: ${join(dir, 'state', 'certs')}, in tailscaled's state directory, is a symbolic link or belongs to another user`));
      assert.ok(!existsSync(calls));
      if (process.getuid?.() !== 0) return;
      // A directory the unprivileged user made in place of the real one.
      const { dir: dir2, calls: calls2 } = await fakes();
      mkdirSync(join(dir2, 'state'), { mode: 0o755 });
      chownSync(join(dir2, 'state'), 1000, 1000);
      const r2 = run(shell, dir2, { TS_AUTHKEY: 'tskey-auth-test' }, app(dir2));
      assert.equal(await exitWithin(r2), 1, r2.output());
      assert.match(r2.output(), new RegExp(`refusing to start: tailscaled's state directory ${join(dir2, 'state')} belongs to uid 1000, not 0, so another user made it`));
      assert.deepEqual([statSync(join(dir2, 'state')).uid, statSync(join(dir2, 'state')).mode & 0o777], [1000, 0o755]);
      assert.ok(!existsSync(calls2));
    });

    test(`${name}: a link put in the state directory's place while tailscaled runs does not redirect its writes`, async () => {
      const { dir, calls } = await fakes();
      const r = run(shell, dir, { TS_AUTHKEY: 'tskey-auth-test' }, app(dir));
      await pidOf(join(dir, 'app.pid'));
      // What guestlist's user can do to /data while both run: move the directory, put a link there.
      renameSync(join(dir, 'state'), join(dir, 'state.moved'));
      const elsewhere = readable(join(dir, 'elsewhere'));
      symlinkSync(elsewhere, join(dir, 'state'));
      process.kill(await pidOf(join(dir, 'tailscaled.pid')), 'SIGHUP'); // the next state write
      for (let i = 0; i < 100 && !readFileSync(calls, 'utf8').includes('saved 1'); i++) await new Promise((res) => setTimeout(res, 50));
      assert.deepEqual(readdirSync(elsewhere), ['mine']);
      assert.deepEqual(JSON.parse(readFileSync(join(dir, 'state.moved', 'tailscaled.state'), 'utf8')), { save: 1 });
      assert.equal(readFileSync(join(dir, 'state.moved', 'certs', 'acme-account.key.pem'), 'utf8'), 'private 1');
      r.proc.kill('SIGTERM');
      assert.equal(await r.exited, 0, r.output());
    });

    test(`${name}: without /proc it refuses rather than hand tailscaled the directory by name`, { skip: canUnshare ? false : 'needs unshare --mount (root)' }, async () => {
      const { dir, calls } = await fakes();
      const r = run(['/usr/bin/unshare', '--mount', '--propagation', 'private', '/bin/sh', '-c', '/usr/bin/mount -t tmpfs none /proc && exec "$@"', 'sh', ...shell], dir, { TS_AUTHKEY: 'tskey-auth-test' }, app(dir));
      assert.equal(await exitWithin(r), 1, r.output());
      assert.match(r.output(), /refusing to start: \/proc\/self\/fd is not available/);
      assert.ok(!existsSync(calls));
    });

    test(`${name}: without TS_AUTHKEY it says what to set, and starts nothing`, async () => {
      const { dir, calls } = await fakes();
      const r = run(shell, dir, {}, app(dir));
      assert.notEqual(await r.exited, 0);
      assert.match(r.output(), /TS_AUTHKEY is not set: .*fly secrets set TS_AUTHKEY=/);
      assert.ok(!existsSync(calls));
    });

    });
  }
});

describe('the home-server recipe: docker compose with the Tailscale container', () => {
  const compose = parse(readFileSync(join(deploy, 'compose.yaml'), 'utf8')) as {
    services: Record<string, { image?: string; build?: string; environment?: Record<string, string>; volumes?: string[]; network_mode?: string }>;
  };
  const { tailscale, guestlist } = compose.services;

  test('guestlist shares the Tailscale container\'s network and its LocalAPI socket', () => {
    assert.match(tailscale!.image!, /^tailscale\/tailscale:/);
    assert.equal(tailscale!.environment!.TS_USERSPACE, 'true');
    assert.equal(guestlist!.network_mode, 'service:tailscale');
    assert.equal(guestlist!.build, '../..');
    const socketDir = tailscale!.environment!.TS_SOCKET!.replace(/\/[^/]+$/, '');
    const volumeAt = (service: typeof tailscale, path: string) => service!.volumes!.find((v) => v.split(':')[1] === path)?.split(':')[0];
    assert.ok(volumeAt(tailscale, socketDir));
    assert.equal(volumeAt(guestlist, socketDir), volumeAt(tailscale, socketDir));
    assert.ok(volumeAt(guestlist, '/data'), 'keys on a volume');
    assert.ok(volumeAt(tailscale, tailscale!.environment!.TS_STATE_DIR!), 'the node\'s identity on a volume');
  });

  test('Serve proxies HTTPS to where guestlist listens, and guestlist trusts only that', () => {
    const serve = JSON.parse(readFileSync(join(deploy, 'tailscale-serve.json'), 'utf8')) as { Web: Record<string, { Handlers: Record<string, { Proxy: string }> }> };
    const proxy = new URL(serve.Web['${TS_CERT_DOMAIN}:443']!.Handlers['/']!.Proxy);
    const config = example();
    assert.equal(proxy.hostname, config.listen.host);
    assert.equal(Number(proxy.port), config.listen.port);
    assert.equal(config.tailscale?.socket, compose.services.tailscale!.environment!.TS_SOCKET);
    const mounted = guestlist!.volumes!.find((v) => v.includes(guestlist!.environment!.GUESTLIST_CONFIG!));
    assert.equal(mounted?.split(':')[0], './guestlist.yaml');
  });
});
