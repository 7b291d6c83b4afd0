// Which Plex PIN belongs to which pending login. A PIN is bound to the interaction whose page
// created it, from the server side, before the person ever sees Plex: the page proves it holds
// the PIN (its secret code, which only the creator and plex.tv know), the forwardUrl carries no
// PIN id, and a PIN binds once. So a PIN approved by someone else (an attacker's account) cannot
// be slipped into another person's login, and nobody can bind a PIN they did not create.
//
// "Binds once" is remembered for as long as Plex could still approve the PIN, and never
// forgotten early: when that memory is full (for one network, or for everybody) new binds are
// refused rather than old ones evicted, because an evicted PIN could be bound again.
//
// These are the rules; each store (storage/memory.ts, storage/redis.ts) keeps the bindings by them.

/** Live PINs one network may have bound at once: a person retries a few times, not twenty. */
export const PIN_BINDS_PER_NETWORK = 20;
/** Live PINs bound in all. */
export const PIN_BINDS_MAX = 10_000;

export interface PinLimits {
  perNetwork: number;
  max: number;
}

export const PIN_LIMITS: PinLimits = { perNetwork: PIN_BINDS_PER_NETWORK, max: PIN_BINDS_MAX };
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
