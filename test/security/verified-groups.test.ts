import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ClientConfig } from '../../src/config/config.ts';
import { PLEX_USERS, SERVER_ID } from '../fakes/plex.ts';
import { ALICE, BOB_GITHUB, CI_RUNNER_TAGGED } from '../fakes/tailscaled.ts';
import { login, startTestEnv, type TestEnv } from '../helpers.ts';
import { FRIENDS, plexClaims, signInWithPlex as plexSignIn } from '../plex-flow.ts';

// Groups come from verified facts only: the verified email, the Tailscale login name, the Plex
// username, an allowed tagged device's tags, and the `sub` itself. Never an unconfirmed email, a
// Plex title, a device's host name or anything else a person can set; and a managed Plex Home
// account never passes for the Home's owner. Every login here goes through real HTTP.

const OWNERS_ONLY: ClientConfig = { ...FRIENDS, client_id: 'owners-only', name: 'Owners App', redirect_uris: ['https://owners.example.test/callback'], allowed_groups: ['owners'] };

const KID_SUB = `plex:${PLEX_USERS.kid!.id}`;

const sorted = (groups: unknown) => [...(groups as string[])].sort();

describe('Plex: groups from verified facts only', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv({
      plex: true,
      clients: [FRIENDS, OWNERS_ONLY],
      groups: {
        family: ['alice@example.com'], // alice's confirmed email; erin typed it in without confirming it
        owners: ['owner@example.com'], // the owner's email, which a managed Home user can carry
        'owner-by-name': ['ownerusername'], // the owner's username, which is the managed user's title
        pals: ['alice'], // alice's username, which is frank's title
        'by-id': ['plex:13692262', KID_SUB.toUpperCase()], // subjects, matched case-insensitively
      },
    });
  });
  after(() => env.close());

  test('a confirmed email, the username and the sub each match; the email is claimed as verified', async () => {
    const claims = await plexClaims(env, 'alice');
    assert.equal(claims.sub, 'plex:13692262');
    assert.equal(claims.email, 'alice@example.com');
    assert.equal(claims.email_verified, true);
    assert.deepEqual(sorted(claims.groups), ['by-id', 'family', 'pals', 'plex', 'plex-friend', `plex:${SERVER_ID}`]);
  });

  test('an unconfirmed email that equals a group member matches nothing and is not claimed', async () => {
    const claims = await plexClaims(env, 'erin');
    assert.equal(claims.sub, `plex:${PLEX_USERS.erin!.id}`);
    assert.equal(claims.preferred_username, 'erin');
    assert.equal(claims.email, undefined);
    assert.equal(claims.email_verified, undefined);
    assert.deepEqual(sorted(claims.groups), ['plex', 'plex-friend', `plex:${SERVER_ID}`]);
  });

  test('a title that equals a group member matches nothing (the username is what counts)', async () => {
    const claims = await plexClaims(env, 'frank');
    assert.equal(claims.preferred_username, 'frank');
    assert.equal(claims.name, 'alice'); // shown, never matched
    assert.deepEqual(sorted(claims.groups), ['plex', 'plex-friend', `plex:${SERVER_ID}`]);
  });

  test('a username shaped like an email is not matched as one', async () => {
    const claims = await plexClaims(env, 'mallory');
    assert.equal(claims.email, undefined);
    assert.deepEqual(sorted(claims.groups), ['plex', 'plex-friend', `plex:${SERVER_ID}`]);
  });

  test('a managed Home user keeps their own sub and gets none of the owner\'s email, name or groups', async () => {
    const claims = await plexClaims(env, 'kid');
    assert.equal(claims.sub, KID_SUB);
    // No username of their own: a stable name made from the id, never the title.
    assert.equal(claims.preferred_username, `plex-${PLEX_USERS.kid!.id}`);
    assert.equal(claims.email, undefined);
    assert.equal(claims.email_verified, undefined);
    const groups = claims.groups as string[];
    assert.ok(!groups.includes('plex-owner'), 'a Home member\'s copy of the owner\'s server does not make them the owner');
    assert.ok(!groups.includes('owners'), 'matched by the owner\'s email');
    assert.ok(!groups.includes('owner-by-name'), 'matched by their title');
    // Still a person with access to the server, in its owner's Home, and listable by the id nobody can change.
    assert.deepEqual(sorted(groups), ['by-id', 'plex', 'plex-home', `plex:${SERVER_ID}`]);
  });

  test('a Home member with a plex.tv login of her own keeps her own email, but is not the owner', async () => {
    const claims = await plexClaims(env, 'hannah');
    assert.equal(claims.sub, `plex:${PLEX_USERS.hannah!.id}`);
    assert.equal(claims.email, 'hannah@example.com');
    assert.ok(!(claims.groups as string[]).includes('plex-owner'));
  });

  test('a managed Home user is refused by an app for the owner\'s groups; the owner is let in', async () => {
    const kid = await plexSignIn(env, 'kid', OWNERS_ONLY);
    assert.equal(kid.done.redirectedTo, undefined);
    assert.equal(kid.done.status, 403);
    assert.match(kid.done.body, /not on the guest list/);
    assert.doesNotMatch(kid.done.body, /ownerusername/);

    const owner = await plexSignIn(env, 'owner', OWNERS_ONLY);
    assert.ok(owner.done.redirectedTo?.searchParams.get('code'), `HTTP ${owner.done.status}: ${owner.done.body.slice(0, 300)}`);
  });

  test('the owner still gets plex-owner and the groups of their verified email and username', async () => {
    const claims = await plexClaims(env, 'owner');
    assert.equal(claims.sub, 'plex:2639453');
    assert.equal(claims.email, 'owner@example.com');
    assert.deepEqual(sorted(claims.groups), ['owner-by-name', 'owners', 'plex', 'plex-owner', `plex:${SERVER_ID}`]);
  });
});

describe('Tailscale: groups from verified facts only', () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestEnv({
      tailscale: { allow_tagged: true },
      groups: {
        admins: ['alice@example.com'], // a login name that is an email
        github: ['BOB@github'], // a login name that is not
        'by-id': [`tailscale:${ALICE.user.id}`, `tailscale:node:${CI_RUNNER_TAGGED.stableId}`],
        ci: ['tag:ci'],
        hosts: [CI_RUNNER_TAGGED.hostname], // a device's name is whatever its owner typed
      },
    });
  });
  after(() => env.close());

  test('the login name and the sub match', async () => {
    const { tokens } = await login(env, { device: ALICE });
    const claims = tokens!.claims()!;
    assert.equal(claims.sub, 'tailscale:9007199254740993');
    assert.deepEqual(sorted(claims.groups), ['admins', 'by-id']);
  });

  test('a login name that is not an email matches, case-insensitively, and gives no email claim', async () => {
    const { tokens } = await login(env, { device: BOB_GITHUB });
    const claims = tokens!.claims()!;
    assert.equal(claims.email, undefined);
    assert.deepEqual(sorted(claims.groups), ['github']);
  });

  test('an allowed tagged device matches by its tags and its sub, never by its host name', async () => {
    const { tokens } = await login(env, { device: CI_RUNNER_TAGGED });
    const claims = tokens!.claims()!;
    assert.equal(claims.sub, `tailscale:node:${CI_RUNNER_TAGGED.stableId}`);
    assert.deepEqual(sorted(claims.groups), ['by-id', 'ci']);
  });
});
