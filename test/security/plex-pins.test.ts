import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Browser, startTestEnv, type TestEnv } from '../helpers.ts';
import { bindPin, createPin, finishPlex, FRIENDS, openPlexPage, redeem } from '../plex-flow.ts';

// Binding a Plex PIN to a login is proof of possession: the page must show the PIN's secret
// code, which only its creator and plex.tv know. PIN ids are sequential, so an id alone proves
// nothing. And the memory of which PINs were bound never forgets one that Plex could still
// approve, however many binds an attacker makes.


/** A browser behind the deployment's proxy, which reports its address in Fly-Client-IP. */
const from = (env: TestEnv, ip: string) => new Browser(env, null, { 'fly-client-ip': ip });

describe('Plex PIN binding is proof of possession', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv({ plex: true, clients: [FRIENDS], client_ip_header: 'Fly-Client-IP' });
  });
  after(() => env.close());

  test('a PIN id alone, or with a wrong code, binds nothing; the victim can still bind it', async () => {
    const victim = await openPlexPage(env, FRIENDS, from(env, '198.51.100.1'));
    const pin = await createPin(env, victim);
    const attacker = await openPlexPage(env, FRIENDS, from(env, '203.0.113.66'));
    assert.equal((await bindPin(attacker, { id: pin.id })).status, 400);
    const guessed = await bindPin(attacker, { id: pin.id, code: 'a'.repeat(pin.code.length) });
    assert.equal(guessed.status, 409);
    assert.match(guessed.body, /does not belong to this sign-in/);
    assert.ok(env.logs.some((l) => l.outcome === 'refused' && String(l.detail).includes('wrong code')));
    // The victim's own bind, approval and finish are untouched by the attempts.
    assert.equal((await bindPin(victim, pin)).status, 204);
    env.plex.approve(pin.code, 'alice');
    const done = await finishPlex(victim);
    assert.ok(done.redirectedTo?.searchParams.get('code'), done.body.slice(0, 200));
    // And the attacker's login has no PIN to finish with.
    assert.equal((await finishPlex(attacker)).redirectedTo, undefined);
  });

  test('binding a PIN id that does not exist yet does not burn it for its future owner', async () => {
    const attacker = await openPlexPage(env, FRIENDS, from(env, '203.0.113.67'));
    const nextId = Math.max(...env.plex.pins.keys()) + 1;
    const early = await bindPin(attacker, { id: nextId, code: 'x'.repeat(25) });
    assert.equal(early.status, 409);
    const victim = await openPlexPage(env, FRIENDS, from(env, '198.51.100.2'));
    const pin = await createPin(env, victim);
    assert.equal(pin.id, nextId);
    assert.equal((await bindPin(victim, pin)).status, 204);
  });

  test('a flood of binds from one network is refused before it can push out anyone\'s binding', async () => {
    const victim = await openPlexPage(env, FRIENDS, from(env, '198.51.100.3'));
    const pin = await createPin(env, victim);
    assert.equal((await bindPin(victim, pin)).status, 204);

    const attacker = await openPlexPage(env, FRIENDS, from(env, '203.0.113.68'));
    const statuses: number[] = [];
    for (let i = 0; i < 25; i++) statuses.push((await bindPin(attacker, await createPin(env, attacker))).status);
    assert.deepEqual(statuses.slice(0, 20), Array(20).fill(204));
    assert.deepEqual(statuses.slice(20), Array(5).fill(429));
    // Even with the victim's code (leaked, say), the victim's PIN is still remembered as bound.
    const again = await bindPin(await openPlexPage(env, FRIENDS, from(env, '192.0.2.99')), pin);
    assert.equal(again.status, 409);
    assert.match(again.body, /already used/);
    env.plex.approve(pin.code, 'alice');
    assert.ok((await finishPlex(victim)).redirectedTo?.searchParams.get('code'));
  });

  test('a double-submitted finish does the work once: one plex.tv check, one login line, one answer', async () => {
    const p = await openPlexPage(env, FRIENDS, from(env, '198.51.100.4'));
    const pin = await createPin(env, p);
    assert.equal((await bindPin(p, pin)).status, 204);
    env.plex.approve(pin.code, 'alice');
    const calls = env.plex.calls.length;
    const logins = env.logs.filter((l) => l.msg === 'login').length;
    // Both sent at once, as a double click on the form's button does.
    const answers = await Promise.all([1, 2].map(() => p.browser.get(new URL(p.finishUrl, env.issuer), {
      'content-type': 'application/x-www-form-urlencoded', origin: env.issuer,
    }, 'POST', '')));
    const serverCalls = env.plex.calls.slice(calls).filter((c) => !c.fromBrowser).map((c) => c.path);
    assert.deepEqual(serverCalls, [`/api/v2/pins/${pin.id}`, '/api/v2/user', '/api/v2/resources']);
    assert.equal(env.logs.filter((l) => l.msg === 'login').length - logins, 1);
    assert.deepEqual(answers.map((a) => a.status), [303, 303]);
    assert.equal(answers[0]!.headers.location, answers[1]!.headers.location);
    // The login then completes through either answer.
    const done = await p.browser.walk(new URL(answers[1]!.headers.location!, env.issuer));
    assert.ok(done.redirectedTo);
    const tokens = await redeem(p, done.redirectedTo);
    assert.equal(tokens.claims()?.sub, 'plex:13692262');
  });

  test('a finish sent again after the login went through leads to the same place, not a new check', async () => {
    const p = await openPlexPage(env, FRIENDS, from(env, '198.51.100.5'));
    const pin = await createPin(env, p);
    await bindPin(p, pin);
    env.plex.approve(pin.code, 'alice');
    const first = await p.browser.get(new URL(p.finishUrl, env.issuer), { 'content-type': 'application/x-www-form-urlencoded', origin: env.issuer }, 'POST', '');
    const calls = env.plex.calls.length;
    const second = await p.browser.get(new URL(p.finishUrl, env.issuer), { 'content-type': 'application/x-www-form-urlencoded', origin: env.issuer }, 'POST', '');
    assert.equal(env.plex.calls.length, calls);
    assert.equal(second.status, 303);
    assert.equal(second.headers.location, first.headers.location);
  });
});
