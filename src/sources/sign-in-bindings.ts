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
// These are the rules; each store keeps bindings by them (storage/bindings.ts says what a store
// keeps), and test/storage-conformance.test.ts holds both stores to them. A source sees only its
// own bindings (scoped by its name), so two sources offered on one page never meet.

import { setTimeout as sleep } from 'node:timers/promises';
import { sharesOf, type Network } from '../network.ts';
import { FINISH_CLAIM_MS, type Binding, type BindingStore, type BindResult } from '../storage/bindings.ts';
import type { SignInStep, StepOutcome } from './source.ts';

/** Live bindings one network may hold at once (its /56 and /48 more: network.ts): a person retries a few times, not twenty. */
export const BINDS_PER_NETWORK = 20;
/** A source's bindings: a bind counts against the network that asked, and its wider prefixes. */
export interface SignInBindings extends Omit<BindingStore, 'bind'> {
  bind(interactionUid: string, binding: Binding, network: Network): Promise<BindResult>;
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
    log: { reason: 'too-many', detail: `${what}: the memory of live sign-in bindings is full ${perNetwork ? 'for this network' : 'for everyone'}` },
  };
}
