import type { Context } from 'koa';
import type { Adapter } from 'oidc-provider';
import type { AccountStore } from '../accounts.ts';
import type { Config } from '../config.ts';
import type { Pages } from '../http/pages.ts';
import type { Logger } from '../log.ts';
import type { BindingLimits, SignInBindings } from '../sources/sign-in-bindings.ts';
import { createMemoryStore } from './memory.ts';

// Everything guestlist remembers between requests, behind one seam: oidc-provider's models
// (pending logins, sessions, grants, codes, tokens), the people signed in, what interactive
// sources started upstream for each login (sources/sign-in-bindings.ts) and the rate-limit counters. Two stores keep it: memory.ts in this process (the default)
// and redis.ts in a Redis shared by several instances. They follow the same rules, and
// test/storage-conformance.test.ts runs one suite against both.

export interface Store {
  /** oidc-provider's adapter for one model ('Session', 'AuthorizationCode', ...). */
  adapterFor(model: string): Adapter;
  accounts: AccountStore;
  bindings: SignInBindings;
  counter: RateCounter;
  /** Releases what the store holds (a connection, a timer). */
  close(): Promise<void>;
}

/** Hits per key in the current window. */
export interface RateCounter {
  hit(key: string, windowMs: number): Promise<{ count: number; resetAt: number }>;
}

export interface StoreOptions {
  /** The config's groups, for the accounts remembered. */
  groups: Record<string, string[]>;
  /** How long an account is remembered: as long as the session that carries it. */
  accountTtlSeconds: number;
  /** How many live sign-in bindings there may be (tests make them few); BINDING_LIMITS otherwise. */
  bindingLimits?: BindingLimits;
  /** How long an entry outlives its expiry (tests shorten it); CLOCK_TOLERANCE_MS otherwise. */
  clockToleranceMs?: number;
}

/** The store cannot be reached: logins fail with a page saying so, and recover with it. */
export class StorageUnavailable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StorageUnavailable';
  }
}

/** The page a person sees while the shared store is away. */
const storageDownMessage = {
  heading: 'Sign-in is unavailable for a moment',
  message: 'guestlist cannot reach the storage it shares with its other instances, so it cannot sign anyone in right now. It recovers by itself when the storage is back: try again in a minute.',
};

/** The one page for it, wherever a request meets it: 503, and it recovers by itself. */
export function answerStorageDown(ctx: Context, pages: Pages): void {
  ctx.status = 503;
  ctx.type = 'html';
  ctx.body = pages.render('message', 'Try again shortly', storageDownMessage);
}

/**
 * In memory by default; in Redis when the config names `storage:` (several instances sharing
 * logins in flight). The Redis module, and its client, are loaded only then.
 */
export async function openStore(config: Pick<Config, 'storage' | 'groups'>, accountTtlSeconds: number, log: Logger): Promise<Store> {
  const options: StoreOptions = { groups: config.groups, accountTtlSeconds };
  if (!config.storage) return createMemoryStore(options);
  const { openRedisStore } = await import('./redis.ts');
  return openRedisStore(config.storage, options, log);
}
