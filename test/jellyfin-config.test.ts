import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../src/config/config.ts';
import { parseConfig } from '../src/config/load.ts';
import { JELLYFIN_USERS } from './fakes/jellyfin.ts';
import { cli, configYaml, freePort, serveOnce, startTestEnv, type BrowserResult } from './helpers.ts';
import { finishJellyfin, getCode, MEDIA, openJellyfinPage, redeem, waitFor } from './jellyfin-flow.ts';

// The `jellyfin:` section of the config (src/sources/jellyfin/config.ts) as an operator meets it:
// what loads and how it is normalised, every mistake named by its key, the warning `check` and the
// start give for plain http to a public address, and Jellyfin alongside the other sources.

const SECRET = '0123456789abcdef0123';
const PLEX_SERVER_ID = 'f76e7b49cd981f44e37f3128b6e9fca2db32bca1';
const CLIENT = `clients: [{client_id: media, client_secret: ${SECRET}, redirect_uris: ["https://media.example.com/cb"]}]\n`;
const BASE = `issuer: https://auth.example.com\n${CLIENT}`;

const load = (extra: string) => parseConfig(`${BASE}${extra}`, {});

function problems(extra: string, base = BASE): string[] {
  try {
    parseConfig(`${base}${extra}`, {});
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  assert.fail('expected the config to be refused');
}

/** Exactly one problem, matching `re`: the mistake is named, and nothing else is blamed. */
function onlyProblem(extra: string, re: RegExp): void {
  const found = problems(extra);
  assert.equal(found.length, 1, found.join('\n'));
  assert.match(found[0]!, re);
}

/** Where the finish sent the browser: back to the app, with an authorization code. */
function backToApp(done: BrowserResult): URL {
  const to = done.redirectedTo;
  assert.ok(to && to.searchParams.has('code'), `not sent back to the app: HTTP ${done.status}: ${done.body.slice(0, 300)}`);
  return to;
}

/** A whole config for the CLI, with its own data_dir (and a port to serve on, if given). */
const yamlFor = async (sources: string, port?: number) => (await configYaml(sources, port, CLIENT)).text;

const check = async (sources: string) => cli(['check'], { GUESTLIST_CONFIG_YAML: await yamlFor(sources) });

/** `serve` started and stopped again; its logs. */
const serve = async (sources: string) => serveOnce(await yamlFor(sources, await freePort()));

describe('the jellyfin section', () => {
  test('a valid section loads: url with its trailing slash trimmed, server_name, allowed_users', () => {
    const config = load(`jellyfin: {url: "https://jellyfin.example.com/", server_name: Family Media, allowed_users: [${JELLYFIN_USERS.alice!.id}]}\n`);
    assert.deepEqual(config.jellyfin, { url: 'https://jellyfin.example.com', server_name: 'Family Media', allowed_users: [JELLYFIN_USERS.alice!.id] });
  });

  test('a base path (Jellyfin\'s "Base URL" setting) is kept, without its trailing slashes; a port too', () => {
    assert.equal(load('jellyfin: {url: "https://example.com/jellyfin"}\n').jellyfin!.url, 'https://example.com/jellyfin');
    assert.equal(load('jellyfin: {url: "https://example.com/jellyfin//"}\n').jellyfin!.url, 'https://example.com/jellyfin');
    assert.equal(load('jellyfin: {url: "http://192.168.1.10:8096/"}\n').jellyfin!.url, 'http://192.168.1.10:8096');
    // Scheme and host as URLs normalise them; the default port goes.
    assert.equal(load('jellyfin: {url: "HTTPS://Jellyfin.Example.COM:443/"}\n').jellyfin!.url, 'https://jellyfin.example.com');
  });

  test('the url may come from the environment', () => {
    const config = parseConfig(`${BASE}jellyfin: {url: "\${JELLYFIN_URL}"}\n`, { JELLYFIN_URL: 'http://jellyfin:8096' });
    assert.equal(config.jellyfin!.url, 'http://jellyfin:8096');
  });

  test('no url: named, with an example of what to put there', () => {
    onlyProblem('jellyfin: {server_name: Home}\n', /^jellyfin\.url: missing; set it to .*e\.g\. https:\/\/jellyfin\.example\.com/);
    onlyProblem('jellyfin: {}\n', /^jellyfin\.url: missing/);
    // An empty section (YAML null) is a section without its url, not "no identity source".
    onlyProblem('jellyfin:\n', /^jellyfin: must be a mapping with at least url/);
  });

  const badUrls: [string, string][] = [
    ['a url without a scheme', 'jellyfin.example.com:8096'],
    ['ftp', 'ftp://jellyfin.example.com'],
    ['a websocket', 'wss://jellyfin.example.com'],
    ['credentials', 'https://admin:hunter2@jellyfin.example.com'],
    ['a user alone', 'https://admin@jellyfin.example.com'],
    ['a query', 'https://jellyfin.example.com/?api_key=0123'],
    ['a fragment (a page of Jellyfin\'s web app, pasted)', 'https://jellyfin.example.com/web/#/home.html'],
    ['not a URL at all', 'https://'],
  ];
  for (const [what, url] of badUrls) {
    test(`a url with ${what} is refused, naming jellyfin.url`, () => {
      onlyProblem(`jellyfin: {url: "${url}"}\n`, /^jellyfin\.url: /);
    });
  }

  test('a url that is not a string is refused, naming jellyfin.url', () => {
    onlyProblem('jellyfin: {url: 8096}\n', /^jellyfin\.url: must be a non-empty string/);
    onlyProblem('jellyfin: {url: ""}\n', /^jellyfin\.url: must be a non-empty string/);
  });

  test('an unknown key is named, with the one that was meant', () => {
    onlyProblem('jellyfin: {url: "https://jellyfin.example.com", servername: Home}\n', /^jellyfin\.servername: unknown key \(did you mean "server_name"\?\)/);
    onlyProblem('jellyfin: {url: "https://jellyfin.example.com", allowed_user: []}\n', /^jellyfin\.allowed_user: unknown key \(did you mean "allowed_users"\?\)/);
    // The section's own name misspelt: named at the top level, and there is then no source at all.
    const found = problems('jelyfin: {url: "https://jellyfin.example.com"}\n');
    assert.ok(found.some((p) => /^jelyfin: unknown key \(did you mean "jellyfin"\?\)/.test(p)), found.join('\n'));
  });

  test('allowed_users that are not Jellyfin user ids are named, each', () => {
    const found = problems(`jellyfin: {url: "https://jellyfin.example.com", allowed_users: [alice, ${JELLYFIN_USERS.bob!.id}, ${'a'.repeat(31)}, ${'b'.repeat(33)}]}\n`);
    assert.deepEqual(found.map((p) => /^jellyfin\.allowed_users: "([^"]*)" is not a Jellyfin user id/.exec(p)?.[1]), ['alice', 'a'.repeat(31), 'b'.repeat(33)]);
    onlyProblem('jellyfin: {url: "https://jellyfin.example.com", allowed_users: []}\n', /^jellyfin\.allowed_users: must not be empty/);
    onlyProblem('jellyfin: {url: "https://jellyfin.example.com", allowed_users: [{id: x}]}\n', /^jellyfin\.allowed_users\[0\]: must be a non-empty string/);
  });

  test('a user id as a dashed GUID (any case, braces or not) is the same id: 32 lowercase hex', () => {
    const id = JELLYFIN_USERS.alice!.id;
    const dashed = `${id.slice(0, 8)}-${id.slice(8, 12)}-${id.slice(12, 16)}-${id.slice(16, 20)}-${id.slice(20)}`.toUpperCase();
    const config = load(`jellyfin: {url: "https://jellyfin.example.com", allowed_users: ["${dashed}", "{${dashed.toLowerCase()}}", ${id.toUpperCase()}]}\n`);
    assert.deepEqual(config.jellyfin!.allowed_users, [id, id, id]);
  });

  test('a config with jellyfin alone has an identity source; without any, the message names jellyfin too', () => {
    assert.deepEqual(Object.keys(load('jellyfin: {url: "https://jellyfin.example.com"}\n')).filter((k) => ['tailscale', 'plex', 'jellyfin'].includes(k)), ['jellyfin']);
    const found = problems('');
    assert.equal(found.length, 1, found.join('\n'));
    assert.match(found[0]!, /^no identity source is configured: .* or a "jellyfin:" section with its url$/);
  });
});

describe('clients[].sources with jellyfin', () => {
  const withSources = (sources: string, sections: string) =>
    `issuer: https://auth.example.com\nclients: [{client_id: media, client_secret: ${SECRET}, redirect_uris: ["https://media.example.com/cb"], sources: ${sources}}]\n${sections}`;
  const JELLYFIN = 'jellyfin: {url: "https://jellyfin.example.com"}\n';

  test('[jellyfin] is accepted when the section is there', () => {
    assert.deepEqual(parseConfig(withSources('[jellyfin]', JELLYFIN), {}).clients[0]!.sources, ['jellyfin']);
  });

  test('a typo is refused, naming the key and listing the sources there are', () => {
    const found = problems('', withSources('[jelyfin]', JELLYFIN));
    assert.equal(found.length, 1, found.join('\n'));
    assert.match(found[0]!, /^clients\[0\]\.sources: "jelyfin" is not a source \(use .*\bjellyfin\b.*\)/);
  });

  test('[jellyfin] without a jellyfin section says to add one', () => {
    const found = problems('', withSources('[jellyfin]', 'tailscale: {}\n'));
    assert.deepEqual(found, ['clients[0].sources: "jellyfin" is not configured: add a "jellyfin:" section']);
  });

  test('Plex and Jellyfin together validate, and one app may accept both', () => {
    const config = parseConfig(withSources('[plex, jellyfin]', `plex: {server_id: ${PLEX_SERVER_ID}}\n${JELLYFIN}`), {});
    assert.deepEqual(config.clients[0]!.sources, ['plex', 'jellyfin']);
    assert.ok(config.plex);
    assert.equal(config.jellyfin!.url, 'https://jellyfin.example.com');
  });
});

describe('plain http to Jellyfin', () => {
  // Where the network keeps the traffic private, plain http is how most people reach Jellyfin.
  const quiet = [
    'https://jellyfin.example.com',
    'https://203.0.113.5:8920',
    'http://127.0.0.1:8096',
    'http://localhost:8096',
    'http://[::1]:8096',
    'http://192.168.1.10:8096',
    'http://10.0.0.5',
    'http://172.20.0.3',
    'http://172.16.0.1',
    'http://172.31.255.254',
    'http://100.101.102.103',
    'http://100.64.0.1',
    'http://100.127.255.254',
    'http://jellyfin.tail1234.ts.net',
    'http://jellyfin:8096', // a container's name on the compose network
    'http://jellyfin.local:8096',
    'http://[fd7a:115c:a1e0::1]',
    'http://[fe80::1]:8096',
  ];
  for (const url of quiet) {
    test(`check says nothing about ${url}`, async () => {
      const { code, out, err } = await check(`jellyfin: {url: "${url}"}\n`);
      assert.equal(code, 0, err);
      assert.equal(err, '');
      assert.match(out, /^GUESTLIST_CONFIG_YAML is valid/);
    });
  }

  // Anywhere else the Quick Connect secret would cross the internet in clear; the edges of the
  // private ranges are on this side of the line.
  const loud = [
    'http://203.0.113.5:8096',
    'http://jellyfin.example.com',
    'http://172.32.0.1',
    'http://172.15.255.254',
    'http://100.128.0.1',
    'http://100.63.255.254',
    'http://11.0.0.1',
    'http://192.169.1.10',
    'http://[2001:db8::1]:8096',
    'http://ts.net.example.com',
  ];
  for (const url of loud) {
    test(`check warns about ${url}, naming jellyfin.url, and still exits 0`, async () => {
      const { code, out, err } = await check(`jellyfin: {url: "${url}"}\n`);
      assert.equal(code, 0, err);
      assert.match(out, /^GUESTLIST_CONFIG_YAML is valid/);
      const lines = err.trimEnd().split('\n');
      assert.equal(lines.length, 1, err);
      assert.match(lines[0]!, /^warning: jellyfin\.url: "http:\/\/[^"]+" is plain http to a public address: .* Use https/);
    });
  }

  test('serve logs the same warning at the start, as a warn "config warning", before the ready line', async () => {
    const { logs } = await serve('jellyfin: {url: "http://203.0.113.5:8096"}\n');
    const warnings = logs.filter((l) => l.msg === 'config warning');
    assert.equal(warnings.length, 1, JSON.stringify(logs));
    assert.equal(warnings[0]!.level, 'warn');
    assert.match(String(warnings[0]!.warning), /^jellyfin\.url: "http:\/\/203\.0\.113\.5:8096" is plain http to a public address/);
    assert.ok(logs.indexOf(warnings[0]!) < logs.findIndex((l) => l.msg === 'guestlist ready'));
  });

  test('serve logs no config warning for Jellyfin on the home network', async () => {
    const { logs } = await serve('jellyfin: {url: "http://192.168.1.10:8096"}\n');
    assert.deepEqual(logs.filter((l) => l.msg === 'config warning'), []);
    assert.ok(logs.some((l) => l.msg === 'guestlist ready'));
  });
});

describe('the section at work', () => {
  test('server_name is what the page calls the server, escaped; without it, "the Jellyfin server"', async () => {
    const named = await startTestEnv({ jellyfin: { server_name: 'Casa <Media> & Co' }, tailscale: null, clients: [MEDIA] });
    try {
      const { page } = await openJellyfinPage(named);
      assert.equal(page.status, 200);
      assert.match(page.body, /an account on Casa (&lt;|&#60;)Media(&gt;|&#62;) (&amp;|&#38;) Co\./);
      assert.doesNotMatch(page.body, /<Media>/);
    } finally {
      await named.close();
    }
    const unnamed = await startTestEnv({ jellyfin: { server_name: undefined }, tailscale: null, clients: [MEDIA] });
    try {
      const { page } = await openJellyfinPage(unnamed);
      assert.match(page.body, /an account on the Jellyfin server\./);
    } finally {
      await unnamed.close();
    }
  });

  test('allowed_users written as a dashed GUID lets that user in and nobody else', async () => {
    const bob = JELLYFIN_USERS.bob!.id;
    const dashed = `${bob.slice(0, 8)}-${bob.slice(8, 12)}-${bob.slice(12, 16)}-${bob.slice(16, 20)}-${bob.slice(20)}`.toUpperCase();
    // Through the parser, as an operator would write it, then into a running server.
    const section = load(`jellyfin: {url: "http://127.0.0.1:1", allowed_users: ["${dashed}"]}\n`).jellyfin!;
    const env = await startTestEnv({ jellyfin: { allowed_users: section.allowed_users! }, tailscale: null, clients: [MEDIA] });
    try {
      const signIn = async (user: string) => {
        const p = await openJellyfinPage(env);
        const code = await getCode(p);
        assert.equal(code.status, 200, JSON.stringify(code.body));
        env.jellyfin.authorize(code.body.code!, user);
        assert.equal((await waitFor(p)).body.state, 'authorized');
        return { p, done: await finishJellyfin(p) };
      };
      const alice = await signIn('alice');
      assert.equal(alice.done.redirectedTo?.searchParams.has('code') ?? false, false, 'alice is not on the list');
      assert.equal(alice.done.status, 403);
      assert.match(alice.done.body, /not one of those allowed to sign in here/);
      const ok = await signIn('bob');
      assert.equal((await redeem(ok.p, backToApp(ok.done))).claims()!.sub, `jellyfin:${bob}`);
    } finally {
      await env.close();
    }
  });
});
