import { createHash, randomBytes } from 'node:crypto';
import { Agent, request } from 'node:http';
import { createConnection, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { ALICE, FakeTailscaled } from '../fakes/tailscaled.ts';

// The benchmark's load generator, a process of its own so its work is not the server's: it plays
// tailscaled (the server asks it whois over the unix socket) and the browser plus the relying
// party. `logins N C`: N complete logins at concurrency C; `flood N C`: N authorization requests
// that never go further. Prints one JSON line of results.

const [mode = 'logins', countArg = '100', concurrencyArg = '1'] = process.argv.slice(2);
const count = Number(countArg);
const concurrency = Number(concurrencyArg);
const base = new URL(process.env.BENCH_URL!);
const clientId = process.env.BENCH_CLIENT_ID!;
const clientSecret = process.env.BENCH_CLIENT_SECRET!;
const redirectUri = process.env.BENCH_REDIRECT_URI!;

const tailscaled = await new FakeTailscaled(process.env.BENCH_SOCKET!).start();
const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
// A login's connections are a tailnet device's, as userspace tailscaled would report them. A
// flood's are a stranger's, whom tailscaled does not know: each of its requests leaves a pending
// sign-in (a tailnet device's would be signed in at once, and leave a session and a code).
(agent as unknown as { createConnection: (o: object) => Socket }).createConnection = (opts: object) => {
  const socket = createConnection(opts as unknown as Parameters<typeof createConnection>[0]);
  if (mode !== 'flood') socket.once('connect', () => tailscaled.mapProxiedConnection(socket.localAddress!, socket.localPort!, ALICE));
  return socket;
};

interface Res { status: number; location?: string; cookies: string[]; body: string }

function send(method: string, path: string, headers: Record<string, string>, body?: string): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = request({ host: base.hostname, port: base.port, path, method, agent, headers: { host: base.host, ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({
        status: res.statusCode ?? 0,
        ...(res.headers.location ? { location: res.headers.location } : {}),
        cookies: (res.headers['set-cookie'] ?? []).map((c) => c.split(';')[0]!),
        body: text,
      }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function authorizePath(): { path: string; verifier: string } {
  const verifier = randomBytes(32).toString('base64url');
  const params = new URLSearchParams({
    client_id: clientId, response_type: 'code', scope: 'openid email profile', redirect_uri: redirectUri,
    state: randomBytes(8).toString('hex'), nonce: randomBytes(8).toString('hex'),
    code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256',
  });
  return { path: `/auth?${params}`, verifier };
}

const local = (location: string) => { const u = new URL(location, base); return `${u.pathname}${u.search}`; };
const basic = `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}`;

async function login(): Promise<{ total: number; token: number; hops: number }> {
  const start = performance.now();
  const { path, verifier } = authorizePath();
  const jar: string[] = [];
  const hop = async (p: string) => {
    const r = await send('GET', p, jar.length ? { cookie: jar.join('; ') } : {});
    jar.push(...r.cookies);
    if (r.status !== 303 || !r.location) throw new Error(`GET ${p.split('?')[0]}: HTTP ${r.status} ${r.body.slice(0, 120)}`);
    return r.location;
  };
  // One hop for a zero-click sign-in (/auth answers with the code); follow any more there are.
  // `hops` counts the browser's requests to guestlist before the redirect to the app.
  let toApp = await hop(path);
  let hops = 1;
  for (; !toApp.startsWith(redirectUri); hops++) {
    if (hops > 3) throw new Error(`still not back at the app after ${hops} hops: ${toApp}`);
    toApp = await hop(local(toApp));
  }
  const code = new URL(toApp).searchParams.get('code');
  if (!code) throw new Error(`no code in ${toApp}`);
  const t0 = performance.now();
  const r = await send('POST', '/token', { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
    new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier }).toString());
  const end = performance.now();
  if (r.status !== 200 || !r.body.includes('id_token')) throw new Error(`POST /token: HTTP ${r.status} ${r.body.slice(0, 120)}`);
  return { total: end - start, token: end - t0, hops };
}

async function flood(): Promise<{ total: number; token: number; hops: number }> {
  const start = performance.now();
  const r = await send('GET', authorizePath().path, {});
  if (r.status !== 303) throw new Error(`flood GET /auth: HTTP ${r.status}`);
  return { total: performance.now() - start, token: 0, hops: 1 };
}

const one = mode === 'flood' ? flood : login;
const totals: number[] = [];
const tokens: number[] = [];
const hops: number[] = [];
let errors = 0;
let firstError = '';
let next = 0;
const started = performance.now();
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (next < count) {
    next++;
    try {
      const t = await one();
      totals.push(t.total);
      tokens.push(t.token);
      hops.push(t.hops);
    } catch (err) {
      errors++;
      firstError ||= (err as Error).message;
    }
  }
}));
const seconds = (performance.now() - started) / 1000;
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN;
};
agent.destroy();
await tailscaled.stop();
process.stdout.write(`${JSON.stringify({
  mode, count, concurrency, errors, firstError, seconds,
  rate: totals.length / seconds,
  p50: pct(totals, 50), p99: pct(totals, 99), tokenP50: pct(tokens, 50), tokenP99: pct(tokens, 99),
  hopsMean: hops.reduce((a, b) => a + b, 0) / hops.length, hopsMax: Math.max(...hops),
})}\n`);
