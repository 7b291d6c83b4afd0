import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { accountFor, accountIdFor, claimsFor, groupsFor, mayUseClient, preferredUsername, type Account } from '../src/sign-in/accounts.ts';
import type { ClientConfig } from '../src/config/config.ts';
import type { Identity } from '../src/sources/source.ts';

// The account rules on their own, no server: what `sub`, `preferred_username`, `groups` and the
// other claims are made of, and who may use which app. The same rules seen through real sign-ins
// are in security/verified-groups.test.ts.

const ALICE_ID = '9007199254740993'; // 2^53 + 1: a Number would read it as ...992

function person(overrides: Partial<Identity> = {}): Identity {
  return { source: 'tailscale', id: ALICE_ID, login: 'alice@example.com', emailVerified: false, ...overrides };
}

function account(overrides: Partial<Identity> = {}, groups: string[] = []): Account {
  const identity = person(overrides);
  return { accountId: accountIdFor(identity), identity, groups };
}

function client(overrides: Partial<ClientConfig> = {}): ClientConfig {
  return {
    client_id: 'app',
    client_secret: 'abcdefghijklmnop0123',
    redirect_uris: ['https://app.example.com/callback'],
    post_logout_redirect_uris: [],
    name: 'App',
    require_pkce: false,
    ...overrides,
  };
}

/**
 * Headscale's ValidateUsername (hscontrol/util/dns.go), written out independently of
 * preferredUsername: at least two bytes, a letter first, then only letters, digits, "-", "." and
 * "_", and at most one "@".
 */
function headscaleAccepts(name: string): boolean {
  return Buffer.byteLength(name) >= 2
    && /^[A-Za-z]/.test(name)
    && /^[\p{L}\p{Nd}._@-]*$/u.test(name)
    && (name.match(/@/g) ?? []).length <= 1;
}

describe('accountIdFor: the sub', () => {
  test('is the source and the source\'s id, joined by a colon', () => {
    assert.equal(accountIdFor(person({ source: 'plex', id: '13692262' })), 'plex:13692262');
    assert.equal(accountIdFor(person({ source: 'tailscale', id: 'node:nABC123CNTRL' })), 'tailscale:node:nABC123CNTRL');
  });

  test('keeps an id beyond 2^53 exactly, as the string it came as', () => {
    assert.equal(accountIdFor(person({ id: ALICE_ID })), 'tailscale:9007199254740993');
    assert.notEqual(accountIdFor(person({ id: ALICE_ID })), `tailscale:${Number(ALICE_ID)}`);
  });

  test('the same id from two sources gives two different subs', () => {
    assert.notEqual(accountIdFor(person({ source: 'plex', id: '42' })), accountIdFor(person({ source: 'tailscale', id: '42' })));
  });

  test('accountFor carries the sub, the identity and the groups it matches', () => {
    const identity = person({ aliases: ['alice@example.com'] });
    assert.deepEqual(accountFor(identity, { admins: ['alice@example.com'], others: ['bob@github'] }), {
      accountId: 'tailscale:9007199254740993',
      identity,
      groups: ['admins'],
    });
  });
});

describe('preferredUsername: a name Headscale accepts', () => {
  test('a login that already passes is kept as it is, its one "@" included', () => {
    assert.equal(preferredUsername('alice@example.com'), 'alice@example.com');
    assert.equal(preferredUsername('bob@github'), 'bob@github');
    assert.equal(preferredUsername('Carol_B.Smith-2'), 'Carol_B.Smith-2');
  });

  test('accents are stripped (NFKD) rather than replaced', () => {
    assert.equal(preferredUsername('José'), 'Jose');
    assert.equal(preferredUsername('Zoë.Çelik'), 'Zoe.Celik');
    // Decomposed input (e + U+0301) gives the same as precomposed é.
    assert.equal(preferredUsername('Jose\u0301'), 'Jose');
  });

  test('compatibility forms become their plain letters (NFKD)', () => {
    assert.equal(preferredUsername('ﬁona'), 'fiona'); // the "fi" ligature
    assert.equal(preferredUsername('ＡＢＣ'), 'ABC'); // full-width letters
  });

  test('any other character becomes "-"', () => {
    assert.equal(preferredUsername('José García'), 'Jose-Garcia');
    assert.equal(preferredUsername('tag:ci'), 'tag-ci');
    assert.equal(preferredUsername('a+b/c'), 'a-b-c');
    assert.equal(preferredUsername('Straße'), 'Stra-e'); // ß has no decomposition
  });

  test('a second "@" and any after it become "-"; the first is kept', () => {
    assert.equal(preferredUsername('x@y@z'), 'x@y-z');
    assert.equal(preferredUsername('a@b@c@d'), 'a@b-c-d');
    // A full-width "@" is an "@" after NFKD, and counts as one.
    assert.equal(preferredUsername('a＠b@c'), 'a@b-c');
  });

  test('a name that does not start with a letter gets a "u" in front', () => {
    assert.equal(preferredUsername('123abc'), 'u123abc');
    assert.equal(preferredUsername('@github'), 'u@github');
    assert.equal(preferredUsername('.hidden'), 'u.hidden');
    assert.equal(preferredUsername('_x'), 'u_x');
  });

  test('a one-character result is padded to pass the two-character minimum', () => {
    assert.equal(preferredUsername('a'), 'a-user');
    assert.equal(preferredUsername('Z'), 'Z-user');
    assert.equal(preferredUsername(''), 'u-user');
    // Two characters are enough: no padding.
    assert.equal(preferredUsername('ab'), 'ab');
    assert.equal(preferredUsername('7'), 'u7');
  });

  test('non-Latin scripts and emoji become "-" runs behind a "u"', () => {
    assert.equal(preferredUsername('日本語'), 'u---');
    assert.equal(preferredUsername('Дима'), 'u----');
    assert.equal(preferredUsername('😀'), 'u-'); // one code point, not two UTF-16 units
    assert.equal(preferredUsername('alice😀'), 'alice-');
    assert.equal(preferredUsername('👩‍💻'), 'u---'); // woman, zero-width joiner, laptop
    assert.equal(preferredUsername('❤️'), 'u-'); // the variation selector is a mark, and goes
  });

  test('every result passes Headscale\'s rule, and a result is its own preferred username', () => {
    const logins = [
      'alice@example.com', 'bob@github', 'José García', '123abc', 'a', 'x@y@z', '日本語', '', 'tag:ci',
      '😀', '@', '@@', '-', '.', '1', '12', ' ', 'a b', 'Ωmega', 'ǅemal', 'ⅻ', '\u0301', '\u0000x', 'tailscale:node:n1',
    ];
    for (const login of logins) {
      const name = preferredUsername(login);
      assert.ok(headscaleAccepts(name), `${JSON.stringify(login)} -> ${JSON.stringify(name)}`);
      assert.equal(preferredUsername(name), name, JSON.stringify(login));
    }
  });

  test('the independent Headscale check used above refuses what Headscale refuses', () => {
    for (const bad of ['a', '', '1ab', '-ab', 'a@b@c', 'a b', 'a:b', 'a/b']) assert.ok(!headscaleAccepts(bad), bad);
  });
});

describe('groupsFor: which config groups list the person', () => {
  test('the sub matches, case-insensitively', () => {
    assert.deepEqual(groupsFor(person(), { admins: ['tailscale:9007199254740993'] }), ['admins']);
    assert.deepEqual(groupsFor(person({ source: 'plex', id: '13692262' }), { friends: ['PLEX:13692262'] }), ['friends']);
    assert.deepEqual(groupsFor(person(), { admins: ['tailscale:9007199254740992'] }), []);
  });

  test('the email matches only when the source verified it', () => {
    const groups = { admins: ['alice@example.com'] };
    assert.deepEqual(groupsFor(person({ email: 'alice@example.com', emailVerified: true }), groups), ['admins']);
    assert.deepEqual(groupsFor(person({ email: 'alice@example.com', emailVerified: false }), groups), []);
  });

  test('a verified email matches case-insensitively', () => {
    assert.deepEqual(groupsFor(person({ email: 'Alice@Example.COM', emailVerified: true }), { admins: ['alice@EXAMPLE.com'] }), ['admins']);
  });

  test('an alias the source verified matches, case-insensitively', () => {
    assert.deepEqual(groupsFor(person({ login: 'bob@github', aliases: ['bob@github'] }), { devs: ['Bob@GitHub'] }), ['devs']);
    assert.deepEqual(groupsFor(person({ login: 'ci', aliases: ['tag:ci', 'tag:prod'] }), { runners: ['tag:prod'] }), ['runners']);
  });

  test('the login or the display name alone never match', () => {
    const groups = { admins: ['alice@example.com', 'Alice Admin', 'carol'] };
    assert.deepEqual(groupsFor(person({ login: 'alice@example.com', name: 'Alice Admin' }), groups), []);
    assert.deepEqual(groupsFor(person({ source: 'plex', id: '7', login: 'carol', name: 'carol' }), groups), []);
  });

  test('a member must match a whole name, not part of one', () => {
    const identity = person({ email: 'alice@example.com', emailVerified: true, aliases: ['alice@example.com'] });
    assert.deepEqual(groupsFor(identity, { admins: ['alice', 'example.com', 'tailscale:', '9007199254740993'] }), []);
  });

  test('every group that lists the person, in the config\'s order, by any of their names', () => {
    const identity = person({ email: 'alice@example.com', emailVerified: true, aliases: ['alice@github'] });
    const groups = {
      admins: ['tailscale:9007199254740993'],
      nobody: ['bob@github'],
      mail: ['alice@example.com'],
      empty: [],
      github: ['someone', 'alice@github'],
    };
    assert.deepEqual(groupsFor(identity, groups), ['admins', 'mail', 'github']);
  });

  test('the source\'s own groups are kept, after the config\'s, without duplicates', () => {
    const identity = person({ source: 'plex', id: '13692262', login: 'carol', aliases: ['carol'], groups: ['plex', 'plex:abc', 'friends', 'plex'] });
    assert.deepEqual(groupsFor(identity, { friends: ['carol'], admins: ['dave'] }), ['friends', 'plex', 'plex:abc']);
  });

  test('with no groups configured, only the source\'s groups', () => {
    assert.deepEqual(groupsFor(person({ groups: ['plex', 'plex-owner'] }), {}), ['plex', 'plex-owner']);
    assert.deepEqual(groupsFor(person(), {}), []);
  });
});

describe('mayUseClient: who may sign in to which app', () => {
  test('a client with neither sources nor allowed_groups lets anyone in', () => {
    assert.equal(mayUseClient(account(), client()), true);
    assert.equal(mayUseClient(account({ source: 'plex', id: '1' }), client()), true);
  });

  test('a client with sources refuses anyone from another source', () => {
    const plexOnly = client({ sources: ['plex'] });
    assert.equal(mayUseClient(account({ source: 'tailscale' }), plexOnly), false);
    assert.equal(mayUseClient(account({ source: 'plex', id: '1' }), plexOnly), true);
    assert.equal(mayUseClient(account({ source: 'tailscale' }), client({ sources: ['plex', 'tailscale'] })), true);
  });

  test('a client with allowed_groups needs the person in at least one of them', () => {
    const adminsOrOps = client({ allowed_groups: ['admins', 'ops'] });
    assert.equal(mayUseClient(account({}, []), adminsOrOps), false);
    assert.equal(mayUseClient(account({}, ['users']), adminsOrOps), false);
    assert.equal(mayUseClient(account({}, ['users', 'ops']), adminsOrOps), true);
    assert.equal(mayUseClient(account({}, ['admins']), adminsOrOps), true);
  });

  test('an allowed group matches by its exact name', () => {
    assert.equal(mayUseClient(account({}, ['Admins']), client({ allowed_groups: ['admins'] })), false);
  });

  test('with both set, the person needs the right source and an allowed group', () => {
    const c = client({ sources: ['plex'], allowed_groups: ['friends'] });
    assert.equal(mayUseClient(account({ source: 'plex', id: '1' }, ['friends']), c), true);
    assert.equal(mayUseClient(account({ source: 'tailscale' }, ['friends']), c), false);
    assert.equal(mayUseClient(account({ source: 'plex', id: '1' }, ['others']), c), false);
  });
});

describe('claimsFor: what apps receive', () => {
  test('a person with everything: sub, preferred_username, name, verified email, picture, groups', () => {
    const a = account(
      { login: 'José García', name: 'José García', email: 'jose@example.com', emailVerified: true, picture: 'https://example.com/j.png' },
      ['admins', 'plex'],
    );
    assert.deepEqual(claimsFor(a), {
      sub: 'tailscale:9007199254740993',
      preferred_username: 'Jose-Garcia',
      name: 'José García',
      email: 'jose@example.com',
      email_verified: true,
      picture: 'https://example.com/j.png',
      groups: ['admins', 'plex'],
    });
  });

  test('sub is the account id, and preferred_username is made from the login, not the name', () => {
    const a = { ...account({ login: '123abc', name: 'Alice' }), accountId: 'plex:99' };
    const claims = claimsFor(a);
    assert.equal(claims.sub, 'plex:99');
    assert.equal(claims.preferred_username, 'u123abc');
  });

  test('name falls back to the login as it is, not to the preferred username', () => {
    const claims = claimsFor(account({ login: 'bob@github' }));
    assert.equal(claims.name, 'bob@github');
    assert.equal(claimsFor(account({ login: '123abc' })).name, '123abc');
  });

  test('an unverified email gives neither email nor email_verified', () => {
    const claims = claimsFor(account({ email: 'alice@example.com', emailVerified: false }));
    assert.ok(!('email' in claims));
    assert.ok(!('email_verified' in claims));
  });

  test('verified but with no address gives neither claim either', () => {
    const claims = claimsFor(account({ emailVerified: true }));
    assert.ok(!('email' in claims));
    assert.ok(!('email_verified' in claims));
  });

  test('a verified email always comes with email_verified: true', () => {
    const claims = claimsFor(account({ email: 'alice@example.com', emailVerified: true }));
    assert.equal(claims.email, 'alice@example.com');
    assert.equal(claims.email_verified, true);
  });

  test('no picture, no picture claim', () => {
    assert.ok(!('picture' in claimsFor(account())));
  });

  test('groups is always a list, an empty one when there are none', () => {
    const claims = claimsFor(account({}, []));
    assert.deepEqual(claims.groups, []);
    assert.deepEqual(Object.keys(claims).sort(), ['groups', 'name', 'preferred_username', 'sub']);
  });
});
