import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { chromiumMissing, launchChromium } from './chromium.ts';
import { freePort, tempDir } from './helpers.ts';

// The newcomer's first command: `npm start` with no config serves the demo on localhost, and its
// page at / runs a real login in a real browser and shows the ID token's claims.

const SCREENSHOTS = new URL('../test-results/', import.meta.url).pathname;

describe('the built-in demo', { skip: chromiumMissing() }, () => {
  let proc: ChildProcess;
  let output = '';
  let base: string;
  let browser: Browser;

  before(async () => {
    const cwd = await tempDir();
    const port = await freePort();
    base = `http://localhost:${port}`;
    proc = spawn(process.execPath, [new URL('../src/main.ts', import.meta.url).pathname], {
      cwd,
      // No tailscaled here: the demo falls back to its sample user.
      env: { PATH: process.env.PATH, PORT: String(port), TAILSCALE_SOCKET: join(cwd, 'no-tailscaled.sock') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    proc.stdout!.on('data', (c) => (output += c));
    proc.stderr!.on('data', (c) => (output += c));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`demo did not start:\n${output}`)), 20_000);
      proc.stdout!.on('data', () => {
        if (output.includes('demo ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
      proc.on('exit', (code) => reject(new Error(`demo exited with ${code}:\n${output}`)));
    });
    browser = await launchChromium();
    await mkdir(SCREENSHOTS, { recursive: true });
  });
  after(async () => {
    await browser?.close();
    if (proc.exitCode === null) proc.kill('SIGKILL');
  });

  test('the startup log names the issuer, the discovery URL and the demo client', () => {
    const ready = output.split('\n').map((l) => { try { return JSON.parse(l); } catch { return {}; } }).find((l) => /demo ready/.test(l.msg));
    assert.equal(ready.issuer, base);
    assert.equal(ready.discovery, `${base}/.well-known/openid-configuration`);
    assert.equal(ready.clients[0].client_id, 'demo');
  });

  test('clicking "Sign in" runs a real login and shows the verified ID token', async () => {
    for (const [name, viewport] of [['desktop', { width: 1280, height: 860 }], ['phone', { width: 390, height: 844 }]] as const) {
      const page = await browser.newPage({ viewport });
      const problems: string[] = [];
      page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
      await page.goto(`${base}/`);
      assert.match(await page.textContent('h1') ?? '', /guestlist demo/);
      await page.screenshot({ path: `${SCREENSHOTS}demo-${name}.png`, fullPage: true });
      await page.click('#sign-in');
      await page.waitForURL(/\/demo\/callback/);
      assert.match(await page.textContent('h1') ?? '', /Signed in as Ada Lovelace/);
      const table = await page.textContent('table.claims') ?? '';
      assert.match(table, /sub\s*"demo:ada"/);
      assert.match(table, /email_verified\s*true/);
      assert.match(table, /groups\s*\["demo"\]/);
      await page.screenshot({ path: `${SCREENSHOTS}demo-result-${name}.png`, fullPage: true });
      assert.deepEqual(problems, [], 'no console errors (a CSP violation would show here)');
      await page.close();
    }
  });

  test('SIGTERM shuts the server down cleanly', async () => {
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    proc.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.match(output, /"msg":"shutting down","signal":"SIGTERM"/);
  });
});
