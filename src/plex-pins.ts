import { LRUCache } from 'lru-cache';

// Which Plex PIN belongs to which pending login. A PIN is bound to the interaction whose page
// created it, from the server side, before the person ever sees Plex: the page proves it holds
// the PIN (its secret code, which only the creator and plex.tv know), the forwardUrl carries no
// PIN id, and a PIN binds once. So a PIN approved by someone else (an attacker's account) cannot
// be slipped into another person's login, and nobody can bind a PIN they did not create.
//
// "Binds once" is remembered for as long as Plex could still approve the PIN, and never
// forgotten early: when that memory is full (for one network, or for everybody) new binds are
// refused rather than old ones evicted, because an evicted PIN could be bound again.

/** Live PINs one network may have bound at once: a person retries a few times, not twenty. */
export const PIN_BINDS_PER_NETWORK = 20;
/** Live PINs bound in all. */
export const PIN_BINDS_MAX = 10_000;
/** Never remember a PIN longer than this, whatever plex.tv says its lifetime is. */
export const PIN_LIFETIME_CAP_MS = 60 * 60_000;

export type BindResult = 'bound' | 'taken' | 'network-full' | 'full';

export interface PinToBind {
  id: number;
  /** When plex.tv says the PIN expires (ms since the epoch). */
  expiresAt: number;
}

export interface PinBindings {
  /** Bind a PIN (already proven pending and this login's) to an interaction, for the network that asked. */
  bind(interactionUid: string, pin: PinToBind, network: string): Promise<BindResult>;
  /**
   * Take the interaction's PIN to finish its login with: only one caller gets it; until that
   * caller settles or restores it, the others are told 'finishing'.
   */
  claim(interactionUid: string): Promise<PinToBind | 'finishing' | undefined>;
  /** Plex has not approved it yet: give the claimed PIN back to its interaction. */
  restore(interactionUid: string, pin: PinToBind): Promise<void>;
  /** The finish is over (signed in or refused): the PIN serves no one any more. */
  settle(interactionUid: string): Promise<void>;
}

/** How long a finish may hold its claim (three plex.tv calls, each with a timeout). */
export const FINISH_CLAIM_MS = 30_000;

/** How long to remember a PIN: until plex.tv's expiry, within the cap. */
export function pinRetentionMs(expiresAt: number, now = Date.now()): number {
  return Math.max(1000, Math.min(expiresAt - now, PIN_LIFETIME_CAP_MS));
}

export function createPinBindings(limits: { perNetwork: number; max: number } = { perNetwork: PIN_BINDS_PER_NETWORK, max: PIN_BINDS_MAX }): PinBindings {
  // Bound PINs in bind order. Lifetimes differ a little (15 or 30 minutes), so a stale entry may
  // wait behind a live one before it is dropped: that only ever refuses early, never forgets early.
  const everBound = new Map<number, { network: string; until: number }>();
  const perNetwork = new Map<string, number>();
  // Never larger than everBound, so its LRU bound never evicts.
  const byInteraction = new LRUCache<string, PinToBind>({ max: limits.max });
  const finishing = new LRUCache<string, true>({ max: limits.max, ttl: FINISH_CLAIM_MS });

  const prune = (now: number) => {
    for (const [id, entry] of everBound) {
      if (entry.until > now) break;
      everBound.delete(id);
      const n = (perNetwork.get(entry.network) ?? 1) - 1;
      if (n > 0) perNetwork.set(entry.network, n);
      else perNetwork.delete(entry.network);
    }
  };

  return {
    async bind(uid, pin, network) {
      const now = Date.now();
      prune(now);
      if (everBound.has(pin.id)) return 'taken';
      if ((perNetwork.get(network) ?? 0) >= limits.perNetwork) return 'network-full';
      if (everBound.size >= limits.max) return 'full';
      const ttl = pinRetentionMs(pin.expiresAt, now);
      everBound.set(pin.id, { network, until: now + ttl });
      perNetwork.set(network, (perNetwork.get(network) ?? 0) + 1);
      byInteraction.set(uid, pin, { ttl });
      return 'bound';
    },
    async claim(uid) {
      const pin = byInteraction.get(uid);
      if (!pin) return finishing.has(uid) ? 'finishing' : undefined;
      byInteraction.delete(uid);
      finishing.set(uid, true);
      return pin;
    },
    async restore(uid, pin) {
      finishing.delete(uid);
      byInteraction.set(uid, pin, { ttl: pinRetentionMs(pin.expiresAt) });
    },
    async settle(uid) {
      finishing.delete(uid);
    },
  };
}
