import type { Share } from '../network.ts';

// What a store keeps of the bindings of upstream requests to sign-ins (a Plex PIN, a Jellyfin
// Quick Connect request); the rules they follow are sources/sign-in-bindings.ts's.

/** Live bindings in all. */
export const BINDS_MAX = 10_000;
/** Never remember a binding longer than this, whatever the upstream says its lifetime is. */
export const BINDING_LIFETIME_CAP_MS = 60 * 60_000;
/** How long a finish may hold its claim (a few upstream calls, each with a timeout). */
export const FINISH_CLAIM_MS = 30_000;

export type BindResult = 'bound' | 'taken' | 'network-full' | 'full';

export interface Binding {
  /** The name of what was started upstream (a Plex PIN's id, the DeviceId of a Jellyfin Quick Connect request); binds once. */
  ref: string;
  /** When the upstream stops honouring it (ms since the epoch). */
  expiresAt: number;
  /** Whatever else the source must keep with it, server-side (its own encoding). */
  data?: string;
}

/** The bindings as a store keeps them: each bind counted against the shares it is handed. */
export interface BindingStore {
  /** Bind a reference (already proven to be this sign-in's) to it, counted against the asking network's shares. */
  bind(interactionUid: string, binding: Binding, shares: Share[]): Promise<BindResult>;
  /** The sign-in's binding, without claiming it; 'finishing' while a finish holds it. */
  peek(interactionUid: string): Promise<Binding | 'finishing' | undefined>;
  /** Take the binding to finish with: only one caller gets it; until that caller settles or restores it, the others are told 'finishing'. */
  claim(interactionUid: string): Promise<Binding | 'finishing' | undefined>;
  /** The upstream has not approved yet: give the claimed binding back to its sign-in. */
  restore(interactionUid: string, binding: Binding): Promise<void>;
  /** The finish is over (signed in or refused): the binding serves no one any more. */
  settle(interactionUid: string): Promise<void>;
  /**
   * Undo a bind whose reference never reached the upstream (it refused to start anything): the
   * sign-in's binding goes, and so does its place in the network's share, since there is nothing
   * upstream to remember. Only for a reference the caller made up and the upstream never saw.
   */
  release(interactionUid: string, ref: string): Promise<void>;
}

/** How long to remember a binding: until the upstream's expiry, within the cap. */
export function retentionMs(expiresAt: number, now = Date.now()): number {
  return Math.max(1000, Math.min(expiresAt - now, BINDING_LIFETIME_CAP_MS));
}
