import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { access, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { cli, configYaml, freePort, tempDir } from './helpers.ts';

// The config may come from a file (--config, GUESTLIST_CONFIG) or as the YAML itself
// (GUESTLIST_CONFIG_YAML, a Fly secret): both are loaded, resolved and checked the same way.

const yamlFor = configYaml;

describe('GUESTLIST_CONFIG_YAML gets the checks a config file gets', () => {
  test('check refuses a stylesheet that does not exist, naming branding.stylesheet', async () => {
    const { dir, text } = await yamlFor(`tailscale: {}\nbranding: {stylesheet: ${join('missing', 'custom.css')}}\n`);
    const { code, err } = await cli(['check'], { GUESTLIST_CONFIG_YAML: text });
    assert.equal(code, 1, err);
    assert.match(err, /^GUESTLIST_CONFIG_YAML has 1 problem:\n {2}- branding\.stylesheet: cannot read \S*missing\/custom\.css/);
    // The same YAML in a file is refused the same way.
    const file = join(dir, 'guestlist.yaml');
    await writeFile(file, text);
    const fromFile = await cli(['check', '--config', file], {});
    assert.equal(fromFile.code, 1);
    assert.match(fromFile.err, /branding\.stylesheet: cannot read/);
  });

  test('serve exits 1 with the same message, not a raw ENOENT with a stack', async () => {
    const { text } = await yamlFor(`tailscale: {}\nbranding: {stylesheet: /nonexistent/custom.css}\n`, await freePort());
    const { code, out, err, result } = await cli(['serve'], { GUESTLIST_CONFIG_YAML: text });
    if (typeof result !== 'number') await result.close();
    assert.equal(code, 1);
    assert.match(err, /branding\.stylesheet: cannot read \/nonexistent\/custom\.css/);
    assert.doesNotMatch(err, /no such file or directory, open|\n\s+at /);
    assert.equal(out, '');
  });

  test('relative paths in it are relative to the working directory', async () => {
    const dir = await tempDir();
    const css = join(dir, 'custom.css');
    await writeFile(css, '.card { border-radius: 0; }\n');
    const { text } = await yamlFor(`tailscale: {}\nbranding: {stylesheet: ${relative(process.cwd(), css)}}\n`);
    const { code, out, err } = await cli(['check'], { GUESTLIST_CONFIG_YAML: text });
    assert.equal(code, 0, err);
    assert.match(out, /^GUESTLIST_CONFIG_YAML is valid: issuer http:\/\/127\.0\.0\.1:1, 1 client \(app\)/);
  });

  test('--config wins over GUESTLIST_CONFIG_YAML, which wins over GUESTLIST_CONFIG', async () => {
    const good = await yamlFor('tailscale: {}\n');
    const file = join(good.dir, 'guestlist.yaml');
    await writeFile(file, good.text);
    const broken = 'issuer: nope\n';
    assert.equal((await cli(['check', '--config', file], { GUESTLIST_CONFIG_YAML: broken })).code, 0);
    assert.equal((await cli(['check'], { GUESTLIST_CONFIG_YAML: broken, GUESTLIST_CONFIG: file })).code, 1);
    assert.equal((await cli(['check'], { GUESTLIST_CONFIG: file })).code, 0);
  });

  test('keys init takes its data_dir from GUESTLIST_CONFIG_YAML too', async () => {
    const { dir, text } = await yamlFor('tailscale: {}\n');
    const { code, out, err } = await cli(['keys', 'init'], { GUESTLIST_CONFIG_YAML: text });
    assert.equal(code, 0, err);
    assert.match(out, /^Created /);
    await access(join(dir, 'data', 'signing-keys.json'));
    assert.equal((await cli(['keys', 'rotate'], { GUESTLIST_CONFIG_YAML: text })).code, 0);
    const add = await cli(['client', 'add', 'hs', '--redirect-uri', 'https://hs.example.com/cb'], { GUESTLIST_CONFIG_YAML: text });
    assert.match(add.out, /Auth URL: +http:\/\/127\.0\.0\.1:1\/auth/);
  });
});
