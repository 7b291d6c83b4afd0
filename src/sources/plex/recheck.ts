import { setTimeout as sleep } from 'node:timers/promises';
import type { Vault } from '../../storage/store.ts';
import { DAY_SECONDS, Refusal, type Identity } from '../source.ts';
import type { PlexSource } from './plex.ts';

// Access that follows the share: a Plex sign-in is verified with plex.tv again once it is older
// than plex.recheck_after, at the next authorization that would reuse it (sign-in/sign-in.ts asks,
// by the session rule). It needs the person's Plex token, which is kept for that and nothing
// else: in the store's vault (sealed in a shared store), never in a page, cookie, log or token,
// and only as long as the sign-in may last. The answer is one of:
// - the share is still there: the person as plex.tv says they are now (a tier may have changed);
// - the share is gone, the account disabled or the token revoked: the Refusal plex.tv's answer
//   makes (not-allowed, not-verified), which ends everything they were given;
// - plex.tv not answering: the last good verdict holds for at most plex.grace_when_down after it
//   was given, and then not (source-unavailable: this time only, nothing is ended).
// One plex.tv call per person per recheck_after, however many apps they open at once: one
// re-check at a time per person in this process, and one at a time on all instances (a claim in
// the store), the others waiting for its answer.

interface Kept {
  token: string;
  /** When plex.tv last vouched for the person (ms). */
  verifiedAt: number;
  /** Who it said they were then. */
  identity: Identity;
}

export interface PlexRecheck {
  /** A sign-in plex.tv just vouched for: keep what its re-checks need. */
  remember(identity: Identity, token: string): Promise<void>;
  verifyAgain(signedIn: Identity): Promise<{ identity: Identity; kept?: string }>;
  /** The Plex token kept for this person, while it is. */
  tokenOf(identity: Identity): Promise<string | undefined>;
}

/** How often a re-check that found another one under way (on another instance) looks for its answer. */
const FOLLOW_EVERY_MS = 100;

export function plexRecheck(plex: PlexSource, vault: Vault, timeoutMs: number, keepSeconds = DAY_SECONDS): PlexRecheck {
  const { recheck_after: recheckAfter, grace_when_down: grace } = plex.config;
  const running = new Map<string, Promise<{ identity: Identity; kept?: string }>>();

  const read = async (id: string): Promise<Kept | undefined> => {
    const json = await vault.get(id);
    return json ? JSON.parse(json) as Kept : undefined;
  };
  // As long as anything given to the person may be used: their sign-in, or an app's refresh tokens.
  const keep = (id: string, kept: Kept) => vault.put(id, JSON.stringify(kept), keepSeconds * 1000);
  const iso = (ms: number) => new Date(ms).toISOString();

  /** plex.tv could not be asked: the last verdict, while it is young enough. */
  function whileDown(kept: Kept, refusal: Refusal): { identity: Identity; kept: string } {
    if (Date.now() - kept.verifiedAt > grace * 1000) throw refusal;
    return { identity: kept.identity, kept: `${refusal.detail ?? refusal.message}; plex.tv's verdict of ${iso(kept.verifiedAt)} holds until ${iso(kept.verifiedAt + grace * 1000)}` };
  }

  async function ask(id: string, kept: Kept): Promise<{ identity: Identity; kept?: string }> {
    const claim = `recheck:${id}`;
    if (!(await vault.claim(claim, timeoutMs * 2 + 1000))) {
      // Another instance is asking plex.tv: its answer, when it comes.
      for (const until = Date.now() + timeoutMs * 2 + 1000; Date.now() < until;) {
        await sleep(FOLLOW_EVERY_MS);
        const now = await read(id);
        // Its verdict ended the sign-in, and it said so: nothing more to end here.
        if (!now) throw new Refusal('expired', 'Sign in again', 'Sign in with Plex again to go on.', 'another instance\'s re-check ended this sign-in');
        if (now.verifiedAt > kept.verifiedAt) return { identity: now.identity };
      }
      return whileDown(kept, new Refusal('source-unavailable', 'Plex is not answering', 'guestlist could not check your Plex account with plex.tv just now. Try again in a minute.',
        'another instance\'s re-check did not finish in time'));
    }
    try {
      const identity = await plex.identify(kept.token);
      await keep(id, { ...kept, verifiedAt: Date.now(), identity });
      return { identity };
    } catch (err) {
      if (!(err instanceof Refusal)) throw err;
      if (err.reason === 'source-unavailable') return whileDown(kept, err);
      // plex.tv's verdict: the token is of no more use to anyone.
      await vault.delete(id);
      if (err.reason !== 'not-verified') throw err;
      // A token refused after the fact: signed out at Plex, or the account disabled. The access
      // it gave is over, and the person is told so as anyone whose share ended is.
      throw new Refusal('not-verified', 'You are not on the guest list',
        'Plex no longer vouches for your sign-in here (it was signed out at Plex, or the account was disabled), so your access has ended. If you should still have it, sign in with Plex again.',
        err.detail);
    } finally {
      await vault.unclaim(claim);
    }
  }

  return {
    remember: (identity, token) => keep(identity.id, { token, verifiedAt: Date.now(), identity }),
    tokenOf: async (identity) => (await read(identity.id))?.token,

    async verifyAgain(signedIn) {
      const id = signedIn.id;
      const kept = await read(id);
      // Nothing to ask plex.tv with (kept no longer, or in a store that was emptied): not a
      // verdict on the person, who signs in with Plex again.
      if (!kept) throw new Refusal('expired', 'Sign in again', 'Sign in with Plex again to go on.', `no Plex token kept for plex:${id}`);
      // Young enough: who they were signed in as (the very object, so nothing is written again).
      if (Date.now() - kept.verifiedAt < recheckAfter * 1000) return { identity: signedIn };
      let answer = running.get(id);
      if (!answer) {
        answer = ask(id, kept).finally(() => running.delete(id));
        running.set(id, answer);
      }
      return answer;
    },
  };
}
