import type { Adapter } from 'oidc-provider';
import type { HealthItem } from '../health.ts';
import type { Logger } from '../log.ts';
import type { Share } from '../network.ts';
import type { BindingStore } from './bindings.ts';
import { createMemoryStore } from './memory.ts';

// Everything guestlist remembers between requests, behind one seam: oidc-provider's models
// (pending logins, sessions, grants, codes, tokens), the people signed in, what interactive
// sources started upstream for each login (sources/sign-in-bindings.ts), the places anonymous
// requests hold (quotas) and the rate-limit counters. Two stores keep it: memory.ts in this
// process (the default) and redis.ts in a Redis shared by several instances. They follow the same
// rules, and test/storage-conformance.test.ts runs one suite against both.

export interface Store {
  /** oidc-provider's adapter for one model ('Session', 'AuthorizationCode', ...). */
  adapterFor(model: string): Adapter;
  accounts: AccountRecords;
  bindings: BindingStore;
  /** The places of one kind (by name) that anonymous requests may hold, `max` in all. */
  quota(name: string, max: number): Quota;
  vault: Vault;
  activity: Activity;
  counter: RateCounter;
  /** For the console: memory, what each cache holds; Redis, whether it answers and how fast. */
  health(): Promise<HealthItem[]>;
  /** Releases what the store holds (a connection, a timer). */
  close(): Promise<void>;
}

/**
 * Requests per share (a network, each of its wider prefixes) in fixed windows of `windowMs`
 * (one length per counter). A request counts against its shares narrowest first and stops at the
 * first that is over its limit, so a request refused for its own network does not use up what its
 * wider prefixes leave to their other networks. The counter holds at most so many shares a window;
 * past that it fails closed: `over` for a share it has not seen.
 */
export interface RateCounter {
  hit(shares: Share[], windowMs: number): Promise<{ over: boolean; resetAt: number }>;
}

/**
 * What a source must keep of a person server-side only, and only while their sign-in may last (a
 * Plex token, for the re-checks of their share): never in a page, cookie, log or token. In a
 * shared store it is encrypted with a key derived from the cookie secrets.
 */
export interface Vault {
  put(key: string, value: string, ttlMs: number): Promise<void>;
  get(key: string): Promise<string | undefined>;
  delete(key: string): Promise<void>;
  /** True for one caller, on any instance, until `ttlMs` passes or it is released: one re-check at a time. */
  claim(key: string, ttlMs: number): Promise<boolean>;
  unclaim(key: string): Promise<void>;
}

/** One outcome of a sign-in, as the console lists it (the `login` log line, and what the person was told). */
export interface SignInEvent {
  at: number;
  outcome: string;
  source?: string;
  client_id?: string;
  sub?: string;
  name?: string;
  reason?: string;
  /** The sentence the person was shown, when they were shown one. */
  said?: string;
}

/** A person signed in, as the console lists them. */
export interface Presence {
  sub: string;
  name: string;
  source: string;
  groups: string[];
  /** The apps they signed in to, by client_id. */
  apps: string[];
  since: number;
  lastSeen: number;
}

/**
 * What the operator console shows of sign-ins: the latest events (EVENTS_KEPT, the oldest going
 * first), counts per hour and outcome for a day, and who is signed in (each for as long as their
 * sign-in may last). Kept by the store, so that every instance's console shows the same.
 */
export interface Activity {
  record(event: SignInEvent): Promise<void>;
  /** The latest events, newest first. */
  recent(): Promise<SignInEvent[]>;
  /** Events per outcome in each of the last `hours` hours, oldest first (`hour`: ms since the epoch / 3600000). */
  perHour(hours: number): Promise<{ hour: number; counts: Record<string, number> }[]>;
  /** Someone signed in to `app`; they are listed until `untilMs`. */
  seen(person: Omit<Presence, 'apps' | 'since' | 'lastSeen'>, app: string, untilMs: number): Promise<void>;
  people(): Promise<Presence[]>;
  forget(sub: string): Promise<void>;
}

/** 'taken': the key is held already; the others refuse: a share, or everybody's places, is full. */
export type TakeResult = 'ok' | 'taken' | 'network-full' | 'full';

/**
 * Places that anonymous requests make guestlist keep (a pending sign-in, a Plex PIN bound to one),
 * each key held against its shares until it expires or is released, weighing `weight` places (a
 * large pending sign-in weighs more). When a share or the whole is full, new keys are refused:
 * nothing held is ever pushed out to make room.
 */
export interface Quota {
  take(key: string, shares: Share[], until: number, weight?: number): Promise<TakeResult>;
  release(key: string): Promise<void>;
}

/** What the store keeps of a person signed in: whatever the account rules (sign-in/accounts.ts) made of them. */
export interface AccountRecord {
  accountId: string;
  [more: string]: unknown;
}

/** When everything a person was given before it stopped counting, and what they are to be told (the rules' own words). */
export interface EndMark {
  at: number;
  note?: Record<string, string>;
}

/** The people signed in, by account id, each for as long as a session that carries them may last. */
export interface AccountRecords {
  keep(account: AccountRecord): Promise<void>;
  find(accountId: string): Promise<AccountRecord | undefined>;
  /** Mark everything given to this person so far as ended (kept as long as an account is). */
  end(accountId: string, mark: EndMark): Promise<void>;
  ended(accountId: string): Promise<EndMark | undefined>;
}

export interface StoreOptions {
  /** How long an account is kept: as long as the longest session that may carry it. */
  accountTtlSeconds: number;
  /** How many live sign-in bindings there may be in all (tests make them few); BINDS_MAX otherwise. */
  bindingsMax?: number;
  /** How many shares a rate counter holds in a window (tests make them few); RATE_SHARES_MAX otherwise. */
  rateSharesMax?: number;
  /** The cookie secrets, newest first: the shared store's vault key is derived from them. */
  secrets?: string[];
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

/**
 * In memory by default; in Redis when the config names `storage:` (several instances sharing
 * logins in flight). The Redis module, and its client, are loaded only then.
 */
export async function openStore(url: string | undefined, accountTtlSeconds: number, log: Logger, secrets?: string[]): Promise<Store> {
  const options: StoreOptions = { accountTtlSeconds, ...(secrets ? { secrets } : {}) };
  if (!url) return createMemoryStore(options);
  const { openRedisStore } = await import('./redis.ts');
  return openRedisStore(url, options, log);
}
