import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { createClient } from '@redis/client';
import type { Adapter, AdapterPayload } from 'oidc-provider';
import { errors } from 'oidc-provider';
import type { HealthItem } from '../health.ts';
import type { Logger } from '../log.ts';
import { BINDS_MAX, FINISH_CLAIM_MS, retentionMs, type Binding, type BindingStore } from './bindings.ts';
import { entryTtlMs, EVENTS_KEPT, GRANT_BOUND, HOUR_MS, HOURS_KEPT, RATE_SHARES_MAX } from './models.ts';
import { StorageUnavailable, type AccountRecords, type Activity, type EndMark, type Presence, type Quota, type RateCounter, type SignInEvent, type Store, type StoreOptions, type TakeResult, type Vault } from './store.ts';

// The store for more than one instance, in Redis (or Valkey): everything a login needs across
// requests, so any instance can take any step. Each value expires by its own TTL (Redis expiry).
// Only openStore (store.ts) imports this module, and only when the config names `storage:`: the
// bundle keeps it and the Redis client in a chunk of their own, which the memory store never loads.

const PREFIX = 'guestlist:';

async function connect(url: string, log: Logger) {
  let connected = false;
  const client = createClient({
    url,
    // While Redis is away, fail each command at once (a page says so) rather than queue it.
    disableOfflineQueue: true,
    socket: {
      connectTimeout: 3000,
      // At start-up, give up after a few tries with a clear error; once running, keep trying.
      reconnectStrategy: (retries: number, cause: Error) => (!connected && retries >= 3 ? cause : Math.min(100 * 2 ** retries, 2000)),
    },
  });
  let down = false;
  client.on('error', (err: Error) => {
    if (!down) log('error', 'storage unreachable', { storage: redact(url), err: err.message });
    down = true;
  });
  client.on('ready', () => {
    if (down) log('info', 'storage reachable again', { storage: redact(url) });
    down = false;
  });
  try {
    await client.connect();
  } catch (err) {
    throw new StorageUnavailable(`cannot reach Redis at ${redact(url)}: ${(err as Error).message || (err as Error).name}`);
  }
  connected = true;
  return client;
}

/** The URL without its password, for logs and errors. */
function redact(url: string): string {
  const u = URL.parse(url);
  if (!u) return 'redis://(unparseable)';
  if (u.password) u.password = '***';
  return u.href;
}

// A Redis that is up but stalled would otherwise hold every request open.
const OPERATION_TIMEOUT_MS = 2000;

async function guard<T>(work: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StorageUnavailable(`shared storage: no answer within ${OPERATION_TIMEOUT_MS} ms`)), OPERATION_TIMEOUT_MS);
  });
  try {
    return await Promise.race([work(), timeout]);
  } catch (err) {
    if (err instanceof errors.OIDCProviderError || err instanceof StorageUnavailable) throw err;
    throw new StorageUnavailable(`shared storage: ${(err as Error).message || (err as Error).name}`);
  } finally {
    clearTimeout(timer);
  }
}

const CLAIM_SCRIPT = `
local binding = redis.call('GET', KEYS[1])
if binding then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
  return binding
end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'finishing' end
return false
`;

// A key is taken in one step, on any instance: it is held (with what its release must undo), and
// each of its places is a member of each share's sorted set and of the whole's, scored by its
// expiry, so that what has expired drops out by itself. KEYS: the held key, the whole, then each
// share; ARGV: now, until, max, the weight, what to hold, then the places' members, then each
// share's limit.
const TAKE_SCRIPT = `
local now = tonumber(ARGV[1])
local expires = tonumber(ARGV[2])
local weight = tonumber(ARGV[4])
if redis.call('EXISTS', KEYS[1]) == 1 then return 'taken' end
for i = 3, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if redis.call('ZCARD', KEYS[i]) + weight > tonumber(ARGV[5 + weight + i - 2]) then return 'network-full' end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) + weight > tonumber(ARGV[3]) then return 'full' end
local ttl = math.max(1, expires - now)
redis.call('SET', KEYS[1], ARGV[5], 'PX', ttl)
for i = 2, #KEYS do
  for m = 1, weight do redis.call('ZADD', KEYS[i], expires, ARGV[5 + m]) end
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 'ok'
`;

// One hash a window, a field a share; past the cap a share not seen yet is over (fails closed).
// KEYS: the window's hash; ARGV: the cap, the window's remaining ms, then name and limit pairs.
const HIT_SCRIPT = `
for i = 3, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[1]) then return 1 end
  local n = redis.call('HINCRBY', KEYS[1], ARGV[i], 1)
  redis.call('PEXPIRE', KEYS[1], ARGV[2], 'NX')
  if n > tonumber(ARGV[i + 1]) then return 1 end
end
return 0
`;

/**
 * The vault's values are sealed with AES-256-GCM under a key derived from the cookie secrets
 * (every instance has the same ones), so that whoever reads the Redis (a backup, a shared
 * instance) does not read a person's Plex token. The newest secret seals; every one opens, so a
 * rotation of the cookie secrets loses nothing sealed before it.
 */
function sealer(secrets: string[]) {
  const keys = secrets.map((s) => Buffer.from(hkdfSync('sha256', s, 'guestlist', 'vault', 32)));
  return {
    seal(value: string): string {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', keys[0]!, iv);
      const sealed = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()]);
      return Buffer.concat([iv, cipher.getAuthTag(), sealed]).toString('base64');
    },
    open(text: string): string | undefined {
      const raw = Buffer.from(text, 'base64');
      for (const key of keys) {
        try {
          const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
          decipher.setAuthTag(raw.subarray(12, 28));
          return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
        } catch {
          // sealed with another key
        }
      }
      return undefined; // sealed with a secret no longer configured: as good as gone
    },
  };
}

export async function openRedisStore(url: string, options: StoreOptions, log: Logger): Promise<Store> {
  const { accountTtlSeconds, bindingsMax = BINDS_MAX, rateSharesMax = RATE_SHARES_MAX, clockToleranceMs } = options;
  // Without the cookie secrets (a store opened by hand), a key of this process's own.
  const { seal, open } = sealer(options.secrets?.length ? options.secrets : [randomBytes(32).toString('base64url')]);
  const client = await connect(url, log);
  const key = (model: string, id: string) => `${PREFIX}${model}:${id}`;

  function adapterFor(model: string): Adapter {
    // Unguarded, for the operations below that already run under one guard.
    const read = async (id: string) => {
      // The consumed mark lives beside the payload, so consuming is one atomic SET NX.
      const [json, consumed] = await client.mGet([key(model, id), `${key(model, id)}:consumed`]);
      if (!json) return undefined;
      const payload = JSON.parse(json) as AdapterPayload;
      if (consumed) payload.consumed = Number(consumed);
      return payload;
    };
    const find = (id: string) => guard(() => read(id));
    return {
      upsert: (id, payload, expiresIn) => guard(async () => {
        const ttl = entryTtlMs(expiresIn, clockToleranceMs);
        const tx = client.multi();
        tx.set(key(model, id), JSON.stringify(payload), ttl ? { PX: ttl } : {});
        if (model === 'Session' && payload.uid) tx.set(key('uid', payload.uid), id, ttl ? { PX: ttl } : {});
        if (GRANT_BOUND.has(model) && payload.grantId) {
          const members = key('grant', payload.grantId);
          tx.sAdd(members, key(model, id));
          if (ttl) tx.pExpire(members, ttl, 'GT');
          if (ttl) tx.pExpire(members, ttl, 'NX');
        }
        await tx.exec();
      }),
      find,
      findByUid: (uid) => guard(async () => {
        const id = await client.get(key('uid', uid));
        return id ? read(id) : undefined;
      }),
      findByUserCode: async () => undefined, // the device flow is not enabled
      consume: (id) => guard(async () => {
        const ttl = await client.pTTL(key(model, id));
        if (ttl === -2) return;
        const won = await client.set(`${key(model, id)}:consumed`, String(Math.floor(Date.now() / 1000)), { NX: true, ...(ttl > 0 ? { PX: ttl } : {}) });
        // Another instance (or request) consumed it first: no second token from one code.
        if (won === null) throw new errors.InvalidGrant('authorization code already consumed');
      }),
      destroy: (id) => guard(async () => {
        if (model === 'Session') {
          const payload = await read(id);
          if (payload?.uid) await client.del(key('uid', payload.uid));
        }
        await client.del([key(model, id), `${key(model, id)}:consumed`]);
      }),
      revokeByGrantId: (grantId) => guard(async () => {
        const members = await client.sMembers(key('grant', grantId));
        await client.del([...members, ...members.map((m) => `${m}:consumed`), key('grant', grantId)]);
      }),
    };
  }

  const accounts: AccountRecords = {
    keep: (account) => guard(async () => void (await client.set(key('account', account.accountId), JSON.stringify(account), { EX: accountTtlSeconds }))),
    find: (accountId) => guard(async () => {
      const json = await client.get(key('account', accountId));
      return json ? JSON.parse(json) : undefined;
    }),
    end: (accountId, mark) => guard(async () => void (await client.set(key('ended', accountId), JSON.stringify(mark), { EX: accountTtlSeconds }))),
    ended: (accountId) => guard(async () => {
      const json = await client.get(key('ended', accountId));
      return json ? JSON.parse(json) as EndMark : undefined;
    }),
  };

  /** Unguarded, for the bindings below, which already run under one guard. */
  function quotaOf(name: string, max: number) {
    const held = (k: string) => key(`quota:${name}:held`, k);
    const all = key(`quota:${name}`, '*all*');
    const share = (n: string) => key(`quota:${name}:of`, n);
    /** A key's places, as members of the sorted sets: the key itself when it weighs one. */
    const places = (k: string, weight: number) => (weight === 1 ? [k] : Array.from({ length: weight }, (_, i) => `${k}#${i}`));
    return {
      take: async (k: string, shares: { name: string; limit: number }[], until: number, weight = 1) => {
        const members = places(k, weight);
        return await client.eval(TAKE_SCRIPT, {
          keys: [held(k), all, ...shares.map((s) => share(s.name))],
          arguments: [String(Date.now()), String(Math.round(until)), String(max), String(weight),
            JSON.stringify({ shares: shares.map((s) => s.name), members }), ...members, ...shares.map((s) => String(s.limit))],
        }) as TakeResult;
      },
      release: async (k: string) => {
        const json = await client.get(held(k));
        const { shares = [], members = [] } = json ? JSON.parse(json) as { shares?: string[]; members?: string[] } : {};
        if (members.length === 0) return void (await client.del(held(k)));
        const multi = client.multi().del(held(k)).zRem(all, members);
        for (const n of shares) multi.zRem(share(n), members);
        await multi.exec();
      },
    };
  }
  const quota = (name: string, max: number): Quota => {
    const q = quotaOf(name, max);
    return { take: (k, shares, until, weight) => guard(() => q.take(k, shares, until, weight)), release: (k) => guard(() => q.release(k)) };
  };
  const everBound = quotaOf('bound', bindingsMax);

  const bindings: BindingStore = {
    // The rules of sources/sign-in-bindings.ts, as the memory store keeps them: a reference binds
    // once while the upstream could still approve it, and a full memory (for a network, one of its
    // wider prefixes, or in all) refuses new binds.
    bind: (uid, binding, shares) => guard(async () => {
      const now = Date.now();
      const ttl = retentionMs(binding.expiresAt, now);
      const taken = await everBound.take(binding.ref, shares, now + ttl);
      if (taken !== 'ok') return taken;
      await client.set(key('binding', uid), JSON.stringify(binding), { PX: ttl });
      return 'bound';
    }),
    peek: (uid) => guard(async () => {
      const [json, finishing] = await client.multi().get(key('binding', uid)).exists(key('finishing', uid)).exec() as unknown as [string | null, number];
      if (json) return JSON.parse(json) as Binding;
      return finishing ? 'finishing' : undefined;
    }),
    // Of two requests finishing one login, on any instances, one gets the binding; it moves to
    // a "finishing" key in the same step, so the other always sees one or the other.
    claim: (uid) => guard(async () => {
      const got = await client.eval(CLAIM_SCRIPT, { keys: [key('binding', uid), key('finishing', uid)], arguments: [String(FINISH_CLAIM_MS)] });
      if (got === 'finishing') return 'finishing';
      return typeof got === 'string' ? JSON.parse(got) as Binding : undefined;
    }),
    restore: (uid, binding) => guard(async () => void (await client.multi()
      .del(key('finishing', uid))
      .set(key('binding', uid), JSON.stringify(binding), { PX: retentionMs(binding.expiresAt) })
      .exec())),
    settle: (uid) => guard(async () => void (await client.del(key('finishing', uid)))),
    release: (uid, ref) => guard(async () => {
      const json = await client.get(key('binding', uid));
      if (json && (JSON.parse(json) as Binding).ref === ref) await client.del(key('binding', uid));
      await everBound.release(ref);
    }),
  };

  const counter: RateCounter = {
    hit: (shares, windowMs) => guard(async () => {
      const now = Date.now();
      const index = Math.floor(now / windowMs);
      const resetAt = (index + 1) * windowMs;
      const over = await client.eval(HIT_SCRIPT, {
        keys: [key(`rate:${windowMs}`, String(index))],
        arguments: [String(rateSharesMax), String(resetAt - now + 1000), ...shares.flatMap((s) => [s.name, String(s.limit)])],
      });
      return { over: over === 1, resetAt };
    }),
  };

  const vault: Vault = {
    put: (k, value, ttlMs) => guard(async () => void (await client.set(key('vault', k), seal(value), { PX: Math.max(1, Math.round(ttlMs)) }))),
    get: (k) => guard(async () => {
      const sealed = await client.get(key('vault', k));
      return sealed ? open(sealed) : undefined;
    }),
    delete: (k) => guard(async () => void (await client.del(key('vault', k)))),
    claim: (k, ttlMs) => guard(async () => (await client.set(key('vault-claim', k), '1', { NX: true, PX: Math.max(1, Math.round(ttlMs)) })) !== null),
    unclaim: (k) => guard(async () => void (await client.del(key('vault-claim', k)))),
  };

  // Events in a capped list, counts in a hash per hour, each person under their own key (expiring
  // with their sign-in) and in a sorted set by that expiry, from which the expired drop out.
  const people = key('activity', 'people');
  const activity: Activity = {
    record: (event) => guard(async () => {
      const hour = key('activity:hour', String(Math.floor(event.at / HOUR_MS)));
      await client.multi()
        .lPush(key('activity', 'events'), JSON.stringify(event)).lTrim(key('activity', 'events'), 0, EVENTS_KEPT - 1)
        .hIncrBy(hour, event.outcome, 1).pExpire(hour, HOURS_KEPT * HOUR_MS)
        .exec();
    }),
    recent: () => guard(async () => (await client.lRange(key('activity', 'events'), 0, -1)).map((e) => JSON.parse(e) as SignInEvent)),
    perHour: (count) => guard(async () => {
      const now = Math.floor(Date.now() / HOUR_MS);
      const hours = Array.from({ length: count }, (_, i) => now - count + 1 + i);
      const multi = client.multi();
      for (const hour of hours) multi.hGetAll(key('activity:hour', String(hour)));
      const all = await multi.exec() as unknown as Record<string, string>[];
      return hours.map((hour, i) => ({ hour, counts: Object.fromEntries(Object.entries(all[i] ?? {}).map(([k, v]) => [k, Number(v)])) }));
    }),
    seen: (person, app, untilMs) => guard(async () => {
      const now = Date.now();
      const json = await client.get(key('activity:person', person.sub));
      const before = json ? JSON.parse(json) as Presence : undefined;
      const entry: Presence = { ...person, apps: [...new Set([...(before?.apps ?? []), app])], since: before?.since ?? now, lastSeen: now };
      const ttl = Math.max(1, untilMs - now);
      await client.multi()
        .set(key('activity:person', person.sub), JSON.stringify(entry), { PX: ttl })
        .zAdd(people, { score: untilMs, value: person.sub })
        .exec();
    }),
    people: () => guard(async () => {
      await client.zRemRangeByScore(people, '-inf', Date.now());
      const subs = await client.zRange(people, 0, -1);
      if (subs.length === 0) return [];
      const found = await client.mGet(subs.map((s) => key('activity:person', s)));
      return found.filter((j): j is string => !!j).map((j) => JSON.parse(j) as Presence);
    }),
    forget: (sub) => guard(async () => void (await client.multi().del(key('activity:person', sub)).zRem(people, sub).exec())),
  };

  async function health(): Promise<HealthItem[]> {
    const where = redact(url);
    const started = performance.now();
    try {
      await guard(() => client.ping());
    } catch (err) {
      return [{ name: 'Store', ok: false, detail: `Redis at ${where} is not answering: ${(err as Error).message}` }];
    }
    const ms = performance.now() - started;
    return [{ name: 'Store', ok: true, detail: `Redis at ${where}, shared by every instance: answered PING in ${ms.toFixed(1)} ms` }];
  }

  return { adapterFor, accounts, bindings, quota, vault, activity, counter, health, close: async () => void (await client.close()) };
}
