// What an interactive source started upstream for one pending sign-in (a Plex PIN, a Jellyfin
// Quick Connect request), bound to that sign-in on the server side: the upstream's approval can
// then only ever finish the sign-in it was started for, and only once.
//
// - A reference binds once, for as long as the upstream could still approve it, and is never
//   forgotten early: when that memory is full (for one network, or for everybody) new binds are
//   refused rather than old ones evicted, because an evicted reference could be bound again.
// - Finishing claims the binding: of concurrent finishes (a double click, two tabs, two
//   instances) exactly one gets it; until it settles or restores it, the others are told
//   'finishing' and follow its result.
//
// These are the rules; each store (storage/memory.ts, storage/redis.ts) keeps bindings by them,
// and test/storage-conformance.test.ts holds both to them. A source sees only its own bindings
// (scoped by its name), so two sources offered on one page never meet.

import { setTimeout as sleep } from 'node:timers/promises';
import { sharesOf, type Network, type Share } from '../network.ts';
import { Refusal, type SignInStep, type StepOutcome } from './source.ts';

/** Live bindings one network may hold at once (its /56 and /48 more: network.ts): a person retries a few times, not twenty. */
export const BINDS_PER_NETWORK = 20;
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

/** A source's bindings: a bind counts against the network that asked, and its wider prefixes. */
export interface SignInBindings extends Omit<BindingStore, 'bind'> {
  bind(interactionUid: string, binding: Binding, network: Network): Promise<BindResult>;
}

/** How long to remember a binding: until the upstream's expiry, within the cap. */
export function retentionMs(expiresAt: number, now = Date.now()): number {
  return Math.max(1000, Math.min(expiresAt - now, BINDING_LIFETIME_CAP_MS));
}

/** One source's view of the store's bindings: its sign-ins and references, apart from any other source's. */
export function scopedBindings(all: BindingStore, source: string, perNetwork = BINDS_PER_NETWORK): SignInBindings {
  const uid = (u: string) => `${source}:${u}`;
  const inScope = (b: Binding): Binding => ({ ...b, ref: `${source}:${b.ref}` });
  const outOfScope = (b: Binding | 'finishing' | undefined): Binding | 'finishing' | undefined =>
    (b && b !== 'finishing' ? { ...b, ref: b.ref.slice(source.length + 1) } : b);
  return {
    bind: (u, b, network) => all.bind(uid(u), inScope(b), sharesOf(network, perNetwork, 'bind')),
    peek: async (u) => outOfScope(await all.peek(uid(u))),
    claim: async (u) => outOfScope(await all.claim(uid(u))),
    restore: (u, b) => all.restore(uid(u), inScope(b)),
    settle: (u) => all.settle(uid(u)),
    release: (u, ref) => all.release(uid(u), `${source}:${ref}`),
  };
}

/** How often a finish that finds another finishing the same sign-in looks again. */
const FOLLOW_EVERY_MS = 100;

/**
 * The binding to finish a sign-in with; or, while another request is finishing it (on another
 * instance: the interaction router makes this one's wait for it), where that one went once it is
 * done; undefined when there is nothing to finish with.
 */
export async function claimOrFollow(bindings: SignInBindings, step: Pick<SignInStep, 'uid' | 'finishedTo'>): Promise<Binding | { redirect: string } | undefined> {
  for (const until = Date.now() + FINISH_CLAIM_MS; Date.now() < until;) {
    const claimed = await bindings.claim(step.uid);
    if (claimed && claimed !== 'finishing') return claimed;
    const done = await step.finishedTo();
    if (done) return { redirect: done };
    if (!claimed) return undefined;
    await sleep(FOLLOW_EVERY_MS);
  }
  return undefined;
}

/** The answer to a page whose bind found the memory full, for its network or for everyone. */
export function bindRefused(bound: 'network-full' | 'full', label: string, what: string): StepOutcome {
  const perNetwork = bound === 'network-full';
  return {
    json: {
      status: perNetwork ? 429 : 503,
      retryAfter: 60,
      body: { error: perNetwork ? `Too many ${label} sign-ins have been started from your network. Wait a few minutes and try again.`
        : `guestlist has too many ${label} sign-ins in progress right now. Try again in a few minutes.` },
    },
    refusal: new Refusal('source-unavailable', `Too many ${label} sign-ins`, '',
      `${what}: the memory of live sign-in bindings is full ${perNetwork ? 'for this network' : 'for everyone'}`),
  };
}
