import { LRUCache } from 'lru-cache';
import { errors, type Adapter, type AdapterPayload } from 'oidc-provider';

// oidc-provider's state (pending logins, sessions, codes, tokens) lives here, in memory.
// Each model gets its own cache, bounded both by entry count and by bytes, so a flood of one kind
// (say, authorization requests nobody finishes) can neither grow memory without bound nor evict
// the sessions and codes of people who are signing in. Entries expire by their own TTL.

export interface ModelBound {
  max: number;
  maxBytes: number;
}

// Sized for a small instance (256 MB): at most about 45 MB of state in the worst case.
export const MODEL_BOUNDS: Record<string, ModelBound> = {
  Interaction: { max: 5_000, maxBytes: 8 * 2 ** 20 },
  Session: { max: 10_000, maxBytes: 8 * 2 ** 20 },
  Grant: { max: 10_000, maxBytes: 6 * 2 ** 20 },
  AuthorizationCode: { max: 5_000, maxBytes: 6 * 2 ** 20 },
  AccessToken: { max: 10_000, maxBytes: 8 * 2 ** 20 },
  ReplayDetection: { max: 5_000, maxBytes: 1 * 2 ** 20 },
};
const OTHER_MODEL: ModelBound = { max: 1_000, maxBytes: 1 * 2 ** 20 };

// Models whose entries belong to a grant and must go when the grant is revoked
// (for example when a code is replayed, every token issued from it is revoked).
const GRANT_BOUND = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest']);

// oidc-provider checks expiry itself with this tolerance; keep entries that long past their TTL.
const CLOCK_TOLERANCE_MS = 15_000;

export interface LruStorage {
  adapterFor(model: string): Adapter;
  /** Entries held per model, for the benchmark and the tests of the bounds. */
  sizes(): Record<string, { entries: number; bytes: number }>;
  purgeStale(): void;
}

export function createLruStorage(bounds: Record<string, ModelBound> = MODEL_BOUNDS, clock?: { now(): number }): LruStorage {
  const stores = new Map<string, LRUCache<string, string>>();
  const storeFor = (model: string) => {
    let store = stores.get(model);
    if (!store) {
      const { max, maxBytes } = bounds[model] ?? OTHER_MODEL;
      store = new LRUCache<string, string>({ max, maxSize: maxBytes, sizeCalculation: (v, k) => v.length + k.length, ...(clock ? { perf: clock } : {}) });
      stores.set(model, store);
    }
    return store;
  };
  const sessionByUid = new LRUCache<string, string>({ max: (bounds.Session ?? OTHER_MODEL).max });
  const grantMembers = new LRUCache<string, Set<string>>({ max: (bounds.Grant ?? OTHER_MODEL).max });

  function adapterFor(model: string): Adapter {
    const store = storeFor(model);
    const find = async (id: string): Promise<AdapterPayload | undefined> => {
      const json = store.get(id);
      return json === undefined ? undefined : (JSON.parse(json) as AdapterPayload);
    };
    return {
      async upsert(id, payload, expiresIn) {
        const ttl = expiresIn && expiresIn > 0 ? expiresIn * 1000 + CLOCK_TOLERANCE_MS : undefined;
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
