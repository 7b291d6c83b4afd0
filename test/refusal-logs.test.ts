import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ClientConfig } from '../src/config/config.ts';
import { ALICE, BOB_GITHUB, CI_RUNNER_TAGGED } from './fakes/tailscaled.ts';
import { Browser, HEADSCALE, login, startTestEnv, type TestEnv } from './helpers.ts';
import { bindPin, createPin, finishPlex, FRIENDS, openPlexPage } from './plex-flow.ts';

// "Why was this person refused?" has an answer in the log for every refusal and every source
// failure: the reason and its cause (the socket, the HTTP status, the timeout), also when the
// person is offered Plex instead; and a tailnet person turned away is told so on the Plex page.

const BOTH: ClientConfig = { ...HEADSCALE, client_id: 'both', name: 'Family Photos', redirect_uris: ['https://photos.example.test/callback'] };
const BOTH_ADMINS: ClientConfig = { ...BOTH, client_id: 'both-admins', name: 'Grafana', redirect_uris: ['https://grafana.example.test/callback'], allowed_groups: ['admins'] };

describe('every refusal is logged with its reason and cause', () => {
  let env: TestEnv;
  before(async () => {
    // Short upstream timeouts, so that a hung tailscaled or plex.tv is given up on quickly.
    env = await startTestEnv({ plex: true, clients: [BOTH, BOTH_ADMINS, FRIENDS, HEADSCALE], groups: { admins: ['alice@example.com'] }, whoisTimeoutMs: 1000, plexTimeoutMs: 1000 });
  });
  after(() => env.close());
  const refusals = (since: number) => env.logs.slice(since).filter((l) => l.msg === 'login' && l.outcome === 'refused');

  test('a tailnet person not in allowed_groups is logged as refused and told so on the Plex page', async () => {
    const since = env.logs.length;
    const { walk, tokens } = await login(env, { client: BOTH_ADMINS, device: BOB_GITHUB });
    assert.equal(tokens, undefined);
    assert.equal(walk.status, 200);
    assert.match(walk.body, /id="plex-sign-in"/);
    assert.match(walk.body, /signed in as bob@github, but that account is not allowed into Grafana\. You can sign in with Plex instead/);
    const [line] = refusals(since);
    assert.equal(line?.reason, 'not-allowed');
    assert.equal(line?.source, 'tailscale');
    assert.equal(line?.next, 'plex');
    assert.match(String(line?.detail), /tailscale:2915887766550002/);
  });

  test('tailscaled failing before the Plex page is logged with the socket and the cause', async () => {
    for (const [fault, cause] of [['http-500', /HTTP 500/], ['hang', /within 1000 ms/]] as const) {
      env.tailscaled.fault = fault;
      try {
        const since = env.logs.length;
        const { walk } = await login(env, { client: BOTH, device: ALICE });
        assert.equal(walk.status, 200);
        assert.match(walk.body, /Tailscale is not answering[^<]*You can sign in with Plex instead/);
        const [line] = refusals(since);
        assert.equal(line?.level, 'warn');
        assert.equal(line?.reason, 'source-unavailable');
        assert.match(String(line?.detail), cause);
      } finally {
        env.tailscaled.fault = 'none';
      }
    }
    await env.tailscaled.stop();
    try {
      const since = env.logs.length;
      await login(env, { client: HEADSCALE, device: ALICE });
      assert.match(String(refusals(since)[0]?.detail), new RegExp(`${env.tailscaled.socketPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*is tailscaled running`));
    } finally {
      await env.tailscaled.start();
    }
  });

  test('a tagged device is logged as refused, and a stranger going on to Plex is not a refusal', async () => {
    const since = env.logs.length;
    await login(env, { client: HEADSCALE, device: CI_RUNNER_TAGGED });
    assert.equal(refusals(since)[0]?.reason, 'tagged-device');
    const before = env.logs.length;
    const { walk } = await login(env, { client: BOTH, device: null });
    assert.equal(walk.status, 200);
    assert.doesNotMatch(walk.body, /You can sign in with Plex instead/);
    assert.equal(refusals(before).length, 0);
  });

  test('plex.tv failing is logged with the call and its HTTP status or timeout', async () => {
    for (const [fault, cause] of [['http-500', /\/api\/v2\/user: HTTP 500/], ['hang', /\/api\/v2\/user: no answer within 1000 ms/]] as const) {
      const p = await openPlexPage(env, FRIENDS, new Browser(env, null));
      const pin = await createPin(env, p);
      assert.equal((await bindPin(p, pin)).status, 204);
      env.plex.approve(pin.code, 'alice');
      env.plex.faults.set('/api/v2/user', fault);
      try {
        const since = env.logs.length;
        const done = await finishPlex(p);
        assert.equal(done.status, 503);
        const [line] = refusals(since);
        assert.equal(line?.reason, 'source-unavailable');
        assert.equal(line?.source, 'plex');
        assert.match(String(line?.detail), cause);
      } finally {
        env.plex.faults.clear();
      }
    }
  });
});
