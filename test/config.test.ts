import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError } from '../src/config/config.ts';
import { loadConfigFile, parseConfig } from '../src/config/load.ts';
import { tempDir } from './helpers.ts';

const VALID = `
issuer: https://auth.example.com
listen: 127.0.0.1:8080
data_dir: ./data
clients:
  - client_id: headscale
    client_secret: \${HEADSCALE_SECRET}
    redirect_uris: [https://headscale.example.com/oidc/callback]
groups:
  admins: [alice@example.com]
tailscale:
  socket: /var/run/tailscale/tailscaled.sock
`;

function problems(yaml: string, env: Record<string, string> = {}): string[] {
  try {
    parseConfig(yaml, env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  assert.fail('expected the config to be refused');
}

describe('config', () => {
  test('the documented example loads, with ${VAR} taken from the environment', () => {
    const config = parseConfig(VALID, { HEADSCALE_SECRET: 'abcdefghijklmnop0123' });
    assert.equal(config.issuer, 'https://auth.example.com');
    assert.deepEqual(config.listen, { host: '127.0.0.1', port: 8080 });
    assert.equal(config.clients[0]!.client_secret, 'abcdefghijklmnop0123');
    assert.equal(config.clients[0]!.require_pkce, false);
    assert.deepEqual(config.groups, { admins: ['alice@example.com'] });
    assert.equal(config.tailscale!.allow_tagged, false);
    assert.equal(config.demo, false);
  });

  test('PORT overrides the port of listen', () => {
    const config = parseConfig(VALID, { HEADSCALE_SECRET: 'abcdefghijklmnop0123', PORT: '9999' });
    assert.deepEqual(config.listen, { host: '127.0.0.1', port: 9999 });
  });

  test('a missing environment variable names the key it was for', () => {
    assert.deepEqual(problems(VALID), ['clients[0].client_secret: environment variable HEADSCALE_SECRET is not set']);
  });

  test('every problem is reported at once, each with its key path', () => {
    const found = problems(`
issuer: https://auth.example.com/
listen: localhost
clients:
  - client_id: headscale
    client_secret: "p@ss word"
    redirect_uris: [http://headscale.example.com/cb#frag]
    require_pkce: "yes"
    allowed_groups: [nobody]
tailscale:
  sockett: /tmp/x
`);
    const expected = [
      /^issuer: .*must not end with "\/".*use "https:\/\/auth\.example\.com"/,
      /^listen: "localhost" is not "host:port"/,
      /^clients\[0\]\.client_secret: may only use letters/,
      /^clients\[0\]\.redirect_uris: .* must not contain a fragment/,
      /^clients\[0\]\.require_pkce: must be true or false/,
      /^clients\[0\]\.allowed_groups: group "nobody" is not defined/,
      /^tailscale\.sockett: unknown key \(did you mean "socket"\?\)/,
    ];
    for (const re of expected) assert.ok(found.some((p) => re.test(p)), `no problem matching ${re} in:\n${found.join('\n')}`);
  });

  test('plain http is refused for a public issuer but fine on localhost', () => {
    assert.match(problems(VALID.replace('https://auth.example.com', 'http://auth.example.com'), { HEADSCALE_SECRET: 'abcdefghijklmnop0123' })[0]!, /^issuer: .*must use https/);
    assert.ok(parseConfig(VALID.replace('https://auth.example.com', 'http://localhost:8080'), { HEADSCALE_SECRET: 'abcdefghijklmnop0123' }));
  });

  test('duplicate client ids and short secrets are refused', () => {
    const found = problems(`
issuer: https://auth.example.com
tailscale: {}
clients:
  - { client_id: a, client_secret: short, redirect_uris: [https://a.example.com/cb] }
  - { client_id: a, client_secret: 0123456789abcdef0123, redirect_uris: [https://a.example.com/cb] }
`);
    assert.ok(found.some((p) => /^clients\[0\]\.client_secret: is 5 characters/.test(p)), found.join('\n'));
    assert.ok(found.some((p) => /^clients\[1\]\.client_id: "a" is already used/.test(p)), found.join('\n'));
  });

  test('the home page and console keys: clients[].url and icon_url, admin.allowed_groups and tailnet_only', () => {
    const env = { HEADSCALE_SECRET: 'abcdefghijklmnop0123' };
    const config = parseConfig(`${VALID.replace('    redirect_uris: [https://headscale.example.com/oidc/callback]', '    redirect_uris: [https://headscale.example.com/oidc/callback]\n    url: https://headscale.example.com/\n    icon_url: https://cdn.example.com/hs.png')}admin:\n  allowed_groups: [admins]\n`, env);
    assert.equal(config.clients[0]!.url, 'https://headscale.example.com/');
    assert.equal(config.clients[0]!.icon_url, 'https://cdn.example.com/hs.png');
    assert.deepEqual(config.admin, { allowed_groups: ['admins'], tailnet_only: true });
    // Without an admin section nobody may open the console.
    assert.deepEqual(parseConfig(VALID, env).admin, { allowed_groups: [], tailnet_only: true });

    const found = problems(`${VALID.replace('  - client_id: headscale', '  - client_id: guestlist').replace('    redirect_uris: [https://headscale.example.com/oidc/callback]', '    redirect_uris: [https://headscale.example.com/oidc/callback]\n    url: "javascript:alert(1)"\n    icon_url: http://cdn.example.com/hs.png')}admin:\n  allowed_groups: [nobody]\n  tailnet_only: "no"\n  allowed_users: [x]\n`, env);
    const expected = [
      /^clients\[0\]\.client_id: "guestlist" is guestlist's own/,
      /^clients\[0\]\.url: "javascript:alert\(1\)" must be an https:\/\/ URL/,
      /^clients\[0\]\.icon_url: "http:\/\/cdn.example.com\/hs.png" must be an https:\/\/ URL/,
      /^admin\.allowed_groups: group "nobody" is not defined/,
      /^admin\.tailnet_only: must be true or false/,
      /^admin\.allowed_users: unknown key/,
    ];
    for (const re of expected) assert.ok(found.some((p) => re.test(p)), `no problem matching ${re} in:\n${found.join('\n')}`);
    // A group a source vouches for needs no definition: the Plex owner may be the operator.
    assert.deepEqual(parseConfig(`${VALID}plex: {server_id: 0123456789abcdef0123456789abcdef01234567}\nadmin: {allowed_groups: [plex-owner]}\n`, env).admin.allowed_groups, ['plex-owner']);
  });

  test('a config with no identity source says how to add one', () => {
    const found = problems(VALID.replace(/tailscale:\n.*\n/, ''), { HEADSCALE_SECRET: 'abcdefghijklmnop0123' });
    assert.deepEqual(found, ['no identity source is configured: add a "tailscale:" section (an empty "tailscale: {}" uses the defaults), a "plex:" section or a "jellyfin:" section with its url']);
  });

  test('a dangling alias and an alias bomb are YAML errors, not crashes (found by the fuzz test)', () => {
    assert.match(problems('*-')[0]!, /^YAML: /);
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x]', ...Array.from({ length: 8 }, (_, i) => `${'bcdefghi'[i]}: &${'bcdefghi'[i]} [${Array(9).fill(`*${'abcdefgh'[i]}`).join(', ')}]`)].join('\n');
    assert.match(problems(bomb)[0]!, /^YAML: .*(alias|Excessive)/i);
  });

  test('broken YAML and a non-mapping document are reported, not thrown', () => {
    assert.match(problems('issuer: [unclosed')[0]!, /^YAML: /);
    assert.match(problems('- just\n- a list')[0]!, /must be a mapping/);
    assert.match(problems('')[0]!, /config is empty/);
  });
});

test('relative paths in a config file are relative to the file, not to the working directory', async () => {
  const dir = await tempDir();
  const file = join(dir, 'guestlist.yaml');
  await writeFile(file, VALID.replace('/var/run/tailscale/tailscaled.sock', 'run/ts.sock'));
  const config = await loadConfigFile(file, { HEADSCALE_SECRET: 'abcdefghijklmnop0123' });
  assert.equal(config.data_dir, join(dir, 'data'));
  assert.equal(config.tailscale!.socket, join(dir, 'run/ts.sock'));
});

describe('guestlist check', () => {
  const node = process.execPath;
  const main = new URL('../src/main.ts', import.meta.url).pathname;

  test('prints every problem and exits non-zero', async () => {
    const dir = await tempDir();
    const file = join(dir, 'bad.yaml');
    await writeFile(file, 'issuer: https://auth.example.com/\nclients: []\n');
    const run = spawnSync(node, [main, 'check', '--config', file], { encoding: 'utf8', env: { PATH: process.env.PATH } });
    assert.equal(run.status, 1);
    assert.match(run.stderr, /issuer: .*must not end with/);
    assert.match(run.stderr, /clients: must be a non-empty list/);
    assert.doesNotMatch(run.stderr, /at .*\(.*:\d+:\d+\)/); // no stack trace
  });

  test('accepts a valid config', async () => {
    const dir = await tempDir();
    const file = join(dir, 'good.yaml');
    await writeFile(file, VALID);
    const run = spawnSync(node, [main, 'check', '--config', file], { encoding: 'utf8', env: { PATH: process.env.PATH, HEADSCALE_SECRET: 'abcdefghijklmnop0123' } });
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /is valid: issuer https:\/\/auth\.example\.com, 1 client \(headscale\)/);
  });

  test('serve with a bad config exits non-zero before listening', async () => {
    const dir = await tempDir();
    const file = join(dir, 'bad.yaml');
    await writeFile(file, VALID);
    const run = spawnSync(node, [main, 'serve', '--config', file], { encoding: 'utf8', env: { PATH: process.env.PATH }, timeout: 20_000 });
    assert.equal(run.status, 1);
    assert.match(run.stderr, /environment variable HEADSCALE_SECRET is not set/);
    assert.equal(run.stdout, '');
  });

  test('a missing config file is named', async () => {
    const run = spawnSync(node, [main, 'check', '--config', '/nonexistent/guestlist.yaml'], { encoding: 'utf8' });
    assert.equal(run.status, 1);
    assert.match(run.stderr, /\/nonexistent\/guestlist\.yaml.*\n.*no such file/);
  });
});

test('allowed_groups naming a built-in object property (constructor, toString) is still an undefined group', () => {
  const yaml = `
issuer: https://auth.example.com
clients:
  - client_id: app
    client_secret: abcdefghijklmnop0123
    redirect_uris: [https://app.example.com/cb]
    allowed_groups: [constructor, toString]
tailscale: {}
`;
  assert.deepEqual(problems(yaml), [
    'clients[0].allowed_groups: group "constructor" is not defined under groups',
    'clients[0].allowed_groups: group "toString" is not defined under groups',
  ]);
});
