import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { FakeJellyfin, JELLYFIN_USERS, type JellyfinFault } from '../fakes/jellyfin.ts';
import { BINDS_PER_NETWORK } from '../../src/sources/sign-in-bindings.ts';
import { Browser, startTestEnv, type BrowserResult, type TestEnv, type TestEnvOptions } from '../helpers.ts';
import { finishJellyfin, getCode, MEDIA, openJellyfinPage as openPage, redeem, waitFor, type JellyfinPage, type StepAnswer } from '../jellyfin-flow.ts';

// The Jellyfin sign-in when Jellyfin misbehaves: Quick Connect turned off, the server down, slow,
// too old, answering garbage, forgetting its requests, failing while the sign-in is collected.
// Each must end in a message a person can act on (naming Jellyfin, never a stack or
// "undefined"), a warn `login` line in the log with the cause, and nobody signed in; and the
// server must go on serving: every test ends with an ordinary sign-in through the same server.

const ALICE_SUB = `jellyfin:${JELLYFIN_USERS.alice!.id}`;

// Every Quick Connect request started counts against its network's share (20) for the request's
// ten minutes, even when it fails: each page comes from an address of its own (as the proxy in
// front says, client_ip_header), so that one test's attempts never crowd out the next's.
let lastOctet = 0;
const openJellyfinPage = (env: TestEnv) =>
  openPage(env, MEDIA, new Browser(env, null, { 'Fly-Client-IP': `198.51.100.${++lastOctet}` }));
/**
 * Every environment here: only Jellyfin, networks from Fly-Client-IP, and a short timeout for
 * Jellyfin so that one that never answers costs a test a fraction of a second.
 */
const ENV: TestEnvOptions = { tailscale: null, jellyfinTimeoutMs: 300, clients: [MEDIA], client_ip_header: 'Fly-Client-IP' };

/** Log lines since `mark`. */
const logsSince = (env: TestEnv, mark: number) => env.logs.slice(mark);
const signIns = (env: TestEnv, mark: number) => logsSince(env, mark).filter((l) => l.msg === 'login' && l.outcome === 'signed-in');
const refusals = (env: TestEnv, mark: number) => logsSince(env, mark).filter((l) => l.msg === 'login' && l.outcome === 'refused');

/** A message meant for a person: names Jellyfin, says what to do, and leaks no internals. */
function assertPlain(text: string | undefined, what: RegExp): void {
  assert.ok(text, 'no message at all');
  assert.match(text, /Jellyfin/);
  assert.match(text, what);
  assert.doesNotMatch(text, /undefined|\bnull\b|\[object|\n\s+at |TypeError|SyntaxError|ECONN|UND_ERR|HTTP \d{3}/);
}

/** The one warn line the failure was logged as: source-unavailable, for jellyfin, with the cause. */
function assertLoggedUnavailable(env: TestEnv, mark: number, detail: RegExp): void {
  const lines = refusals(env, mark);
  assert.equal(lines.length, 1, JSON.stringify(lines));
  const [line] = lines;
  assert.equal(line!.level, 'warn');
  assert.equal(line!.reason, 'source-unavailable');
  assert.equal(line!.source, 'jellyfin');
  assert.match(String(line!.detail), detail);
  // The Quick Connect secret never reaches the log, not even in a request line.
  assert.doesNotMatch(String(line!.detail), /[0-9A-F]{64}/i);
}

/** The code step failed with 503: the page's script shows `error` and may try again in 5 s. */
function assertUnavailableAnswer(answer: StepAnswer, what: RegExp): void {
  assert.equal(answer.status, 503, JSON.stringify(answer.body));
  assert.equal(answer.headers['retry-after'], '5');
  assert.equal(answer.body.code, undefined, 'no code handed out');
  assertPlain(answer.body.error, what);
}

/** Where the finish sent the browser: back to the app, with an authorization code. */
function backToApp(done: BrowserResult): URL {
  const to = done.redirectedTo;
  assert.ok(to && to.searchParams.has('code'), `not sent back to the app: HTTP ${done.status}: ${done.body.slice(0, 300)}`);
  return to;
}

/** A finish that must not sign anyone in: no trip back to the app with a code. */
async function assertNotSignedIn(p: JellyfinPage) {
  const done = await finishJellyfin(p);
  assert.equal(done.redirectedTo, undefined, `sent to ${done.redirectedTo?.href}`);
  return done;
}

/** An ordinary Jellyfin sign-in, start to tokens: the server is still serving. */
async function signInWorks(env: TestEnv, jellyfin: FakeJellyfin = env.jellyfin, user = 'alice'): Promise<void> {
  const p = await openJellyfinPage(env);
  const code = await getCode(p);
  assert.equal(code.status, 200, JSON.stringify(code.body));
  jellyfin.authorize(code.body.code!, user);
  assert.equal((await waitFor(p)).body.state, 'authorized');
  const done = await finishJellyfin(p);
  const tokens = await redeem(p, backToApp(done));
  assert.equal(tokens.claims()!.sub, `jellyfin:${JELLYFIN_USERS[user]!.id}`);
}

/** A page whose code Jellyfin has seen authorized by alice; the finish is next. */
async function authorizedPage(env: TestEnv, jellyfin: FakeJellyfin = env.jellyfin): Promise<JellyfinPage & { code: string }> {
  const p = await openJellyfinPage(env);
  const code = await getCode(p);
  assert.equal(code.status, 200, JSON.stringify(code.body));
  jellyfin.authorize(code.body.code!, 'alice');
  assert.equal((await waitFor(p)).body.state, 'authorized');
  return { ...p, code: code.body.code! };
}

describe('Jellyfin failing at the start: no code, a clear answer, nobody signed in', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv({ ...ENV, jellyfin: true });
  });
  after(() => env.close());
  afterEach(async () => {
    env.jellyfin.faults.clear();
    env.jellyfin.quickConnectEnabled = true;
    env.jellyfin.version = '10.11';
    // Whatever went wrong, the next person signs in.
    await signInWorks(env);
  });

  test('Quick Connect turned off in Jellyfin: 503 saying so and who can turn it on; logged as HTTP 401', async () => {
    env.jellyfin.quickConnectEnabled = false;
    const mark = env.logs.length;
    const requests = env.jellyfin.requests.size;
    const p = await openJellyfinPage(env);
    const answer = await getCode(p);
    assertUnavailableAnswer(answer, /Quick Connect/);
    // Not "try again in a minute": it stays off until someone turns it on, and the message says where.
    assert.match(answer.body.error!, /turn on "Enable Quick Connect"/);
    assert.doesNotMatch(answer.body.error!, /try again/i);
    assertLoggedUnavailable(env, mark, /^POST \/QuickConnect\/Initiate: HTTP 401/);
    assert.equal(env.jellyfin.requests.size, requests, 'Jellyfin made no request');
    // The finish has nothing to collect.
    const done = await assertNotSignedIn(p);
    assert.equal(done.status, 400);
    assert.match(done.body, /no longer valid/);
    assert.deepEqual(signIns(env, mark), []);
  });

  test('Quick Connect turned off after the code was shown: the wait says so, 503, and keeps the code', async () => {
    const mark = env.logs.length;
    const p = await openJellyfinPage(env);
    const code = await getCode(p);
    assert.equal(code.status, 200);
    env.jellyfin.quickConnectEnabled = false;
    const answer = await waitFor(p);
    assertUnavailableAnswer(answer, /Quick Connect/);
    assertLoggedUnavailable(env, mark, /^GET \/QuickConnect\/Connect\?secret=…: HTTP 401/);
    // Back on: the same code is still the one to enter (the sign-in kept it).
    env.jellyfin.quickConnectEnabled = true;
    assert.equal((await getCode(p)).body.code, code.body.code);
    env.jellyfin.authorize(code.body.code!, 'alice');
    assert.equal((await waitFor(p)).body.state, 'authorized');
    const done = await finishJellyfin(p);
    assert.equal((await redeem(p, backToApp(done))).claims()!.sub, ALICE_SUB);
  });

  test('presses refused while Quick Connect is off do not use up the network\'s sign-ins for when it is back on', async () => {
    const household = { 'Fly-Client-IP': '203.0.113.77' };
    env.jellyfin.quickConnectEnabled = false;
    const p = await openPage(env, MEDIA, new Browser(env, null, household));
    // Someone presses "Sign in with Jellyfin" again and again while it is off; Jellyfin keeps
    // nothing for any of these (it answers 401 before making a request).
    const requests = env.jellyfin.requests.size;
    for (let i = 0; i < BINDS_PER_NETWORK; i++) assert.equal((await getCode(p)).status, 503);
    assert.equal(env.jellyfin.requests.size, requests);
    // The operator turns it on: someone else in the same household starts a sign-in.
    env.jellyfin.quickConnectEnabled = true;
    const next = await getCode(await openPage(env, MEDIA, new Browser(env, null, household)));
    assert.equal(next.status, 200, JSON.stringify(next.body));
    assert.match(next.body.code!, /^\d{6}$/);
  });

  test('Jellyfin that never answers: 503 within a couple of seconds, logged as a timeout', async () => {
    env.jellyfin.faults.set('/QuickConnect/Initiate', 'hang');
    const mark = env.logs.length;
    const p = await openJellyfinPage(env);
    const started = Date.now();
    const answer = await getCode(p);
    const took = Date.now() - started;
    assert.ok(took < 2000, `the code step took ${took} ms`);
    assertUnavailableAnswer(answer, /try again/i);
    assertLoggedUnavailable(env, mark, /^POST \/QuickConnect\/Initiate: no answer within 300 ms$/);
    await assertNotSignedIn(p);
    assert.deepEqual(signIns(env, mark), []);
  });

  const broken: [JellyfinFault, RegExp][] = [
    ['garbage', /HTTP 200, a body that is not JSON/],
    // A captive portal or a proxy's sign-in page where Jellyfin should be.
    ['html', /HTTP 200, not the JSON Jellyfin sends/],
    ['reset', /^POST \/QuickConnect\/Initiate: (UND_ERR_SOCKET|ECONNRESET|other side closed)$/],
    ['http-500', /HTTP 500/],
  ];
  for (const [fault, detail] of broken) {
    test(`Jellyfin answering ${fault} to Initiate: 503, a plain message, the cause in the log`, async () => {
      env.jellyfin.faults.set('/QuickConnect/Initiate', fault);
      const mark = env.logs.length;
      const p = await openJellyfinPage(env);
      const answer = await getCode(p);
      assertUnavailableAnswer(answer, /could not reach the Jellyfin server.*Try again/);
      assertLoggedUnavailable(env, mark, detail);
      await assertNotSignedIn(p);
      assert.deepEqual(signIns(env, mark), []);
      // Asking again while Jellyfin is still broken starts afresh and fails the same way: the
      // failed attempt left no half-made request behind ("a code is being made" would be a 409).
      assert.equal((await getCode(p)).status, 503);
    });
  }

  test('Jellyfin 10.8 (Initiate is GET only, POST is 405): the message says it needs 10.9 or later', async () => {
    env.jellyfin.version = '10.8';
    const mark = env.logs.length;
    const p = await openJellyfinPage(env);
    const answer = await getCode(p);
    assertUnavailableAnswer(answer, /10\.9 or later/);
    assertLoggedUnavailable(env, mark, /^POST \/QuickConnect\/Initiate: HTTP 405 \(Jellyfin older than 10\.9/);
    await assertNotSignedIn(p);
    assert.deepEqual(signIns(env, mark), []);
  });

  test('Jellyfin 12 (POST only, the legacy GET gone) signs people in as 10.9-10.11 do', async () => {
    env.jellyfin.version = '12';
    await signInWorks(env, env.jellyfin, 'bob');
    assert.ok(env.jellyfin.calls.some((c) => c.method === 'POST' && c.path === '/QuickConnect/Initiate'));
  });
});

describe('a code Jellyfin no longer knows', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv({ ...ENV, jellyfin: true });
  });
  after(() => env.close());
  afterEach(() => signInWorks(env));

  test('a code that expires before anyone enters it: wait says expired, "get a new code" gives another', async () => {
    const mark = env.logs.length;
    const p = await openJellyfinPage(env);
    const first = await getCode(p);
    assert.equal(first.status, 200);
    env.jellyfin.expire(first.body.code!);
    const wait = await waitFor(p);
    assert.equal(wait.status, 200);
    assert.deepEqual(wait.body, { state: 'expired' });
    // Logged, as an expiry (not as Jellyfin being down).
    const lines = refusals(env, mark);
    assert.equal(lines.length, 1, JSON.stringify(lines));
    assert.equal(lines[0]!.reason, 'expired');
    // The old code is dead in Jellyfin too: nobody can authorize it any more.
    assert.throws(() => env.jellyfin.authorize(first.body.code!, 'alice'));
    // A finish now has nothing to collect.
    const done = await assertNotSignedIn(p);
    assert.equal(done.status, 400);
    assert.match(done.body, /no longer valid/);

    // The page's "Get a new code": the same code step, which starts a second request.
    const initiates = () => env.jellyfin.calls.filter((c) => c.path === '/QuickConnect/Initiate').length;
    const before = initiates();
    const second = await getCode(p);
    assert.equal(second.status, 200);
    assert.match(second.body.code!, /^\d{6}$/);
    assert.notEqual(second.body.code, first.body.code);
    assert.equal(initiates(), before + 1);
    // ... and that one works.
    env.jellyfin.authorize(second.body.code!, 'alice');
    assert.equal((await waitFor(p)).body.state, 'authorized');
    const finished = await finishJellyfin(p);
    assert.equal((await redeem(p, backToApp(finished))).claims()!.sub, ALICE_SUB);
  });

  test('a code authorized but gone from Jellyfin by the finish: not signed in, and the page is led to a new code', async () => {
    const mark = env.logs.length;
    const p = await authorizedPage(env);
    // Jellyfin drops the authorized request before the page posts its finish.
    env.jellyfin.expire(p.code);
    const done = await assertNotSignedIn(p);
    // Jellyfin answers 404 for a secret it does not know, the same as for one not yet
    // authorized; guestlist asks which it is, and leads the page to a new code.
    assert.equal(done.status, 400);
    assert.match(done.body, /no longer valid\. Press the button to get a new one/);
    // The sign-in has let the old request go: its wait says so too.
    assert.deepEqual((await waitFor(p)).body, { state: 'expired' });
    const next = await getCode(p);
    assert.equal(next.status, 200);
    assert.notEqual(next.body.code, p.code);
    assert.deepEqual(signIns(env, mark), []);
  });
});

/**
 * A stand-in for the network between guestlist and Jellyfin: an HTTP hop on a port of its own
 * that forwards to `target`. Closing it is Jellyfin down (connection refused); pointing it at a
 * fresh FakeJellyfin is Jellyfin restarted (it forgot every request); `rewrite` edits a JSON
 * answer on its way through.
 */
class Hop {
  target = '';
  rewrite: ((path: string, body: Record<string, unknown>) => Record<string, unknown>) | undefined;
  private server: Server | undefined;
  private port = 0;
  private readonly sockets = new Set<Socket>();

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async open(): Promise<this> {
    const server = createServer((req, res) => this.forward(req, res));
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
    return this;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server = undefined;
  }

  private forward(req: IncomingMessage, res: ServerResponse): void {
    const to = new URL(req.url ?? '/', this.target);
    const up = request(to, { method: req.method, headers: { ...req.headers, host: to.host } }, (answer) => {
      // Hop-by-hop headers stay on their hop; this one frames its own answer.
      const { 'transfer-encoding': _te, connection: _c, 'keep-alive': _ka, ...headers } = answer.headers;
      const rewrite = this.rewrite;
      if (!rewrite || answer.statusCode !== 200 || !String(answer.headers['content-type']).includes('json')) {
        res.writeHead(answer.statusCode ?? 502, headers);
        answer.pipe(res);
        return;
      }
      let text = '';
      answer.setEncoding('utf8');
      answer.on('data', (c: string) => (text += c));
      answer.on('end', () => {
        const body = JSON.stringify(rewrite(to.pathname, JSON.parse(text) as Record<string, unknown>));
        res.writeHead(200, { ...headers, 'content-length': String(Buffer.byteLength(body)) });
        res.end(body);
      });
    });
    up.on('error', () => req.socket.destroy());
    req.pipe(up);
  }
}

describe('Jellyfin down, restarted, or handing over a user it did not describe', () => {
  let env: TestEnv;
  let hop: Hop;
  before(async () => {
    hop = await new Hop().open();
    env = await startTestEnv({ ...ENV, jellyfin: { url: hop.url } });
    hop.target = env.jellyfin.url;
  });
  after(async () => {
    await env.close();
    await hop.close();
  });

  test('Jellyfin down (connection refused): 503 "could not reach", logged with ECONNREFUSED; back up, sign-ins work', async () => {
    await hop.close();
    const mark = env.logs.length;
    try {
      const p = await openJellyfinPage(env);
      const answer = await getCode(p);
      assertUnavailableAnswer(answer, /could not reach the Jellyfin server.*Try again/);
      assertLoggedUnavailable(env, mark, /^POST \/QuickConnect\/Initiate: ECONNREFUSED$/);
      await assertNotSignedIn(p);
      assert.deepEqual(signIns(env, mark), []);
    } finally {
      await hop.open();
    }
    await signInWorks(env);
  });

  test('Jellyfin down between the code and the finish: 503 page; once it is back, the same sign-in finishes', async () => {
    const p = await authorizedPage(env);
    await hop.close();
    const mark = env.logs.length;
    try {
      const done = await assertNotSignedIn(p);
      assert.equal(done.status, 503);
      assertPlain(done.body.match(/id="notice"[^>]*>([^<]*)</)?.[1], /could not reach the Jellyfin server.*Try again/);
      assertLoggedUnavailable(env, mark, /^POST \/Users\/AuthenticateWithQuickConnect: ECONNREFUSED$/);
    } finally {
      await hop.open();
    }
    const done = await finishJellyfin(p);
    assert.equal((await redeem(p, backToApp(done))).claims()!.sub, ALICE_SUB);
  });

  test('Jellyfin restarted (it forgot the request): wait says expired, a new code comes from the new Jellyfin, the finish does not sign in', async () => {
    const fresh = await new FakeJellyfin().start();
    try {
      const mark = env.logs.length;
      const p = await openJellyfinPage(env);
      const first = await getCode(p);
      assert.equal(first.status, 200);
      hop.target = fresh.url;
      // The finish first: Jellyfin answers 404 for a secret it does not know, and says it does
      // not know it at all: not a sign-in, and the page is told to get a new code.
      const early = await assertNotSignedIn(p);
      assert.match(early.body, /no longer valid/);
      const wait = await waitFor(p);
      assert.deepEqual(wait.body, { state: 'expired' });
      const second = await getCode(p);
      assert.equal(second.status, 200);
      assert.equal(fresh.calls.filter((c) => c.path === '/QuickConnect/Initiate').length, 1, 'a second Initiate, at the new Jellyfin');
      assert.ok(fresh.requests.has(second.body.code!));
      // Not yet authorized: still nobody in.
      await assertNotSignedIn(p);
      assert.deepEqual(signIns(env, mark), []);
      // Entered in the new Jellyfin, it signs in.
      fresh.authorize(second.body.code!, 'alice');
      assert.equal((await waitFor(p)).body.state, 'authorized');
      const done = await finishJellyfin(p);
      assert.equal((await redeem(p, backToApp(done))).claims()!.sub, ALICE_SUB);
    } finally {
      hop.target = env.jellyfin.url;
      await fresh.stop();
    }
  });

  const mangled: [string, (user: Record<string, unknown>) => void][] = [
    // Without the policy there is no telling whether the account is disabled.
    ['no Policy', (u) => delete u.Policy],
    ['Policy.IsDisabled missing', (u) => delete (u.Policy as Record<string, unknown>).IsDisabled],
    ['Policy.IsDisabled as the string "false"', (u) => ((u.Policy as Record<string, unknown>).IsDisabled = 'false')],
    ['no Id', (u) => delete u.Id],
    ['an Id that is not a Guid', (u) => (u.Id = '../admin')],
  ];
  for (const [what, mangle] of mangled) {
    test(`an exchange answering a user with ${what} fails closed; answered properly, the same sign-in finishes`, async () => {
      const p = await authorizedPage(env);
      hop.rewrite = (path, body) => {
        if (path === '/Users/AuthenticateWithQuickConnect') mangle(body.User as Record<string, unknown>);
        return body;
      };
      const mark = env.logs.length;
      try {
        const done = await assertNotSignedIn(p);
        assert.equal(done.status, 503);
        assertPlain(done.body.match(/id="notice"[^>]*>([^<]*)</)?.[1], /Try again/);
        assertLoggedUnavailable(env, mark, /a user without a proper Id, Name or Policy\.IsDisabled/);
        assert.deepEqual(signIns(env, mark), []);
      } finally {
        hop.rewrite = undefined;
      }
      const done = await finishJellyfin(p);
      assert.equal((await redeem(p, backToApp(done))).claims()!.sub, ALICE_SUB);
    });
  }
});

describe('Jellyfin failing while the sign-in is collected', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv({ ...ENV, jellyfin: true });
  });
  after(() => env.close());
  afterEach(async () => {
    env.jellyfin.faults.clear();
    await signInWorks(env, env.jellyfin, 'bob');
  });

  const finishFaults: [JellyfinFault, RegExp][] = [
    ['http-500', /^POST \/Users\/AuthenticateWithQuickConnect: HTTP 500$/],
    ['hang', /^POST \/Users\/AuthenticateWithQuickConnect: no answer within 300 ms$/],
    ['garbage', /^POST \/Users\/AuthenticateWithQuickConnect: HTTP 200, a body that is not JSON$/],
    ['html', /^POST \/Users\/AuthenticateWithQuickConnect: HTTP 200, not the JSON Jellyfin sends$/],
    ['reset', /^POST \/Users\/AuthenticateWithQuickConnect: (UND_ERR_SOCKET|ECONNRESET|other side closed)$/],
  ];
  for (const [fault, detail] of finishFaults) {
    test(`AuthenticateWithQuickConnect answering ${fault}: a 503 page, nobody in; cleared, the same sign-in finishes`, async () => {
      const p = await authorizedPage(env);
      env.jellyfin.faults.set('/Users/AuthenticateWithQuickConnect', fault);
      const mark = env.logs.length;
      const started = Date.now();
      const done = await assertNotSignedIn(p);
      assert.ok(Date.now() - started < 2000, `the finish took ${Date.now() - started} ms`);
      assert.equal(done.status, 503);
      // The sign-in page again, with the message where the page shows notices.
      assert.match(done.body, /id="jellyfin-sign-in"/);
      assertPlain(done.body.match(/id="notice"[^>]*>([^<]*)</)?.[1], /could not reach the Jellyfin server.*Try again/);
      assertLoggedUnavailable(env, mark, detail);
      assert.deepEqual(signIns(env, mark), []);

      env.jellyfin.faults.clear();
      // The page still knows the code as authorized: the sign-in was kept for the retry.
      assert.equal((await waitFor(p)).body.state, 'authorized');
      const again = await finishJellyfin(p);
      assert.equal((await redeem(p, backToApp(again))).claims()!.sub, ALICE_SUB);
      assert.equal(signIns(env, mark).length, 1);
    });
  }

  for (const fault of ['http-500', 'hang'] as const) {
    test(`Jellyfin answering ${fault} while the page waits: 503 to the wait; cleared, the wait and the finish carry on`, async () => {
      const p = await openJellyfinPage(env);
      const code = await getCode(p);
      assert.equal(code.status, 200);
      env.jellyfin.faults.set('/QuickConnect/Connect', fault);
      const mark = env.logs.length;
      const answer = await waitFor(p);
      assertUnavailableAnswer(answer, /could not reach the Jellyfin server.*Try again/);
      assertLoggedUnavailable(env, mark, /^GET \/QuickConnect\/Connect\?secret=…: (HTTP 500|no answer within 300 ms)$/);
      env.jellyfin.faults.clear();
      env.jellyfin.authorize(code.body.code!, 'alice');
      assert.equal((await waitFor(p)).body.state, 'authorized');
      const done = await finishJellyfin(p);
      assert.equal((await redeem(p, backToApp(done))).claims()!.sub, ALICE_SUB);
    });
  }
});
