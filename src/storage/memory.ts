import { LRUCache } from 'lru-cache';
import { errors, type Adapter, type AdapterPayload } from 'oidc-provider';
import { bytes, type HealthItem } from '../health.ts';
import { BINDS_MAX, FINISH_CLAIM_MS, retentionMs, type Binding, type BindingStore } from './bindings.ts';
import { entryTtlMs, EVENTS_KEPT, GRANT_BOUND, HOUR_MS, HOURS_KEPT, RATE_SHARES_MAX } from './models.ts';
import type { AccountRecord, AccountRecords, Activity, EndMark, Presence, Quota, RateCounter, SignInEvent, Store, StoreOptions, Vault } from './store.ts';
import { Tally } from './tally.ts';

// The default store: everything in this process's memory, gone with it. Every part is bounded,
// so a flood (of pending logins, of networks, of sign-in bindings) can neither grow memory without
// bound nor push out what people who are signing in need. Entries expire by their own TTL.

export interface ModelBound {
  max: number;
  maxBytes: number;
}

// Each model gets its own cache, bounded both by entry count and by bytes, so a flood of one kind
// (say, authorization requests nobody finishes) cannot evict the sessions and codes of others.
// Sized for a small instance (256 MB): at most about 47 MB of state in the worst case.
export const MODEL_BOUNDS: Record<string, ModelBound> = {
  Interaction: { max: 5_000, maxBytes: 10 * 2 ** 20 },
  Session: { max: 10_000, maxBytes: 8 * 2 ** 20 },
  Grant: { max: 10_000, maxBytes: 6 * 2 ** 20 },
  AuthorizationCode: { max: 5_000, maxBytes: 6 * 2 ** 20 },
  AccessToken: { max: 10_000, maxBytes: 8 * 2 ** 20 },
  RefreshToken: { max: 10_000, maxBytes: 8 * 2 ** 20 },
  ReplayDetection: { max: 5_000, maxBytes: 1 * 2 ** 20 },
};
const OTHER_MODEL: ModelBound = { max: 1_000, maxBytes: 1 * 2 ** 20 };

const ACCOUNTS_MAX = 10_000;

export interface MemoryStoreOptions extends StoreOptions {
  /** Per-model bounds (tests make them small); MODEL_BOUNDS otherwise. */
  bounds?: Record<string, ModelBound>;
  /** The clock the model caches expire by (tests pass one that follows mocked timers). */
  clock?: { now(): number };
}

export interface MemoryStore extends Store {
  /** Entries held per model, for the tests of the bounds. */
  sizes(): Record<string, { entries: number; bytes: number }>;
  /** Drops expired model entries now (a timer does it every minute until close). */
  purgeStale(): void;
}

export function createMemoryStore(options: MemoryStoreOptions): MemoryStore {
  const { adapterFor, sizes, purgeStale } = createModelStore(options.bounds ?? MODEL_BOUNDS, options.clockToleranceMs, options.clock);
  const purge = setInterval(purgeStale, 60_000);
  purge.unref();
  const tallies = new Map<string, Tally>();
  const quota = (name: string, max: number): Quota => {
    let tally = tallies.get(name);
    if (!tally) tallies.set(name, tally = new Tally(max));
    const held = tally;
    return {
      take: async (key, shares, until, weight) => held.take(key, shares, until, weight),
      release: async (key) => held.release(key),
    };
  };
  const accounts = createAccountRecords(options.accountTtlSeconds);
  const activity = createActivity();
  const bounds = options.bounds ?? MODEL_BOUNDS;
  return {
    adapterFor,
    accounts,
    bindings: createBindings(quota('bound', options.bindingsMax ?? BINDS_MAX), options.bindingsMax ?? BINDS_MAX),
    quota,
    vault: createVault(),
    activity,
    counter: createRateCounter(options.rateSharesMax ?? RATE_SHARES_MAX),
    sizes,
    purgeStale,
    async health() {
      // Sizes as this process holds them: the model caches count their JSON's characters, the
      // rest is measured the same way now (the page is opened rarely; a scan of 10,000 is cheap).
      const models = Object.entries(sizes()).map(([model, { entries, bytes: held }]): HealthItem => {
        const bound = bounds[model] ?? OTHER_MODEL;
        return { name: `Memory: ${model}`, ok: true, detail: `${count(entries)}, ${bytes(held)} (at most ${bound.max} entries, ${bytes(bound.maxBytes)})` };
      });
      const measured = (name: string, values: unknown[], max: number): HealthItem => ({
        name: `Memory: ${name}`, ok: true,
        detail: `${count(values.length)}, ${bytes(values.reduce<number>((n, v) => n + JSON.stringify(v).length, 0))} (at most ${max} entries)`,
      });
      return [
        { name: 'Store', ok: true, detail: 'in this process\'s memory: bounded, and gone when it stops (set storage: to share it between instances)' },
        ...models,
        measured('accounts', accounts.all(), ACCOUNTS_MAX),
        measured('sign-in events', await activity.recent(), EVENTS_KEPT),
        measured('people signed in', await activity.people(), ACCOUNTS_MAX),
      ];
    },
    close: async () => clearInterval(purge),
  };
}

/**
 * An LRU cache of at most `max` entries that allocates as it fills. Given `max`, lru-cache sets
 * aside every slot up front (two arrays of `max`, two more once an entry has a TTL): for the
 * bounds here about 4 MB of an idle server's memory, a fifth of everything else it holds. Bounded
 * by weight instead, each entry weighing 1, it keeps the same bound and grows only as entries come.
 */
function growingLru<V extends {}>(max: number, options: Omit<LRUCache.Options<string, V, unknown>, 'max' | 'maxSize' | 'sizeCalculation'> = {}): LRUCache<string, V> {
  return new LRUCache<string, V>({ ...options, maxSize: max, sizeCalculation: () => 1 });
}

function createModelStore(bounds: Record<string, ModelBound>, toleranceMs: number | undefined, clock: { now(): number } | undefined) {
  const stores = new Map<string, LRUCache<string, string>>();
  const storeFor = (model: string) => {
    let store = stores.get(model);
    if (!store) {
      const { maxBytes } = bounds[model] ?? OTHER_MODEL;
      // Bounded by bytes here and by count in upsert (see growingLru for why not by `max`).
      store = new LRUCache<string, string>({ maxSize: maxBytes, sizeCalculation: (v, k) => v.length + k.length, ...(clock ? { perf: clock } : {}) });
      stores.set(model, store);
    }
    return store;
  };
  const sessionByUid = growingLru<string>((bounds.Session ?? OTHER_MODEL).max);
  const grantMembers = growingLru<Set<string>>((bounds.Grant ?? OTHER_MODEL).max);

  function adapterFor(model: string): Adapter {
    const store = storeFor(model);
    const { max } = bounds[model] ?? OTHER_MODEL;
    const find = async (id: string): Promise<AdapterPayload | undefined> => {
      const json = store.get(id);
      return json === undefined ? undefined : (JSON.parse(json) as AdapterPayload);
    };
    return {
      async upsert(id, payload, expiresIn) {
        const ttl = entryTtlMs(expiresIn, toleranceMs);
        // A new entry in a full store pushes out the least recently used, as `max` would.
        if (store.size >= max && !store.has(id)) store.pop();
        store.set(id, JSON.stringify(payload), ttl ? { ttl } : {});
        if (model === 'Session' && payload.uid) sessionByUid.set(payload.uid, id, ttl ? { ttl } : {});
        if (GRANT_BOUND.has(model) && payload.grantId) {
          const members = grantMembers.get(payload.grantId) ?? new Set<string>();
          members.add(`${model}\0${id}`);
          grantMembers.set(payload.grantId, members);
        }
      },
      find,
      async findByUid(uid) {
        const id = sessionByUid.get(uid);
        return id === undefined ? undefined : find(id);
      },
      async findByUserCode() {
        return undefined; // the device flow is not enabled
      },
      async consume(id) {
        const json = store.get(id);
        if (json === undefined) return;
        const payload = JSON.parse(json) as AdapterPayload;
        // Two redemptions of one code racing through find() both saw it unconsumed; only the
        // first to get here wins (oidc-provider consumes before it issues any token).
        if (payload.consumed) throw new errors.InvalidGrant('authorization code already consumed');
        payload.consumed = Math.floor(Date.now() / 1000);
        store.set(id, JSON.stringify(payload), { noUpdateTTL: true });
      },
      async destroy(id) {
        if (model === 'Session') {
          const payload = await find(id);
          if (payload?.uid) sessionByUid.delete(payload.uid);
        }
        store.delete(id);
      },
      async revokeByGrantId(grantId) {
        for (const member of grantMembers.get(grantId) ?? []) {
          const [m, id] = member.split('\0') as [string, string];
          stores.get(m)?.delete(id);
        }
        grantMembers.delete(grantId);
      },
    };
  }

  return {
    adapterFor,
    sizes() {
      return Object.fromEntries([...stores].map(([m, s]) => [m, { entries: s.size, bytes: s.calculatedSize }]));
    },
    purgeStale() {
      for (const s of stores.values()) s.purgeStale();
      sessionByUid.purgeStale();
    },
  };
}

const count = (n: number) => `${n} ${n === 1 ? 'entry' : 'entries'}`;

// Each account for as long as a session that carries it may last (sign-in/accounts.ts says why).
function createAccountRecords(ttlSeconds: number): AccountRecords & { all(): AccountRecord[] } {
  const cache = growingLru<AccountRecord>(ACCOUNTS_MAX, { ttl: ttlSeconds * 1000, updateAgeOnGet: false });
  // Only people who were signed in are ended (by a re-check, or by whoever runs guestlist), so
  // there are never more marks than accounts.
  const ends = growingLru<EndMark>(ACCOUNTS_MAX, { ttl: ttlSeconds * 1000, updateAgeOnGet: false });
  return {
    keep: async (account) => void cache.set(account.accountId, account),
    find: async (accountId) => cache.get(accountId),
    end: async (accountId, mark) => void ends.set(accountId, mark),
    ended: async (accountId) => ends.get(accountId),
    all: () => [...cache.values()],
  };
}

// In this process's memory, like everything else here: nothing to encrypt it from. One entry per
// person signed in, so as many as accounts.
function createVault(): Vault {
  const values = growingLru<string>(ACCOUNTS_MAX);
  const claims = growingLru<true>(ACCOUNTS_MAX);
  return {
    put: async (key, value, ttlMs) => void values.set(key, value, { ttl: ttlMs }),
    get: async (key) => values.get(key),
    delete: async (key) => void values.delete(key),
    async claim(key, ttlMs) {
      if (claims.has(key)) return false;
      claims.set(key, true, { ttl: ttlMs });
      return true;
    },
    unclaim: async (key) => void claims.delete(key),
  };
}

function createActivity(): Activity {
  const events: SignInEvent[] = []; // oldest first
  const hours = new Map<number, Record<string, number>>();
  // Only people who signed in, so as many as accounts.
  const people = growingLru<Presence>(ACCOUNTS_MAX);
  return {
    async record(event) {
      events.push(event);
      if (events.length > EVENTS_KEPT) events.splice(0, events.length - EVENTS_KEPT);
      const hour = Math.floor(event.at / HOUR_MS);
      const counts = hours.get(hour) ?? {};
      counts[event.outcome] = (counts[event.outcome] ?? 0) + 1;
      hours.set(hour, counts);
      for (const h of hours.keys()) if (h <= hour - HOURS_KEPT) hours.delete(h);
    },
    recent: async () => [...events].reverse(),
    async perHour(count) {
      const now = Math.floor(Date.now() / HOUR_MS);
      return Array.from({ length: count }, (_, i) => now - count + 1 + i).map((hour) => ({ hour, counts: { ...hours.get(hour) } }));
    },
    async seen(person, app, untilMs) {
      const before = people.get(person.sub);
      const now = Date.now();
      const apps = [...new Set([...(before?.apps ?? []), app])];
      people.set(person.sub, { ...person, apps, since: before?.since ?? now, lastSeen: now }, { ttl: Math.max(1, untilMs - now) });
    },
    people: async () => [...people.values()],
    forget: async (sub) => void people.delete(sub),
  };
}

function createBindings(everBound: Quota, max: number): BindingStore {
  // everBound holds bound references until the upstream can no longer approve them (lifetimes
  // differ: a Plex PIN lives 15 or 30 minutes, a Jellyfin Quick Connect request 10). These two
  // are never larger than it, so their LRU bound never evicts.
  const byInteraction = growingLru<Binding>(max);
  const finishing = growingLru<true>(max, { ttl: FINISH_CLAIM_MS });

  return {
    async bind(uid, binding, shares) {
      const now = Date.now();
      const ttl = retentionMs(binding.expiresAt, now);
      const taken = await everBound.take(binding.ref, shares, now + ttl);
      if (taken !== 'ok') return taken;
      byInteraction.set(uid, binding, { ttl });
      return 'bound';
    },
    async peek(uid) {
      return byInteraction.get(uid) ?? (finishing.has(uid) ? 'finishing' : undefined);
    },
    async claim(uid) {
      const binding = byInteraction.get(uid);
      if (!binding) return finishing.has(uid) ? 'finishing' : undefined;
      byInteraction.delete(uid);
      finishing.set(uid, true);
      return binding;
    },
    async restore(uid, binding) {
      finishing.delete(uid);
      byInteraction.set(uid, binding, { ttl: retentionMs(binding.expiresAt) });
    },
    async settle(uid) {
      finishing.delete(uid);
    },
    async release(uid, ref) {
      if (byInteraction.get(uid)?.ref === ref) byInteraction.delete(uid);
      await everBound.release(ref);
    },
  };
}

// Fixed windows, all shares of one window in one map that the next window replaces whole: the
// count of shares held is exact, and a flood of networks fills the map, never memory.
function createRateCounter(maxShares: number): RateCounter {
  let window = -1;
  let counts = new Map<string, number>();
  return {
    async hit(shares, windowMs) {
      const index = Math.floor(Date.now() / windowMs);
      if (index !== window) {
        window = index;
        counts = new Map();
      }
      const resetAt = (index + 1) * windowMs;
      for (const share of shares) {
        const n = counts.get(share.name);
        if (n === undefined && counts.size >= maxShares) return { over: true, resetAt };
        counts.set(share.name, (n ?? 0) + 1);
        if ((n ?? 0) + 1 > share.limit) return { over: true, resetAt };
      }
      return { over: false, resetAt };
    },
  };
}
