import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/**
 * Debian's Chromium, as CI installs it (.ci/run). Where it is missing outside CI the browser
 * tests are skipped with a note; in CI a missing browser is a failure, never a silent skip.
 */
export function chromiumMissing(): string | false {
  if (existsSync(CHROMIUM)) return false;
  if (process.env.CI) throw new Error(`${CHROMIUM} is missing: .ci/run should have installed Debian's chromium`);
  return `no ${CHROMIUM} (apt-get install chromium to run the browser tests)`;
}

/** `proxy`: an HTTP proxy for every request, loopback too (Playwright adds `<-loopback>`). */
export function launchChromium(options: { proxy?: string } = {}): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    ...(options.proxy ? { proxy: { server: options.proxy } } : {}),
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
}
