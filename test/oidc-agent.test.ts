import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ALICE } from './fakes/tailscaled.ts';
import type { MemoryStore } from '../src/storage/memory.ts';
import { Browser, startTestEnv, tempDir, type ConfidentialClient, type TestEnv } from './helpers.ts';

// oidc-agent (Debian's oidc-agent-cli), a real CLI that keeps people's tokens and needs refresh
// tokens: oidc-gen registers an account through the code flow on a localhost redirect, then
// oidc-token gets access tokens from the agent, which refreshes them with guestlist.

const OIDC_GEN = '/usr/bin/oidc-gen';
const run = promisify(execFile);

function oidcAgentMissing(): string | false {
  if (existsSync(OIDC_GEN)) return false;
  if (process.env.CI) throw new Error(`${OIDC_GEN} is missing: .ci/run should have installed oidc-agent-cli`);
  return 'no oidc-agent (apt-get install oidc-agent-cli to run this test)';
}

// oidc-agent registers http://localhost:PORT exactly and sends its secret with HTTP Basic.
const AGENT: ConfidentialClient = {
  client_id: 'oidc-agent', client_secret: 'oidc-agent-secret-0123456789', name: 'oidc-agent',
  redirect_uris: ['http://localhost:4242'], post_logout_redirect_uris: [], require_pkce: false, refresh_tokens: true,
};

describe('oidc-agent, a real CLI that needs refresh tokens', { skip: oidcAgentMissing() }, () => {
  let env: TestEnv;
  let home: string;
  let agentEnv: Record<string, string>;
  let agentPid: number | undefined;

  before(async () => {
    env = await startTestEnv({ clients: [AGENT] });
    home = await tempDir('guestlist-oidc-agent-');
    await mkdir(join(home, '.config'), { recursive: true });
    const base = { HOME: home, PATH: process.env.PATH!, XDG_CONFIG_HOME: join(home, '.config') };
    const { stdout } = await run('oidc-agent', ['--json', '--no-autoload', '-a', join(home, 'agent.sock')], { env: base });
    const started = JSON.parse(stdout) as { socket: string; dpid: number };
    agentPid = started.dpid;
    agentEnv = { ...base, OIDC_SOCK: started.socket, OIDC_ENCRYPTION_PW: 'test-password-0123' };
  });
  after(async () => {
    if (agentPid) process.kill(agentPid);
    await env?.close();
  });

  test('oidc-gen signs in (zero-click on the tailnet), and oidc-token gets fresh access tokens by refreshing', async () => {
    const gen = spawn(OIDC_GEN, ['-m', `--iss=${env.issuer}`, `--client-id=${AGENT.client_id}`, `--client-secret=${AGENT.client_secret}`,
      '--redirect-uri=http://localhost:4242', '--scope=openid profile offline_access', '--flow=code', '--no-url-call', '--no-webserver', '--no-scheme',
      '--prompt=none', '--pw-env', '--confirm-default', 'guestlist'], { env: agentEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    gen.stdout.on('data', (c) => (output += c));
    gen.stderr.on('data', (c) => (output += c));
    const exited = new Promise<number | null>((resolve) => gen.on('exit', resolve));

    // oidc-gen prints the authorization URL for a browser to open.
    let url: string | undefined;
    for (let i = 0; i < 100 && !url; i++) {
      url = /(http:\/\/127\.0\.0\.1:\d+\/auth\?\S+)/.exec(output)?.[1];
      if (!url) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(url, `no authorization URL from oidc-gen:\n${output}`);
    const walk = await new Browser(env, ALICE).walk(url);
    assert.equal(walk.redirectedTo?.origin, 'http://localhost:4242', walk.body.slice(0, 300));
    // What its local web server would have received; handed to oidc-gen by hand.
    await run(OIDC_GEN, [`--codeExchange=${walk.redirectedTo!.href}`], { env: agentEnv });
    assert.equal(await exited, 0, output);

    const first = (await run('oidc-token', ['guestlist'], { env: agentEnv })).stdout.trim();
    const me = await fetch(`${env.server.url}/me`, { headers: { authorization: `Bearer ${first}` } });
    assert.equal(me.status, 200);
    assert.equal((await me.json() as { sub: string }).sub, 'tailscale:9007199254740993');
    // A new access token, which the agent can only get with the refresh token.
    const second = (await run('oidc-token', ['--force-new', 'guestlist'], { env: agentEnv })).stdout.trim();
    assert.notEqual(second, first);
    assert.equal((await fetch(`${env.server.url}/me`, { headers: { authorization: `Bearer ${second}` } })).status, 200);
    // Rotated: the first refresh token was spent on the second access token, a new one kept.
    const refreshTokens = (env.server.store as MemoryStore).sizes().RefreshToken;
    assert.equal(refreshTokens?.entries, 2);
  });
});
