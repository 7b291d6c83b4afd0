import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError } from '../src/config/config.ts';
import { loadConfigFile, parseConfig } from '../src/config/load.ts';
import { Browser, startTestEnv, tempDir, type TestEnv } from './helpers.ts';

describe('branding', () => {
  let env: TestEnv;
  let cssFile: string;
  before(async () => {
    cssFile = join(await tempDir(), 'custom.css');
    await writeFile(cssFile, '.card { border-radius: 0; }\n');
    env = await startTestEnv({
      plex: true,
      branding: { title: 'Family <Media>', accent_color: '#e5a00d', logo_url: 'https://example.com/logo.png', background_image: 'https://example.com/bg.jpg', stylesheet: cssFile },
    });
  });
  after(() => env.close());

  test('pages carry the site name (escaped), the logo and both stylesheets', async () => {
    const page = await new Browser(env).get(new URL(`${env.issuer}/`));
    assert.match(page.body, /<title>guestlist · Family &#60;Media&#62;<\/title>/);
    assert.match(page.body, /<img class="logo" src="https:\/\/example.com\/logo.png" alt="">/);
    assert.match(page.body, /href="\/branding.css"/);
    assert.match(page.body, /href="\/custom.css"/);
  });

  test('/branding.css sets the accent and background; /custom.css is the owner\'s file', async () => {
    const branding = await (await fetch(`${env.issuer}/branding.css`)).text();
    assert.match(branding, /--accent: #e5a00d; --accent-text: #111111;/);
    assert.match(branding, /url\("https:\/\/example.com\/bg.jpg"\)/);
    const custom = await fetch(`${env.issuer}/custom.css`);
    assert.match(String(custom.headers.get('content-type')), /text\/css/);
    assert.equal(await custom.text(), '.card { border-radius: 0; }\n');
  });

  test('branding values that could break out of CSS are refused by the config', () => {
    const base = `issuer: https://a.example.com\ntailscale: {}\nclients: [{client_id: a, client_secret: 0123456789abcdef0123, redirect_uris: ["https://a.example.com/cb"]}]\n`;
    const problems = (yaml: string) => {
      try {
        parseConfig(base + yaml, {});
        return [];
      } catch (err) {
        return (err as ConfigError).problems;
      }
    };
    assert.match(problems('branding: {accent_color: "red; } body { display: none"}')[0]!, /^branding.accent_color: .* must be a hex colour/);
    assert.match(problems('branding: {background_image: "https://x.example/a.jpg\\") ; }"}')[0]!, /^branding.background_image: .* must be an https:\/\/ URL/);
    assert.match(problems('branding: {logo_url: "javascript:alert(1)"}')[0]!, /^branding.logo_url: /);
  });

  test('a missing stylesheet file is named at load time', async () => {
    const dir = await tempDir();
    const file = join(dir, 'guestlist.yaml');
    await writeFile(file, `issuer: https://a.example.com\ntailscale: {}\nbranding: {stylesheet: nope.css}\nclients: [{client_id: a, client_secret: 0123456789abcdef0123, redirect_uris: ["https://a.example.com/cb"]}]\n`);
    await assert.rejects(loadConfigFile(file, {}), (err: ConfigError) => /^branding.stylesheet: cannot read .*nope.css: ENOENT/.test(err.problems[0]!));
  });
});
