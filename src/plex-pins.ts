import { LRUCache } from 'lru-cache';

// Which Plex PIN belongs to which pending login. A PIN is bound to the interaction whose page
// created it, from the server side, before the person ever sees Plex: the forwardUrl carries no
// PIN id, and a PIN can be bound once, ever. So a PIN approved by someone else (an attacker's
// account) cannot be slipped into another person's login.

export interface PinBindings {
  /** Bind a PIN to an interaction; false if this PIN was bound before, to any interaction. */
  bind(interactionUid: string, pinId: number): Promise<boolean>;
  boundTo(interactionUid: string): Promise<number | undefined>;
  /** The login is over, one way or the other: the PIN serves no one any more. */
  release(interactionUid: string): Promise<void>;
}

export function createPinBindings(max = 5_000): PinBindings {
  // As long as a strong PIN lives (30 minutes), bounded like the interactions themselves.
  const byInteraction = new LRUCache<string, number>({ max, ttl: 30 * 60_000 });
  const everBound = new LRUCache<number, true>({ max: max * 4, ttl: 60 * 60_000 });
  return {
    async bind(uid, pinId) {
      if (everBound.has(pinId)) return false;
      everBound.set(pinId, true);
      byInteraction.set(uid, pinId);
      return true;
    },
    boundTo: async (uid) => byInteraction.get(uid),
    release: async (uid) => void byInteraction.delete(uid),
  };
}
